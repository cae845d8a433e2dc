#!/usr/bin/env python3
"""Benchmark what a cancel-all and a large fill-or-kill cost on a big book (the core alone).

A book of ``--orders`` resting orders (100,000 by default) from 200 market makers, on 400 price
levels a side, is built once. Then, each timed on its own and repeated ``--repeat`` times (the
median is printed):

- CancelAll by a user with no orders on the book (no events);
- CancelAll by a user with 10 orders on the book (10 cancels; the 10 are placed again, untimed,
  before each repetition);
- a fill-or-kill buy for more than the whole ask side (it expires; the book is untouched).

Run it against another checkout's core to compare (the script itself imports ``exchange``):

    PYTHONPATH=. .venv/bin/python scripts/bench_cancel_all.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python scripts/bench_cancel_all.py
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, OrderCanceled, OrderExpired, PlaceOrder
from exchange.core.orders import Side, TimeInForce

SYMBOL = "BTC-USD"
INSTRUMENT = Instrument(SYMBOL, tick_size="0.01", lot_size="0.001")
MID = 4_300_000
LEVELS = 400  # per side


def big_book(orders: int) -> Matcher:
    """A matcher whose book holds ``orders`` resting orders of 200 makers, half bids, half asks."""
    matcher = Matcher(1, [INSTRUMENT])
    for n in range(orders):
        side = Side.BUY if n % 2 else Side.SELL
        offset = 1 + (n // 2) % LEVELS
        price = MID - offset if side is Side.BUY else MID + offset
        matcher.handle(PlaceOrder(f"mm{n % 200}", SYMBOL, side, 10, price, TimeInForce.GTC))
    return matcher


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="resting orders on the book")
    parser.add_argument("--repeat", type=int, default=200, help="timed repetitions of each command")
    args = parser.parse_args()

    matcher = big_book(args.orders)
    book = matcher.books[SYMBOL]
    print(f"book: {len(book.orders):,} resting orders on {len(book.bids)} + {len(book.asks)} levels")
    gc.collect()
    gc.disable()

    nobody = CancelAll("nobody", None)
    samples = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        events = matcher.handle(nobody)
        samples.append(time.perf_counter() - start)
        assert events == []
    print(f"CancelAll, user with no orders:   {median_us(samples):10.1f} µs median")

    samples = []
    for _ in range(args.repeat):
        for n in range(10):
            matcher.handle(PlaceOrder("ten", SYMBOL, Side.BUY, 10, MID - 1 - n * 37 % LEVELS, TimeInForce.GTC))
        start = time.perf_counter()
        events = matcher.handle(CancelAll("ten", None))
        samples.append(time.perf_counter() - start)
        assert sum(isinstance(e, OrderCanceled) for e in events) == 10
    print(f"CancelAll, user with 10 orders:   {median_us(samples):10.1f} µs median")

    too_big = sum(level.qty for level in book.asks.values()) + 10
    samples = []
    for _ in range(args.repeat // 10 or 1):
        start = time.perf_counter()
        events = matcher.handle(PlaceOrder("taker", SYMBOL, Side.BUY, too_big, None, TimeInForce.FOK))
        samples.append(time.perf_counter() - start)
        assert isinstance(events[-1], OrderExpired)
    print(f"FOK larger than the ask side:     {median_us(samples):10.1f} µs median")
    gc.enable()


if __name__ == "__main__":
    sys.exit(main())
