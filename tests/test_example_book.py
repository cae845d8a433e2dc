"""examples/feed_client.py's book keeps the sequencing rules of docs/market-data.md, on messages
encoded by the exchange itself (no mesh: the rules alone)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import msgpack

from exchange.core.messages import DepthUpdate, TopOfBook, Trade
from exchange.core.orders import Side
from exchange.wire.messages import BookSnapshot, MarketData, encode

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "feed_client.py"
_spec = importlib.util.spec_from_file_location("feed_client", EXAMPLE)
feed_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(feed_client)


def wire(message) -> list:
    """What a client decodes from the frame the exchange sends."""
    return msgpack.unpackb(encode(message))


def snapshot(epoch: int = 1, l2: int = 5):
    return feed_client.Book(wire(BookSnapshot("AAPL", epoch, 40, {"trade": 2, "bbo": 3, "l2": l2},
                                              [(10000, 5)], [(10100, 7)], None, None)))


def depth(chan_seq: int, price: int, qty: int, epoch: int = 1, side: Side = Side.BUY) -> list:
    return wire(MarketData("AAPL", "l2", epoch, chan_seq, [DepthUpdate(40 + chan_seq, 0, "AAPL", side, price, qty)]))


def heartbeat(channel: str, chan_seq: int, epoch: int = 1) -> list:
    return wire(MarketData("AAPL", channel, epoch, chan_seq, []))


def test_messages_the_snapshot_covers_are_dropped_and_the_next_one_applies():
    book = snapshot()
    assert book.apply(depth(4, 10000, 99)) and book.apply(depth(5, 10000, 99))  # in the snapshot already
    assert book.levels("BUY") == [(10000, 5)]
    assert book.apply(depth(6, 9900, 3))
    assert book.apply(depth(7, 10000, 0))  # the level is gone
    assert book.levels("BUY") == [(9900, 3)] and book.levels("SELL") == [(10100, 7)]
    assert book.chan_seqs["l2"] == 7 and book.seq == 47


def test_a_gap_is_seen_on_a_message_or_a_heartbeat():
    assert not snapshot().apply(depth(7, 9900, 3))  # 6 is missing
    assert snapshot().apply(heartbeat("l2", 5))  # nothing new
    assert not snapshot().apply(heartbeat("l2", 6))  # a message we never got


def test_a_new_epoch_means_a_resync_and_an_old_one_is_ignored():
    assert not snapshot(epoch=2).apply(depth(6, 9900, 3, epoch=3))
    book = snapshot(epoch=2)
    assert book.apply(depth(1, 9900, 3, epoch=1)) and book.levels("BUY") == [(10000, 5)]


def test_the_top_and_the_last_trade_follow_their_channels():
    book = snapshot()
    assert book.apply(wire(MarketData("AAPL", "trade", 1, 3, [Trade(50, 7, "AAPL", "2-9", 10100, 2, Side.BUY)])))
    assert book.apply(wire(MarketData("AAPL", "bbo", 1, 4, [TopOfBook(51, 7, "AAPL", 10000, 5, None, 0)])))
    assert book.last_trade[4:7] == ["2-9", 10100, 2] and book.top[6] is None  # an empty side is nil
    instrument = feed_client.Instrument(["AAPL", "0.01", "1", "1", "100000", "100000.00", None, None, None, None,
                                         "CANCEL_NEWEST", "a field added later"])
    assert "last trade 2-9: 2 @ 101.00 (BUY taker)" in book.render(instrument)
