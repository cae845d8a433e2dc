"""The engine's own rules around the matcher, in memory: what it executes, journals and answers."""

from __future__ import annotations

from pathlib import Path

from exchange.testing.mesh import toy_config
from exchange.config import load_config
from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, CancelOrder, PlaceOrder
from exchange.core.orders import Side
from exchange.engine.batches import Engine
from exchange.wire.messages import Decoder, EventBatch, Request, Requests, encode
from exchange.journal.readers import EnginePosition

CONFIG = toy_config()  # configs/local.yaml without the demo's price bands
INSTRUMENTS = [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")]
S = 1_000_000_000  # ns


def handle(engine: Engine, *commands, now_ns: int) -> EventBatch:
    frames = [[encode([Request("gw", 1, n, command) for n, command in enumerate(commands)])]]
    return Decoder(EventBatch).decode(engine.handle_requests(frames, Decoder(Requests), now_ns))


def test_an_order_that_comes_too_late_is_journaled_but_not_executed_nor_answered():
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    engine.max_order_age_ns = 5 * S
    now = 100 * S
    late = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, ts_received=now - 6 * S)
    fresh = PlaceOrder("bob", "BTC-USD", Side.BUY, 1, 100_000, ts_received=now - 4 * S)
    batch = handle(engine, late, fresh, now_ns=now)
    assert [(e.command, len(e.events)) for e in batch.entries][0] == (late, 0)  # in the journal, no events
    assert engine.too_old == 1
    assert engine.matcher.seq == len(batch.entries[1].events) > 0  # only the fresh order made events
    assert all(e.user == "bob" for e in batch.entries[1].events if hasattr(e, "user"))
    assert [reply.request_id for reply in batch.replies()] == [1]  # only the fresh order is answered


