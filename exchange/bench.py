"""`exchange bench`: end-to-end load over the real text protocol, with latency histograms.

    result = run(BenchOptions(config_path="configs/local.yaml", rate=10_000, duration=60))
    print(summary(result))

What it does, and why it can be trusted:

- **Open loop.** Every session sends on a fixed schedule whatever the replies do (lines are
  pipelined on the TCP connection), and latency is measured from the *scheduled* send time, so a
  stalled mesh shows up as latency instead of hiding as a lower offered rate (coordinated
  omission). ``rate=None`` (``--max``) instead keeps ``window`` requests outstanding per session
  and measures from the real send time: that finds the throughput ceiling.
- **A realistic mix.** Passive limits a few ticks either side of a mid that moves (a sine over
  30 s, the same in every process), cancels and replaces of resting orders by client order id,
  and crossing IOC orders that take liquidity.
- **Checked as it goes.** The gateway answers each session in request order, so replies are
  matched to requests in order; every answer must name the request's client order id and be of
  the right kind (ACK / ACK REPLACED / OUT CANCELED / REJ). Fills are checked per order
  (filled + leaves = the order's quantity) and per instrument (bought = sold), and, after the
  run, against the journal (accepted, replaced and filled counts; trades). A fast wrong run
  fails.
- **Measured.** Ack, fill, cancel and replace latency with HdrHistogram; market data latency
  (gateway receipt ``ts_event`` → subscriber) and the first-to-last spread over M subscribers;
  the journal's durable progress and lag (age of the newest durable event, sampled every
  second); CPU per role from /proc/<pid>/stat, the load generator's own included.

Processes: this one (orchestration, journal sampling), ``workers`` load generator processes
(asyncio, several sessions each) and one process per market data subscriber.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, OrderedDict, defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from hdrh.histogram import HdrHistogram

from exchange.config import Config, hash_key, load_config, new_key

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
KINDS = ("ack", "fill", "cancel", "replace", "md")  # latency histograms
HIGHEST_US = 3_600_000_000  # one hour, in µs
MID_TICKS = 100_000  # every instrument trades around 100,000 ticks (1000.00 with a 0.01 tick)
MID_AMPLITUDE_TICKS, MID_PERIOD_S = 20, 30.0
MAX_RESTING = 100  # per session: past this, the mix cancels instead of adding
FINISHED_KEPT = 10_000  # per session: done orders whose late lines are still checked
DRAIN_TIMEOUT_S = 30.0
SPREAD_SAMPLE = 4  # market data spread: every message with chan_seq % 4 == 0


@dataclass
class BenchOptions:
    config_path: str = "configs/local.yaml"
    connect: bool = False  # use the mesh already running from config_path
    rate: float | None = 10_000.0  # offered requests/s over all sessions; None: as fast as possible
    duration: float = 10.0  # seconds measured, after the warmup
    warmup: float = 2.0
    sessions: int = 8
    subscribers: int = 2
    instruments: list[str] | None = None  # default: every instrument of the config
    workers: int = 2  # load generator processes
    window: int = 32  # --max only: requests outstanding per session
    seed: int = 1
    users: list[tuple[str, str]] | None = None  # --connect: (user, key); default the demo users
    work_dir: str | None = None  # where a started mesh keeps its config, journal and logs
    profile_dir: str | None = None  # py-spy record every role into this folder during the window
    progress: object = None  # callable(line) for one progress line per second


# -- the load generator (one process, several sessions) ----------------------------------------

NEW, CROSS, CANCEL, REPLACE, LOGIN, PING = range(6)


class _Resting:
    """Client order ids of resting orders: add, remove and pick at random, all O(1)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def add(self, cid: bytes) -> None:
        self.index[cid] = len(self.items)
        self.items.append(cid)

    def discard(self, cid: bytes) -> None:
        i = self.index.pop(cid, None)
        if i is not None:
            last = self.items.pop()
            if i < len(self.items):
                self.items[i] = last
                self.index[last] = i

    def __len__(self) -> int:
        return len(self.items)


class _Order:
    __slots__ = ("buy", "symbol", "qtys", "filled", "leaves")

    def __init__(self, buy: bool, symbol: int, qty: int):
        self.buy, self.symbol, self.qtys, self.filled, self.leaves = buy, symbol, [qty], 0, qty


