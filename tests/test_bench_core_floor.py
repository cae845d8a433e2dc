"""scripts/bench_core_floor.py: its FloorMatcher makes exactly the real Matcher's events.

A floor measured on wrong events would be no floor, so the check is byte for byte, on a short
prefix of the benchmark's stream and on a dense random stream with three users (self-trade
prevention, sweeps of a whole side, market orders on an empty side, cancels of orders that are
gone or someone else's).
"""

from __future__ import annotations

import random

import pytest

from exchange.core.messages import CancelOrder, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from script_modules import import_script


@pytest.fixture(scope="module")
def floor():
    return import_script("bench_core_floor")


def test_floor_matcher_makes_the_matchers_events_on_the_bench_stream(floor):
    commands, _ = floor.make_stream(20_000, 42)
    comparison = floor.compare(commands)
    assert comparison.counts_equal, (comparison.real_counts, comparison.floor_counts)
    assert comparison.byte_parity, comparison.first_difference
    assert comparison.real_counts["Match"] > 5_000 and comparison.real_counts["OrderExpired"] > 100


def test_floor_matcher_makes_the_matchers_events_on_a_dense_random_stream(floor):
    rng = random.Random(7)
    symbol = floor.INSTRUMENT.symbol
    time_in_force = [TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]
    commands: list = []
    placed = 0
    for ts in range(5_000):
        user = rng.choice(["ann", "bob", "cyd"])
        if rng.random() < 0.3 and placed:  # any order id so far: open, gone or someone else's
            order_id = f"{floor.ENGINE_ID}-{rng.randint(1, placed)}"
            commands.append(CancelOrder(user, symbol, order_id, ts_received=ts))
            continue
        side = rng.choice([Side.BUY, Side.SELL])
        if rng.random() < 0.1:
            price, tif = None, TimeInForce.IOC
        else:
            price, tif = rng.randint(95, 105), rng.choice(time_in_force)
        commands.append(PlaceOrder(user, symbol, side, rng.randint(1, 30), price, tif, ts_received=ts))
        placed += 1
    comparison = floor.compare(commands)
    assert comparison.byte_parity, comparison.first_difference
    counts = comparison.real_counts
    assert counts["OrderRejected"] > 100 and counts["Match"] > 500 and counts["OrderCanceled"] > 500, counts
