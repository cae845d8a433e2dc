#!/usr/bin/env python3
"""Benchmark the gateway's per-order Python work: no sockets, no other process.

Client text lines go through the gateway's own code, as the role runs it: a TextConnection
(with an in-memory transport) hands them to OrderEntry, whose commands become the Requests
that ``Routes.route`` makes and ``encode`` batches, one batch per way and chunk. The engines'
Replies come back as msgpack frames, decoded and handed to ``OrderEntry.on_reply``, and the
TextConnection formats and writes the lines its client reads. Only the engines' matching is
left out: a recording pass runs real matchers once, up front, and keeps each chunk's lines and
Reply frames; every timed run replays them on a fresh gateway (same session and request ids,
so the recorded replies answer the same requests).

The order mix is the load generator's (exchange.bench.session): per request, 15 % cancel a
resting order, 10 % replace one (same or larger quantity, new price), 15 % are IOC orders that
cross the mid by a few ticks, and the rest rest a few ticks from a mid that swings slowly.

Printed: µs of CPU per order line (the process's CPU time, so that other processes on a shared
machine count less; every line, requests and their answers and pushed fills, divided
by the number of lines sent), median and min..max of the runs, and a digest of every byte the
clients were sent and of every command (without its timestamp): a change to the gateway that
is meant to keep client-visible bytes must keep both digests.

    .venv/bin/python scripts/bench_gateway.py                   # 200,000 orders, 5 runs, accounts on
    .venv/bin/python scripts/bench_gateway.py --accounts off
    .venv/bin/python scripts/bench_gateway.py --profile         # cProfile one run, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import math
import pstats
import random
import statistics
import time
from collections import Counter

import msgspec

from exchange.bench.limits import plan
from exchange.core.ledger_messages import HoldOrder, HoldReplace
from exchange.core.matching import Matcher
from exchange.core.messages import ORDER_EVENTS, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, expand
from exchange.gateway.ledger_routes import Routes
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.text_server import TextConnection
from exchange.testing.mesh import toy_config
from exchange.wire.messages import Decoder, Replies, Reply, encode

GATEWAY = "gw/bench"
USERS = ("alice", "bob", "carol")
CHUNK = 64  # order lines per loop turn, spread over the sessions
MID_PERIOD = 20_000  # orders per swing of each instrument's mid
MAX_RESTING = 100  # per session, as the load generator
CENTRES = {"BTC-USD": "43000", "ETH-USD": "2500", "AAPL": "190"}  # configs/local.yaml's reference prices


class Transport:
    """Just enough of an asyncio transport for TextConnection: it keeps what the client is sent."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 5000) if name == "peername" else None

    def pause_reading(self) -> None:
        raise AssertionError("the bench's sessions never fill up")

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class Gateway:
    """OrderEntry and one TextConnection per user, logged in; commands queue per way, as the role's."""

    def __init__(self, config) -> None:
        self.routes = Routes(config)
        self.outbox: dict[str, list] = {}
        self.entry = OrderEntry(config, self.send, GATEWAY)
        self.transports = [Transport() for _ in USERS]
        self.connections = [TextConnection(self.entry, config.gateway) for _ in USERS]
        for user, connection, transport in zip(USERS, self.connections, self.transports):
            connection.connection_made(transport)
            connection.data_received(f"LOGIN {user} {user}-key\n".encode())

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        way, request = self.routes.route(GATEWAY, engine, command, session_id, request_id)
        self.outbox.setdefault(way, []).append(request)
        return True

    def flush_requests(self) -> list[bytes]:
        """Every way's queued requests as the one message the role sends it per loop turn."""
        frames = [encode(requests) for requests in self.outbox.values() if requests]
        for requests in self.outbox.values():
            requests.clear()
        return frames

    def written(self) -> bytes:
        return b"".join(b"".join(t.written) for t in self.transports)


