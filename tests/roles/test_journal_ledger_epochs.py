"""A real journal writer, with this test playing an engine and a ledger shard at it (no other role
runs): a shard that restarts before the journal had the batch holding an order's hold gets the
engine's epoch refused (``Durable`` batch -1) as its new epoch opens, though nothing else arrives."""

from __future__ import annotations

import time

import pytest
import zmq

from exchange.config import load_config
from exchange.journal import handshake
from exchange.testing.mesh import Role, loopback_config
from exchange.wire.messages import Decoder, Durable, EventBatch, OpenEpoch, durable_prefix, encode

pytestmark = pytest.mark.timeout(90)


def wait_for_durable(sub: zmq.Socket, wanted, seconds: float) -> list[Durable]:
    """The ``Durable``s ``sub`` receives until one is ``wanted`` (it is the last) or ``seconds`` pass."""
    got, decoder = [], Decoder(Durable)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sub.poll(int(left * 1000) + 1):
            got.append(decoder.decode(sub.recv_multipart()[-1]))
            if wanted(got[-1]):
                break
    return got


def test_an_engine_waiting_on_a_ledger_batch_its_shard_lost_is_told_to_start_again_when_the_shard_restarts(tmp_path):
    """The shard put an order's hold in its batch 1 and forwarded it; the engine matched it, and its
    batch is held until ledger-0's batch 1 is written. The shard dies before that batch reached the
    journal and starts again: that batch is lost for good. The engine used to be told only when its
    next batch arrived, so on an idle market it went on matching in an epoch never to be written, and
    the next order it took was answered UNAVAILABLE with that epoch."""
    path = loopback_config(tmp_path, accounts=True)
    config = load_config(path)
    writer = Role(path, "journal-writer")
    ctx = zmq.Context()
    try:
        writer.wait_for("ready: journal", 60)
        ledger = handshake.ask(config, OpenEpoch("ledger-0", 1), None, wait_s=10)
        engine = handshake.ask(config, OpenEpoch("e1", 2), None, wait_s=10)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, durable_prefix("e1"))
        sub.connect(config.journal.watermarks)
        push = ctx.socket(zmq.PUSH)
        push.connect(config.journal.events)
        # subscribed once a watermark of e1 comes (they are repeated every 0.2 s)
        assert wait_for_durable(sub, lambda d: d.epoch == engine.epoch, 10)[-1].epoch == engine.epoch
        push.send(encode(EventBatch("e1", engine.epoch, engine.batch + 1, engine.seq + 1, engine.seq, [],
                                    after=[("ledger-0", ledger.epoch, ledger.batch + 1)])))
        writer.wait_for(r"ledger-0: batches missing after 0; asking for a replay", 10)  # the batch is held

        restarted = handshake.ask(config, OpenEpoch("ledger-0", 3), None, wait_s=10)
        assert restarted.epoch > ledger.epoch and restarted.batch == ledger.batch  # its batch 1 is lost

        seen = wait_for_durable(sub, lambda d: d.epoch == engine.epoch and d.batch < 0, 5)
        assert seen and seen[-1] == Durable("e1", engine.epoch, -1, -1), (
            f"e1 not told its epoch is refused (watermarks: {seen[-3:]}); journal writer:\n{writer.text()[-1500:]}")
        assert f"e1 epoch {engine.epoch}: a batch of it needs a ledger batch that its shard lost" in writer.text()
        assert all(d.batch <= engine.batch for d in seen)  # nothing of the refused epoch was written
    finally:
        ctx.destroy(linger=0)
        writer.kill()
