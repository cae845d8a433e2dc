"""What keeps snapshot requests cheap and right: the notifier's cached snapshot, rebuilt only when its book
moves; and its recent trades, for TradesRequest."""

from __future__ import annotations

from exchange.core.messages import OrderAccepted, Trade
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.publisher import MAX_RECENT_TRADES, NOT_READY, Publisher, ReleasedBook
from exchange.wire.messages import BookSnapshot, Decoder, SnapshotRefused, SnapshotReply, encode


def publisher_of_aapl() -> Publisher:
    publisher = Publisher({"AAPL": "e2", "MSFT": "e2"})
    publisher.load("AAPL", ReleasedBook(LevelBook("AAPL"), None, 0), batch=7, epoch=11, chan_seqs={"l2": 4}, now=0.0)
    return publisher


def test_the_cached_snapshot_follows_every_released_batch():
    publisher = publisher_of_aapl()
    empty = publisher.snapshot_frame("AAPL")
    assert publisher.snapshot_frame("AAPL") == empty == encode(publisher.snapshot("AAPL"))
    accepted = OrderAccepted(1, 0, "AAPL", "1-1", "carol", Side.BUY, 5, 100, TimeInForce.GTC,
                             SelfTradePrevention.CANCEL_NEWEST)
    publisher.market_data("e2", 8, [[accepted]], now=0.0)
    snapshot = Decoder(SnapshotReply).decode(publisher.snapshot_frame("AAPL"))
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.bids == [(100, 5)] and snapshot.chan_seqs["l2"] == 5 and snapshot.chan_seqs["l3"] == 1
    assert snapshot.seq == 1 and snapshot.orders == [("1-1", Side.BUY, 100, 5)]
    assert snapshot.epoch == 11 and snapshot.batch == 8
    publisher.market_data("e2", 9, [], now=0.0)  # a batch of its engine that left it alone: a newer batch
    assert Decoder(SnapshotReply).decode(publisher.snapshot_frame("AAPL")).batch == 9


def test_a_snapshot_of_an_instrument_not_live_yet_says_try_again_and_of_an_unknown_one_says_so():
    publisher = publisher_of_aapl()
    waiting = Decoder(SnapshotReply).decode(publisher.snapshot_frame("MSFT"))
    assert isinstance(waiting, SnapshotRefused) and waiting.reason == NOT_READY and "try again" in NOT_READY
    unknown = Decoder(SnapshotReply).decode(publisher.snapshot_frame("DOGE"))
    assert isinstance(unknown, SnapshotRefused) and unknown.reason == "no instrument DOGE"


def test_an_unloaded_instrument_is_published_no_more():
    publisher = publisher_of_aapl()
    publisher.unload("AAPL")
    accepted = OrderAccepted(1, 0, "AAPL", "1-1", "carol", Side.BUY, 5, 100, TimeInForce.GTC,
                             SelfTradePrevention.CANCEL_NEWEST)
    assert publisher.market_data("e2", 8, [[accepted]], now=0.0) == []
    assert publisher.heartbeats(now=100.0) == []
    assert Decoder(SnapshotReply).decode(publisher.snapshot_frame("AAPL")).reason == NOT_READY


def trade(seq: int, ts: int, price: int = 100) -> Trade:
    return Trade(seq, ts, "AAPL", f"2-{seq}", price, 1, Side.BUY)


def test_recent_trades_are_kept_once_each_at_most_a_day_and_stamped_with_the_trade_channel():
    publisher = publisher_of_aapl()
    day = 86_400 * 10**9
    for t in (trade(1, 10), trade(2, day + 10), trade(2, day + 10), trade(3, day + 20)):  # 2 comes twice
        publisher.remember(t)
    publisher.market_data("e2", 8, [[trade(4, day + 30, 101)]], now=0.0)  # published: remembered too
    answer = publisher.trades("AAPL", 0, now_ns=day + 40)[0]
    assert [t.seq for t in answer.trades] == [2, 3, 4]  # the first is more than a day old
    assert (answer.epoch, answer.chan_seq) == (11, 1)
    assert [t.seq for t in publisher.trades("AAPL", day + 15, now_ns=day + 40)[0].trades] == [3, 4]
    assert publisher.trades("MSFT", 0, now_ns=0)[0].reason == NOT_READY


def test_the_recent_trades_are_bounded():
    publisher = publisher_of_aapl()
    for seq in range(1, MAX_RECENT_TRADES + 11):
        publisher.remember(trade(seq, seq))
    assert len(publisher.recent["AAPL"]) == MAX_RECENT_TRADES and publisher.recent["AAPL"][0].seq == 11
