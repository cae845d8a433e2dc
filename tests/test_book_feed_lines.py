"""BookFeed over A/B lines: two notifiers carry the same numbered messages; the feed takes each once.

The two "notifiers" here are bare XPUB sockets and a snapshot ROUTER on ipc in a temporary folder,
speaking the notifier's wire format, so that a test can choose exactly what each line loses.
tests/roles/test_notifier_replicas.py does the same against real notifiers.
"""

from __future__ import annotations

import time

import pytest
import zmq

from exchange.marketdata.feed import BookFeed
from exchange.core.messages import Trade
from exchange.core.orders import Side
from exchange.wire.messages import (
    BookSnapshot, Decoder, MarketData, SnapshotRefused, SnapshotRequest, encode, topic,
)

SYMBOL = "AAPL"


def trade_message(chan_seq: int, epoch: int = 1) -> MarketData:
    trade = Trade(100 + chan_seq, 0, SYMBOL, f"1-{chan_seq}", 10_000 + chan_seq, 1, Side.BUY)
    return MarketData(SYMBOL, "trade", epoch, chan_seq, [trade])


class Lines:
    """Two public XPUBs (line A and line B) and one snapshot ROUTER, as a feed's notifiers."""

    def __init__(self, folder, count: int = 2):
        self.ctx = zmq.Context()
        self.publish = [f"ipc://{folder}/line-{n}" for n in range(count)]
        self.pubs = []
        for endpoint in self.publish:
            pub = self.ctx.socket(zmq.XPUB)
            pub.bind(endpoint)
            self.pubs.append(pub)
        self.snapshots = f"ipc://{folder}/snapshots"
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(self.snapshots)
        self.requests = Decoder(SnapshotRequest)
        self.answered = 0

    def wait_subscribed(self, feed: BookFeed) -> None:
        """Until every line has the feed's three subscriptions (and the feed its first snapshot)."""
        for pub in self.pubs:
            seen = 0
            while seen < 3:
                assert pub.poll(5000), "the feed never subscribed"
                pub.recv()
                seen += 1
        self.answer(feed, chan_seq=0)

    def answer(self, feed: BookFeed, chan_seq: int, within: float = 5.0, epoch: int = 1, orders=()) -> None:
        """Answer the feed's snapshot requests with an empty book at ``chan_seq`` until it is synced;
        the first request must come within ``within`` seconds."""
        deadline = time.monotonic() + within
        while not self.router.poll(0):
            assert time.monotonic() < deadline, f"no snapshot request within {within} s"
            feed.poll(0.05)
        deadline = time.monotonic() + 5
        while not feed.synced:
            assert time.monotonic() < deadline, "the feed never took the snapshot"
            if self.router.poll(0):  # a request, or a repeat of it if ours came late
                client, body = self.router.recv_multipart()
                assert self.requests.decode(body).symbol == SYMBOL
                snapshot = BookSnapshot(SYMBOL, epoch, 0, {"trade": chan_seq, "bbo": 0, "l2": 0}, [], [], None, None,
                                        list(orders))
                self.router.send_multipart([client, encode(snapshot)])
                self.answered += 1
            feed.poll(0.05)

    def send(self, line: int, *chan_seqs: int, epoch: int = 1) -> None:
        for chan_seq in chan_seqs:
            self.pubs[line].send_multipart([topic(SYMBOL, "trade"), encode(trade_message(chan_seq, epoch))])

    def send_until_asked(self, feed: BookFeed, after: int, epoch: int, within: float = 10.0) -> int:
        """Publish trades of ``epoch`` on both lines, numbered on from ``after``, until the feed asks for
        a snapshot (it re-syncs); return the last number sent."""
        deadline = time.monotonic() + within
        n = after
        while not self.router.poll(0):
            assert time.monotonic() < deadline, "the feed stayed on a numbering nobody publishes"
            n += 1
            self.send(0, n, epoch=epoch)
            self.send(1, n, epoch=epoch)
            feed.poll(0.05)
        return n

    def close(self) -> None:
        for sock in (*self.pubs, self.router):
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def lines(tmp_path):
    made = Lines(tmp_path)
    yield made
    made.close()


def applied_trades(feed: BookFeed, seconds: float = 0.5) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += [e.trade_id for e in feed.poll(0.05) if isinstance(e, Trade)]
    return got


def trade_until_snapshot_asked(lines: Lines, feed: BookFeed, first: int, within: float) -> int:
    """Send trades first, first + 1, … on both lines until the feed asks for a snapshot; the last sent."""
    deadline = time.monotonic() + within
    n = first - 1
    while not lines.router.poll(0):
        assert time.monotonic() < deadline, f"the feed did not resync within {within} s"
        n += 1
        lines.send(0, n)
        lines.send(1, n)
        feed.poll(0.05)
    return n


