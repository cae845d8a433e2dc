#!/usr/bin/env python3
"""Market data fan-out benchmark: N subscribers over several processes, a steady trade flow, fairness.

    .venv/bin/python scripts/bench_fanout.py --subscribers 1000 --processes 4 --rate 1000 --duration 20 --runs 3

Per run:

1. A fresh mesh (``exchange up``) from a loopback copy of configs/local.yaml
   (``exchange.testing.mesh.loopback_config``: free ports, its own journal, in a temporary folder), with
   ``--io-threads`` / ``--set KEY=VALUE`` applied to that copy. ``--notifiers K`` adds K-1 notifier
   replicas to that copy (``notifier.replicas``, started by ``exchange up`` like every role) and
   spreads the subscribers over all K.
2. ``--processes`` P subscriber processes, each holding N/P plain ZMQ SUB sockets (the mesh's
   socket options, as ``MarketDataClient`` and ``BookFeed`` use, and RCVHWM ``--sub-rcvhwm``)
   subscribed to one topic, ``md.<SYMBOL>.trade|``, all served by one loop per process (an epoll
   over the sockets' ZMQ_FDs). For every message on every socket it records (chan_seq,
   ``time.time_ns()`` right after the receive).
3. Join: probe trades (one every 0.1 s) until every socket has received a message, so that no
   subscriber is still a slow joiner when the measurement starts; then IDLE_S without trades, to
   measure what the connected subscribers alone cost the notifier (heartbeats).
4. Load: two text-protocol sessions (alice sells, bob buys, both GTC at one price), pipelined on
   a fixed open-loop schedule: cross n is due at start + n / rate. Each SELL+BUY pair is one
   trade whichever order the gateway sees them in. ``--batch`` crosses go out per write.
5. Collect: per chan_seq the earliest and latest receipt over all subscribers (the spread), the
   latency of every receipt, and per socket the chan_seqs it never got. Fairness: each socket's mean
   arrival rank over the messages it got (0 = always first, 1 = always last; see ``mean_ranks``),
   their distribution, and how many sockets are systematically early (< 0.25) or late (> 0.75).
   ``--lanes K`` gives each notifier K public endpoints (``notifier.lanes``) and spreads the
   subscribers over them; ``--lanes 1,4`` runs every run once per value, side by side.

Timestamps: ``ts_event`` of an event is the **gateway's** receive time of the command that made
it (``time.time_ns()`` in the gateway), so "latency" below is gateway receipt of the crossing
order → journal commit → engine release → notifier → subscriber: the whole path a trade takes to
the public, not the notifier alone. One message carries every trade of one engine release (one
journal commit), so "latency" is measured from the ``ts_event`` of the message's *oldest* trade,
the worst of the trades it carries. All clocks are the same machine's ``CLOCK_REALTIME``.

Loss: subscribers are plain SUB sockets, which do not re-sync; a socket that misses chan_seqs is
counted honestly (messages missed, and the number of gaps = the re-syncs a ``BookFeed`` would have
done, each a snapshot request). A message counts for the run if its oldest trade has a
``ts_event`` after the load started; the run's chan_seqs are every one from the last probe's + 1
to the highest seen (heartbeats after the load repeat the current chan_seq, so a lost tail shows).

CPU: user+system seconds from /proc over the load window, per role (the notifier also per
thread: its Python loop, its ZMQ I/O threads), per subscriber process, for this process (the
load driver) and for the whole machine ("not ours" = everything else on it).

Everything started here is stopped at the end, also on Ctrl-C or an error: the subscriber
processes and the mesh's process group (replicas included).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import select
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from pathlib import Path

import yaml

from exchange.bench.latency import us
from exchange.bench.runner import expect
from exchange.bench.target import cpu_seconds, machine_busy
from exchange.bench.target import machine as bench_machine
from exchange.testing.mesh import Mesh, login

SYMBOL = "BTC-USD"
PRICE, QTY = "43000.00", "0.01"
SELLER, BUYER = ("alice", "alice-key"), ("bob", "bob-key")
PROBE_INTERVAL_S = 0.1
IDLE_S = 2.0  # seconds with every subscriber connected and no trades, to measure the notifier's idle cost
QUIET_S = 1.0  # a subscriber process is done once no trade message came for this long after "stop"
SWEEP_LATE_NS = 50_000_000  # a receipt the idle sweep found this late means epoll missed a wakeup
TARGET_SPREAD_P99_US = 5000


# -- small helpers -------------------------------------------------------------------------------

def raise_fd_limit() -> tuple[int, int]:
    """RLIMIT_NOFILE soft → hard (children inherit it); returns (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def bucket(us: int) -> int:
    """µs rounded down to 10 significant bits (≤ 0.1 % error) so Counters stay small."""
    if us < 1024:
        return max(us, 0)
    shift = us.bit_length() - 10
    return (us >> shift) << shift


def counter_percentiles(counts: Counter, qs=(50, 90, 99, 99.9)) -> dict:
    total = sum(counts.values())
    out: dict = {"count": total}
    if not total:
        return {**out, **{f"p{q:g}": None for q in qs}, "max": None, "mean": None}
    items = sorted(counts.items())
    targets = [(q, max(1, -(-total * q // 100))) for q in qs]  # ceil(total * q / 100)
    cum, i = 0, 0
    for value, n in items:
        cum += n
        while i < len(targets) and cum >= targets[i][1]:
            out[f"p{targets[i][0]:g}"] = value
            i += 1
    out["max"] = items[-1][0]
    out["mean"] = round(sum(v * n for v, n in items) / total, 1)
    return out


def list_percentiles(values: list[int], qs=(50, 90, 99, 99.9)) -> dict:
    return counter_percentiles(Counter(values), qs)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of the same name added up)."""
    out: Counter = Counter()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return dict(out)


def machine() -> dict:
    """What `exchange bench` says of the machine, with its memory and its load average before the run."""
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    return {**bench_machine(), "mem_gib": round(int(mem) / 2**20, 1),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}


# -- fairness: arrival ranks ----------------------------------------------------------------------

EARLY, LATE = 0.25, 0.75  # a subscriber whose mean normalised rank is below / above this is systematically early / late


def mean_ranks(seqs, times, subs) -> dict[int, float]:
    """Each subscriber's mean normalised arrival rank over the messages it received.

    Receipt k is (seqs[k], times[k], subs[k]): subscriber subs[k] got chan_seq seqs[k] at times[k]
    (ns, one clock for all). Among the R subscribers that got a chan_seq, the first has rank 0 and
    the last R-1; a rank is divided by R-1, so 0 is always first and 1 always last. Receipts at the
    same instant share the mean of their ranks. A chan_seq only one subscriber got ranks nobody.
    """
    n = len(seqs)
    if not n:
        return {}
    t0 = min(times)
    span = max(times) - t0 + 1
    order = sorted(range(n), key=lambda k: seqs[k] * span + times[k] - t0)  # by chan_seq, then by time
    total: Counter = Counter()
    count: Counter = Counter()
    start = 0
    while start < n:
        seq = seqs[order[start]]
        end = start
        while end < n and seqs[order[end]] == seq:
            end += 1
        receivers = end - start
        if receivers > 1:
            k = start
            while k < end:  # a run of equal times [k, tie) shares the mean of its ranks
                tie = k
                while tie < end and times[order[tie]] == times[order[k]]:
                    tie += 1
                rank = ((k - start) + (tie - 1 - start)) / 2 / (receivers - 1)
                for m in range(k, tie):
                    total[subs[order[m]]] += rank
                    count[subs[order[m]]] += 1
                k = tie
        start = end
    return {sub: total[sub] / count[sub] for sub in count}


def rank_summary(means: dict[int, float]) -> dict:
    """The distribution of the subscribers' mean ranks and how many are systematically early or late."""
    values = sorted(means.values())
    if not values:
        return {"subscribers": 0}

    def at(q: float) -> float:  # nearest rank
        return round(values[max(0, -(-len(values) * q // 100) - 1)], 4)

    return {"subscribers": len(values), "min": round(values[0], 4), "p10": at(10), "p50": at(50), "p90": at(90),
            "max": round(values[-1], 4), "early": sum(v < EARLY for v in values),
            "late": sum(v > LATE for v in values)}


def split_half_correlation(seqs, times, subs) -> float | None:
    """Pearson correlation of the subscribers' mean ranks over even and over odd chan_seqs.

    Near 1: a subscriber early on some messages is early on the others too (a fixed order). Near 0:
    who comes first changes from message to message, whatever the spread of the means.
    """
    halves = []
    for parity in (0, 1):
        keep = [k for k in range(len(seqs)) if seqs[k] % 2 == parity]
        halves.append(mean_ranks([seqs[k] for k in keep], [times[k] for k in keep], [subs[k] for k in keep]))
    both = sorted(set(halves[0]) & set(halves[1]))
    if len(both) < 3:
        return None
    xs, ys = [halves[0][s] for s in both], [halves[1][s] for s in both]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return round(sxy / (sxx * syy) ** 0.5, 3) if sxx and syy else None


def fairness(reports: list[dict]) -> dict:
    """Arrival ranks over every subscriber of every process (socket i of process p is subscriber offset_p + i)."""
    seqs, times, subs = array("q"), array("q"), array("i")
    first_of = []  # the first subscriber number of each process
    offset = 0
    for r in reports:
        rseq, rtime, rsock = array("q"), array("q"), array("i")
        for arr, data in zip((rseq, rtime, rsock), r["receipts"]):
            arr.frombytes(data)
        seqs.extend(rseq)
        times.extend(rtime)
        subs.extend(s + offset for s in rsock)
        first_of.append(offset)
        offset += r["sockets"]
    means = mean_ranks(seqs, times, subs)
    bounds = first_of + [offset]
    per_process = [[means[s] for s in range(lo, hi) if s in means] for lo, hi in zip(bounds, bounds[1:])]
    return {**rank_summary(means), "split_half_correlation": split_half_correlation(seqs, times, subs),
            "per_process_mean": [round(statistics.fmean(v), 4) if v else None for v in per_process],
            "per_subscriber": [round(means[s], 4) if s in means else None for s in range(offset)]}


# -- subscriber processes ------------------------------------------------------------------------

def subscriber_main(endpoints: list[str], sub_topic: bytes, conn, io_threads: int, rcvhwm: int) -> None:
    """Hold len(endpoints) SUB sockets (socket i connects to endpoints[i]); see the module docstring."""
    import zmq

    from exchange.wire import sockets
    from exchange.wire.messages import Decoder, MarketData

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_fd_limit()
    n = len(endpoints)
    ctx = zmq.Context(io_threads=io_threads)
    ctx.linger = 0
    ctx.max_sockets = max(1024, n + 64)
    socks = []
    for endpoint in endpoints:
        sock = sockets.socket(ctx, zmq.SUB)  # the mesh's options, as MarketDataClient and BookFeed use
        sock.setsockopt(zmq.SUBSCRIBE, sub_topic)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.connect(endpoint)
        socks.append(sock)
    # one level-triggered epoll over the sockets' ZMQ_FDs: a wakeup costs O(sockets ready) rather than
    # zmq.Poller's O(all sockets) per call (measured about the same CPU per delivery at 250 sockets)
    epoll = select.epoll()
    by_fd = {}
    for i, sock in enumerate(socks):
        fd = sock.getsockopt(zmq.FD)
        by_fd[fd] = (i, sock.recv)
        epoll.register(fd, select.EPOLLIN)
    control = conn.fileno()
    epoll.register(control, select.EPOLLIN)
    decoder = Decoder(MarketData)
    conn.send(("ready", os.getpid()))

    cache: dict[bytes, tuple] = {}  # body → (chan_seq, ts of oldest event or 0, events, has events)
    ts_first: dict[int, int] = {}  # chan_seq → ts_event of its oldest trade
    events_of: dict[int, int] = {}  # chan_seq → trades in it
    last = [-1] * n  # last chan_seq seen per socket (-1: none yet; a heartbeat before any trade says 0)
    counts = [0] * n  # run messages received per socket
    gaps: list[tuple[int, int, int]] = []  # (socket, first missed, last missed), as they happen
    rseq, rtime, rsock = array("q"), array("q"), array("i")  # run receipts: chan_seq, time, socket
    heard, joined_sent = 0, False
    t_start = None  # ns; messages whose oldest trade is newer are the run's
    pre_max = 0  # highest chan_seq of a message with trades from before t_start
    stop_at = None
    last_run_msg = progress_at = time.monotonic()
    Again, NOBLOCK = zmq.Again, zmq.NOBLOCK
    time_ns = time.time_ns
    # run receipts found by the idle sweep: (index into rseq/rtime where the sweep started, where it ended).
    # Messages that arrive while a sweep runs are found by it legitimately; a missed epoll wakeup would
    # show as a swept receipt much later than this process's first receipt of the same chan_seq.
    sweeps: list[tuple[int, int]] = []

    def receive(i: int, recv) -> int:
        nonlocal heard, pre_max, last_run_msg
        got = 0  # run messages
        # recv until zmq.Again: the failing recv processes the socket's commands, which re-arms its
        # ZMQ_FD for the next wakeup. (Checking ZMQ_EVENTS before each recv instead costs about
        # 3 µs a call here, a poll() of the socket's mailbox, against 0.4 µs for a recv.)
        while True:
            try:
                recv(NOBLOCK)  # topic frame
            except Again:
                return got
            body = recv()
            t = time_ns()
            info = cache.get(body)
            if info is None:
                md = decoder.decode(body)
                ts = min((e.ts_event for e in md.events), default=0)
                info = cache[body] = (md.chan_seq, ts, len(md.events), bool(md.events))
                if info[3]:
                    ts_first[md.chan_seq] = ts
                    events_of[md.chan_seq] = len(md.events)
            seq, ts, _, has_events = info
            prev = last[i]
            if prev < 0:
                heard += 1
                last[i] = seq
            elif has_events:
                if seq > prev + 1:
                    gaps.append((i, prev + 1, seq - 1))
                if seq > prev:
                    last[i] = seq
            elif seq > prev:  # a heartbeat naming a chan_seq this socket never got
                gaps.append((i, prev + 1, seq))
                last[i] = seq
            if has_events:
                if t_start is not None and ts >= t_start:
                    rseq.append(seq)
                    rtime.append(t)
                    rsock.append(i)
                    counts[i] += 1
                    got += 1
                    last_run_msg = time.monotonic()
                elif seq > pre_max:
                    pre_max = seq

    while True:
        ready = epoll.poll(0.1)
        if not ready:  # idle: make sure no socket holds a message epoll did not announce
            before = len(rseq)
            if sum(receive(*entry) for entry in by_fd.values()):
                sweeps.append((before, len(rseq)))
        for fd, _ in ready:
            if fd == control:
                kind, value = conn.recv()
                if kind == "start":
                    t_start = value
                elif kind == "stop":
                    stop_at = time.monotonic()
                continue
            receive(*by_fd[fd])
        if not joined_sent and heard == n:
            joined_sent = True
            conn.send(("joined", None))
        elif not joined_sent and time.monotonic() - progress_at > 1.0:
            progress_at = time.monotonic()
            conn.send(("progress", heard))
        if stop_at is not None and time.monotonic() - max(stop_at, last_run_msg) > QUIET_S:
            break
    cpu = os.times()
    # per chan_seq: earliest and latest receipt in this process and how many sockets got it;
    # latency of every receipt from the message's oldest trade
    per: dict[int, list[int]] = {}
    latency: Counter = Counter()
    for seq, t in zip(rseq, rtime):
        entry = per.get(seq)
        if entry is None:
            per[seq] = [t, t, 1]
        else:
            if t < entry[0]:
                entry[0] = t
            elif t > entry[1]:
                entry[1] = t
            entry[2] += 1
        latency[bucket((t - ts_first[seq]) // 1000)] += 1
    swept = sum(hi - lo for lo, hi in sweeps)
    swept_late = sum(1 for lo, hi in sweeps for k in range(lo, hi) if rtime[k] - per[rseq[k]][0] > SWEEP_LATE_NS)
    conn.send(("done", {
        "sockets": n, "per_seq": per, "latency": dict(latency), "counts": counts, "last": last, "gaps": gaps,
        "pre_max": pre_max, "ts_first": {s: ts_first[s] for s in per}, "events": {s: events_of[s] for s in per},
        "cpu_s": cpu.user + cpu.system, "swept": swept, "swept_late": swept_late,
        "receipts": (rseq.tobytes(), rtime.tobytes(), rsock.tobytes())}))
    epoll.close()
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


# -- the load: two text sessions crossing GTC orders at one price -----------------------------

class Session:
    """A logged-in text session whose replies and pushed lines a thread reads and counts."""

    def __init__(self, host: str, port: int, user: str, key: str):
        self.client = login(host, port, user, key=key)
        self.sock = self.client.sock
        self.sock.settimeout(None)
        self.lines: Counter = Counter()
        self.rejects: Counter = Counter()
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True, name=f"reader-{user}")
        self.thread.start()

    def _read(self) -> None:
        buffer = self.client.buffer
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            lines = (buffer + chunk).split(b"\n")
            buffer = lines.pop()
            for line in lines:
                word = line.split(b" ", 2)
                self.lines[word[0]] += 1
                if word[0] == b"REJ" and len(word) > 1:
                    self.rejects[word[1].decode(errors="replace")] += 1

    def send(self, data: bytes, orders: int) -> None:
        self.sock.sendall(data)
        self.sent += orders

    def answered(self) -> int:
        return self.lines[b"ACK"] + self.lines[b"REJ"]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.client.close()


SELL_LINE = f"SELL {SYMBOL} {QTY} @ {PRICE}\n".encode()
BUY_LINE = f"BUY {SYMBOL} {QTY} @ {PRICE}\n".encode()


def cross(seller: Session, buyer: Session, k: int) -> None:
    seller.send(SELL_LINE * k, k)
    buyer.send(BUY_LINE * k, k)


def drive(seller: Session, buyer: Session, rate: float, duration: float, batch: int) -> tuple[int, float, float]:
    """Open loop: cross n is due at start + n / rate (sent in groups of ``batch``).
    Returns (crosses sent, start, end) in time.time()."""
    total = int(rate * duration)
    interval = 1.0 / rate
    start_wall = time.time()
    t0 = time.perf_counter()
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        if due - n >= batch or due == total:
            cross(seller, buyer, due - n)
            n = due
        wait = t0 + (n + batch - 1) * interval - time.perf_counter() if n < total else 0
        if wait > 0:
            time.sleep(wait)
    return n, start_wall, time.time()


# -- mesh ----------------------------------------------------------------------------------------

def set_path(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


def make_config(work: Path, args) -> Path:
    """The mesh's config: a loopback copy of configs/local.yaml, the edits, and K-1 notifier replicas."""
    from exchange.testing.mesh import free_ports, loopback_config

    path = loopback_config(work)
    data = yaml.safe_load(path.read_text())
    data["notifier"]["io_threads"] = args.io_threads
    ports = iter(free_ports(3 * args.notifiers * args.lanes))  # distinct: asked for all at once

    def public(k: int, lane: int) -> str:
        return f"ipc://{work}/md-{k}-{lane}.ipc" if args.transport == "ipc" else f"tcp://127.0.0.1:{next(ports)}"

    if args.transport == "ipc":
        data["notifier"]["publish"] = public(1, 1)
    if args.lanes > 1:
        data["notifier"]["lanes"] = [public(1, lane) for lane in range(2, args.lanes + 1)]
    replicas = []
    for k in range(2, args.notifiers + 1):
        replicas.append({"name": f"n{k}", "publish": public(k, 1),
                         "private": f"tcp://127.0.0.1:{next(ports)}",
                         "snapshots": f"tcp://127.0.0.1:{next(ports)}"})
        if args.lanes > 1:
            replicas[-1]["lanes"] = [public(k, lane) for lane in range(2, args.lanes + 1)]
    if replicas:
        data["notifier"]["replicas"] = replicas
    for edit in args.set or []:
        key, _, value = edit.partition("=")
        set_path(data, key, yaml.safe_load(value))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- one run -------------------------------------------------------------------------------------

def one_run(args, run_no: int, say) -> dict:
    from exchange.wire.messages import topic

    work = Path(tempfile.mkdtemp(prefix="exchange-fanout-"))
    mesh = None
    subscribers: list[tuple] = []
    sessions: list[Session] = []
    try:
        mesh = Mesh(make_config(work, args), log_path=work / "launcher.log", timeout=60)
        mesh.wait_ready()
        config, host, port = mesh.config, mesh.host, mesh.port
        pids = mesh.pids()
        endpoints = [endpoint for n in (config.notifier, *config.notifier.replicas)
                     for endpoint in (n.publish, *n.lanes)]

        # subscribers: socket j (over all processes) connects to public endpoint j % (notifiers × lanes)
        ctx = multiprocessing.get_context("spawn")
        per_process = [args.subscribers // args.processes + (1 if p < args.subscribers % args.processes else 0)
                       for p in range(args.processes)]
        j = 0
        t_connect = time.monotonic()
        for p, count in enumerate(per_process):
            mine = [endpoints[(j + i) % len(endpoints)] for i in range(count)]
            j += count
            parent, child = ctx.Pipe()
            process = ctx.Process(target=subscriber_main, args=(mine, topic(SYMBOL, "trade"), child,
                                                                args.sub_io_threads, args.sub_rcvhwm),
                                  name=f"subscriber-{p}", daemon=True)
            process.start()
            subscribers.append((process, parent))
        for process, conn in subscribers:
            expect(conn, process, "ready", 120)

        seller, buyer = Session(host, int(port), *SELLER), Session(host, int(port), *BUYER)
        sessions += [seller, buyer]
        # join: probe trades until every socket has heard one message
        joined: set[int] = set()
        heard = dict(enumerate(per_process))
        heard.update({n: 0 for n in range(len(subscribers))})
        probes = 0
        deadline = time.monotonic() + 60
        while len(joined) < len(subscribers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{probes} probe trades in 60 s, and still only {sum(heard.values())} of"
                                   f" {args.subscribers} sockets heard anything (per process: {heard})")
            cross(seller, buyer, 1)
            probes += 1
            time.sleep(PROBE_INTERVAL_S)
            for n, (process, conn) in enumerate(subscribers):
                while conn.poll():
                    kind, value = conn.recv()
                    if kind == "joined":
                        joined.add(n)
                        heard[n] = per_process[n]
                    elif kind == "progress":
                        heard[n] = value
                if not process.is_alive():
                    raise RuntimeError(f"{process.name} exited with {process.exitcode}")
        join_s = time.monotonic() - t_connect
        say(f"  {args.subscribers} subscribers joined in {join_s:.1f} s ({probes} probe trades)")
        # idle: every subscriber connected, no trades (heartbeats only), for IDLE_S
        own = {f"subscriber process {n}": p.pid for n, (p, _) in enumerate(subscribers)}
        own["load driver (this process)"] = os.getpid()
        watched = {**pids, **own}
        notifier_pids = {label: pid for label, pid in pids.items() if label.startswith("notifier")}
        time.sleep(0.5)  # the last probe reaches everyone
        idle0, idle_t0 = {label: cpu_seconds(pid) for label, pid in notifier_pids.items()}, time.monotonic()
        time.sleep(IDLE_S)
        idle1, idle_t1 = {label: cpu_seconds(pid) for label, pid in notifier_pids.items()}, time.monotonic()
        idle_cpu = {label: round((idle1[label] - idle0[label]) / (idle_t1 - idle_t0), 3) for label in notifier_pids
                    if idle0.get(label) is not None and idle1.get(label) is not None}
        t_start = time.time_ns()
        for _, conn in subscribers:
            conn.send(("start", t_start))
        time.sleep(0.2)

        # load, with CPU over exactly the load window
        cpu0 = {label: cpu_seconds(pid) for label, pid in watched.items()}
        threads0 = {label: thread_cpu(pid) for label, pid in notifier_pids.items()}
        sub_threads0 = [thread_cpu(pid) for pid in own.values()]
        busy0 = machine_busy()
        crosses, start_wall, end_wall = drive(seller, buyer, args.rate, args.duration, args.batch)
        window = end_wall - start_wall
        cpu1 = {label: cpu_seconds(pid) for label, pid in watched.items()}
        threads1 = {label: thread_cpu(pid) for label, pid in notifier_pids.items()}
        sub_threads1 = [thread_cpu(pid) for pid in own.values()]
        busy1 = machine_busy()
        cpu = {label: round((cpu1[label] - cpu0[label]) / window, 3) for label in watched
               if cpu0.get(label) is not None and cpu1.get(label) is not None}
        notifier_threads = {label: {name: round((t - threads0[label].get(name, 0.0)) / window, 3)
                                    for name, t in threads1[label].items()} for label in notifier_pids}
        sub_threads: Counter = Counter()
        for before, after in zip(sub_threads0[:-1], sub_threads1[:-1]):
            for name, t in after.items():
                sub_threads["Python loop" if not name.startswith("ZMQbg") else name] += t - before.get(name, 0.0)
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1)

        # wait for every order's answer, then for the subscribers to go quiet
        deadline = time.monotonic() + 60
        while (seller.answered() < seller.sent or buyer.answered() < buyer.sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for _, conn in subscribers:
            conn.send(("stop", None))
        reports = [expect(conn, process, "done", 300) for process, conn in subscribers]
        fills = seller.lines[b"FILL"] + buyer.lines[b"FILL"]
        result = merge(reports, args, crosses, window)
        result.update({
            "run": run_no, "join_s": round(join_s, 2), "probe_trades": probes,
            "orders": {"sent": seller.sent + buyer.sent, "answered": seller.answered() + buyer.answered(),
                       "rejects": dict(seller.rejects + buyer.rejects), "fills": fills},
            "cpu_cores": {**cpu, "subscriber processes, total": round(sum(v for k, v in cpu.items()
                                                                          if k.startswith("subscriber")), 3),
                          "machine, all processes": round(busy, 3),
                          "not ours (other processes, kernel)": round(busy - sum(cpu.values()), 3)},
            "notifier_threads_cores": notifier_threads,
            "notifier_idle_cores": idle_cpu,  # subscribers connected, no trades: heartbeats only
            "subscriber_threads_cores": {k: round(v / window, 3) for k, v in sub_threads.items()},
        })
        return result
    finally:
        for s in sessions:
            try:
                s.close()
            except OSError:
                pass
        for process, _ in subscribers:
            if process.is_alive():
                process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
        if mesh is not None:
            mesh.close(15)
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if work.exists():  # a role was still closing its files
                time.sleep(1)
                shutil.rmtree(work, ignore_errors=True)


def merge(reports: list[dict], args, crosses: int, window: float) -> dict:
    """Spread, latency and loss over every subscriber of every process."""
    sockets = sum(r["sockets"] for r in reports)
    a = max(r["pre_max"] for r in reports) + 1  # the first chan_seq of the run
    b = max([max(r["last"]) for r in reports] + [a - 1])  # the highest seen, heartbeats included
    expected = b - a + 1
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    got: Counter = Counter()
    ts_first: dict[int, int] = {}
    events: dict[int, int] = {}
    latency: Counter = Counter()
    for r in reports:
        ts_first.update(r["ts_first"])
        events.update(r["events"])
        for seq, (lo, hi, n) in r["per_seq"].items():
            if seq not in first or lo < first[seq]:
                first[seq] = lo
            if seq not in last or hi > last[seq]:
                last[seq] = hi
            got[seq] += n
        latency.update(r["latency"])
    spreads = [(last[s] - first[s]) // 1000 for s in first]
    complete = [(last[s] - first[s]) // 1000 for s in first if got[s] == sockets]
    first_latency = [(first[s] - ts_first[s]) // 1000 for s in first]
    last_latency = [(last[s] - ts_first[s]) // 1000 for s in first]
    # loss per socket: the run's chan_seqs a..b it never received
    lost_per_socket, gap_events, sockets_with_loss = [], 0, 0
    for r in reports:
        for i, count in enumerate(r["counts"]):
            lost = expected - count
            lost_per_socket.append(lost)
            sockets_with_loss += lost > 0
        gap_events += sum(1 for _, lo, hi in r["gaps"] if hi >= a)
        gap_events += sum(1 for seen in r["last"] if seen < b)  # lost the tail (a heartbeat would show it)
    never = [s for s in range(a, b + 1) if s not in first]
    t0 = min(ts_first.values()) if ts_first else 0
    by_second: dict[int, list[int]] = {}
    for s in first:
        by_second.setdefault((ts_first[s] - t0) // 1_000_000_000, []).append(s)
    series = []
    for second in sorted(by_second):
        seqs = by_second[second]
        spread_s = sorted((last[s] - first[s]) // 1000 for s in seqs)
        series.append({"second": second, "messages": len(seqs),
                       "spread_p50_us": spread_s[len(spread_s) // 2], "spread_max_us": spread_s[-1],
                       "last_latency_max_us": max((last[s] - ts_first[s]) // 1000 for s in seqs)})
    trades = sum(events.values())
    span_ns = max(ts_first.values()) - min(ts_first.values()) if ts_first else 0
    return {
        "subscribers": sockets, "processes": len(reports),
        "crosses_sent": crosses, "offered_trades_per_s": args.rate,
        "trades_on_feed": trades, "trades_per_s": round(trades / window, 1),
        "messages": expected, "messages_per_s": round(expected / window, 1),
        "trades_per_message": round(trades / max(1, len(first)), 2),
        "feed_span_s": round(span_ns / 1e9, 2),
        "latency_us": counter_percentiles(latency),
        "first_subscriber_latency_us": list_percentiles(first_latency),
        "last_subscriber_latency_us": list_percentiles(last_latency),
        "spread_us": list_percentiles(spreads),
        "spread_us_complete_messages": list_percentiles(complete),
        "lost": {"messages_missed_total": sum(lost_per_socket), "sockets_with_loss": sockets_with_loss,
                 "max_missed_by_one_socket": max(lost_per_socket, default=0),
                 "gaps_resyncs_bookfeed_would_do": gap_events, "messages_no_subscriber_got": len(never)},
        "deliveries_per_s": round(sum(got.values()) / window, 1),
        "found_by_idle_sweep": sum(r["swept"] for r in reports),  # arrived while the sweep ran: fine
        # found by the sweep > 50 ms after the same process's first receipt: a missed wakeup (expected 0)
        "found_late_by_idle_sweep": sum(r["swept_late"] for r in reports),
        "per_second": series,  # by the second of the messages' ts_event, from the first
        "mean_rank": fairness(reports),  # each subscriber's mean arrival rank, 0 = always first, 1 = always last
    }


# -- summary ---------------------------------------------------------------------------------------

def describe(r: dict) -> str:
    lat, first_l, last_l, spread = (r["latency_us"], r["first_subscriber_latency_us"],
                                    r["last_subscriber_latency_us"], r["spread_us"])
    cpu = r["cpu_cores"]
    notifier = {k: v for k, v in cpu.items() if k.startswith("notifier")}
    threads = "; ".join(f"{label}: " + ", ".join(f"{name} {v:.2f}" for name, v in sorted(t.items()) if v >= 0.005)
                        for label, t in r["notifier_threads_cores"].items())
    engines = sum(v for k, v in cpu.items() if k.startswith("engine"))
    lost = r["lost"]
    lines = [
        f"  trades: {r['trades_on_feed']:,} on the feed = {r['trades_per_s']:,.1f}/s"
        f" (offered {r['offered_trades_per_s']:,.0f}/s); {r['messages']:,} messages = {r['messages_per_s']:,.1f}/s,"
        f" {r['trades_per_message']} trades/message; {r['deliveries_per_s']:,.0f} deliveries/s",
        f"  orders: {r['orders']['sent']:,} sent, {r['orders']['answered']:,} answered,"
        f" rejects {r['orders']['rejects'] or 0}",
        f"  latency, every receipt (ts_event of the oldest trade → receipt): p50 {us(lat['p50'])}"
        f"  p99 {us(lat['p99'])}  p99.9 {us(lat['p99.9'])}  max {us(lat['max'])}",
        f"    first subscriber p50 {us(first_l['p50'])} p99 {us(first_l['p99'])};"
        f" last subscriber p50 {us(last_l['p50'])} p99 {us(last_l['p99'])} max {us(last_l['max'])}",
        f"  spread first → last subscriber: p50 {us(spread['p50'])}  p99 {us(spread['p99'])}  max {us(spread['max'])}"
        f"  ({spread['count']:,} messages)",
        "  spread p50 by second of the run: " + " ".join(us(e["spread_p50_us"]) for e in r["per_second"]),
        "  " + describe_ranks(r["mean_rank"]),
        f"  lost: {lost['messages_missed_total']:,} message receipts on {lost['sockets_with_loss']} sockets"
        f" ({lost['gaps_resyncs_bookfeed_would_do']} gaps = BookFeed re-syncs; {lost['messages_no_subscriber_got']}"
        f" messages nobody got; {r['found_late_by_idle_sweep']} receipts late by a missed wakeup)",
        f"  CPU (cores of {os.cpu_count()}): " + ", ".join(f"{k} {v:.2f}" for k, v in notifier.items())
        + " (idle with these subscribers: " + ", ".join(f"{v:.2f}" for v in r["notifier_idle_cores"].values()) + ")"
        + f" [{threads}]; subscribers {cpu['subscriber processes, total']:.2f}"
        f" ({', '.join(f'{k} {v:.2f}' for k, v in r['subscriber_threads_cores'].items())});"
        f" gateway {cpu.get('gateway', 0):.2f}, engines {engines:.2f}, journal {cpu.get('journal-writer', 0):.2f},"
        f" load driver {cpu.get('load driver (this process)', 0):.2f};"
        f" machine {cpu['machine, all processes']:.2f}, not ours {cpu['not ours (other processes, kernel)']:.2f}",
    ]
    return "\n".join(lines)


def describe_ranks(f: dict) -> str:
    if not f["subscribers"]:
        return "mean arrival rank: no message reached two subscribers"
    per_process = " ".join("-" if v is None else f"{v:.2f}" for v in f["per_process_mean"])
    return (f"mean arrival rank per subscriber (0 = always first, 1 = always last): min {f['min']:.2f}"
            f"  p10 {f['p10']:.2f}  p50 {f['p50']:.2f}  p90 {f['p90']:.2f}  max {f['max']:.2f};"
            f" systematically early (< {EARLY}) {f['early']}, late (> {LATE}) {f['late']} of {f['subscribers']};"
            f" split-half correlation {f['split_half_correlation']}; per process {per_process}")


def verdict(r: dict, rate: float) -> tuple[bool, str]:
    spread_ok = r["spread_us"]["p99"] is not None and r["spread_us"]["p99"] <= TARGET_SPREAD_P99_US
    lost_ok = r["lost"]["messages_missed_total"] == 0
    rate_ok = r["trades_per_s"] >= 0.99 * rate and not r["orders"]["rejects"]
    ok = spread_ok and lost_ok and rate_ok
    return ok, (f"spread p99 {us(r['spread_us']['p99'])} {'≤' if spread_ok else '>'} 5 ms,"
                f" {'nothing' if lost_ok else 'something'} lost, rate {'met' if rate_ok else 'NOT met'}")


def aggregate(results: list[dict]) -> dict:
    """Median and range over the runs of the headline figures."""
    def pick(path):
        values = []
        for r in results:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                values.append(v)
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}
    paths = {
        "trades_per_s": ("trades_per_s",), "messages_per_s": ("messages_per_s",),
        "trades_per_message": ("trades_per_message",),
        "latency_p50_us": ("latency_us", "p50"), "latency_p99_us": ("latency_us", "p99"),
        "latency_max_us": ("latency_us", "max"),
        "first_latency_p50_us": ("first_subscriber_latency_us", "p50"),
        "last_latency_p99_us": ("last_subscriber_latency_us", "p99"),
        "spread_p50_us": ("spread_us", "p50"), "spread_p99_us": ("spread_us", "p99"),
        "spread_max_us": ("spread_us", "max"),
        "mean_rank_p10": ("mean_rank", "p10"), "mean_rank_p90": ("mean_rank", "p90"),
        "mean_rank_min": ("mean_rank", "min"), "mean_rank_max": ("mean_rank", "max"),
        "early_subscribers": ("mean_rank", "early"), "late_subscribers": ("mean_rank", "late"),
        "rank_split_half_corr": ("mean_rank", "split_half_correlation"),
        "messages_missed": ("lost", "messages_missed_total"),
        "gaps": ("lost", "gaps_resyncs_bookfeed_would_do"),
        "cpu_notifier": ("cpu_cores", "notifier"),
        "cpu_notifier_idle": ("notifier_idle_cores", "notifier"),
        "cpu_subscribers": ("cpu_cores", "subscriber processes, total"),
        "cpu_gateway": ("cpu_cores", "gateway"), "cpu_load_driver": ("cpu_cores", "load driver (this process)"),
        "cpu_machine": ("cpu_cores", "machine, all processes"),
        "cpu_not_ours": ("cpu_cores", "not ours (other processes, kernel)"),
    }
    return {name: pick(path) for name, path in paths.items()}


def lanes_list(text: str) -> list[int]:
    """``--lanes 1,4`` → [1, 4]."""
    values = [int(v) for v in text.split(",")]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: lanes are whole numbers ≥ 1, separated by commas")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000, help="SUB sockets in all")
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--rate", type=float, default=1000.0, help="trades per second offered")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="crosses per socket write")
    parser.add_argument("--io-threads", type=int, default=1, help="notifier.io_threads of the mesh")
    parser.add_argument("--notifiers", type=int, default=1,
                        help="notifier processes; K > 1 starts K-1 more and spreads the subscribers over them")
    parser.add_argument("--lanes", type=lanes_list, default=[1], metavar="K[,K...]",
                        help="public endpoints per notifier (notifier.lanes: K-1 more), subscribers spread over"
                             " them; several values (1,4) make each run once per value, side by side")
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp", help="of the public feed")
    parser.add_argument("--sub-io-threads", type=int, default=1, help="ZMQ I/O threads per subscriber process")
    parser.add_argument("--sub-rcvhwm", type=int, default=100_000,
                        help="RCVHWM of each SUB socket (libzmq's default, 1000, can abort a lagging"
                             " subscriber process: libzmq issue #3937)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="more edits of the mesh config, dotted keys, YAML values (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="write every figure of every run here")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (config, journal, logs)")
    args = parser.parse_args(argv)
    if args.subscribers < args.processes or args.processes < 1:
        parser.error("need at least one subscriber per process")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (a background job)
    soft, hard = raise_fd_limit()
    per_process = -(-args.subscribers // args.processes)
    if soft < 2 * per_process + 256 or soft < 2 * args.subscribers // args.notifiers + 256:
        print(f"warning: RLIMIT_NOFILE is {soft} (hard {hard}); the notifier needs about one fd per subscriber and"
              f" each subscriber process two per socket", file=sys.stderr)
    info = machine()
    print(f"fan-out: {args.subscribers} subscribers in {args.processes} processes, {args.rate:g} trades/s for"
          f" {args.duration:g} s, notifier io_threads {args.io_threads}, {args.notifiers} notifier(s),"
          f" {args.transport}; RLIMIT_NOFILE {soft}; {info['cpus']} CPUs ({info['cpu_model']}),"
          f" load average {' '.join(info['loadavg_before'])}", flush=True)
    results = []
    try:
        for n, lanes in ((n, lanes) for n in range(1, args.runs + 1) for lanes in args.lanes):
            print(f"run {n}/{args.runs}" + (f", {lanes} lane(s)" if args.lanes != [1] else ""), flush=True)
            r = one_run(argparse.Namespace(**{**vars(args), "lanes": lanes}), n, lambda line: print(line, flush=True))
            r["lanes"] = lanes
            ok, why = verdict(r, args.rate)
            r["target_met"] = ok
            print(describe(r))
            at_target = args.subscribers >= 1000 and args.rate >= 1000
            print(f"  target (1,000 subscribers get every trade at 1,000/s, spread p99 ≤ 5 ms, nothing lost):"
                  f" {'not met' if not ok else 'MET' if at_target else 'n/a (below the target load)'}"
                  f" — {why}", flush=True)
            results.append(r)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    summaries = {lanes: aggregate([r for r in results if r["lanes"] == lanes]) for lanes in args.lanes}
    if args.runs > 1 or len(args.lanes) > 1:
        print(f"over {args.runs} runs (median, min..max):")
        rows = [name for name, v in summaries[args.lanes[0]].items() if v is not None]
        if len(args.lanes) > 1:
            print(f"  {'':22s}" + "".join(f"{f'{lanes} lane(s)':>32s}" for lanes in args.lanes))
        for name in rows:
            f = ",.3f" if name.startswith(("mean_rank", "rank_")) else ",.1f"
            cells = [summaries[lanes][name] for lanes in args.lanes]
            print(f"  {name:22s}" + "".join(f"{v['median']:>12{f}} {v['min']:>9{f}} ..{v['max']:>9{f}}" if v
                                            else f"{'-':>32s}" for v in cells))
    if args.json:
        summary = summaries[args.lanes[0]] if len(args.lanes) == 1 else {str(k): v for k, v in summaries.items()}
        Path(args.json).write_text(json.dumps({"options": vars(args), "machine": info, "runs": results,
                                               "summary": summary}, indent=2, default=str))
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
