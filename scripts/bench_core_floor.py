#!/usr/bin/env python3
"""The floor of a pure-Python matching core: the leanest matcher that makes the real core's events.

``FloorMatcher`` handles exactly what the stream of scripts/bench_core.py contains (GTC, IOC and
FOK limit orders, market IOC orders and cancels on one instrument, self-trade prevention
CANCEL_NEWEST) and returns, for every command, the same events as ``Matcher.handle``: the same
structs from exchange.core.messages with the same field values (seq, order and trade ids
``"<engine_id>-<n>"``, quantities). It is written for speed and nothing else,
without giving up an event: one closure whose state lives in cells and locals, price levels as
plain lists, the sorted prices of each side in a small list kept with bisect (an insert and a
removal cost about a sixth of SortedList's for the dozen levels this book has, and a thirteenth of
SortedDict's), sentinels instead of None checks for an empty side.

Every field of every event is filled as the real core fills it, so ``--check`` finds byte parity;
the only difference in kind is that the events of a cancel carry the command's order id and user
strings (equal to the order's, as the core checks) rather than the order's own objects.

What it measures, on the same stream and with the same harness as bench_core (pre-built commands,
only ``for command in commands: events += len(handle(command))`` timed, a fresh matcher per run):

- FloorMatcher: the floor, matching plus output;
- Matcher: the real core, for comparison in the same invocation;
- events only: the same event structs built from precomputed argument tuples into one list per
  command, with no matching at all (ids are precomputed too). That is the cost of the output
  alone; the rest of the floor is the cost of matching. The precomputed tuples take about
  200 MiB per 200,000 commands.

``--check`` runs Matcher and FloorMatcher over the same stream and requires identical counts per
event type and identical msgpack encodings of every command's events (byte parity).

    .venv/bin/python scripts/bench_core_floor.py --check                 # 200,000 commands, seed 42
    .venv/bin/python scripts/bench_core_floor.py                         # 1,000,000 commands, 5 runs
    .venv/bin/python scripts/bench_core_floor.py --commands 200000 --runs 3

What FloorMatcher skips, because the stream never exercises it (the real core does all of it):
- instruments other than the one it was built for (it never looks up ``symbol``);
- validation of quantity, price and time in force (range checks, a market order that is GTC or
  POST), and the risk limits (max notional, price band, max open orders);
- client order ids (never read, so no DUPLICATE_ID; events carry the default "") and cancels by
  client order id; ``PlaceOrder.stp`` (every order uses CANCEL_NEWEST, the instrument default);
- post-only orders, ReplaceOrder, CancelAll, the other self-trade prevention modes;
- per-user open order counts, ``last_price``, ``last_top``, and replay, checkpoints and digests.
It does reject a market order that meets an empty side (NO_LIQUIDITY, which the stream has) and a
cancel of an order that is not the user's (NOT_YOUR_ORDER, which it has not), as the core does.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import statistics
import sys
import time
from bisect import insort
from collections import Counter
from dataclasses import dataclass

import msgspec

from bench_core import ENGINE_ID, INSTRUMENT, cpu_model, make_stream, timed_run
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import (
    CancelOrder, Match, OrderAccepted, OrderCanceled, OrderExpired, OrderRejected,
)
from exchange.core.orders import CancelReason, ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.errors import RejectCode

BUY, SELL = Side.BUY, Side.SELL
GTC, FOK = TimeInForce.GTC, TimeInForce.FOK
CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
USER_CANCEL, SELF_TRADE = CancelReason.USER, CancelReason.SELF_TRADE
EXPIRED_IOC, EXPIRED_FOK, EXPIRED_MARKET = ExpireReason.IOC, ExpireReason.FOK, ExpireReason.MARKET
NO_LIQUIDITY, NOT_YOUR_ORDER = RejectCode.NO_LIQUIDITY, RejectCode.NOT_YOUR_ORDER
# Each side keeps the sort keys of its price levels in a list, best first: the price for asks,
# minus the price for bids. EMPTY is always the last key, so ``keys[0]`` is never missing; its
# level (price EMPTY on the asks, -EMPTY on the bids) holds nothing, so an empty side's best
# quantity is 0 without a check. A market order's limit key, MARKET, crosses every real level.
EMPTY = 1 << 62
MARKET = EMPTY - 1
DEFAULT_COMMANDS, DEFAULT_CHECK_COMMANDS = 1_000_000, 200_000
# An id's last three digits: from 1000 on, an id is a head ("1-123" for 123000..123999) made once
# per thousand ids plus one of these, as in exchange.core.matching.
TAILS = tuple(f"{n:03d}" for n in range(1000))


class Resting(msgspec.Struct, eq=False, gc=False):
    """A resting order. As cheap to build and read as a plain list (measured: the same machine
    instructions per command), and its fields have names. ``eq=False`` makes ``list.remove``
    compare identities; ``gc=False`` is safe because it holds only strings, ints and an enum."""

    order_id: str
    user: str
    leaves_qty: int
    qty: int
    side: Side
    price: int


class FloorMatcher:
    """One instrument's book, matched with the least Python this stream allows (see the module
    docstring). ``handle(command)`` returns the command's events, like ``Matcher.handle``.

    A price level is a list ``[qty, order, order, ...]``, oldest order first, of ``Resting``
    orders. Orders leave their level as soon as they are filled or canceled, so the front order
    is always live.
    """

    def __init__(self, engine_id: int, instrument: Instrument):
        if instrument.stp_default is not CANCEL_NEWEST:
            raise ValueError("FloorMatcher only does self-trade prevention CANCEL_NEWEST")
        self.handle = _floor_handle(engine_id, instrument.symbol)


def _floor_handle(engine_id: int, symbol: str):
    """The ``handle`` function of a FloorMatcher; its state lives in this closure's cells."""
    prefix = f"{engine_id}-"
    small_ids = tuple(f"{prefix}{n}" for n in range(1000))  # ids below 1000 are not zero-padded

    def ids_of_thousand(thousand: int) -> tuple[str, tuple[str, ...]]:
        """The head and the tails of ids ``thousand * 1000`` to ``thousand * 1000 + 999``."""
        return ("", small_ids) if thousand == 0 else (f"{prefix}{thousand}", TAILS)

    orders: dict[str, Resting] = {}  # order id → resting order
    bids: dict[int, list] = {-EMPTY: [0]}  # price → level
    asks: dict[int, list] = {EMPTY: [0]}
    bid_keys = [EMPTY]  # -price of every bid level, best (highest price) first, then EMPTY
    ask_keys = [EMPTY]  # price of every ask level, best (lowest) first, then EMPTY
    best_bid, best_ask = -EMPTY, EMPTY  # -bid_keys[0] and ask_keys[0], kept for the hot paths
    seq = 0  # the last event's sequence number
    # the next order id is order_head + order_tails[order_tail + 1] (likewise for trade ids)
    order_thousand = trade_thousand = 0
    order_tail = trade_tail = 0
    order_head, order_tails = trade_head, trade_tails = ids_of_thousand(0)

    def handle(command) -> list:
        nonlocal seq, best_bid, best_ask, order_tail, order_thousand, order_head, order_tails
        ts = command.ts_received
        if type(command) is CancelOrder:
            order_id = command.order_id
            user = command.user
            try:
                order = orders.pop(order_id)
            except KeyError:
                return reject_cancel(command)
            if order.user != user:  # someone else's order: it stays
                orders[order_id] = order
                return reject_cancel(command)
            leaves = order.leaves_qty
            side = order.side
            price = order.price
            s = seq
            seq = s + 1
            if side is BUY:
                level = bids[price]
                if len(level) == 2:  # the level's only order
                    del bids[price]
                    if price == best_bid:
                        del bid_keys[0]
                        best_bid = -bid_keys[0]
                    else:
                        bid_keys.remove(-price)
                else:
                    level.remove(order)
                    level[0] -= leaves
            else:
                level = asks[price]
                if len(level) == 2:
                    del asks[price]
                    if price == best_ask:
                        del ask_keys[0]
                        best_ask = ask_keys[0]
                    else:
                        ask_keys.remove(price)
                else:
                    level.remove(order)
                    level[0] -= leaves
            return [OrderCanceled(s + 1, ts, symbol, order_id, user, side, leaves, USER_CANCEL)]

        price = command.price
        side = command.side
        tif = command.tif
        if tif is not GTC or price is None or (price >= best_ask if side is BUY else price <= best_bid):
            return take(command, ts, side, price, tif)
        # A GTC limit order that rests without trading: one event.
        user = command.user
        qty = command.qty
        order_tail += 1
        if order_tail == 1000:
            order_thousand += 1
            order_tail = 0
            order_head, order_tails = ids_of_thousand(order_thousand)
        order_id = order_head + order_tails[order_tail]
        order = Resting(order_id, user, qty, qty, side, price)
        orders[order_id] = order
        seq = s = seq + 1
        if side is BUY:
            level = bids.get(price)
            if level is None:
                bids[price] = [qty, order]
                if price > best_bid:
                    bid_keys.insert(0, -price)
                    best_bid = price
                else:
                    insort(bid_keys, -price)
            else:
                level.append(order)
                level[0] += qty
        else:
            level = asks.get(price)
            if level is None:
                asks[price] = [qty, order]
                if price < best_ask:
                    ask_keys.insert(0, price)
                    best_ask = price
                else:
                    insort(ask_keys, price)
            else:
                level.append(order)
                level[0] += qty
        return [OrderAccepted(s, ts, symbol, order_id, user, side, qty, price, GTC, CANCEL_NEWEST)]

    def take(command, ts: int, side: Side, price: int | None, tif: TimeInForce) -> list:
        """Every order but a resting GTC limit: a market order, an IOC or FOK limit, or a GTC
        limit that crosses. Events: accepted, a Match per match, the remainder's fate."""
        nonlocal seq, best_bid, best_ask, order_tail, order_thousand, order_head, order_tails
        nonlocal trade_tail, trade_thousand, trade_head, trade_tails
        user = command.user
        qty = command.qty
        if side is BUY:
            levels, keys, sign = asks, ask_keys, 1
            own_levels, own_keys = bids, bid_keys
            limit = MARKET if price is None else price
        else:
            levels, keys, sign = bids, bid_keys, -1
            own_levels, own_keys = asks, ask_keys
            limit = MARKET if price is None else -price
        if price is None and keys[0] == EMPTY:
            seq += 1
            return [OrderRejected(seq, ts, symbol, user, NO_LIQUIDITY,
                                  f"no {'asks' if side is BUY else 'bids'} on {symbol} for a market order",
                                  "", "", "PlaceOrder")]
        order_tail += 1
        if order_tail == 1000:
            order_thousand += 1
            order_tail = 0
            order_head, order_tails = ids_of_thousand(order_thousand)
        order_id = order_head + order_tails[order_tail]
        s = seq + 1
        events = [OrderAccepted(s, ts, symbol, order_id, user, side, qty, price, tif, CANCEL_NEWEST)]
        if tif is FOK and not fillable(levels, keys, sign, limit, user, qty):
            seq = s + 1
            events.append(OrderExpired(s + 1, ts, symbol, order_id, user, side, qty, EXPIRED_FOK))
            return events
        append = events.append
        leaves = qty
        self_trade = False
        tail, head, tails = trade_tail, trade_head, trade_tails
        while leaves:
            key = keys[0]
            if key > limit:
                break
            level_price = key * sign
            level = levels[level_price]
            level_qty = level[0]
            while True:
                maker = level[1]
                if maker.user == user:
                    self_trade = True
                    break
                maker_leaves = maker.leaves_qty
                traded = maker_leaves if maker_leaves < leaves else leaves
                leaves -= traded
                level_qty -= traded
                tail += 1
                if tail == 1000:
                    trade_thousand += 1
                    tail = 0
                    head, tails = ids_of_thousand(trade_thousand)
                trade_id = head + tails[tail]
                s += 3  # a Match takes the numbers of the two fills and the trade it stands for
                append(Match(s, ts, symbol, trade_id, level_price, traded, side, maker.order_id, maker.user,
                             maker_leaves - traded, maker.qty - maker_leaves + traded, order_id, user, leaves,
                             qty - leaves))
                if traded == maker_leaves:
                    del orders[maker.order_id]
                    if len(level) == 2:  # the level is used up
                        del levels[level_price]
                        del keys[0]
                        break
                    del level[1]
                else:
                    maker.leaves_qty = maker_leaves - traded
                if not leaves:
                    break
            level[0] = level_qty
            if self_trade:
                break
        trade_tail, trade_head, trade_tails = tail, head, tails

        if self_trade:
            s += 1
            append(OrderCanceled(s, ts, symbol, order_id, user, side, leaves, SELF_TRADE))
        elif leaves:
            if price is None:
                s += 1
                append(OrderExpired(s, ts, symbol, order_id, user, side, leaves, EXPIRED_MARKET))
            elif tif is GTC:
                order = Resting(order_id, user, leaves, qty, side, price)
                orders[order_id] = order
                level = own_levels.get(price)
                if level is None:
                    own_levels[price] = [leaves, order]
                    insort(own_keys, -price if side is BUY else price)
                else:
                    level.append(order)
                    level[0] += leaves
            else:
                s += 1
                append(OrderExpired(s, ts, symbol, order_id, user, side, leaves, EXPIRED_IOC))
        best_bid = -bid_keys[0]
        best_ask = ask_keys[0]
        seq = s
        return events

    def fillable(levels: dict, keys: list, sign: int, limit: int, user: str, needed: int) -> bool:
        """Whether a fill-or-kill order fills completely before it reaches its user's own order."""
        for key in keys:
            if key > limit:
                return False
            level = levels[key * sign]
            for i in range(1, len(level)):
                maker = level[i]
                if maker.user == user:
                    return False
                needed -= maker.leaves_qty
                if needed <= 0:
                    return True
        return False

    def reject_cancel(command: CancelOrder) -> list:
        nonlocal seq
        seq += 1
        return [OrderRejected(seq, command.ts_received, command.symbol, command.user, NOT_YOUR_ORDER,
                              f"no open order {command.order_id} of user {command.user}", "",
                              command.order_id, "CancelOrder")]

    return handle