def test_a_message_lost_on_one_line_is_taken_from_the_other_without_a_resync(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, gap_wait_s=1.0, silence_s=60) as feed:
        lines.wait_subscribed(feed)
        lines.send(0, 1, 2, 4, 5)  # line A lost 3
        assert applied_trades(feed, 0.3) == ["1-1", "1-2"]  # 4 and 5 wait for 3
        lines.send(1, 1, 2, 3, 4, 5, 6)  # line B, late, has it
        lines.send(0, 6)
        assert applied_trades(feed, 1.5) == ["1-3", "1-4", "1-5", "1-6"]  # each once, in order
        # past gap_wait_s: the filled gap is closed, so it never makes the feed resync
        assert feed.chan_seq["trade"] == 6 and not feed.ahead and not feed.gap_since
        assert feed.synced and not lines.router.poll(0), "the feed asked for a snapshot again"
        assert feed.resyncs == 0 and lines.answered == 1


def test_each_gap_gets_its_own_wait(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, gap_wait_s=1.5, silence_s=60) as feed:
        lines.wait_subscribed(feed)
        lines.send(0, 1, 2, 4, 5, 6)  # line A lost 3 ...
        assert applied_trades(feed, 0.9) == ["1-1", "1-2"]
        lines.send(0, 8)  # ... and 7
        assert applied_trades(feed, 0.1) == []
        lines.send(1, 1, 2, 3)  # B fills the first gap about 1 s after it opened
        assert applied_trades(feed, 1.0) == ["1-3", "1-4", "1-5", "1-6"]
        lines.send(1, 4, 5, 6, 7)  # and the second about 1 s after the first was filled: 2 s in all
        assert applied_trades(feed, 0.3) == ["1-7", "1-8"]
        assert feed.resyncs == 0 and lines.answered == 1


def test_a_gap_on_a_busy_channel_resyncs_although_messages_keep_coming(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, gap_wait_s=0.3, silence_s=60) as feed:
        lines.wait_subscribed(feed)
        lines.send(0, 1)
        lines.send(1, 1)
        n = trade_until_snapshot_asked(lines, feed, first=3, within=2)  # 2 is lost on both lines
        lines.answer(feed, chan_seq=n)
        assert feed.resyncs == 1


def test_a_gap_no_line_fills_makes_the_feed_resync_after_the_wait(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, gap_wait_s=0.3, silence_s=60) as feed:
        lines.wait_subscribed(feed)
        lines.send(0, 1, 3)
        lines.send(1, 1, 3)  # both lost 2
        assert applied_trades(feed, 0.1) == ["1-1"]
        lines.answer(feed, chan_seq=3, within=2.0)  # the resync's snapshot covers 2 and 3
        lines.send(1, 4)
        lines.send(0, 4)
        assert applied_trades(feed) == ["1-4"]
        assert feed.resyncs == 1 and lines.answered == 2


def test_snapshot_requests_go_round_the_notifiers_in_turn(tmp_path):
    lines = Lines(tmp_path)
    try:
        other = lines.ctx.socket(zmq.ROUTER)
        other.bind(f"ipc://{tmp_path}/snapshots-b")
        with BookFeed(lines.publish, [f"ipc://{tmp_path}/snapshots-b", lines.snapshots], SYMBOL,
                      snapshot_timeout_s=0.5) as feed:
            deadline = time.monotonic() + 5
            while not other.poll(0):  # the first request goes to the first endpoint, which never answers
                assert time.monotonic() < deadline
                feed.poll(0.05)
            other.recv_multipart()
            lines.wait_subscribed(feed)  # the second goes to the next one, which does
            assert feed.synced and feed.resyncs == 0 and feed.snapshot_from == 1
        other.close(linger=0)
    finally:
        lines.close()


def test_with_one_line_a_gap_resyncs_at_once(tmp_path):
    lines = Lines(tmp_path, count=1)
    try:
        with BookFeed(lines.publish[0], lines.snapshots, SYMBOL, gap_wait_s=60, silence_s=60) as feed:
            lines.wait_subscribed(feed)
            lines.send(0, 1, 3)
            assert applied_trades(feed, 0.1) == ["1-1"]
            lines.answer(feed, chan_seq=3, within=1.0)
            assert feed.resyncs == 1
    finally:
        lines.close()


def test_a_gap_on_a_quiet_channel_is_not_hidden_by_traffic_on_another(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, gap_wait_s=0.3, silence_s=60) as feed:
        lines.wait_subscribed(feed)
        heartbeat = MarketData(SYMBOL, "l2", 1, 1, [])  # l2 message 1 exists; neither line brought it
        lines.pubs[0].send_multipart([topic(SYMBOL, "l2"), encode(heartbeat)])
        n = trade_until_snapshot_asked(lines, feed, first=1, within=2)  # trades keep flowing meanwhile
        lines.answer(feed, chan_seq=n)
        assert feed.resyncs == 1


def test_a_feed_needs_an_endpoint_of_each_kind():
    with pytest.raises(ValueError, match="at least one publish and one snapshots endpoint"):
        BookFeed([], ["ipc:///nowhere"], SYMBOL)


