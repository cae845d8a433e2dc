#!/usr/bin/env python3
"""The fan-out floor: one bare ZMQ PUB to N SUB sockets on this machine, no exchange at all.

    .venv/bin/python scripts/bench_fanout_floor.py --subscribers 1000 --processes 4 --rate 10 --duration 10 --runs 3

``scripts/bench_fanout.py`` measures the notifier inside a running mesh under a trade flow. This
script removes everything of ours: no mesh, no engines, no journal, no notifier loop, no decoding.
One process binds a PUB socket (the mesh's socket options, the notifier's SNDHWM) and sends
``--rate`` messages per second, each ``--size`` bytes, stamped with a sequence number. ``--processes``
processes hold ``--subscribers`` SUB sockets between them, subscribed to everything, and run the
leanest receive loop we could write: a level-triggered epoll over the sockets' ZMQ_FDs; on a
wakeup, drain the socket and append (sequence, ``time.time_ns()``) to two arrays. Nothing else
happens until the run is over.

Per message it reports the **spread**: latest minus earliest receipt over all subscribers, the
same figure as bench_fanout.py's, here with the publisher's own Python, the mesh and the trade load
all absent. It also reports messages lost (every subscriber must get every message) and CPU: the
publisher's ZMQ I/O threads and the subscriber processes, per delivery.

Whatever spread this measures is a lower bound for the notifier's on the same machine: the
notifier's public socket does the same sends (an XPUB is a PUB that also reads subscriptions),
and in a mesh the same two cores also run the gateway, the engines and the journal writer.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import signal
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

from bench_fanout import list_percentiles, machine, raise_fd_limit, thread_cpu
from exchange.bench.latency import us
from exchange.bench.runner import expect
from exchange.bench.target import machine_busy

PUBLISHER_HWM = 10_000  # the notifier's SUBSCRIBER_HWM
SUBSCRIBER_HWM = 100_000  # as bench_fanout.py's subscribers
JOIN_TIMEOUT_S = 30.0
QUIET_S = 1.0  # a subscriber process is done once nothing came for this long after the last message


def subscriber_main(endpoint: str, count: int, conn) -> None:
    """Hold ``count`` SUB sockets on ``endpoint``; receive until told the last sequence, then report."""
    import zmq

    from exchange.wire import sockets

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_fd_limit()
    ctx = zmq.Context()
    ctx.linger = 0
    ctx.max_sockets = max(1024, count + 64)
    socks = [sockets.socket(ctx, zmq.SUB, connect=endpoint, rcvhwm=SUBSCRIBER_HWM) for _ in range(count)]
    for sock in socks:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    epoll = select.epoll()
    recv_of = {}
    for sock in socks:
        fd = sock.getsockopt(zmq.FD)
        recv_of[fd] = sock.recv
        epoll.register(fd, select.EPOLLIN)
    control = conn.fileno()
    epoll.register(control, select.EPOLLIN)
    seqs, times = array("q"), array("q")
    joined: set[int] = set()  # sockets that got a probe (sequence 0)
    last_seq = None  # told by the parent once everything is sent
    last_receipt = time.monotonic()
    Again, NOBLOCK, time_ns = zmq.Again, zmq.NOBLOCK, time.time_ns

    def drain(fd: int) -> None:
        recv = recv_of[fd]
        while True:
            try:
                body = recv(NOBLOCK)
            except Again:  # the failing recv also re-arms the socket's ZMQ_FD
                return
            t = time_ns()
            seq = int(body[:12])
            if seq:
                seqs.append(seq)
                times.append(t)
            elif fd not in joined:
                joined.add(fd)
                if len(joined) == count:
                    conn.send(("joined", None))

    conn.send(("ready", os.getpid()))
    cpu_start = None
    while True:
        ready = epoll.poll(0.1)
        if not ready:  # idle: sweep every socket, so a message epoll did not announce is still found
            for fd in recv_of:
                drain(fd)
        for fd, _ in ready:
            if fd == control:
                kind, value = conn.recv()
                if kind == "start":
                    cpu_start = os.times()
                elif kind == "last":
                    last_seq = value
                continue
            drain(fd)
            last_receipt = time.monotonic()
        if last_seq is not None and time.monotonic() - last_receipt > QUIET_S:
            break
    cpu_end = os.times()
    cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system) if cpu_start else 0.0
    conn.send(("done", {"seqs": seqs.tobytes(), "times": times.tobytes(), "cpu_s": cpu}))
    epoll.close()
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


def one_run(args, folder: Path) -> dict:
    import zmq

    from exchange.wire import sockets

    ctx = zmq.Context(io_threads=args.io_threads)
    ctx.linger = 0
    if args.transport == "tcp":
        pub = sockets.socket(ctx, zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, PUBLISHER_HWM)
        pub.setsockopt(zmq.BACKLOG, 1024)
        endpoint = f"tcp://127.0.0.1:{pub.bind_to_random_port('tcp://127.0.0.1')}"
    else:
        endpoint = f"ipc://{folder}/floor.sock"
        pub = sockets.socket(ctx, zmq.PUB, bind=endpoint)
        pub.setsockopt(zmq.SNDHWM, PUBLISHER_HWM)
    shares = [args.subscribers // args.processes + (i < args.subscribers % args.processes)
              for i in range(args.processes)]
    mp = multiprocessing.get_context("fork")
    workers = []
    try:
        for n, share in enumerate(shares):
            parent, child = mp.Pipe()
            process = mp.Process(target=subscriber_main, args=(endpoint, share, child), name=f"subscriber-{n}",
                                 daemon=True)
            process.start()
            workers.append((parent, process))
        for conn, process in workers:
            expect(conn, process, "ready", JOIN_TIMEOUT_S)
        # probes (sequence 0) until every socket has one: no subscriber is a slow joiner afterwards
        pending = list(workers)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError("subscribers did not all join")
            pub.send(b"%012d" % 0)
            time.sleep(0.1)
            pending = [(c, p) for c, p in pending if not (c.poll() and c.recv()[0] == "joined")]
        time.sleep(0.5)
        for conn, _ in workers:
            conn.send(("start", None))
        pad = b"x" * max(0, args.size - 12)
        total = int(args.rate * args.duration)
        io_before = sum(v for k, v in thread_cpu(os.getpid()).items() if k.startswith("ZMQbg/IO"))
        busy_before = machine_busy()
        start = time.monotonic()
        for k in range(1, total + 1):
            delay = start + k / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pub.send(b"%012d" % k + pad)
        sent_s = time.monotonic() - start
        for conn, _ in workers:
            conn.send(("last", total))
        reports = [expect(conn, process, "done", args.duration + 60) for conn, process in workers]
        io_cpu = sum(v for k, v in thread_cpu(os.getpid()).items() if k.startswith("ZMQbg/IO")) - io_before
        busy_after = machine_busy()
    finally:
        for conn, process in workers:
            process.kill()
            process.join(5)
        pub.close(linger=0)
        ctx.term()
    earliest, latest, received = {}, {}, {}
    for report in reports:
        seqs, times = array("q"), array("q")
        seqs.frombytes(report["seqs"])
        times.frombytes(report["times"])
        for seq, t in zip(seqs, times):
            if seq in earliest:
                if t < earliest[seq]:
                    earliest[seq] = t
                elif t > latest[seq]:
                    latest[seq] = t
                received[seq] += 1
            else:
                earliest[seq] = latest[seq] = t
                received[seq] = 1
    lost = sum(args.subscribers - received.get(k, 0) for k in range(1, total + 1))
    spreads = [(latest[s] - earliest[s]) // 1000 for s in earliest]
    deliveries = total * args.subscribers
    sub_cpu = sum(r["cpu_s"] for r in reports)
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]) * (os.cpu_count() or 1)
    return {"spread_us": list_percentiles(spreads), "lost": lost, "messages": total, "sent_s": round(sent_s, 2),
            "publisher_io_us_per_delivery": round(io_cpu / deliveries * 1e6, 2),
            "subscribers_us_per_delivery": round(sub_cpu / deliveries * 1e6, 2),
            "machine_busy_cores": round(busy, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000, help="SUB sockets in all")
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=120, help="bytes per message (a one-trade message is ~120)")
    parser.add_argument("--io-threads", type=int, default=1, help="ZMQ I/O threads of the publisher")
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp")
    parser.add_argument("--json", metavar="FILE", help="write every run's figures here")
    args = parser.parse_args(argv)
    if args.subscribers < args.processes or args.size < 12:
        parser.error("need at least one subscriber per process and --size >= 12")
    soft, hard = raise_fd_limit()
    if soft < args.subscribers + 256:
        parser.error(f"RLIMIT_NOFILE is {soft}; raise the hard limit (ulimit -Hn) to at least {args.subscribers + 256}")
    print(f"{args.subscribers} subscribers in {args.processes} processes, {args.rate:g} messages/s of {args.size} B "
          f"for {args.duration:g} s, {args.transport}, publisher io_threads {args.io_threads}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="fanout-floor-") as folder:
        for n in range(1, args.runs + 1):
            r = one_run(args, Path(folder))
            runs.append(r)
            s = r["spread_us"]
            print(f"run {n}: spread p50 {us(s['p50'])} p99 {us(s['p99'])} max {us(s['max'])}; lost {r['lost']}; "
                  f"per delivery: publisher I/O {r['publisher_io_us_per_delivery']} µs, subscribers "
                  f"{r['subscribers_us_per_delivery']} µs; machine busy {r['machine_busy_cores']} cores", flush=True)

    def summary(values: list[float]) -> str:
        return f"{us(statistics.median(values))} ({us(min(values))}..{us(max(values))})"

    print(f"spread p50 {summary([r['spread_us']['p50'] for r in runs])}, "
          f"p99 {summary([r['spread_us']['p99'] for r in runs])}; lost {sum(r['lost'] for r in runs)} "
          f"(median and range over {len(runs)} runs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine(), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
