#!/usr/bin/env python
"""The floor under the mesh's latency: one ZeroMQ hop between two Python processes on this machine.

An ACK crosses six process boundaries (client → gateway → engine → journal writer → engine →
gateway → client), so six of these hops are its floor before any work is done. The script
bounces a small message between two processes with PUSH/PULL, the receiver waiting in a
zmq.Poller as every role does, and reports the one-way hop (round trip / 2) over tcp on
127.0.0.1 and over ipc:

    .venv/bin/python scripts/bench_hops.py --rounds 5000 --runs 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time

import zmq

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


def one_run(base: str, rounds: int, pause_s: float) -> list[float]:
    """One-way hop times in µs (round trip / 2), ``rounds`` of them."""
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
    hops = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        push.send(b"x" * 64)
        pull.recv()
        hops.append((time.perf_counter_ns() - start) / 2000)
        if pause_s:
            time.sleep(pause_s)  # the processes go idle between messages, as at moderate load
    push.send(STOP)
    process.join(10)
    ctx.destroy(linger=0)
    return sorted(hops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause-us", type=float, default=100.0, help="idle time between round trips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for transport, base in (("tcp", "tcp://127.0.0.1"), ("ipc", f"ipc://{tmp}/hop")):
            p50s, p99s = [], []
            for _ in range(args.runs):
                hops = one_run(base, args.rounds, args.pause_us / 1e6)
                p50s.append(hops[len(hops) // 2])
                p99s.append(hops[int(len(hops) * 0.99)])
            print(f"{transport}: one hop p50 {statistics.median(p50s):.0f} µs ({min(p50s):.0f}..{max(p50s):.0f}),"
                  f" p99 {statistics.median(p99s):.0f} µs ({min(p99s):.0f}..{max(p99s):.0f});"
                  f" six hops (an ACK's path) p50 ≈ {6 * statistics.median(p50s):.0f} µs"
                  f"  [{args.runs} runs × {args.rounds} round trips]")


if __name__ == "__main__":
    main()
