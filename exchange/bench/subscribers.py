"""The market data subscriber processes: latency, gaps and arrival times of the public channels."""

from __future__ import annotations

import os
import signal
import time

from hdrh.histogram import HdrHistogram

from exchange.bench import latency
from exchange.bench.latency import HIGHEST_US

SPREAD_SAMPLE = 4  # market data spread: every message with chan_seq % 4 == 0


def subscriber_main(endpoint: str, symbols: list[str], conn, stop) -> None:
    """Receive every public channel of ``symbols``; record latency, gaps and sampled arrival times."""
    import zmq

    from exchange.wire import sockets
    from exchange.wire.messages import Decoder, MarketData, topic

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = sockets.context()
    sock = sockets.socket(ctx, zmq.SUB, connect=endpoint)
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
        for parts in sockets.drain(sock):
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
            latency.record(histogram, latencies)
            latencies.clear()
    latency.record(histogram, latencies)
    sock.close()
    ctx.term()
    times = os.times()
    conn.send(("done", {"messages": messages, "gaps": gaps, "histogram": histogram.encode(),
                        "arrivals": arrivals, "cpu_s": times.user + times.system}))