class Mix:
    """The load generator's order mix, as text lines, for one session."""

    def __init__(self, rng: random.Random, instruments: list, session: int) -> None:
        self.rng, self.session = rng, session
        self.instruments = instruments  # (Instrument, InstrumentLoad)
        self.count = 0
        self.resting: list[str] = []  # cids of this session's resting orders
        self.largest: dict[str, tuple[int, int]] = {}  # cid → (instrument index, largest qty in lots)

    def mid(self, n: int, index: int) -> int:
        load = self.instruments[index][1]
        return load.centre + round(load.swing * math.sin(2 * math.pi * (n / MID_PERIOD + index / 3)))

    def offset(self, index: int) -> int:
        most = self.instruments[index][1].offset
        return self.rng.randint(min(1, most), most)

    def line(self, n: int) -> tuple[bytes, str]:
        """The next request line, and its kind."""
        rng, roll = self.rng, self.rng.random()
        if self.resting and (roll < 0.15 or len(self.resting) > MAX_RESTING):
            cid = self.resting.pop(rng.randrange(len(self.resting)))
            return f"CANCEL #{cid}".encode(), "cancel"
        if self.resting and roll < 0.25:
            cid = self.resting[rng.randrange(len(self.resting))]
            index, largest = self.largest[cid]
            instrument, load = self.instruments[index]
            buy = cid.endswith("b")
            price = self.mid(n, index) + (-self.offset(index) if buy else self.offset(index))
            lots = rng.choice([lots for lots in load.lots if lots >= largest] or [load.lots[-1]])
            self.largest[cid] = (index, max(largest, lots))
            return (f"REPLACE #{cid} {instrument.format_qty(lots)} @ {instrument.format_price(price)}".encode(),
                    "replace")
        index = rng.randrange(len(self.instruments))
        instrument, load = self.instruments[index]
        buy = rng.random() < 0.5
        self.count += 1
        cid = f"s{self.session}n{self.count}{'b' if buy else 's'}"
        lots = rng.choice(load.lots)
        side = "BUY" if buy else "SELL"
        if roll < 0.40:  # crossing: takes liquidity a few ticks through the mid
            through = min(5, load.offset)
            price = self.mid(n, index) + (through if buy else -through)
            return (f"{side} {instrument.symbol} {instrument.format_qty(lots)} @ {instrument.format_price(price)}"
                    f" IOC #{cid}").encode(), "cross"
        price = self.mid(n, index) + (-self.offset(index) if buy else self.offset(index))
        self.largest[cid] = (index, lots)
        return (f"{side} {instrument.symbol} {instrument.format_qty(lots)} @ {instrument.format_price(price)}"
                f" #{cid}").encode(), "new"

    def learn(self, event) -> None:
        """Keep ``resting`` to the orders that rest: add accepted GTC orders, drop finished ones."""
        cid = event.client_order_id
        match event:
            case OrderAccepted() if event.tif.value == "GTC" and cid in self.largest:
                self.resting.append(cid)
            case OrderFilled() if event.leaves_qty == 0:
                self._finished(cid)
            case OrderCanceled() | OrderExpired():
                self._finished(cid)

    def _finished(self, cid: str) -> None:
        self.largest.pop(cid, None)
        if cid in self.resting:
            self.resting.remove(cid)


