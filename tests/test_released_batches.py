"""The journal writer passes each written engine batch on; the gateway answers from it, once each."""

from __future__ import annotations

import time

import zmq

from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, ORDER_EVENTS, PlaceOrder
from exchange.core.orders import Side
from exchange.engine.batches import Engine
from exchange.gateway.released import ReleasedBatches
from exchange.journal.readers import EnginePosition
from exchange.journal.release import Release
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer
from exchange.wire.messages import RELEASED, BatchHeader, Decoder, EventBatch, Request, Requests, encode
from tests.test_recovery import CONFIG, INSTRUMENTS

S = 1_000_000_000


def batch_of(engine: Engine, *commands, now_ns: int = 0) -> bytes:
    return engine.handle_requests([[encode([Request("gw/1", 7, n, c) for n, c in enumerate(commands)])]],
                                  Decoder(Requests), now_ns)


def test_a_batch_answers_each_request_with_its_order_events_and_a_late_order_not_at_all():
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    engine.max_order_age_ns = 5 * S
    now = 100 * S
    late = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, ts_received=now - 6 * S)
    sell = PlaceOrder("bob", "BTC-USD", Side.SELL, 1, 100_000, ts_received=now)
    buy = PlaceOrder("carol", "BTC-USD", Side.BUY, 1, 100_000, ts_received=now)
    nothing_to_cancel = CancelAll("dave", None, now)
    batch = Decoder(EventBatch).decode(batch_of(engine, late, sell, buy, nothing_to_cancel, now_ns=now))
    replies = batch.replies()
    assert [(r.gateway, r.session, r.request_id) for r in replies] == [("gw/1", 7, 1), ("gw/1", 7, 2), ("gw/1", 7, 3)]
    assert all(isinstance(e, ORDER_EVENTS) for r in replies for e in r.events)
    # the taker's answer holds the match, both sides' fills in one event (the gateway tells each owner theirs)
    assert [type(e).__name__ for e in replies[1].events] == ["OrderAccepted", "Match"]
    assert replies[2].events == []  # a CancelAll that found nothing is still answered


def four_batches() -> list[EventBatch]:
    """Engine e1's batches 1..4, one resting order each, as a gateway decodes them."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    decode = Decoder(EventBatch).decode
    return [decode(batch_of(engine, PlaceOrder("a", "BTC-USD", Side.BUY, 1, 100_000 + i, ts_received=1)))
            for i in range(4)]


def test_the_gateway_takes_each_batch_once_and_counts_the_ones_it_never_got():
    batches, released = four_batches(), ReleasedBatches()
    assert released.missing(batches[0]) is None  # the first batch this gateway sees
    assert len(released.replies(batches[0])) == 1
    assert released.replies(batches[0]) == []  # passed on again: answered once only
    assert released.missing(batches[0]) is None and released.missing(batches[1]) is None
    assert released.missing(batches[2]) == (batches[0].batch, batches[2].batch)  # batch 2 never came
    assert len(released.replies(batches[2])) == 1  # and the journal could not give it: skipped
    assert released.missed == 1
    assert released.replies(batches[1]) == []  # too late: its requests have been given up
    assert len(released.replies(batches[3])) == 1


def test_batches_taken_from_the_journal_fill_the_gap_in_order_and_none_is_skipped():
    batches, released = four_batches(), ReleasedBatches()
    released.replies(batches[0])
    after, before = released.missing(batches[3])
    for batch in batches[1:3]:  # what the gateway reads from the journal: after < batch < before
        assert after < batch.batch < before
        assert len(released.replies(batch)) == 1
    assert released.missing(batches[3]) is None  # the gap is filled
    assert len(released.replies(batches[3])) == 1 and released.missed == 0


def pair(ctx, tmp_path, name):
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/{name}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"ipc://{tmp_path}/{name}")
    return push, pull


def received(sock: zmq.Socket) -> list[list[bytes]]:
    out = []
    while sock.poll(1000 if not out else 200):
        out.append(sock.recv_multipart())
    return out


def notifier_feed(ctx, tmp_path):
    """The journal writer's PUB and a notifier's SUB of its released batches, joined (a PUB drops
    until the subscription has arrived, so a probe goes until one gets through)."""
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/watermarks")
    sub = ctx.socket(zmq.SUB)
    sub.connect(f"ipc://{tmp_path}/watermarks")
    sub.setsockopt(zmq.SUBSCRIBE, RELEASED)
    while not sub.poll(50):
        pub.send_multipart([RELEASED, b"probe"])
    received(sub)
    return pub, sub


def test_written_engine_batches_go_to_the_gateway_every_ledger_shard_and_the_notifiers_and_again_at_a_start(
        tmp_path):
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    frames = [batch_of(engine, PlaceOrder("a", "BTC-USD", Side.BUY, 1, 100_000 + i, ts_received=1)) for i in range(3)]
    ledger_batch = encode(EventBatch("ledger-0", 1, 1, 0, -1, []))
    headers = []
    for frame in [*frames, ledger_batch]:
        header = Decoder(BatchHeader).decode(frame)
        header.body = frame
        headers.append(header)
    writer = Writer(open_db(tmp_path / "journal.db"), CONFIG.instrument_map(), ["e1", "ledger-0"])
    ctx = zmq.Context()
    try:
        (to_gateway, gateway), (to_l0, l0), (to_l1, l1) = (pair(ctx, tmp_path, n) for n in ("gw", "l0", "l1"))
        to_notifiers, notifier = notifier_feed(ctx, tmp_path)
        release = Release([to_gateway], [to_l0, to_l1], to_notifiers, {"e1"})
        writer.append(headers[:2])
        release.send(headers[:2])
        assert received(gateway) == [[RELEASED, frames[0]], [RELEASED, frames[1]]]
        writer.append(headers[2:])
        release.send(headers[2:])  # the ledger shard's own batch is not passed on
        assert received(gateway) == [[RELEASED, frames[2]]]
        assert [m[-1] for m in received(l0)] == frames and [m[-1] for m in received(l1)] == frames
        assert received(notifier) == [[RELEASED, frame] for frame in frames]

        now = time.time_ns()
        assert release.send_again(writer.conn, 60 * S, now) == 3  # a start: the last minute's, again
        assert [m[-1] for m in received(gateway)] == frames
        assert release.send_again(writer.conn, 60 * S, now + 120 * S) == 0  # older than the window
        assert received(gateway) == []
        for sock in (to_gateway, gateway, to_l0, l0, to_l1, l1, to_notifiers, notifier):
            sock.close(linger=0)
    finally:
        ctx.term()
        writer.conn.close()