def test_an_order_stamped_ahead_of_the_engines_clock_is_journaled_but_not_executed():
    """Defect: one placement stamped a day ahead (a direct sender, a gateway whose clock jumped) made
    the engine forget every user's client order ids at once (it forgets by the command's stamp): a
    resend within the window executed a second time."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    engine.max_order_age_ns = 5 * S
    now = 1_000 * S
    handle(engine, PlaceOrder("bob", "BTC-USD", Side.SELL, 2, 100_000, ts_received=now), now_ns=now)
    first = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, client_order_id="x", ts_received=now + S)
    assert [type(e).__name__ for e in handle(engine, first, now_ns=now + S).entries[0].events] == [
        "OrderAccepted", "Match"]
    ahead = PlaceOrder("mallory", "BTC-USD", Side.BUY, 1, 100_000, client_order_id="z", ts_received=now + 86_400 * S)
    within = PlaceOrder("carol", "BTC-USD", Side.BUY, 1, 1, ts_received=now + 6 * S)  # as far ahead as allowed
    batch = handle(engine, ahead, within, now_ns=now + S)
    assert [(e.command, len(e.events)) for e in batch.entries][0] == (ahead, 0)  # in the journal, no events
    assert len(batch.entries[1].events) > 0 and engine.too_old == 0 and engine.ahead == 1
    assert [reply.request_id for reply in batch.replies()] == [1]  # the one stamped ahead is not answered
    resend = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, client_order_id="x", ts_received=now + 2 * S)
    [rejected] = handle(engine, resend, now_ns=now + 2 * S).entries[0].events
    assert rejected.code.value == "DUPLICATE_ID"


def test_a_cancel_executes_however_late_it_comes():
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    engine.max_order_age_ns = 5 * S
    place = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, ts_received=1 * S)
    accepted = handle(engine, place, now_ns=2 * S).entries[0].events[0]
    cancel = CancelOrder("alice", "BTC-USD", accepted.order_id, "", ts_received=3 * S)
    events = handle(engine, cancel, now_ns=60 * S).entries[0].events
    assert [type(e).__name__ for e in events][0] == "OrderCanceled"
    assert engine.too_old == 0


def test_a_role_subscribed_to_its_durable_prefix_gets_its_own_watermarks_only():
    """Not another stream's, nor the written batches the journal writer passes on to the notifiers on
    the same PUB."""
    import zmq

    from exchange.wire.messages import RELEASED, Decoder, Durable, durable_prefix, encode

    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        pub.bind("inproc://watermarks")
        sub.connect("inproc://watermarks")
        sub.setsockopt(zmq.SUBSCRIBE, durable_prefix("e1"))
        got = []
        while not got:  # PUB drops until the subscription has arrived
            for stream in ("e10", "ledger-0", "e1"):
                pub.send_multipart([RELEASED, encode(EventBatch(stream, 1, 2, 3, 3, []))])
                pub.send(encode(Durable(stream, 1, 2, 3)))
            if sub.poll(100):
                got.append(Decoder(Durable).decode(sub.recv()))
        while sub.poll(50):
            got.append(Decoder(Durable).decode(sub.recv()))
        assert {d.engine for d in got} == {"e1"}
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()


def test_a_batch_names_the_ledger_batches_holding_its_orders_holds_and_a_refused_epoch_stops_the_engine():
    import pytest

    from exchange.errors import JournalError
    from exchange.wire.messages import Durable

    engine = Engine("e1", Matcher(1, INSTRUMENTS), 7, EnginePosition())
    orders = [PlaceOrder(user, "BTC-USD", Side.BUY, 1, 100_000, client_order_id=f"c{n}")
              for n, user in enumerate(("alice", "bob", "carol"))]
    requests = [Request("gw", 1, 0, orders[0], after=("ledger-1", 3, 8)),
                Request("gw", 1, 1, orders[1], after=("ledger-0", 2, 5)),
                Request("gw", 1, 2, orders[2], after=("ledger-1", 3, 9)),
                Request("gw", 1, 3, CancelOrder("alice", "BTC-USD", client_order_id="c0"))]
    frame = engine.handle_requests([[encode(requests)]], Decoder(Requests))
    assert sorted(Decoder(EventBatch).decode(frame).after) == [("ledger-0", 2, 5), ("ledger-1", 3, 9)]
    engine.on_durable(Durable("e1", 6, -1, -1))  # another start's: not ours
    assert [batch for batch, _, _ in engine.retained] == [1]
    with pytest.raises(JournalError, match="refuses epoch 7"):
        engine.on_durable(Durable("e1", 7, -1, -1))


def test_a_batch_with_holds_from_two_starts_of_one_shard_names_both_and_the_journal_refuses_the_lost_one():
    """A shard held order A in its batch 2 of epoch 1 and died before that batch was durable; started
    again (epoch 2) it held order B in its batch 2. If the engine takes A and B in one batch, that
    batch must name both ledger batches: naming only the newer would let the journal write A, which
    then trades with nothing held (and the shard, settling it, stops on every start)."""
    from exchange.journal.sequencer import Sequencer

    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    orders = [PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100_000, client_order_id=cid) for cid in ("A", "B")]
    requests = [Request("gw", 1, 0, orders[0], after=("ledger-1", 1, 2)),
                Request("gw", 1, 1, orders[1], after=("ledger-1", 2, 2))]
    batch = Decoder(EventBatch).decode(engine.handle_requests([[encode(requests)]], Decoder(Requests)))
    assert sorted(batch.after) == [("ledger-1", 1, 2), ("ledger-1", 2, 2)]
    # the journal holds batch 1 of the shard's epoch 1 only (batch 2 died with it), then epoch 2's batches
    sequencer = Sequencer({"ledger-1": EnginePosition(), "e1": EnginePosition()},
                          last_batch_of=lambda stream, epoch: 1)
    sequencer.open_epoch("ledger-1", 1)
    sequencer.accept([EventBatch("ledger-1", 1, 1, 1, 1, [], b"", 0, [])])
    sequencer.open_epoch("ledger-1", 2)
    sequencer.open_epoch("e1", 1)
    written, _ = sequencer.accept([EventBatch("ledger-1", 2, 2, 2, 2, [], b"", 0, []), batch])
    assert [b.engine for b in written] == ["ledger-1"]  # the engine's batch is not written
    assert ("e1", 1) in sequencer.refused


def test_a_notifier_that_starts_gets_the_book_as_matched_with_how_much_of_it_is_released():
    from exchange.wire.messages import Durable, EngineBook, SnapshotRefused

    engine = Engine("e1", Matcher(1, INSTRUMENTS), 3, EnginePosition(3, 40, 0))
    handle(engine, PlaceOrder("alice", "BTC-USD", Side.SELL, 5, 100_000),
           PlaceOrder("alice", "BTC-USD", Side.SELL, 2, 100_100), now_ns=0)
    handle(engine, PlaceOrder("bob", "BTC-USD", Side.BUY, 3, 100_000), now_ns=0)  # a trade, at batch 42
    book = engine.book("BTC-USD")
    assert isinstance(book, EngineBook)
    assert (book.engine_epoch, book.batch, book.durable_batch, book.seq) == (3, 42, 40, engine.matcher.seq)
    assert [(side, price, qty) for _, side, price, qty in book.orders] == [(Side.SELL, 100_000, 2),
                                                                           (Side.SELL, 100_100, 2)]
    assert (book.last_trade.price, book.last_trade.qty) == (100_000, 3)
    engine.on_durable(Durable("e1", 3, 42, engine.matcher.seq))
    assert engine.book("BTC-USD").durable_batch == 42
    assert engine.book("ETH-USD").orders == [] and engine.book("ETH-USD").last_trade is None
    assert isinstance(engine.book("AAPL"), SnapshotRefused)


def test_commands_that_make_no_events_still_weigh_against_the_undurable_limit():
    """An empty cancel-all, or an order that came too late, is journaled without events and kept
    until durable like any batch: it counts, so a journal that is down stops the engine's reading
    (the loop compares ``retained_events`` with max_undurable_events) before memory runs away."""
    second = 10**9
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    engine.max_order_age_ns = 5 * second
    now = 1_000 * second
    for n in range(500):
        requests = [Request("gw", 1, 2 * n, CancelAll(f"u{n}", None, now)),  # a user without orders
                    Request("gw", 1, 2 * n + 1, PlaceOrder("a", "BTC-USD", Side.BUY, 1, 100_000,
                                                           ts_received=now - 6 * second))]  # too late
        engine.handle_requests([[encode(requests)]], Decoder(Requests), now)
    assert engine.matcher.seq == 0 and len(engine.retained) == 500
    assert engine.retained_events == 1_000  # one per command


def test_a_command_that_names_many_orders_weighs_by_its_size():
    from exchange.engine.batches import BYTES_PER_EVENT

    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    huge = CancelAll("alice", None, 1, order_ids=tuple(f"1-{n}" for n in range(100_000)))  # none of them open
    frame = engine.handle_requests([[encode([Request("gw", 1, 1, huge)])]], Decoder(Requests))
    assert engine.matcher.seq == 0 and engine.retained_events == len(frame) // BYTES_PER_EVENT > 3_000


def test_a_turn_past_the_batch_budget_goes_out_as_several_whole_batches():
    """Defect: a turn's output went out as one EventBatch of any size; past the mesh's message cap
    (64 MiB: a gateway that stops cancels every session's orders at once) the journal writer's PULL
    dropped it, and every later batch waited behind the gap for good. Past ``max_batch_bytes`` (a
    small one here) the engine closes the batch and starts the next, each numbered, sequenced,
    retained and naming the ledger batches of its own holds; an entry is never split."""
    from exchange.engine.batches import BYTES_PER_EVENT, MAX_BATCH_BYTES
    from exchange.wire import sockets

    assert MAX_BATCH_BYTES <= sockets.MAX_MSG_SIZE // 4
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition(1, 10, 0), checkpoint_every=150,
                    checkpoint_part_size=4096)
    for user in ("alice", "bob", "carol"):
        handle(engine, *[PlaceOrder(user, "BTC-USD", Side.BUY, 1, 100_000 + n) for n in range(40)], now_ns=0)
    engine.unsent.clear()
    seq = engine.matcher.seq
    engine.max_batch_bytes = 30 * BYTES_PER_EVENT  # a cancel-all of 40 orders passes it
    requests = [Request("gw", 1, 1, CancelAll("alice", None, 1), after=("ledger-1", 3, 8)),
                Request("gw", 1, 2, CancelAll("bob", None, 1), after=("ledger-0", 2, 5)),
                Request("gw", 1, 3, CancelOrder("carol", "BTC-USD", order_id="nope")),
                Request("gw", 1, 4, CancelAll("carol", None, 1))]
    last = engine.handle_requests([[encode(requests[:2])], [encode(requests[2:])]], Decoder(Requests))
    batches = [Decoder(EventBatch).decode(frame) for frame in engine.unsent]
    assert last == engine.unsent[-1]
    assert [b.batch for b in batches] == [14, 15, 16] and engine.batch == 16
    assert [[e.request_id for e in b.entries] for b in batches] == [[1], [2], [3, 4]]
    assert [(b.first_seq - seq, b.last_seq - seq) for b in batches] == [(1, 40), (41, 80), (81, 121)]
    assert engine.matcher.seq == seq + 121
    assert [b.after for b in batches] == [[("ledger-1", 3, 8)], [("ledger-0", 2, 5)], []]
    # the checkpoint (due since the placements) starts with the first batch, one part per batch
    assert batches[0].checkpoint and engine.checkpoint_seq == seq + 40
    assert [(batch, frame) for batch, _, frame in engine.retained][-3:] == list(zip([14, 15, 16], engine.unsent))
    assert all(b.replies() for b in batches)