async def record(config, orders: int, seed: int) -> tuple[list, Counter, str]:
    """Run the mix once through the gateway and real matchers: each chunk's (connection index, bytes)
    inputs and Replies frames, the count of each kind of line and of each event, and a digest of the
    commands sent (timestamps left out)."""
    instruments = config.instrument_map()
    matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments]) for e in config.engines}
    loads = [(instrument, plan(instrument, instrument.to_ticks(CENTRES[symbol]) if symbol in CENTRES else None))
             for symbol, instrument in instruments.items()]
    rng = random.Random(seed)
    mixes = [Mix(rng, loads, i) for i in range(len(USERS))]
    gateway = Gateway(config)
    kinds: Counter = Counter()
    commands = hashlib.sha256()
    chunks = []
    for start in range(0, orders, CHUNK):
        lines: list[list[bytes]] = [[] for _ in USERS]
        for n in range(start, min(start + CHUNK, orders)):
            session = rng.randrange(len(USERS))
            line, kind = mixes[session].line(n)
            lines[session].append(line + b"\n")
            kinds[kind] += 1
        inputs = [(i, b"".join(chunk)) for i, chunk in enumerate(lines) if chunk]
        for i, data in inputs:
            gateway.connections[i].data_received(data)
        replies: dict[str, list[Reply]] = {}
        for way, requests in gateway.outbox.items():
            for request in requests:
                command = request.command
                if isinstance(command, HoldOrder):
                    command = command.order
                elif isinstance(command, HoldReplace):
                    command = command.replace
                commands.update(encode(msgspec.structs.replace(command, ts_received=0)))
                engine = request.engine or way  # without accounts, the way is the engine
                events = [e for e in matchers[engine].handle(command) if isinstance(e, ORDER_EVENTS)]
                replies.setdefault(engine, []).append(Reply(request.session, request.request_id, events, GATEWAY))
                for event in expand(events, trades=False):  # a Match as each side's fill
                    kinds[type(event).__name__] += 1
                    for mix, user in zip(mixes, USERS):
                        if event.user == user:
                            mix.learn(event)
            requests.clear()
        frames = [encode(Replies(engine, batch)) for engine, batch in replies.items()]
        for frame in frames:
            for reply in Decoder(Replies).decode(frame).replies:
                gateway.entry.on_reply(reply)
        chunks.append((inputs, frames))
        await asyncio.sleep(0)
    return chunks, kinds, commands.hexdigest()[:16]


async def replay(config, chunks: list) -> tuple[float, bytes]:
    """Replay the recorded chunks on a fresh gateway: (CPU seconds taken, every byte the clients were sent)."""
    gateway = Gateway(config)
    await asyncio.sleep(0)  # the LOGIN answers are written
    for transport in gateway.transports:
        transport.written.clear()
    connections, decoder, on_reply = gateway.connections, Decoder(Replies), gateway.entry.on_reply
    gc.collect()
    start = time.process_time()
    for inputs, frames in chunks:
        for i, data in inputs:
            connections[i].data_received(data)
        gateway.flush_requests()
        for frame in frames:
            for reply in decoder.decode(frame).replies:
                on_reply(reply)
        await asyncio.sleep(0)  # the turn ends: TextConnection writes its replies
    elapsed = time.process_time() - start
    return elapsed, gateway.written()


def bench_config(accounts: bool):
    """configs/local.yaml without price bands, its gateway limits out of the way of a flood."""
    config = toy_config(accounts=accounts)
    gateway = msgspec.structs.replace(config.gateway, max_rate=1e9, max_burst=10**9, max_in_flight=10**9,
                                      max_unanswered=10**6)
    return msgspec.structs.replace(config, gateway=gateway)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", choices=("on", "off"), default="on")
    parser.add_argument("--profile", action="store_true", help="cProfile one run and print the top functions")
    parser.add_argument("--top", type=int, default=30, help="how many functions --profile prints")
    args = parser.parse_args()
    config = bench_config(args.accounts == "on")
    chunks, kinds, commands = asyncio.run(record(config, args.orders, args.seed))
    print(f"{args.orders:,} order lines, accounts {args.accounts}: "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(replay(config, chunks))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
        return
    per_order, digests = [], set()
    for _ in range(args.runs):
        elapsed, written = asyncio.run(replay(config, chunks))
        per_order.append(elapsed / args.orders * 1e6)
        digests.add(hashlib.sha256(written).hexdigest()[:16])
    if len(digests) != 1:
        raise SystemExit(f"runs sent clients different bytes: {sorted(digests)}")
    print(f"µs of CPU per order: median {statistics.median(per_order):.2f}"
          f" (min {min(per_order):.2f} .. max {max(per_order):.2f}, {args.runs} runs)")
    print(f"digests: replies {digests.pop()}, commands {commands}")


if __name__ == "__main__":
    main()
