"""The load generator processes: each one runs several sessions (asyncio) on one schedule.

Open loop: request n is due at start + n / rate, whatever the replies do, and latency is measured
from that scheduled time. ``rate=None`` instead keeps ``window`` requests outstanding per session.
The process reports to the orchestrator over a pipe: ready, one tick per second, drained, done.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import selectors
import signal
import time
from collections import Counter

import zmq
from hdrh.histogram import HdrHistogram

from exchange.bench import latency
from exchange.bench.latency import HIGHEST_US, KINDS
from exchange.bench.limits import InstrumentLoad
from exchange.bench.session import PING, Session
from exchange.bench.zmq_transport import DealerTransport

MID_PERIOD_S = 30.0  # each instrument's mid swings around its centre (exchange.bench.limits) this slowly
DRAIN_TIMEOUT_S = 30.0


class Worker:
    """One load generator process: its sessions, its schedule, its measurements."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.rate = plan["rate"]
        self.random = random.Random(plan["seed"])
        self.loads: list[InstrumentLoad] = plan["instruments"]
        self.instruments = []  # (name, price formatter, qty texts by choice 1..10)
        self.units = []  # units of one lot in the qty text's last decimal place
        for load in self.loads:
            symbol, tick, lot = load.symbol, load.tick_size, load.lot_size
            tick_places, lot_places = _places(tick), _places(lot)
            tick_units, lot_units = _scaled(tick, tick_places), _scaled(lot, lot_places)
            cache: dict[int, bytes] = {}

            def price(ticks: int, cache=cache, u=tick_units, p=tick_places) -> bytes:
                text = cache.get(ticks)
                if text is None:
                    text = cache[ticks] = _fixed(ticks * u, p)
                return text

            qtys = {n: _fixed(lots * lot_units, lot_places) for n, lots in enumerate(load.lots, 1)}
            self.instruments.append((symbol.encode(), price, qtys))
            self.units.append(lot_units)
        self.sent: Counter[int] = Counter()
        self.answered = 0
        self.late_fills = 0
        self.answers: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.reject_reasons: dict[str, str] = {}  # code → the reason of its first REJ
        self.faults: list[str] = []
        self.fault_count = 0
        self.latencies: dict[str, list[int]] = {k: [] for k in KINDS[:4]}  # measured, this second
        self.recent: list[int] = []  # every ack latency of this second, warmup included, for progress
        self.histograms = {k: HdrHistogram(1, HIGHEST_US, 3) for k in KINDS[:4]}
        self.fills = [[0, 0, 0, 0] for _ in self.instruments]  # buy count, sell count, buy units, sell units
        self.acked_in_second: Counter[int] = Counter()
        self.acked_at: list[int] = []  # the acks counted so far when the window opened, and closed
        self.traced: list[tuple[str, str, int, int]] = []  # sampled ACKs: user, cid, due, read (perf ns)
        self.sessions: list[Session] = []
        self.running = False
        self.start = self.measure_from = self.end = 0

    def fault(self, text: str) -> None:
        self.fault_count += 1
        if len(self.faults) < 20:
            self.faults.append(text)

    def mid(self, t: int, symbol: int) -> int:
        """The mid of instrument ``symbol`` (an index) at ``t``: its centre, swung by a slow sine."""
        load = self.loads[symbol]
        phase = 2 * math.pi * ((t - self.start) / 1e9 + self.plan["phase"]) / MID_PERIOD_S
        return load.centre + round(load.swing * math.sin(phase))

    def offset(self, symbol: int) -> int:
        """How far from the mid the next order of instrument ``symbol`` rests."""
        most = self.loads[symbol].offset
        return self.random.randint(min(1, most), most)

    def outstanding(self) -> int:
        return sum(len(s.outstanding) for s in self.sessions)

    def acked_in_window(self) -> int:
        """Acks received in the measured window [measure_from, end), to one turn of the event loop."""
        return self.acked_at[1] - self.acked_at[0]

    def interval(self) -> dict:
        """Move this second's latencies into the histograms; return a progress record."""
        ack = sorted(self.recent)
        self.recent = []
        record = {"sent": sum(self.sent.values()), "answered": self.answered, "outstanding": self.outstanding(),
                  "acks": len(ack), "p50": latency.pick(ack, 0.5), "p99": latency.pick(ack, 0.99),
                  "max": ack[-1] if ack else 0}
        for kind, values in self.latencies.items():
            latency.record(self.histograms[kind], values)
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


