"""The bounds that keep snapshot requests cheap: the engine's cached snapshot, the notifier's counts."""

from __future__ import annotations

from exchange.core.messages import OrderAccepted
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.notifier import (
    MAX_SNAPSHOTS_PER_CLIENT, MAX_SNAPSHOTS_PER_ENGINE, SNAPSHOT_TIMEOUT_S, TOO_MANY, Outstanding,
)
from exchange.engine.publisher import Publisher, ReleasedBook
from exchange.wire.messages import BookSnapshot, Decoder, SnapshotRefused, SnapshotReply, encode


def test_the_cached_snapshot_follows_every_release():
    publisher = Publisher("e1", 1, {"AAPL": ReleasedBook(LevelBook("AAPL"), None, 0)})
    empty = publisher.snapshot_frame("AAPL")
    assert publisher.snapshot_frame("AAPL") == empty == encode(publisher.snapshot("AAPL"))
    accepted = OrderAccepted(1, 0, "AAPL", "1-1", "carol", Side.BUY, 5, 100, TimeInForce.GTC,
                             SelfTradePrevention.CANCEL_NEWEST)
    publisher.market_data([[accepted]], now=0.0)
    snapshot = Decoder(SnapshotReply).decode(publisher.snapshot_frame("AAPL"))
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.bids == [(100, 5)] and snapshot.chan_seqs["l2"] == snapshot.chan_seqs["l3"] == 1
    assert snapshot.seq == 1 and snapshot.orders == [("1-1", Side.BUY, 100, 5)]


def test_a_snapshot_of_a_symbol_the_engine_does_not_trade_is_refused():
    publisher = Publisher("e1", 1, {"AAPL": ReleasedBook(LevelBook("AAPL"), None, 0)})
    refusal = Decoder(SnapshotReply).decode(publisher.snapshot_frame("MSFT"))
    assert isinstance(refusal, SnapshotRefused) and "does not trade MSFT" in refusal.reason


def test_a_connection_gets_a_few_requests_out_at_a_time():
    outstanding = Outstanding()
    tokens = [outstanding.add("e1", b"a", 0.0) for _ in range(MAX_SNAPSHOTS_PER_CLIENT)]
    assert outstanding.refusal("e1", b"a").startswith(TOO_MANY)
    assert outstanding.refusal("e1", b"b") is None  # another connection is not held back
    outstanding.done(tokens[0])
    assert outstanding.refusal("e1", b"a") is None
    outstanding.done(tokens[0])  # an answer twice (or an expired one) changes nothing
    assert outstanding.per_client[b"a"] == MAX_SNAPSHOTS_PER_CLIENT - 1


def test_an_engine_gets_a_bounded_number_of_requests_out_and_lost_ones_expire():
    outstanding = Outstanding()
    for n in range(MAX_SNAPSHOTS_PER_ENGINE):
        outstanding.add("e1", n.to_bytes(4, "big"), 0.0 if n < MAX_SNAPSHOTS_PER_ENGINE // 2 else 1.0)
    assert outstanding.refusal("e1", b"new") == TOO_MANY
    assert outstanding.refusal("e2", b"new") is None
    outstanding.expire(SNAPSHOT_TIMEOUT_S + 0.5)  # the older half were never answered
    assert outstanding.per_engine["e1"] == MAX_SNAPSHOTS_PER_ENGINE // 2
    outstanding.expire(SNAPSHOT_TIMEOUT_S + 1.0)  # and then the rest
    assert not outstanding.requests and not outstanding.per_engine and not outstanding.per_client
