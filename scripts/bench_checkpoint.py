#!/usr/bin/env python3
"""What taking a checkpoint costs the engine loop with many client order ids reserved.

200,000 IOC orders with a client order id each (all within the window: the worst case) and
10,000 resting orders, then ``checkpoint.take`` five times; the median is printed.

    PYTHONPATH=. .venv/bin/python scripts/bench_checkpoint.py
"""

from __future__ import annotations

import statistics
import time

from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side, TimeInForce

INSTRUMENT = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001")


def main() -> None:
    matcher = Matcher(1, [INSTRUMENT])
    for i in range(200_000):
        matcher.handle(PlaceOrder(f"u{i % 100}", "BTC-USD", Side.SELL, 10, 5_000_000, TimeInForce.IOC,
                                  client_order_id=f"id-{i}", ts_received=i * 1000))
    for i in range(10_000):
        matcher.handle(PlaceOrder(f"u{i % 100}", "BTC-USD", Side.BUY, 10, 4_000_000 - i % 300, TimeInForce.GTC,
                                  ts_received=200_000_000 + i))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        checkpoint.take(matcher)
        samples.append(time.perf_counter() - start)
    print(f"{len(matcher.client_order_ids):,} client order ids, {len(matcher.books['BTC-USD'].orders):,}"
          f" resting orders: checkpoint.take median {statistics.median(samples) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
