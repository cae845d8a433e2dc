#!/usr/bin/env python3
"""Benchmark the pure matching core: a seeded single-instrument stream through Matcher.handle.

The stream imitates a busy order book: about 67% passive limit orders a few ticks from a mid
price that wanders, 25% cancels of resting orders and 8% aggressive orders (crossing GTC and IOC
limits, market IOC, FOK) that sweep one to a few price levels. It is generated up front, outside
the timed region, by a generator that watches an untimed matcher's book, so every cancel names an
order that is really resting and every aggressive order is sized against the real levels.

Only ``for command in commands: events += len(handle(command))`` is timed, on a fresh matcher per
run; every event is constructed. Peak memory is measured in a separate, untimed pass.

    .venv/bin/python scripts/bench_core.py                   # 1,000,000 commands, 5 runs
    .venv/bin/python scripts/bench_core.py --check-digest    # sha256 of the events of a fixed stream
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from itertools import islice, takewhile

import msgspec

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, OrderCanceled, PlaceOrder, expand
from exchange.core.orders import Side, TimeInForce

ENGINE_ID = 1
SYMBOL = "BTC-USD"
INSTRUMENT = Instrument(SYMBOL, tick_size="0.01", lot_size="0.001")
START_MID = 4_300_000  # ticks: 43000.00
TS0 = 1_700_000_000_000_000_000  # ns; each command 1 µs after the previous one
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
DIGEST_COMMANDS, DIGEST_SEED = 200_000, 1


def make_stream(n: int, seed: int) -> tuple[list, Counter]:
    """``n`` commands and the count of each kind, decided against a live (untimed) matcher's book."""
    rng = random.Random(seed)
    rand, randint, choice = rng.random, rng.randint, rng.choice
    matcher = Matcher(ENGINE_ID, [INSTRUMENT])
    book = matcher.books[SYMBOL]
    makers = [f"mm{i}" for i in range(200)]  # rest passive orders
    takers = [f"tk{i}" for i in range(50)]  # send the aggressive ones
    resting: list[str] = []  # order ids that rested; pruned lazily once filled or canceled
    commands: list = []
    kinds: Counter = Counter()
    mid = START_MID

    def opposite_price(side: Side, levels_to_sweep: int) -> int | None:
        """The price of the ``levels_to_sweep``-th best opposite level (or the last one)."""
        prices = list(islice(book.prices(SELL if side is BUY else BUY), levels_to_sweep))
        return prices[-1] if prices else None

    def qty_up_to(side: Side, limit: int) -> int:
        levels = book.asks if side is BUY else book.bids
        prices = (takewhile(lambda p: p <= limit, book.prices(SELL)) if side is BUY
                  else takewhile(lambda p: p >= limit, book.prices(BUY)))
        return sum(levels[p].qty for p in prices)

    for i in range(n):
        ts = TS0 + i * 1000
        if rand() < 0.02:  # the mid wanders a tick at a time
            mid += 1 if rand() < 0.5 else -1
        r = rand()
        if r < 0.25 and not resting:
            r = 0.5  # nothing to cancel yet: place a passive order instead
        if r < 0.25:
            # Cancel: of two random resting orders, the one further from the mid (stale quotes go
            # first, as market makers requote), so the book stays concentrated near the mid.
            candidates: list = []
            while len(candidates) < 2 and resting:
                j = randint(0, len(resting) - 1)
                order = book.orders.get(resting[j])
                if order is None:  # filled or canceled since: drop it (swap with the last)
                    resting[j] = resting[-1]
                    resting.pop()
                    continue
                candidates.append(order)
            if candidates:  # the canceled order leaves ``resting`` lazily, like a filled one
                order = max(candidates, key=lambda o: abs(o.price - mid))
                command = CancelOrder(order.user, SYMBOL, order.order_id, ts_received=ts)
                kind = "cancel"
            else:
                r = 0.5  # nothing left to cancel: place a passive order instead
        if 0.25 <= r < 0.92:
            # Passive limit: 1–5 ticks from the mid, never crossing the opposite best.
            side = BUY if rand() < 0.5 else SELL
            offset = randint(1, 5)
            if side is BUY:
                price = mid - offset
                if book.best_ask is not None and price >= book.best_ask:
                    price = book.best_ask - 1
            else:
                price = mid + offset
                if book.best_bid is not None and price <= book.best_bid:
                    price = book.best_bid + 1
            command = PlaceOrder(choice(makers), SYMBOL, side, randint(1, 50) * 10, price, GTC,
                                 ts_received=ts)
            kind = "limit passive"
        elif r >= 0.92:
            # Aggressive: sweep 1–3 opposite levels (mostly 1), sized as a share of what is there.
            side = BUY if rand() < 0.5 else SELL
            sweep = 1 if rand() < 0.6 else randint(2, 3)
            limit = opposite_price(side, sweep)
            if limit is None:
                limit = mid + 1 if side is BUY else mid - 1
                available = 0
            else:
                available = qty_up_to(side, limit)
            qty = max(10, int(available * (0.5 + rand() * 0.7)) // 10 * 10)
            t = rand()
            if t < 0.4:
                command = PlaceOrder(choice(takers), SYMBOL, side, qty, limit, GTC, ts_received=ts)
                kind = "limit aggressive GTC"
            elif t < 0.7:
                command = PlaceOrder(choice(takers), SYMBOL, side, qty, limit, IOC, ts_received=ts)
                kind = "limit IOC"
            elif t < 0.9:
                command = PlaceOrder(choice(takers), SYMBOL, side, qty, None, IOC, ts_received=ts)
                kind = "market IOC"
            else:
                command = PlaceOrder(choice(takers), SYMBOL, side, qty, limit, FOK, ts_received=ts)
                kind = "limit FOK"
        kinds[kind] += 1
        commands.append(command)
        before = matcher.last_order_number
        matcher.handle(command)
        if type(command) is PlaceOrder and matcher.last_order_number != before:
            order_id = f"{ENGINE_ID}-{matcher.last_order_number}"
            if order_id in book.orders:
                resting.append(order_id)
    return commands, kinds


def fresh_matcher_handle():
    return Matcher(ENGINE_ID, [INSTRUMENT]).handle


def timed_run(commands: list, make_handle=fresh_matcher_handle) -> tuple[float, int]:
    """Seconds to handle every command with a fresh ``make_handle()`` (by default the real
    matcher's), and the number of events produced."""
    handle = make_handle()
    gc.collect()
    events = 0
    start = time.perf_counter()
    for command in commands:
        events += len(handle(command))
    return time.perf_counter() - start, events


def stream_profile(commands: list) -> tuple[Counter, tuple[float, float]]:
    """Counts of each event type for the whole stream (untimed), and the book's mean depth
    (resting orders, price levels) sampled every 1,000 commands."""
    matcher = Matcher(ENGINE_ID, [INSTRUMENT])
    book = matcher.books[SYMBOL]
    counts: Counter = Counter()
    orders = levels = samples = 0
    for i, command in enumerate(commands):
        for event in matcher.handle(command):
            counts[type(event).__name__] += 1
            if type(event) is OrderCanceled and event.reason.value != "USER":
                counts[f"OrderCanceled {event.reason.value}"] += 1
        if i % 1000 == 999:
            orders += len(book.orders)
            levels += len(book.bids) + len(book.asks)
            samples += 1
    return counts, (orders / max(samples, 1), levels / max(samples, 1))


def peak_memory(commands: list) -> int:
    """Peak bytes traced by tracemalloc while one matcher handles the whole stream."""
    gc.collect()
    tracemalloc.start()
    matcher = Matcher(ENGINE_ID, [INSTRUMENT])
    handle = matcher.handle
    for command in commands:
        handle(command)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def events_digest(commands: list, expanded: bool = False) -> str:
    """sha256 over the msgpack encoding of every command's list of events, in order; ``expanded``:
    each Match as the three events it stands for (maker's fill, taker's fill, trade), which is what
    versions before Match emitted, so that digest can be compared across that change."""
    handle = Matcher(ENGINE_ID, [INSTRUMENT]).handle
    encode = msgspec.msgpack.Encoder().encode
    digest = hashlib.sha256()
    for command in commands:
        events = handle(command)
        digest.update(encode(expand(events) if expanded else events))
    return digest.hexdigest()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000, help="commands in the stream")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the stream generator")
    parser.add_argument("--check-digest", action="store_true",
                        help=f"only print the sha256 of the events of the {DIGEST_COMMANDS:,}-command"
                             f" stream with seed {DIGEST_SEED} (behaviour check; ignores the other options)")
    args = parser.parse_args()

    if args.check_digest:
        commands, _ = make_stream(DIGEST_COMMANDS, DIGEST_SEED)
        print(f"events sha256 ({DIGEST_COMMANDS:,} commands, seed {DIGEST_SEED}): {events_digest(commands)}")
        print(f"  with each Match expanded into its three events: {events_digest(commands, expanded=True)}")
        return

    print(f"python {platform.python_version()} on {cpu_model()}, {os.cpu_count()} cpus,"
          f" load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    commands, kinds = make_stream(args.commands, args.seed)
    print(f"stream: {len(commands):,} commands, seed {args.seed},"
          f" generated in {time.perf_counter() - t0:.1f}s")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<22} {count:>9,}  {100 * count / len(commands):5.1f}%")
    counts, (mean_orders, mean_levels) = stream_profile(commands)
    trades = counts["Match"]
    print(f"events: {sum(counts.values()):,} ({sum(counts.values()) / len(commands):.2f} per command),"
          f" trades {trades:,}")
    for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        if name != "Match":
            print(f"  {name:<22} {count:>9,}")
    print(f"book depth, mean over the stream: {mean_orders:,.0f} resting orders"
          f" on {mean_levels:.1f} price levels")

    rates = []
    for run in range(1, args.runs + 1):
        seconds, events = timed_run(commands)
        rates.append(len(commands) / seconds)
        print(f"run {run}: {seconds:.3f}s  {rates[-1]:>10,.0f} commands/s"
              f"  {events / seconds:>10,.0f} events/s")
    median = statistics.median(rates)
    print(f"median {median:,.0f} commands/s (min {min(rates):,.0f}, max {max(rates):,.0f},"
          f" spread {100 * (max(rates) - min(rates)) / median:.1f}%),"
          f" {median * events / len(commands):,.0f} events/s")
    print(f"load average after the runs {os.getloadavg()[0]:.2f} (other processes share the cpus)")
    peak = peak_memory(commands)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak memory: {peak / 2**20:.1f} MiB traced while handling the stream;"
          f" process max RSS {maxrss / 2**20:.0f} MiB (includes the stream itself)")


if __name__ == "__main__":
    sys.exit(main())
