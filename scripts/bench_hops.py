#!/usr/bin/env python
"""The floor under the mesh's latency: one ZeroMQ hop between two Python processes on this machine.

An ACK crosses five process boundaries (client → gateway → engine → journal writer → gateway →
client), so five of these hops are its floor before any work is done. The script bounces a small
message between two processes with PUSH/PULL, the receiver waiting in a zmq.Poller as every role
does, and reports the one-way hop (round trip / 2) over tcp on 127.0.0.1 and over ipc, and the CPU
both processes spent per hop (a send, a wake-up and a receive), with ``--pause-us`` of idle time
between round trips (at 1,000 orders/s a role waits about 1 ms between two; at 5/s, 200 ms):

    .venv/bin/python scripts/bench_hops.py --rounds 5000 --runs 5
    .venv/bin/python scripts/bench_hops.py --rounds 3000 --runs 3 --pause-us 1000      # as at 1,000/s
    .venv/bin/python scripts/bench_hops.py --rounds 100 --runs 3 --pause-us 200000     # an idle order
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time

import zmq

from exchange.bench.latency import pick

STOP = b"stop"


def echo(inbound: str, outbound: str) -> None:
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.connect(inbound)
    push.connect(outbound)
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    while True:
        poller.poll(100)
        try:
            message = pull.recv(zmq.NOBLOCK)
        except zmq.Again:
            continue
        if message == STOP:
            break
        push.send(message)
    ctx.destroy(linger=0)


def one_run(base: str, rounds: int, pause_s: float) -> tuple[list[float], float]:
    """One-way hop times in µs (round trip / 2), ``rounds`` of them, and the CPU µs both
    processes spent per hop."""
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    if base.startswith("tcp"):
        push.bind_to_random_port(base)
        pull.bind_to_random_port(base)
    else:
        push.bind(base + "-out")
        pull.bind(base + "-back")
    process = multiprocessing.Process(target=echo, args=(push.last_endpoint.decode(), pull.last_endpoint.decode()))
    process.start()
    push.send(b"warm")
    pull.recv()
    cpu_before = time.process_time()
    hops = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        push.send(b"x" * 64)
        pull.recv()
        hops.append((time.perf_counter_ns() - start) / 2000)
        if pause_s:
            time.sleep(pause_s)  # the processes go idle between messages, as at moderate load
    cpu = time.process_time() - cpu_before
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    push.send(STOP)
    process.join(10)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ctx.destroy(linger=0)
    # the echo process's whole life (start-up included, so this errs high), once it has ended
    cpu += (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    return sorted(hops), cpu * 1e6 / (2 * rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause-us", type=float, default=100.0, help="idle time between round trips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for transport, base in (("tcp", "tcp://127.0.0.1"), ("ipc", f"ipc://{tmp}/hop")):
            p50s, p99s, cpus = [], [], []
            for _ in range(args.runs):
                hops, cpu = one_run(base, args.rounds, args.pause_us / 1e6)
                p50s.append(pick(hops, 0.5))  # nearest rank (hops[len // 2] was one rank above it)
                p99s.append(pick(hops, 0.99))
                cpus.append(cpu)
            print(f"{transport}: one hop p50 {statistics.median(p50s):.0f} µs ({min(p50s):.0f}..{max(p50s):.0f}),"
                  f" p99 {statistics.median(p99s):.0f} µs ({min(p99s):.0f}..{max(p99s):.0f});"
                  f" five hops (an ACK's path) p50 ≈ {5 * statistics.median(p50s):.0f} µs;"
                  f" CPU per hop {statistics.median(cpus):.0f} µs ({min(cpus):.0f}..{max(cpus):.0f})"
                  f"  [{args.runs} runs × {args.rounds} round trips, {args.pause_us:.0f} µs apart]")


if __name__ == "__main__":
    main()