def event_arguments(commands: list) -> list[tuple]:
    """For each command, the (type, field values) of each event the real Matcher makes for it."""
    handle = Matcher(ENGINE_ID, [INSTRUMENT]).handle
    return [tuple((type(event), tuple(getattr(event, field) for field in event.__struct_fields__))
                  for event in handle(command))
            for command in commands]


def events_only_handle(arguments: list[tuple]):
    """A ``handle`` that ignores its command and builds the next command's events from ``arguments``."""
    next_events = iter(arguments).__next__

    def handle(command) -> list:
        return [event_type(*values) for event_type, values in next_events()]

    return handle


@dataclass
class Comparison:
    """How far FloorMatcher's events agree with Matcher's on one stream."""

    real_counts: Counter  # events of each type
    floor_counts: Counter
    real_digest: str  # sha256 of the msgpack encoding of every command's events, in order
    floor_digest: str
    first_difference: tuple | None  # (index, command, Matcher's events, FloorMatcher's events)

    @property
    def counts_equal(self) -> bool:
        return self.real_counts == self.floor_counts

    @property
    def byte_parity(self) -> bool:
        return self.first_difference is None


def compare(commands: list) -> Comparison:
    """Run Matcher and FloorMatcher side by side over ``commands``."""
    real = Matcher(ENGINE_ID, [INSTRUMENT]).handle
    floor = FloorMatcher(ENGINE_ID, INSTRUMENT).handle
    encode = msgspec.msgpack.Encoder().encode
    real_counts: Counter = Counter()
    floor_counts: Counter = Counter()
    real_digest, floor_digest = hashlib.sha256(), hashlib.sha256()
    first_difference = None
    for i, command in enumerate(commands):
        real_events, floor_events = real(command), floor(command)
        real_counts.update(type(event).__name__ for event in real_events)
        floor_counts.update(type(event).__name__ for event in floor_events)
        real_bytes, floor_bytes = encode(real_events), encode(floor_events)
        real_digest.update(real_bytes)
        floor_digest.update(floor_bytes)
        if first_difference is None and real_bytes != floor_bytes:
            first_difference = (i, command, real_events, floor_events)
    return Comparison(real_counts, floor_counts, real_digest.hexdigest(), floor_digest.hexdigest(),
                      first_difference)