async def _generate(plan: dict, conn) -> None:
    w = Worker(plan)
    loop = asyncio.get_running_loop()
    zmq_ctx = zmq.Context() if plan.get("zmq") else None
    for tag, user, key, host, port, endpoint in plan["sessions"]:
        if zmq_ctx is not None:
            session = Session(w, tag, user, key)
            DealerTransport(zmq_ctx, endpoint, session)
        else:
            _, session = await loop.create_connection(lambda: Session(w, tag, user, key), host, port)
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
    counting = loop.create_task(_count_window(w))
    if w.rate is not None:
        await _schedule(w)
    else:
        await asyncio.sleep(max(0.0, (w.end - time.perf_counter_ns()) / 1e9))
    w.running = False
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + plan["request_timeout"]
    while w.outstanding() and time.monotonic() < deadline and not all(s.closed for s in w.sessions):
        await asyncio.sleep(0.01)
    ticker.cancel()
    await counting
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
    wall_offset = time.time_ns() - time.perf_counter_ns()  # the journal's timestamps are wall clock
    conn.send(("done", {
        "sent": {name: w.sent[kind] for kind, name in enumerate(("new", "cross", "cancel", "replace", "login", "ping"))},
        "answered": w.answered, "unanswered": w.outstanding(), "answers": dict(w.answers),
        "late_fills": w.late_fills,
        "rejects": dict(w.rejects), "reject_reasons": w.reject_reasons, "faults": w.faults, "fault_count": w.fault_count,
        "histograms": {k: h.encode() for k, h in w.histograms.items()},
        "fills": w.fills, "acked_per_second": dict(w.acked_in_second), "acked_in_window": w.acked_in_window(),
        "traced": [(user, cid, due + wall_offset, read + wall_offset) for user, cid, due, read in w.traced],
        "cpu_s": times.user + times.system}))


async def _schedule(w: Worker) -> None:
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


async def _count_window(w: Worker) -> None:
    """Note the acks counted so far when the measured window opens and when it closes. The
    per-second counts are whole seconds from the start, which a fractional --warmup or
    --duration cuts through."""
    for moment in (w.measure_from, w.end):
        await asyncio.sleep(max(0.0, (moment - time.perf_counter_ns()) / 1e9))
        w.acked_at.append(sum(w.acked_in_second.values()))


async def _tick(w: Worker, conn) -> None:
    while True:
        await asyncio.sleep(1.0)
        conn.send(("tick", w.interval()))


MAX_SELECT_SESSIONS = 500  # select() handles file descriptors below 1024 only


def event_loop_for(sessions: int) -> asyncio.AbstractEventLoop:
    """The worker's event loop: on select(), whose timeout is in microseconds, when its sessions fit.

    asyncio's default (epoll) rounds every timeout up to the next millisecond, so a request due
    in 1.3 ms would leave 0.5 to 1 ms late, and the open-loop schedule would count that lateness of
    the generator's own timer in every latency it measures; select() wakes within a fraction of it.
    """
    if sessions <= MAX_SELECT_SESSIONS:
        return asyncio.SelectorEventLoop(selectors.SelectSelector())
    return asyncio.new_event_loop()


def worker_main(plan: dict, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        with asyncio.Runner(loop_factory=lambda: event_loop_for(len(plan["sessions"]))) as runner:
            runner.run(_generate(plan, conn))
    except BaseException as e:  # reported to the parent, which fails the run
        conn.send(("error", f"{type(e).__name__}: {e}"))
