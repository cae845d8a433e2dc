"""Notifier role: fans the engines' market data out to any number of subscribers.

Sockets:
    upstream    XSUB  connect  → every engine's PUB
    downstream  XPUB  bound    ← subscribers (ZMQ SUB), topics ``md.<SYMBOL>.<channel>|``

Messages pass through unchanged, one [topic, MarketData] message per engine release, so fan-out
costs are paid per batch. Subscriptions travel upstream so engines could filter; the engines
publish everything anyway. PUB drops for a subscriber that cannot keep up: it sees the gap in
``chan_seq`` and re-syncs.
"""

from __future__ import annotations

import logging

import zmq

from exchange import mesh
from exchange.config import Config

log = logging.getLogger(__name__)

SUBSCRIBER_HWM = 10_000
MAX_SUBSCRIPTION_SIZE = 4096


def run(config: Config, name: str = "notifier") -> None:
    """Run the notifier until SIGINT or SIGTERM."""
    stopper = mesh.Stopper()
    ctx = mesh.context()
    downstream = mesh.socket(ctx, zmq.XPUB, max_msg_size=MAX_SUBSCRIPTION_SIZE)  # ← subscribers
    downstream.setsockopt(zmq.SNDHWM, SUBSCRIBER_HWM)
    downstream.setsockopt(zmq.BACKLOG, 1024)
    downstream.bind(config.notifier.publish)
    upstream = mesh.socket(ctx, zmq.XSUB)  # → engines
    for engine in config.engines:
        upstream.connect(engine.publish)
    log.info("ready: market data on %s from %d engines", config.notifier.publish, len(config.engines))
    poller = zmq.Poller()
    poller.register(upstream, zmq.POLLIN)
    poller.register(downstream, zmq.POLLIN)
    forwarded = 0
    try:
        while not stopper.requested:
            ready = dict(poller.poll(100))
            if downstream in ready:
                for parts in mesh.drain(downstream):
                    if len(parts) == 1 and parts[0][:1] in (b"\x00", b"\x01"):
                        upstream.send(parts[0])
            if upstream in ready:
                for parts in mesh.drain(upstream):
                    downstream.send_multipart(parts)
                    forwarded += 1
    finally:
        upstream.close()
        downstream.close()
        ctx.term()
        log.info("stopped: %d messages forwarded", forwarded)