def print_comparison(comparison: Comparison) -> None:
    real_counts, floor_counts = comparison.real_counts, comparison.floor_counts
    print(f"{'event':<14} {'Matcher':>10} {'FloorMatcher':>13}")
    for name in sorted(real_counts.keys() | floor_counts.keys()):
        print(f"{name:<14} {real_counts[name]:>10,} {floor_counts[name]:>13,}")
    print(f"per-type event counts: {'identical' if comparison.counts_equal else 'DIFFERENT'}")
    print(f"events sha256, Matcher:      {comparison.real_digest}")
    print(f"events sha256, FloorMatcher: {comparison.floor_digest}")
    if comparison.byte_parity:
        print("byte parity: yes, every command's events encode identically (msgpack)")
        return
    i, command, real_events, floor_events = comparison.first_difference
    print(f"byte parity: NO, first difference at command {i}: {command}")
    print(f"  Matcher:      {real_events}")
    print(f"  FloorMatcher: {floor_events}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int,
                        help=f"commands in the stream (default {DEFAULT_COMMANDS:,};"
                             f" {DEFAULT_CHECK_COMMANDS:,} with --check)")
    parser.add_argument("--runs", type=int, default=5,
                        help="timed runs of each handler (the median is reported)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the stream generator")
    parser.add_argument("--check", action="store_true",
                        help="only compare FloorMatcher's events with Matcher's (no timing)")
    args = parser.parse_args()

    if args.check:
        commands, _ = make_stream(args.commands or DEFAULT_CHECK_COMMANDS, args.seed)
        print(f"stream: {len(commands):,} commands, seed {args.seed}")
        comparison = compare(commands)
        print_comparison(comparison)
        return 0 if comparison.counts_equal and comparison.byte_parity else 1

    print(f"python {platform.python_version()} on {cpu_model()}, {os.cpu_count()} cpus,"
          f" load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    commands, _ = make_stream(args.commands or DEFAULT_COMMANDS, args.seed)
    arguments = event_arguments(commands)
    events_total = sum(map(len, arguments))
    # The argument tuples are millions of objects the cyclic GC tracks (the commands are not):
    # frozen, they cost no collection anything, as bench_core's stream costs it nothing.
    gc.freeze()
    print(f"stream: {len(commands):,} commands, seed {args.seed}, {events_total:,} events"
          f" ({events_total / len(commands):.2f} per command), prepared in {time.perf_counter() - t0:.1f}s")
    handlers = {
        "FloorMatcher": lambda: FloorMatcher(ENGINE_ID, INSTRUMENT).handle,
        "Matcher": lambda: Matcher(ENGINE_ID, [INSTRUMENT]).handle,
        "events only": lambda: events_only_handle(arguments),
    }
    rates: dict[str, list[float]] = {name: [] for name in handlers}
    for run in range(1, args.runs + 1):  # the handlers take turns, so a change of load hits them all
        for name, make_handle in handlers.items():
            seconds, events = timed_run(commands, make_handle)
            if events != events_total:
                raise SystemExit(f"{name} made {events:,} events, not {events_total:,}")
            rates[name].append(len(commands) / seconds)
            print(f"run {run} {name:<13} {seconds:.3f}s {rates[name][-1]:>11,.0f} commands/s")
    print(f"median of {args.runs} runs (min..max), {events_total / len(commands):.2f} events per command:")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<13} {median:>11,.0f} commands/s ({min(values):,.0f}..{max(values):,.0f})"
              f" {median * events_total / len(commands):>12,.0f} events/s  {1e9 / median:6.0f} ns/command")
    floor_ns, output_ns = (1e9 / statistics.median(rates[name]) for name in ("FloorMatcher", "events only"))
    print(f"the floor at the medians: {output_ns:.0f} ns of output + {floor_ns - output_ns:.0f} ns"
          f" of matching per command, against 1,000 ns per command at 1,000,000 commands/s")
    print(f"load average after the runs {os.getloadavg()[0]:.2f} (other processes share the cpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