class _Session(asyncio.Protocol):
    """One text session: sends what the worker schedules, matches replies to requests in order."""

    def __init__(self, worker: _Worker, tag: str, user: str, key: str):
        self.w, self.tag, self.user, self.key = worker, tag, user, key
        self.prefix = tag.encode()
        self.count = 0
        self.outstanding: deque[tuple[int, int, bytes]] = deque()  # (t_sched ns, kind, cid)
        self.orders: dict[bytes, _Order] = {}  # open, or answered but maybe still to hear of
        self.finished: OrderedDict[bytes, _Order] = OrderedDict()  # the last FINISHED_KEPT done ones
        self.resting = _Resting()
        self.crossing: dict[bytes, int] = {}  # cid → t_sched, until its first fill
        self.out: list[bytes] = []
        self.buffer = b""
        self.transport = None
        self.logged_in = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.request(f"LOGIN {self.user} {self.key}".encode(), LOGIN, b"", time.perf_counter_ns())
        self.flush()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.outstanding:
            self.w.fault(f"{self.tag}: the gateway closed the session with {len(self.outstanding)} unanswered")
        if not self.logged_in.done():
            self.logged_in.set_exception(ConnectionError(f"{self.tag}: connection lost"))

    def request(self, line: bytes, kind: int, cid: bytes, t_sched: int) -> None:
        self.outstanding.append((t_sched, kind, cid))
        self.out.append(line)
        self.w.sent[kind] += 1

    def flush(self) -> None:
        if self.out and not self.closed:
            self.out.append(b"")
            self.transport.write(b"\n".join(self.out))
            self.out = []

    def next_request(self, t_sched: int) -> None:
        """Choose, format and queue the next order entry request of the mix."""
        w = self.w
        roll = w.random.random()
        if self.resting.items and (roll < 0.15 or len(self.resting) > MAX_RESTING):
            cid = self.resting.items[w.random.randrange(len(self.resting))]
            self.resting.discard(cid)
            self.request(b"CANCEL #" + cid, CANCEL, cid, t_sched)
            return
        symbol = w.random.randrange(len(w.instruments))
        name, prices, qtys = w.instruments[symbol]
        mid = w.mid(t_sched)
        if self.resting.items and roll < 0.25:
            cid = self.resting.items[w.random.randrange(len(self.resting))]
            order = self.orders[cid]
            lots = w.random.randint(1, 10)
            price = mid - w.random.randint(1, 10) if order.buy else mid + w.random.randint(1, 10)
            price_text = w.instruments[order.symbol][1](price)
            self.request(b"REPLACE #%s %s @ %s" % (cid, w.instruments[order.symbol][2][lots], price_text),
                         REPLACE, cid, t_sched)
            return
        self.count += 1
        cid = b"%sn%d" % (self.prefix, self.count)
        buy = w.random.random() < 0.5
        lots = w.random.randint(1, 10)
        if roll < 0.40:  # crossing: takes liquidity a few ticks through the mid
            price = mid + 5 if buy else mid - 5
            line = b"%s %s %s @ %s IOC #%s" % (b"BUY" if buy else b"SELL", name, qtys[lots], prices(price), cid)
            self.crossing[cid] = t_sched
            kind = CROSS
        else:  # passive, near the mid
            price = mid - w.random.randint(1, 10) if buy else mid + w.random.randint(1, 10)
            line = b"%s %s %s @ %s #%s" % (b"BUY" if buy else b"SELL", name, qtys[lots], prices(price), cid)
            kind = NEW
        self.orders[cid] = _Order(buy, symbol, w.units[symbol] * lots)
        self.request(line, kind, cid, t_sched)

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        now = time.perf_counter_ns()
        answered = 0
        for line in lines:
            words = line.split(b" ")
            first = words[0]
            if first == b"FILL":
                self.on_fill(words, now)
            elif first == b"OUT" and not (words[-1] == b"CANCELED" and len(words) <= 4):
                self.on_out(words)
            elif first == b"REDUCED":
                pass
            else:
                self.on_reply(words, line, now)
                answered += 1
        if answered and self.w.rate is None and self.w.running:
            for _ in range(answered):
                self.next_request(time.perf_counter_ns())
            self.flush()

    def on_reply(self, words: list[bytes], line: bytes, now: int) -> None:
        w = self.w
        if not self.outstanding:
            w.fault(f"{self.tag}: a reply to no request: {line[:80]!r}")
            return
        t_sched, kind, cid = self.outstanding.popleft()
        w.answered += 1
        measured = t_sched >= w.measure_from
        latency_us = (now - t_sched) // 1000
        first = words[0]
        if first == b"REJ":
            code = words[2] if words[1][:1] == b"#" else words[1]
            if cid and words[1] != b"#" + cid:
                w.fault(f"{self.tag}: {line[:80]!r} answers a request for #{cid.decode()}")
            w.rejects[code.decode()] += 1
            if kind in (NEW, CROSS):
                self.orders.pop(cid, None)
                self.crossing.pop(cid, None)
            return
        if first == b"ACK" and kind in (NEW, CROSS, REPLACE) and words[2] == b"#" + cid:
            w.acked_in_second[int(now - w.start) // 1_000_000_000] += 1
            if kind == REPLACE:
                if words[3] != b"REPLACED":
                    w.fault(f"{self.tag}: REPLACE #{cid.decode()} answered {line[:80]!r}")
                    return
                w.answers["replaced"] += 1
                order = self.orders.get(cid)
                if order is not None:
                    order.qtys.append(_units(words[6]))
                if measured:
                    w.latencies["replace"].append(latency_us)
                return
            if words[3] == b"REPLACED":
                w.fault(f"{self.tag}: an order got {line[:80]!r}")
                return
            w.answers["accepted"] += 1
            if kind == NEW and cid in self.orders:
                self.resting.add(cid)
            w.recent.append(latency_us)
            if measured:
                w.latencies["ack"].append(latency_us)
            return
        if first == b"OUT" and kind == CANCEL and words[2] == b"#" + cid:
            w.acked_in_second[int(now - w.start) // 1_000_000_000] += 1
            w.answers["canceled"] += 1
            self.finish(cid)
            if measured:
                w.latencies["cancel"].append(latency_us)
            return
        if (first == b"OK" and kind == LOGIN) or (first == b"PONG" and kind == PING):
            if kind == LOGIN:
                self.logged_in.set_result(True)
            return
        w.fault(f"{self.tag}: request kind {kind} #{cid.decode()} answered {line[:80]!r}")
        if kind == LOGIN and not self.logged_in.done():
            self.logged_in.set_exception(RuntimeError(f"{self.user}: login failed: {line[:80]!r}"))

    def on_fill(self, words: list[bytes], now: int) -> None:
        # FILL <id> #<cid> <qty> @ <price> LEAVES <leaves> TRADE <trade>
        if words[2][:1] != b"#" or not words[2].startswith(b"#" + self.prefix + b"n"):
            return  # an order of another session of this user: that session counts it
        cid = words[2][1:]
        order = self.orders.get(cid)
        if order is None:
            order = self.finished.get(cid)
            if order is None:
                self.w.fault(f"{self.tag}: a fill of an order never placed: {b' '.join(words)[:80]!r}")
                return
            self.w.late_fills += 1  # pushed after the OUT that answered a cancel: see the report
        qty, leaves = _units(words[3]), _units(words[7])
        order.filled += qty
        order.leaves = leaves
        if order.filled + leaves not in order.qtys:
            self.w.fault(f"{self.tag}: #{cid.decode()} filled {order.filled} + leaves {leaves} is none of"
                         f" its quantities {order.qtys}")
        stats = self.w.fills[order.symbol]
        stats[0 if order.buy else 1] += 1
        stats[2 if order.buy else 3] += qty
        t_sched = self.crossing.pop(cid, None)
        if t_sched is not None and t_sched >= self.w.measure_from:
            self.w.latencies["fill"].append((now - t_sched) // 1000)

    def on_out(self, words: list[bytes]) -> None:
        # OUT <id> #<cid> FILLED | EXPIRED <why> | CANCELED <why>
        if words[2][:1] != b"#" or not words[2].startswith(b"#" + self.prefix + b"n"):
            return
        cid = words[2][1:]
        order = self.finish(cid)
        if words[3] == b"FILLED" and order is not None and order.leaves != 0:
            self.w.fault(f"{self.tag}: #{cid.decode()} is OUT FILLED with {order.leaves} left")

    def finish(self, cid: bytes) -> _Order | None:
        order = self.orders.pop(cid, None)
        self.resting.discard(cid)
        self.crossing.pop(cid, None)
        if order is not None:
            self.finished[cid] = order
            if len(self.finished) > FINISHED_KEPT:
                self.finished.popitem(last=False)
        return order


def _units(text: bytes) -> int:
    """Decimal text on the instrument's grid → an integer in units of its last decimal place."""
    return int(text.replace(b".", b""))


class _Worker:
    """One load generator process: its sessions, its schedule, its measurements."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.rate = plan["rate"]
        self.random = random.Random(plan["seed"])
        self.instruments = []  # (name, price formatter, qty texts by lots)
        self.units = []  # units of one lot in the qty text's last decimal place
        for symbol, tick, lot, min_lots in plan["instruments"]:
            tick_places, lot_places = _places(tick), _places(lot)
            tick_units, lot_units = _scaled(tick, tick_places), _scaled(lot, lot_places)
            cache: dict[int, bytes] = {}

            def price(ticks: int, cache=cache, u=tick_units, p=tick_places) -> bytes:
                text = cache.get(ticks)
                if text is None:
                    text = cache[ticks] = _fixed(ticks * u, p)
                return text

            qtys = {lots: _fixed(max(lots, min_lots) * lot_units, lot_places) for lots in range(1, 11)}
            self.instruments.append((symbol.encode(), price, qtys))
            self.units.append(lot_units)
        self.sent: Counter[int] = Counter()
        self.answered = 0
        self.late_fills = 0
        self.answers: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.faults: list[str] = []
        self.fault_count = 0
        self.latencies: dict[str, list[int]] = {k: [] for k in KINDS[:4]}  # measured, this second
        self.recent: list[int] = []  # every ack latency of this second, warmup included, for progress
        self.histograms = {k: HdrHistogram(1, HIGHEST_US, 3) for k in KINDS[:4]}
        self.fills = [[0, 0, 0, 0] for _ in self.instruments]  # buy count, sell count, buy units, sell units
        self.acked_in_second: Counter[int] = Counter()
        self.sessions: list[_Session] = []
        self.running = False
        self.start = self.measure_from = self.end = 0

    def fault(self, text: str) -> None:
        self.fault_count += 1
        if len(self.faults) < 20:
            self.faults.append(text)

    def mid(self, t: int) -> int:
        phase = 2 * math.pi * ((t - self.start) / 1e9 + self.plan["phase"]) / MID_PERIOD_S
        return MID_TICKS + round(MID_AMPLITUDE_TICKS * math.sin(phase))

    def outstanding(self) -> int:
        return sum(len(s.outstanding) for s in self.sessions)

    def interval(self) -> dict:
        """Move this second's latencies into the histograms; return a progress record."""
        ack = sorted(self.recent)
        self.recent = []
        record = {"sent": sum(self.sent.values()), "answered": self.answered, "outstanding": self.outstanding(),
                  "acks": len(ack), "p50": _pick(ack, 0.5), "p99": _pick(ack, 0.99), "max": ack[-1] if ack else 0}
        for kind, values in self.latencies.items():
            _record(self.histograms[kind], values)
            values.clear()
        return record


def _places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _scaled(text: str, places: int) -> int:
    whole, _, frac = text.partition(".")
    return int(whole + frac.ljust(places, "0"))


def _fixed(units: int, places: int) -> bytes:
    if not places:
        return b"%d" % units
    text = str(units).rjust(places + 1, "0")
    return f"{text[:-places]}.{text[-places:]}".encode()


def _pick(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0


def _record(histogram: HdrHistogram, values: list[int]) -> None:
    """Record many values cheaply: count equal ones first (values ≥ 4096 rounded to 12 bits)."""
    counts = Counter(v if v < 4096 else (v >> (v.bit_length() - 12)) << (v.bit_length() - 12) for v in values)
    for value, count in counts.items():
        histogram.record_value(min(max(value, 1), HIGHEST_US), count)


async def _generate(plan: dict, conn) -> None:
    w = _Worker(plan)
    loop = asyncio.get_running_loop()
    host, port = plan["host"], plan["port"]
    for tag, user, key in plan["sessions"]:
        _, session = await loop.create_connection(lambda: _Session(w, tag, user, key), host, port)
        w.sessions.append(session)
    await asyncio.wait_for(asyncio.gather(*(s.logged_in for s in w.sessions)), 60)
    conn.send(("ready", None))
    start_wall = (await loop.run_in_executor(None, conn.recv))[1]
    w.start = time.perf_counter_ns() + int((start_wall - time.time()) * 1e9)
    w.measure_from = w.start + int(plan["warmup"] * 1e9)
    w.end = w.measure_from + int(plan["duration"] * 1e9)
    await asyncio.sleep(max(0.0, (w.start - time.perf_counter_ns()) / 1e9))
    w.running = True
    if w.rate is None:
        for session in w.sessions:
            for _ in range(plan["window"]):
                session.next_request(time.perf_counter_ns())
            session.flush()
    ticker = loop.create_task(_tick(w, conn))
    if w.rate is not None:
        await _schedule(w)
    else:
        await asyncio.sleep(max(0.0, (w.end - time.perf_counter_ns()) / 1e9))
    w.running = False
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + plan["request_timeout"]
    while w.outstanding() and time.monotonic() < deadline and not all(s.closed for s in w.sessions):
        await asyncio.sleep(0.01)
    ticker.cancel()
    conn.send(("drained", w.outstanding()))
    await loop.run_in_executor(None, conn.recv)  # every worker is drained: pushed lines are all written
    for session in w.sessions:
        session.request(b"PING", PING, b"", time.perf_counter_ns())
        session.flush()
    deadline = time.monotonic() + 10
    while w.outstanding() and time.monotonic() < deadline and not all(s.closed for s in w.sessions):
        await asyncio.sleep(0.01)
    w.interval()
    for session in w.sessions:
        session.transport.close()
    times = os.times()
    conn.send(("done", {
        "sent": {name: w.sent[kind] for kind, name in enumerate(("new", "cross", "cancel", "replace", "login", "ping"))},
        "answered": w.answered, "unanswered": w.outstanding(), "answers": dict(w.answers),
        "late_fills": w.late_fills,
        "rejects": dict(w.rejects), "faults": w.faults, "fault_count": w.fault_count,
        "histograms": {k: h.encode() for k, h in w.histograms.items()},
        "fills": w.fills, "acked_per_second": dict(w.acked_in_second),
        "cpu_s": times.user + times.system}))


async def _schedule(w: _Worker) -> None:
    """Open loop: request n is due at start + n / rate, whatever the replies do."""
    interval = 1e9 / w.rate
    sessions, n_sessions = w.sessions, len(w.sessions)
    n = 0
    while True:
        now = time.perf_counter_ns()
        if now >= w.end:
            return
        due = int((now - w.start) / interval) + 1
        touched = set()
        while n < due:
            session = sessions[n % n_sessions]
            session.next_request(w.start + int(n * interval))
            touched.add(session)
            n += 1
        for session in touched:
            session.flush()
        wait = (w.start + n * interval - time.perf_counter_ns()) / 1e9
        await asyncio.sleep(max(wait, 0.0002))


async def _tick(w: _Worker, conn) -> None:
    while True:
        await asyncio.sleep(1.0)
        conn.send(("tick", w.interval()))


def _worker_main(plan: dict, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        asyncio.run(_generate(plan, conn))
    except BaseException as e:  # reported to the parent, which fails the run
        conn.send(("error", f"{type(e).__name__}: {e}"))


# -- market data subscribers -------------------------------------------------------------------

def _subscriber_main(endpoint: str, symbols: list[str], conn, stop) -> None:
    """Receive every public channel of ``symbols``; record latency, gaps and sampled arrival times."""
    import zmq

    from exchange import mesh
    from exchange.wire import Decoder, MarketData, topic

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = mesh.context()
    sock = mesh.socket(ctx, zmq.SUB, connect=endpoint)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    for symbol in symbols:
        for channel in ("trade", "bbo", "l2"):
            sock.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
    decoder = Decoder(MarketData)
    conn.send(("ready", None))
    measure_from, measure_to = conn.recv()[1]
    latencies: list[int] = []
    histogram = HdrHistogram(1, HIGHEST_US, 3)
    last: dict[tuple[str, str], tuple[int, int]] = {}
    arrivals: dict[tuple[str, str, int, int], int] = {}
    messages = gaps = 0
    stop_at = None
    while stop_at is None or time.monotonic() < stop_at:
        if stop_at is None and stop.is_set():
            stop_at = time.monotonic() + 1.0
        if not sock.poll(100):
            continue
        for parts in mesh.drain(sock):
            now = time.time_ns()
            md = decoder.decode(parts[-1])
            messages += 1
            key = (md.symbol, md.channel)
            previous = last.get(key)
            if previous is not None and previous[0] == md.epoch and md.chan_seq > previous[1] + 1:
                gaps += md.chan_seq - previous[1] - 1  # heartbeats repeat the last chan_seq
            last[key] = (md.epoch, md.chan_seq)
            if not md.events:
                continue
            ts = md.events[0].ts_event
            if measure_from <= ts < measure_to:
                latencies.append((now - ts) // 1000)
                if md.chan_seq % SPREAD_SAMPLE == 0:
                    arrivals[(md.symbol, md.channel, md.epoch, md.chan_seq)] = now
        if len(latencies) > 50_000:
            _record(histogram, latencies)
            latencies.clear()
    _record(histogram, latencies)
    sock.close()
    ctx.term()
    times = os.times()
    conn.send(("done", {"messages": messages, "gaps": gaps, "histogram": histogram.encode(),
                        "arrivals": arrivals, "cpu_s": times.user + times.system}))


# -- the mesh: start one, or find the running one -------------------------------------------------

def bench_config(source: str, directory: Path, sessions: int) -> tuple[Path, list[tuple[str, str]]]:
    """A copy of the config at ``source`` for a fresh mesh in ``directory``: free loopback ports,
    its journal and logs inside ``directory``, and one new user per session (so that no session
    receives another session's fills). Returns the new file and the (user, key) pairs."""
    from exchange.soak import free_ports

    text = Path(source).read_text()
    ports = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", text)))
    fresh = dict(zip(ports, map(str, free_ports(len(ports)))))  # one pass: a new port may be an old one
    text = re.sub(r"127\.0\.0\.1:(\d+)\b", lambda m: f"127.0.0.1:{fresh[m.group(1)]}", text)
    data = yaml.safe_load(text)
    data["journal"]["path"] = str(directory / "journal.db")
    data["var_dir"] = str(directory / "var")
    if "secret_key_file" in data.get("notifier", {}):
        data["notifier"]["secret_key_file"] = str(directory / "notifier.key")
    users = [(f"bench{n + 1}", new_key()) for n in range(sessions)]
    data["users"] = list(data.get("users") or []) + [{"name": u, "key_hash": hash_key(k, n=2**10)}
                                                      for u, k in users]
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, users


class _Mesh:
    """A mesh started by ``exchange up`` for the bench, stopped by ``stop``."""

    def __init__(self, config_path: Path, config: Config):
        self.log_path = Path(config.var_dir) / "bench-launcher.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "exchange", "up", str(config_path)],
                                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def pids(self) -> dict[str, int]:
        found = re.findall(r"started ([\w-]+(?: \w+)?) \(pid (\d+)\)", self.log_path.read_text(errors="replace"))
        return {label: int(pid) for label, pid in found}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running_roles(config_path: str) -> dict[str, int]:
    """Pids of the roles running with ``config_path`` (``exchange ROLE --config PATH [--name N]``)."""
    wanted = os.path.realpath(config_path)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for role in ("gateway", "engine", "journal-writer", "notifier"):
            if role in args and "--config" in args:
                i = args.index("--config")
                if i + 1 < len(args) and os.path.realpath(args[i + 1]) == wanted:
                    name = args[args.index("--name") + 1] if "--name" in args else ""
                    found[f"{role} {name}".strip()] = int(entry.name)
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # (busy, total) jiffies


def wait_ready(host: str, port: int, user: str, key: str, timeout: float = 60.0) -> None:
    """Until a session can log in and every engine answers (CANCELALL goes to all of them)."""
    from exchange.client import TextClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with TextClient(host, port, timeout=2) as probe:
                if (probe.request(f"LOGIN {user} {key}") == f"OK LOGIN {user}"
                        and probe.request("CANCELALL", timeout=5).startswith("OK CANCELALL")):
                    return
        except (OSError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(f"the mesh on {host}:{port} did not answer in {timeout:.0f} s")


# -- the run --------------------------------------------------------------------------------------

@dataclass
class BenchResult:
    options: dict
    machine: dict
    counts: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    latency_us: dict = field(default_factory=dict)  # kind → {count, p50, p90, p99, p99.9, max, mean}
    market_data: dict = field(default_factory=dict)
    journal: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)  # label → cores used (CPU seconds per second)
    series: list = field(default_factory=list)  # per second: offered, acked, p99
    checks: dict = field(default_factory=dict)  # name → list of faults (empty: passed)
    profiles: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # kind → [(percentile, µs)] for the plot

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def run(options: BenchOptions) -> BenchResult:
    """Run one benchmark as ``options`` say; see the module docstring."""
    say = options.progress or (lambda line: None)
    work = Path(options.work_dir or tempfile.mkdtemp(prefix="exchange-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mesh = None
    if options.connect:
        config_path, users = Path(options.config_path), options.users or [
            (u, f"{u}-key") for u in ("alice", "bob", "carol")]
    else:
        config_path, users = bench_config(options.config_path, work, options.sessions)
    config = load_config(config_path)
    symbols = options.instruments or [i.symbol for i in config.instruments]
    instruments = config.instrument_map()
    unknown = [s for s in symbols if s not in instruments]
    if unknown:
        raise ValueError(f"no instrument {', '.join(unknown)}; there are {', '.join(instruments)}")
    host, port = config.gateway.text.rsplit(":", 1)
    ctx = multiprocessing.get_context("spawn")
    workers, subscribers, profilers = [], [], []
    try:
        if not options.connect:
            mesh = _Mesh(config_path, config)
            say(f"starting a mesh from {options.config_path} in {work}")
        wait_ready(host, int(port), *users[0])
        pids = mesh.pids() if mesh else running_roles(str(config_path))
        baseline = _journal_position(config.journal.path)
        stop = ctx.Event()
        for n in range(options.subscribers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_subscriber_main, args=(config.notifier.publish, symbols, child, stop),
                            name=f"bench-subscriber-{n}", daemon=True)
            p.start()
            subscribers.append((p, parent))
        n_workers = max(1, min(options.workers, options.sessions))
        for n in range(n_workers):
            plan = _plan(options, n, n_workers, users, symbols, instruments, host, int(port),
                         config.gateway.request_timeout)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(plan, child), name=f"bench-worker-{n}", daemon=True)
            p.start()
            workers.append((p, parent))
        for p, conn in workers + subscribers:
            _expect(conn, p, "ready", 120)
        time.sleep(0.5)  # subscriptions reach the notifier (slow joiner)
        start_wall = time.time() + 0.5
        measure_from = start_wall + options.warmup
        measure_to = measure_from + options.duration
        for _, conn in subscribers:
            conn.send(("window", (int(measure_from * 1e9), int(measure_to * 1e9))))
        for _, conn in workers:
            conn.send(("go", start_wall))
        result = _measure(options, config, pids, workers, subscribers, start_wall, measure_from, measure_to,
                          work, profilers, say)
        stop.set()
        md = [_expect(conn, p, "done", 30) for p, conn in subscribers]
        _finish(result, options, config, baseline, md, users)
        return result
    finally:
        for p in profilers:
            if p.poll() is None:
                p.terminate()
        for p, _ in workers + subscribers:
            if p.is_alive():
                p.terminate()
            p.join(5)
        if mesh is not None:
            mesh.stop()
        if options.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def _plan(options, n, n_workers, users, symbols, instruments, host, port, request_timeout) -> dict:
    sessions = []
    for s in range(n, options.sessions, n_workers):
        user, key = users[s % len(users)]
        sessions.append((f"w{n}s{s}", user, key))
    specs = [(s, instruments[s].tick_size, instruments[s].lot_size,
              instruments[s].min_qty) for s in symbols]
    return {"host": host, "port": port, "sessions": sessions, "instruments": specs,
            "rate": None if options.rate is None else options.rate * len(sessions) / options.sessions,
            "window": options.window, "warmup": options.warmup, "duration": options.duration,
            "seed": options.seed * 1000 + n, "phase": 0.0, "request_timeout": request_timeout}


def _expect(conn, process, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            kind, value = conn.recv()
            if kind == what:
                return value
            if kind == "error":
                raise RuntimeError(f"{process.name}: {value}")
        elif not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
    raise TimeoutError(f"{process.name}: no {what!r} in {timeout:.0f} s")


def _measure(options, config, pids, workers, subscribers, start_wall, measure_from, measure_to, work,
             profilers, say) -> BenchResult:
    """Follow the run second by second; return the result with what the workers reported."""
    result = BenchResult(options={k: v for k, v in asdict(options).items() if k != "progress"},
                         machine=_machine())
    own = {f"load generator {n}": p.pid for n, (p, _) in enumerate(workers)}
    own.update({f"subscriber {n}": p.pid for n, (p, _) in enumerate(subscribers)})
    own["bench (this process)"] = os.getpid()
    cpu_start: dict[str, float] = {}
    busy_start = None
    ticks: dict[int, list[dict]] = defaultdict(list)
    journal_samples = []
    done: dict[int, dict] = {}
    drained: dict[int, int] = {}
    reader = None
    while len(done) < len(workers):
        now = time.time()
        if busy_start is None and now >= measure_from:
            cpu_start = {label: cpu_seconds(pid) for label, pid in {**pids, **own}.items()}
            busy_start = _machine_busy()
            if options.profile_dir:
                profilers += _start_profilers(pids, options.profile_dir, options.duration)
        if busy_start is not None and not result.cpu and now >= measure_to:
            cpu_end = {label: cpu_seconds(pid) for label, pid in {**pids, **own}.items()}
            busy_end = _machine_busy()
            window = now - measure_from
            result.cpu = {label: round((cpu_end[label] - cpu_start[label]) / window, 3)
                          for label in cpu_end if cpu_end[label] is not None and cpu_start.get(label) is not None}
            busy = (busy_end[0] - busy_start[0]) / max(1, busy_end[1] - busy_start[1]) * (os.cpu_count() or 1)
            ours = sum(result.cpu.values())
            result.cpu["machine, all processes"] = round(busy, 3)
            result.cpu["not ours (other processes, kernel)"] = round(busy - ours, 3)
        if reader is None and os.path.exists(config.journal.path):
            reader = sqlite3.connect(f"file:{config.journal.path}?mode=ro", uri=True)
        if reader is not None and now >= start_wall:
            journal_samples.append((time.time_ns(), _durable(reader)))
        for n, (p, conn) in enumerate(workers):
            while n not in done and conn.poll():
                kind, value = conn.recv()
                if kind == "tick":
                    ticks[n].append(value)
                elif kind == "drained":
                    drained[n] = value
                    if len(drained) == len(workers):
                        for _, c in workers:
                            c.send(("ping", None))
                elif kind == "done":
                    done[n] = value
                elif kind == "error":
                    raise RuntimeError(f"{p.name}: {value}")
            if n not in done and not p.is_alive():
                raise RuntimeError(f"{p.name} exited with {p.exitcode}")
        second = min((len(t) for t in ticks.values()), default=0)
        if len(ticks) == len(workers) and second > len(result.series):
            result.series.append(_progress(ticks, second - 1, start_wall, options, result, pids, say))
        time.sleep(max(0.0, 1.0 - (time.time() - now)) if len(drained) < len(workers) else 0.05)
    if reader is not None:
        reader.close()
    result.journal["samples"] = [(t, seqs) for t, seqs in journal_samples]
    result.counts["workers"] = [done[n] for n in sorted(done)]
    result.journal["measure_from_ns"], result.journal["measure_to_ns"] = int(measure_from * 1e9), int(measure_to * 1e9)
    if options.profile_dir:
        for p in profilers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.terminate()
        result.profiles = summarise_profiles(options.profile_dir)
    return result


def _progress(ticks, second, start_wall, options, result, pids, say) -> dict:
    records = [t[second] for t in ticks.values()]
    previous = [t[second - 1] for t in ticks.values()] if second else [{"sent": 0, "answered": 0}] * len(records)
    sent = sum(r["sent"] for r in records) - sum(p["sent"] for p in previous)
    acks = sum(r["acks"] for r in records)
    answered = sum(r["answered"] for r in records) - sum(p["answered"] for p in previous)
    entry = {"t": second + 1, "sent": sent, "answered": answered, "new_acks": acks,
             "p50_us": max(r["p50"] for r in records), "p99_us": max(r["p99"] for r in records),
             "max_us": max(r["max"] for r in records), "outstanding": sum(r["outstanding"] for r in records)}
    phase = "warmup" if second + 1 <= options.warmup else "measure"
    say(f"{second + 1:4d}s {phase:7s} sent {sent:7,d}/s answered {answered:7,d}/s  ack p50 {_us(entry['p50_us'])}"
        f" p99 {_us(entry['p99_us'])} max {_us(entry['max_us'])}  outstanding {entry['outstanding']:,d}")
    return entry


def _durable(reader: sqlite3.Connection) -> dict:
    try:
        rows = reader.execute("SELECT engine, MAX(seq) FROM events GROUP BY engine").fetchall()
        out = {}
        for engine, seq in rows:
            ts = reader.execute("SELECT ts_event FROM events WHERE engine=? AND seq=?", (engine, seq)).fetchone()
            out[engine] = (seq, ts[0] if ts else 0)
        return out
    except sqlite3.Error:
        return {}


def _journal_position(path: str) -> dict[str, int]:
    if not os.path.exists(path):
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {e: s for e, s in conn.execute("SELECT engine, MAX(seq) FROM events GROUP BY engine")}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import zmq
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "sqlite": sqlite3.sqlite_version}


def _finish(result: BenchResult, options: BenchOptions, config: Config, baseline: dict, md: list[dict],
            users) -> None:
    """Merge the workers' and subscribers' reports, check them, and read the journal."""
    reports = result.counts.pop("workers")
    window = options.duration
    histograms = {k: HdrHistogram(1, HIGHEST_US, 3) for k in KINDS}
    for report in reports:
        for kind, encoded in report["histograms"].items():
            histograms[kind].decode_and_add(encoded)
    for sub in md:
        histograms["md"].decode_and_add(sub["histogram"])
    for kind, h in histograms.items():
        result.latency_us[kind] = _percentiles(h)
        result.curves[kind] = _curve(h)
    sent: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    acked_per_second: Counter[int] = Counter()
    for report in reports:
        sent.update(report["sent"])
        answers.update(report["answers"])
        rejects.update(report["rejects"])
        acked_per_second.update({int(k): v for k, v in report["acked_per_second"].items()})
    requests = sum(v for k, v in sent.items() if k not in ("login", "ping"))
    answered = sum(r["answered"] for r in reports) - sent["login"] - sent["ping"]
    result.counts = {"sent": dict(sent), "requests": requests, "answered": answered,
                     "unanswered": sum(r["unanswered"] for r in reports), "answers": dict(answers),
                     "rejects": dict(rejects), "late_fills": sum(r["late_fills"] for r in reports)}
    first, last = int(options.warmup), int(options.warmup + options.duration)
    measured = [acked_per_second.get(s, 0) for s in range(first, last)]
    for entry in result.series:
        entry["acked"] = acked_per_second.get(entry["t"] - 1, 0)
    result.throughput = {
        "offered_per_s": options.rate, "acked_per_s": round(sum(measured) / window, 1),
        "acked_per_s_min_second": min(measured) if measured else 0,
        "acked_per_s_max_second": max(measured) if measured else 0,
        "requests_per_s": round(requests / (options.warmup + options.duration), 1)}
    checks: dict[str, list[str]] = {
        "one answer per request": [f"{result.counts['unanswered']} requests got no answer"]
        if result.counts["unanswered"] else [],
        "answers match requests": [f for r in reports for f in r["faults"]],
        "something was acknowledged": [] if answers["accepted"] else ["no order was acknowledged"],
        "percentiles are monotonic": [f"{k}: {v}" for k, v in result.latency_us.items()
                                      if v["count"] and [v[p] for p in ("p50", "p90", "p99", "p99.9", "max")]
                                      != sorted(v[p] for p in ("p50", "p90", "p99", "p99.9", "max"))],
    }
    fills = [[0, 0, 0, 0] for _ in reports[0]["fills"]] if reports else []
    for report in reports:
        for i, stats in enumerate(report["fills"]):
            fills[i] = [a + b for a, b in zip(fills[i], stats)]
    symbols = options.instruments or [i.symbol for i in config.instruments]
    checks["fills add up (bought = sold)"] = [
        f"{symbols[i]}: {b} buy fills of {bq} units, {s} sell fills of {sq} units"
        for i, (b, s, bq, sq) in enumerate(fills) if (b, bq) != (s, sq)]
    result.counts["fills"] = sum(f[0] + f[1] for f in fills)
    more = sum(r["fault_count"] for r in reports) - len(checks["answers match requests"])
    checks["answers match requests"] += [f"... and {more} more"] if more else []
    checks["journal agrees"] = _check_journal(config.journal.path, baseline, answers, result.counts["fills"],
                                              options.connect)
    # market data
    arrivals: dict[tuple, list[int]] = defaultdict(list)
    for sub in md:
        for key, t in sub["arrivals"].items():
            arrivals[key].append(t)
    spreads = HdrHistogram(1, HIGHEST_US, 3)
    _record(spreads, [(max(t) - min(t)) // 1000 for t in arrivals.values() if len(t) == len(md) and len(md) > 1])
    result.market_data = {"subscribers": len(md), "messages": [s["messages"] for s in md],
                          "gaps": [s["gaps"] for s in md], "spread_us": _percentiles(spreads),
                          "spread_sample": f"every message with chan_seq % {SPREAD_SAMPLE} == 0"}
    result.cpu["load generators, total"] = round(sum(v for k, v in result.cpu.items()
                                                     if k.startswith("load generator")), 3)
    _journal_figures(result, options)
    result.checks = checks


def _check_journal(path: str, baseline: dict, answers: Counter, fills: int, connect: bool) -> list[str]:
    """The journal's new events equal what the sessions were told (assumes nobody else traded)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = Counter()
        for engine, kind, n in conn.execute("SELECT engine, kind, COUNT(*) FROM events WHERE seq > COALESCE("
                                            "(SELECT value FROM json_each(?) WHERE key = engine), 0)"
                                            " GROUP BY engine, kind", (json.dumps(baseline),)):
            counts[kind] += n
    finally:
        conn.close()
    faults = []
    for kind, told in (("OrderAccepted", answers["accepted"]), ("OrderReplaced", answers["replaced"]),
                       ("OrderFilled", fills)):
        if counts[kind] != told:
            faults.append(f"{kind}: the journal has {counts[kind]}, the sessions were told {told}"
                          + (" (did someone else trade on this mesh?)" if connect else ""))
    if counts["Trade"] * 2 != counts["OrderFilled"]:
        faults.append(f"{counts['Trade']} trades but {counts['OrderFilled']} order fills")
    return faults


def _journal_figures(result: BenchResult, options: BenchOptions) -> None:
    samples = result.journal.pop("samples")
    lo, hi = result.journal["measure_from_ns"], result.journal["measure_to_ns"]
    inside = [(t, seqs) for t, seqs in samples if lo <= t <= hi and seqs]
    lags = sorted((t - ts) // 1000 for t, seqs in inside for seq, ts in seqs.values() if ts)
    events = 0.0
    if len(inside) >= 2:
        (t0, s0), (t1, s1) = inside[0], inside[-1]
        events = sum(s1[e][0] - s0.get(e, (0, 0))[0] for e in s1) / ((t1 - t0) / 1e9)
    result.journal.update({
        "durable_events_per_s": round(events, 1),
        "lag_us": {"what": "age of the newest durable event (now - its gateway ts) when sampled each second",
                   "samples": len(lags), "p50": _pick(lags, 0.5), "max": lags[-1] if lags else 0}})


def _percentiles(h: HdrHistogram) -> dict:
    count = h.get_total_count()
    out = {"count": count}
    for p in PERCENTILES:
        out[f"p{p:g}"] = h.get_value_at_percentile(p) if count else 0
    out["max"] = h.get_max_value() if count else 0
    out["mean"] = round(h.get_mean_value(), 1) if count else 0
    return out


def _curve(h: HdrHistogram) -> list[tuple[float, int]]:
    if not h.get_total_count():
        return []
    points = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0]
    return [(p, h.get_value_at_percentile(p)) for p in points]


def _us(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.0f} µs"


# -- profiles (py-spy) ---------------------------------------------------------------------------

def _start_profilers(pids: dict[str, int], directory: str, duration: float) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))),
                              "--rate", "100", "--nonblocking", "--format", "raw",
                              "--output", str(Path(directory) / f"{label.replace(' ', '-')}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for label, pid in pids.items()]


def summarise_profiles(directory: str, top: int = 12) -> dict[str, dict]:
    """For each py-spy raw profile in ``directory``: the functions with the largest inclusive
    share of the (non-idle) samples, and those with the largest self share."""
    out = {}
    for path in sorted(Path(directory).glob("*.txt")):
        inclusive: Counter[str] = Counter()
        exclusive: Counter[str] = Counter()
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("process ")]
            total += int(count)
            for name in set(frames):
                inclusive[name] += int(count)
            if frames:
                exclusive[frames[-1]] += int(count)
        if total:
            out[path.stem] = {
                "samples": total,
                "top_inclusive": [(name, round(n / total, 3)) for name, n in inclusive.most_common(top * 2)],
                "top_self": [(name, round(n / total, 3)) for name, n in exclusive.most_common(top)]}
    return out


# -- the report ----------------------------------------------------------------------------------

def summary(result: BenchResult) -> str:
    """The result as a table for people."""
    o, t = result.options, result.throughput
    load = (f"as fast as possible ({o['window']} outstanding per session)" if o["rate"] is None
            else f"{o['rate']:,.0f} requests/s offered, open loop")
    lines = [f"machine: {result.machine['cpus']} x {result.machine['cpu_model']}, Python {result.machine['python']},"
             f" libzmq {result.machine['libzmq']}, SQLite {result.machine['sqlite']}",
             f"load: {load},"
             f" {o['sessions']} sessions in {o['workers']} processes, {o['subscribers']} subscribers,"
             f" {o['warmup']:g} s warmup + {o['duration']:g} s measured",
             "",
             f"acknowledged   {t['acked_per_s']:,.0f}/s sustained (slowest second {t['acked_per_s_min_second']:,},"
             f" fastest {t['acked_per_s_max_second']:,}): ACK, ACK REPLACED and OUT CANCELED answers",
             f"requests       {result.counts['requests']:,} sent, {result.counts['answered']:,} answered,"
             f" {result.counts['unanswered']:,} unanswered; answers {result.counts['answers']};"
             f" rejects {result.counts['rejects']}; {result.counts['fills']:,} fills",
             f"ordering       {result.counts['late_fills']:,} fills reached their session after the OUT line"
             " answering a cancel of the order (the fill happened first)",
             "",
             f"{'latency':22s} {'count':>9s} {'p50':>9s} {'p90':>9s} {'p99':>9s} {'p99.9':>9s} {'max':>9s}"]
    names = {"ack": "ack (send → ACK)", "fill": "fill (send → 1st FILL)", "cancel": "cancel (send → OUT)",
             "replace": "replace (send → ACK)", "md": "market data (→ SUB)"}
    for kind, name in names.items():
        v = result.latency_us[kind]
        lines.append(f"{name:22s} {v['count']:>9,d} " + " ".join(
            f"{_us(v[p]):>9s}" for p in ("p50", "p90", "p99", "p99.9", "max")))
    s = result.market_data["spread_us"]
    lines.append(f"{'md spread first→last':22s} {s['count']:>9,d} " + " ".join(
        f"{_us(s[p]):>9s}" for p in ("p50", "p90", "p99", "p99.9", "max")))
    lines += ["", f"market data: {result.market_data['messages']} messages per subscriber,"
              f" gaps {result.market_data['gaps']}",
              f"journal: {result.journal['durable_events_per_s']:,.0f} events/s made durable; lag (age of the"
              f" newest durable event) p50 {_us(result.journal['lag_us']['p50'])},"
              f" max {_us(result.journal['lag_us']['max'])}",
              "cpu (cores, measured window): " + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu.items()),
              ""]
    for name, faults in result.checks.items():
        lines.append(f"check {name}: {'ok' if not faults else 'FAILED'}")
        lines += [f"    {f}" for f in faults[:10]]
    return "\n".join(lines)


def plot(result: BenchResult, path: str) -> None:
    """The latency percentile curves and throughput over time, as a PNG (needs matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'exchange[plot]'"
                           " (or pip install 'matplotlib>=3.7')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for kind, points in result.curves.items():
        if points:
            xs = [1 / (1 - p / 100) if p < 100 else 1e6 for p, _ in points]
            left.plot(xs, [v / 1000 for _, v in points], marker=".", label=kind)
    left.set_xscale("log")
    left.set_yscale("log")
    ticks = [2, 10, 100, 1000, 10000, 100000, 1e6]
    left.set_xticks(ticks, ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"])
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms)")
    left.set_title("latency by percentile (from scheduled send)")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    series = result.series
    right.plot([e["t"] for e in series], [e["sent"] for e in series], label="sent/s")
    right.plot([e["t"] for e in series], [e.get("acked", 0) for e in series], label="acknowledged/s")
    right.axvline(result.options["warmup"], color="grey", linestyle=":", label="end of warmup")
    right.set_xlabel("second")
    right.set_ylabel("per second")
    right.set_title("throughput")
    right.grid(True, alpha=0.3)
    right.legend()
    o = result.options
    load = "max" if o["rate"] is None else f"{o['rate']:,.0f}/s offered"
    fig.suptitle(f"exchange bench: {load}, {o['sessions']} sessions,"
                 f" {result.machine['cpus']} CPUs ({result.machine['cpu_model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