def first_request(lines: Lines, feed: BookFeed) -> bytes:
    """The routing id of the feed's first snapshot request (read, not answered)."""
    deadline = time.monotonic() + 5
    while not lines.router.poll(0):
        assert time.monotonic() < deadline, "no snapshot request"
        feed.poll(0.05)
    return lines.router.recv_multipart()[0]


def test_a_feed_refused_for_now_asks_again_and_syncs(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, silence_s=60) as feed:
        client = first_request(lines, feed)
        refusal = SnapshotRefused(SYMBOL, "too many snapshot requests; try again in a moment")
        lines.router.send_multipart([client, encode(refusal)])
        lines.answer(feed, chan_seq=0)  # the feed asks again, and takes this one
        assert feed.synced and feed.resyncs == 0


def test_a_feed_refused_for_good_says_why(lines):
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, silence_s=60) as feed:
        client = first_request(lines, feed)
        lines.router.send_multipart([client, encode(SnapshotRefused(SYMBOL, f"no instrument {SYMBOL}"))])
        with pytest.raises(ValueError, match=f"snapshot refused: no instrument {SYMBOL}"):
            feed.poll(2.0)


def test_a_feed_left_on_a_numbering_the_notifiers_gave_up_resyncs_to_the_older_one_they_kept(lines):
    """Notifiers that began numberings of their own settle on the oldest (the notifier's docstring);
    a feed that synced from the newer one meanwhile hears only older-epoch messages from then on.
    They are not stale copies for ever: once nothing of its own numbering has come for ``silence_s``,
    it re-syncs, and follows the older numbering."""
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, silence_s=1.0) as feed:
        for pub in lines.pubs:  # the feed's subscriptions
            for _ in range(3):
                assert pub.poll(5000), "the feed never subscribed"
                pub.recv()
        lines.answer(feed, chan_seq=0, epoch=2)  # synced to the newer numbering
        n = lines.send_until_asked(feed, 0, epoch=1)  # the older numbering keeps both lines busy
        lines.answer(feed, chan_seq=n, epoch=1)
        assert feed.epoch == 1
        lines.send(0, n + 1, n + 2, epoch=1)
        assert applied_trades(feed, 0.5) == [f"1-{n + 1}", f"1-{n + 2}"]


@pytest.mark.parametrize("follows_orders", [True, False])
def test_a_feed_keeps_the_snapshots_resting_orders_only_if_it_follows_them(lines, follows_orders):
    """Without "l3" nothing would keep them up to date: a feed that does not follow the orders has
    none, rather than the snapshot's, stale from its first message on."""
    resting = [("1-1", Side.BUY, 10_000, 5)]
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, silence_s=60, orders=follows_orders) as feed:
        for pub in lines.pubs:
            for _ in range(4 if follows_orders else 3):
                assert pub.poll(5000), "the feed never subscribed"
                pub.recv()
        lines.answer(feed, chan_seq=0, orders=resting)
        assert feed.depth.resting() == (resting if follows_orders else [])


def test_ab_lines_on_two_numberings_stay_on_the_one_followed_until_it_falls_silent(lines):
    """Notifiers that began numberings of their own settle on the oldest (market-data.md, "Two
    numberings become one"). Meanwhile a feed that follows line A's numbering ignores line B's newer
    one, message after message, instead of re-syncing on each; once its own falls silent for
    ``silence_s`` it re-syncs once, to the one left."""
    with BookFeed(lines.publish, lines.snapshots, SYMBOL, silence_s=1.0) as feed:
        lines.wait_subscribed(feed)  # synced to epoch 1
        for n in range(1, 6):
            lines.send(1, n, epoch=2)  # B: a numbering of its own, newer
            lines.send(0, n, epoch=1)  # A: the one followed, live
        assert applied_trades(feed, 0.5) == [f"1-{n}" for n in range(1, 6)]
        assert feed.resyncs == 0 and not lines.router.poll(0), "B's numbering made the feed re-sync"
        n = lines.send_until_asked(feed, 5, epoch=2)  # A has taken B's numbering too (or died): epoch 2 only
        lines.answer(feed, chan_seq=n, epoch=2)
        assert feed.epoch == 2 and feed.resyncs == 1
        lines.send(0, n + 1, epoch=2)
        assert applied_trades(feed, 0.5) == [f"1-{n + 1}"]


def test_with_one_line_a_newer_numbering_resyncs_at_once(tmp_path):
    lines = Lines(tmp_path, count=1)
    try:
        with BookFeed(lines.publish[0], lines.snapshots, SYMBOL, silence_s=60) as feed:
            lines.wait_subscribed(feed)
            lines.send(0, 1, epoch=2)
            lines.answer(feed, chan_seq=1, epoch=2, within=2.0)
            assert feed.epoch == 2 and feed.resyncs == 1
    finally:
        lines.close()
