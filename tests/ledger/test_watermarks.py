"""A ledger shard's view of how far the journal holds each engine: the newest watermark of each,
taken when its check asks, without reading (or waking for) every one the journal writer sends."""

from __future__ import annotations

import zmq

from exchange.ledger.watermarks import EngineWatermarks
from exchange.testing.mesh import wait_until
from exchange.wire import sockets
from exchange.wire.messages import Decoder, Durable, durable_prefix, encode

durable = Decoder(Durable).decode


def test_each_engine_is_read_at_its_newest_watermark_and_only_its_own(tmp_path):
    endpoint = f"ipc://{tmp_path}/watermarks"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # no limit: the flood below must reach the probe whole
    pub.bind(endpoint)
    probe = ctx.socket(zmq.SUB)  # reads every watermark of e1: once it has the last, so has the shard's socket
    probe.setsockopt(zmq.RCVHWM, 0)
    probe.setsockopt(zmq.SUBSCRIBE, durable_prefix("e1"))
    probe.connect(endpoint)
    watermarks = EngineWatermarks(ctx, endpoint, ["e1", "e10"])
    try:
        def publish(engine: str, seq: int) -> None:
            pub.send(encode(Durable(engine, 1, seq, seq)))

        def subscribed() -> bool:  # a PUB drops what it sends before a subscription reaches it
            publish("e1", 1)
            publish("e10", 1)
            return watermarks.read() == {"e1": 1, "e10": 1} and bool(sockets.drain(probe))

        wait_until(subscribed, 10, "the subscriptions to reach the publisher")
        publish("e1", -1)  # an epoch refused: it says nothing of how far the journal holds e1
        for seq in range(1000, 2000):
            publish("e1", seq)
        publish("e10", 7)
        publish("e10", 99_999)  # e10's prefix must not catch e1's, nor e1's e10's
        seen: list[int] = []

        def probe_has_all() -> bool:
            seen.extend(durable(frame).seq for frame, in sockets.drain(probe))
            return seen[-1:] == [1999]

        wait_until(probe_has_all, 10, "the probe to read every watermark of e1")
        # one message kept per engine: the first read after the flood takes its newest, not its first
        assert watermarks.read()["e1"] > 1000
        wait_until(lambda: watermarks.read()["e1"] == 1999, 10, "e1's newest watermark")
        wait_until(lambda: watermarks.read()["e10"] == 99_999, 10, "e10's newest watermark")
        assert watermarks.read() == {"e1": 1999, "e10": 99_999}  # nothing left to take, nothing taken back
    finally:
        watermarks.close()
        probe.close(0)
        pub.close(0)
        ctx.term()
