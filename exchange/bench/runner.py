"""``run(options)``: start the processes, follow the run second by second, and collect the result.

This process orchestrates: it starts the subscribers and load generators, tells them when to
start, samples the journal's durable progress and the CPU of every process, and then hands the
reports to ``checks.finish``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from exchange.bench import latency, limits
from exchange.bench.checks import finish
from exchange.bench.limits import InstrumentLoad
from exchange.bench.load import worker_main
from exchange.bench.options import BenchOptions
from exchange.bench.profiles import start_profilers, summarise_profiles
from exchange.bench.results import BenchResult
from exchange.bench.subscribers import subscriber_main
from exchange.bench.target import bench_config, cpu_seconds, cpu_wait_seconds, machine, machine_busy, running_roles
from exchange.config import load_config
from exchange.journal.readers import last_trades, log_streams
from exchange.journal.schema import open_readonly, readonly_uri
from exchange.testing.mesh import Mesh, wait_for_mesh


def run(options: BenchOptions) -> BenchResult:
    """Run one benchmark as ``options`` say; see the package docstring (``exchange.bench``)."""
    say = options.progress or (lambda line: None)
    work = Path(options.work_dir or tempfile.mkdtemp(prefix="exchange-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mesh = None
    if options.connect:
        config_path, users = Path(options.config_path), options.users or [
            (u, f"{u}-key") for u in ("alice", "bob", "carol")]
    else:
        config_path, users = bench_config(options.config_path, work, options.sessions, options.accounts,
                                          options.gateways)
    config = load_config(config_path)
    symbols = options.instruments or [i.symbol for i in config.instruments]
    instruments = config.instrument_map()
    unknown = [s for s in symbols if s not in instruments]
    if unknown:
        raise ValueError(f"no instrument {', '.join(unknown)}; there are {', '.join(instruments)}")
    gateways = [(section.text.rsplit(":", 1)[0], int(section.text.rsplit(":", 1)[1]), section.zmq)
                for _, section in config.gateway.all()]  # session s uses gateway s mod their number
    if options.zmq and config.gateway.zmq_auth != "login":
        raise ValueError("--zmq needs gateway.zmq_auth: login in the config (sessions log in with LOGIN)")
    ctx = multiprocessing.get_context("spawn")
    workers, subscribers, profilers = [], [], []
    try:
        if not options.connect:
            mesh = Mesh(config_path, log_path=Path(config.var_dir) / "bench-launcher.log")
            say(f"starting a mesh from {options.config_path} in {work}")
        wait_for_mesh(config, mesh.process if mesh else None, 60, users[0])
        pids = mesh.pids() if mesh else running_roles(str(config_path))
        baseline = _journal_position(config.journal.path)
        loads = _loads(config, symbols, options.sessions, len(users))
        stop = ctx.Event()
        for n in range(options.subscribers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=subscriber_main, args=(config.notifier.publish, symbols, child, stop),
                            name=f"bench-subscriber-{n}", daemon=True)
            p.start()
            subscribers.append((p, parent))
        n_workers = max(1, min(options.workers, options.sessions))
        for n in range(n_workers):
            plan = _plan(options, n, n_workers, users, loads, gateways, config.gateway.request_timeout)
            plan["zmq"] = options.zmq
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(plan, child), name=f"bench-worker-{n}", daemon=True)
            p.start()
            workers.append((p, parent))
        for p, conn in workers + subscribers:
            expect(conn, p, "ready", 120)
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
        writer = pids.get("journal-writer")  # its CPU from the load's end until its tables catch up
        writer_cpu = (writer, cpu_seconds(writer)) if writer is not None else None
        stop.set()
        md = [expect(conn, p, "done", 30) for p, conn in subscribers]
        finish(result, options, config, baseline, md, users, writer_cpu)
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
            mesh.close(20)
        if options.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def _loads(config, symbols: list[str], sessions: int, users: int) -> list[InstrumentLoad]:
    """What the load may send on each instrument, within its limits around its last trade."""
    instruments = config.instrument_map()
    last_prices: dict[str, int] = {}
    if os.path.exists(config.journal.path):
        conn = open_readonly(config.journal.path)
        try:
            for engine in config.engines:
                last_prices.update({s: t.price for s, t in last_trades(conn, engine.name).items()})
        finally:
            conn.close()
    sessions_per_user = -(-sessions // users)
    return [limits.plan(instruments[s], last_prices.get(s), sessions_per_user) for s in symbols]


def _plan(options, n, n_workers, users, loads, gateways, request_timeout) -> dict:
    """What worker ``n`` does: its sessions, each (tag, user, key, host, port, zmq endpoint) of the
    gateway it logs in on, and the load."""
    sessions = []
    for s in range(n, options.sessions, n_workers):
        user, key = users[s % len(users)]
        sessions.append((f"w{n}s{s}", user, key, *gateways[s % len(gateways)]))
    return {"sessions": sessions, "instruments": loads,
            "rate": None if options.rate is None else options.rate * len(sessions) / options.sessions,
            "window": options.window, "warmup": options.warmup, "duration": options.duration,
            "seed": options.seed * 1000 + n, "phase": 0.0, "request_timeout": request_timeout}


def expect(conn, process, what: str, timeout: float):
    """The value of the next ``what`` message a child process sends on ``conn`` (other kinds are
    passed over); RuntimeError if it reports an error or exits, TimeoutError after ``timeout`` s."""
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
                         machine=machine())
    own = {f"load generator {n}": p.pid for n, (p, _) in enumerate(workers)}
    own.update({f"subscriber {n}": p.pid for n, (p, _) in enumerate(subscribers)})
    own["bench (this process)"] = os.getpid()
    cpu_start: dict[str, float] = {}
    wait_start: dict[str, float | None] = {}
    busy_start = None
    sampled_from = 0.0  # when cpu_start was sampled: the CPU figures are per second of [sampled_from, now]
    ticks: dict[int, list[dict]] = defaultdict(list)
    journal_samples = []
    done: dict[int, dict] = {}
    drained: dict[int, int] = {}
    reader = None
    while len(done) < len(workers):
        now = time.time()
        if busy_start is None and now >= measure_from:
            cpu_start = {label: cpu_seconds(pid) for label, pid in {**pids, **own}.items()}
            wait_start = {label: cpu_wait_seconds(pid) for label, pid in pids.items()}
            busy_start = machine_busy()
            sampled_from = now
            if options.profile_dir:
                profilers += start_profilers(pids, options.profile_dir, options.duration)
        if busy_start is not None and not result.cpu and now >= measure_to:
            cpu_end = {label: cpu_seconds(pid) for label, pid in {**pids, **own}.items()}
            wait_end = {label: cpu_wait_seconds(pid) for label, pid in pids.items()}
            busy_end = machine_busy()
            window = now - sampled_from
            result.cpu = {label: round((cpu_end[label] - cpu_start[label]) / window, 3)
                          for label in cpu_end if cpu_end[label] is not None and cpu_start.get(label) is not None}
            result.cpu_wait = {label: round((wait_end[label] - wait_start[label]) / window, 3) for label in wait_end
                               if wait_end[label] is not None and wait_start.get(label) is not None}
            busy = (busy_end[0] - busy_start[0]) / max(1, busy_end[1] - busy_start[1]) * (os.cpu_count() or 1)
            ours = sum(result.cpu.values())
            result.cpu["machine, all processes"] = round(busy, 3)
            result.cpu["not ours (other processes, kernel)"] = round(busy - ours, 3)
        if reader is None and os.path.exists(config.journal.path):
            reader = sqlite3.connect(readonly_uri(config.journal.path), uri=True)
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
        pause = max(0.0, 1.0 - (time.time() - now)) if len(drained) < len(workers) else 0.05
        # wake at the window's ends themselves to sample the CPU there: on the one-second beat
        # alone the samples came up to a second late, and the tail after measure_to was counted
        cpu_moment = measure_from if busy_start is None else measure_to if not result.cpu else None
        if cpu_moment is not None:
            pause = min(pause, max(0.0, cpu_moment - time.time()))
        time.sleep(pause)
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
    say(f"{second + 1:4d}s {phase:7s} sent {sent:7,d}/s answered {answered:7,d}/s"
        f"  ack p50 {latency.us(entry['p50_us'])}"
        f" p99 {latency.us(entry['p99_us'])} max {latency.us(entry['max_us'])}  outstanding {entry['outstanding']:,d}")
    return entry


def _durable(reader: sqlite3.Connection) -> dict:
    """engine → (its last logged seq, when that batch was matched): the journal's durable edge."""
    try:
        out = {}
        for engine in log_streams(reader):
            row = reader.execute("SELECT last_seq, ts_matched FROM batches WHERE engine=? ORDER BY batch DESC LIMIT 1",
                                 (engine,)).fetchone()
            if row is not None:
                out[engine] = (row[0], row[1] or 0)
        return out
    except sqlite3.Error:
        return {}


def _journal_position(path: str) -> dict[str, int]:
    if not os.path.exists(path):
        return {}
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        return {engine: seq for engine, (seq, _) in _durable(conn).items()}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
