"""The client side of the feeds under what a live exchange may do to them: a notifier that refuses
snapshots for now while another answers, a snapshot that never comes while the feed keeps flowing,
an event type added after the client was written, a snapshot that names fewer channels than the
feed follows; and the client imports the docs show.

The notifiers here are bare XPUB sockets and snapshot ROUTERs on ipc in a temporary folder,
speaking the notifier's wire format (as in tests/test_book_feed_lines.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from exchange.client.private_feed import PrivateFeed
from exchange.core.messages import BookOrderAdded, Trade
from exchange.core.orders import Side
from exchange.errors import WireError
from exchange.marketdata import feed as feed_module
from exchange.marketdata.feed import BookFeed, MarketDataClient
from exchange.testing.mesh import wait_until
from exchange.wire.messages import BookSnapshot, MarketData, SnapshotRefused, encode, private_topic, topic

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "AAPL"
REFUSED = SnapshotRefused(SYMBOL, "this notifier is catching up with the journal; try again in a moment")


def trade_message(chan_seq: int, epoch: int = 1) -> MarketData:
    trade = Trade(100 + chan_seq, 0, SYMBOL, f"1-{chan_seq}", 10_000 + chan_seq, 1, Side.BUY)
    return MarketData(SYMBOL, "trade", epoch, chan_seq, [trade])


def snapshot(chan_seq: int, epoch: int = 1, channels=("trade", "bbo", "l2", "l3")) -> BookSnapshot:
    chan_seqs = {channel: 0 for channel in channels} | {"trade": chan_seq}
    return BookSnapshot(SYMBOL, epoch, 0, chan_seqs, [], [], None, None, [])


def future_event(chan_seq: int) -> list:
    """An event of a type added after this client (a new tag), as msgpack would carry it."""
    return ["TradeBusted", 200 + chan_seq, 0, SYMBOL, f"1-{chan_seq}"]


def trade_event(chan_seq: int) -> list:
    """trade_message(chan_seq)'s one event, as msgpack decodes it."""
    return msgspec.msgpack.decode(encode(trade_message(chan_seq).events[0]))


def until(condition, feed: BookFeed | None = None, within: float = 5.0, what: str = "the condition") -> None:
    """Until ``condition()`` holds, polling ``feed`` (if any) meanwhile; fail after ``within`` seconds."""
    if feed is None:
        wait_until(condition, within, what)
        return
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not come within {within} s"
        feed.poll(0.02)


class Notifier:
    """One fake notifier: a public XPUB and a snapshot ROUTER."""

    def __init__(self, ctx: zmq.Context, folder: Path, name: str):
        self.publish = f"ipc://{folder}/{name}-pub"
        self.snapshots = f"ipc://{folder}/{name}-snap"
        self.pub = ctx.socket(zmq.XPUB)
        self.pub.bind(self.publish)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.bind(self.snapshots)
        self.requests = 0  # snapshot requests read

    def wait_subscribed(self, feed: BookFeed, count: int = 3) -> None:
        seen = 0
        deadline = time.monotonic() + 5
        while seen < count:
            assert time.monotonic() < deadline, "the feed never subscribed"
            if self.pub.poll(20):
                self.pub.recv()
                seen += 1
            else:
                feed.poll(0.01)

    def send(self, *chan_seqs: int, epoch: int = 1) -> None:
        for chan_seq in chan_seqs:
            self.pub.send_multipart([topic(SYMBOL, "trade"), encode(trade_message(chan_seq, epoch))])

    def send_raw(self, channel: str, body: list) -> None:
        self.pub.send_multipart([topic(SYMBOL, channel), msgspec.msgpack.encode(body)])

    def answer(self, reply) -> int:
        """Answer every waiting snapshot request with ``reply``; how many there were."""
        answered = 0
        while self.router.poll(0):
            client, _body = self.router.recv_multipart()
            self.requests += 1
            self.router.send_multipart([client, encode(reply)])
            answered += 1
        return answered


    def close(self) -> None:
        self.pub.close(linger=0)
        self.router.close(linger=0)


@pytest.fixture
def notifiers(tmp_path):
    """make(name) → a Notifier; all are closed at the end, also when the test fails."""
    ctx = zmq.Context()
    made: list[Notifier] = []

    def make(name: str) -> Notifier:
        made.append(Notifier(ctx, tmp_path, name))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()
    ctx.term()


def synced(feed: BookFeed, notifier: Notifier, chan_seq: int = 0) -> None:
    """Answer the feed's snapshot requests from ``notifier`` until it is synced."""
    until(lambda: notifier.answer(snapshot(chan_seq)) >= 0 and feed.synced, feed, what="the sync")


def first_request(notifier: Notifier, feed: BookFeed) -> bytes:
    """The routing id of the feed's first snapshot request to ``notifier`` (read, not answered)."""
    until(lambda: notifier.router.poll(0), feed, what="the snapshot request")
    notifier.requests += 1
    return notifier.router.recv_multipart()[0]


def applied_trades(feed: BookFeed, count: int, within: float = 5.0) -> list[str]:
    """The trade ids the feed applies, polled until there are ``count`` (or ``within`` s passed)."""
    got: list[str] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        got += [e.trade_id for e in feed.poll(0.05) if isinstance(e, Trade)]
    return got


# -- a temporary refusal -------------------------------------------------------------------------

def test_a_feed_refused_for_now_by_one_notifier_takes_the_snapshot_of_the_next(notifiers):
    """A/B lines: A is catching up (refuses "try again"), B is live. The feed asks B at once."""
    a, b = notifiers("a"), notifiers("b")
    with BookFeed([a.publish, b.publish], [a.snapshots, b.snapshots], SYMBOL, silence_s=60) as feed:
        b.wait_subscribed(feed)
        n = 0
        deadline = time.monotonic() + 5
        while not feed.synced:
            assert time.monotonic() < deadline, (f"never synced: asked A {a.requests} times, B {b.requests}"
                                                 f" times; {len(feed.buffer)} messages buffered")
            n += 1
            b.send(n)  # B is live
            a.answer(REFUSED)  # A: "try again", for as long as it catches up
            b.answer(snapshot(n))
            feed.poll(0.01)
        assert a.requests == 1 and b.requests == 1 and feed.snapshot_from == 1


def test_a_feed_refused_for_now_by_every_notifier_waits_before_it_asks_again(notifiers):
    """Only once every endpoint has refused does the feed wait REFUSED_RETRY_S, then start again."""
    a, b = notifiers("a"), notifiers("b")
    with BookFeed([a.publish, b.publish], [a.snapshots, b.snapshots], SYMBOL, silence_s=60) as feed:
        until(lambda: a.answer(REFUSED) == 1, feed, what="A's request")
        until(lambda: b.answer(REFUSED) == 1, feed, what="B's request after A's refusal")
        until(lambda: feed.retry_at > 0, feed, what="the wait")  # B's refusal read: every endpoint refused
        retry_at = feed.retry_at
        until(lambda: a.answer(snapshot(0)) == 1, feed, what="A asked again")
        assert time.monotonic() >= retry_at  # not before the wait was over
        until(lambda: feed.synced, feed, what="the sync")
        assert a.requests == 2 and b.requests == 1


# -- the buffer kept while waiting for a snapshot -----------------------------------------------

def test_the_buffer_kept_while_waiting_for_a_snapshot_is_bounded(notifiers, monkeypatch):
    """A snapshot endpoint that does not answer, and a live line: the feed keeps at most MAX_AHEAD
    messages (the newest), and a snapshot that comes in the end still syncs it."""
    monkeypatch.setattr(feed_module, "MAX_AHEAD", 50)
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60, snapshot_timeout_s=60) as feed:
        a.wait_subscribed(feed)
        client = first_request(a, feed)  # answered only at the end
        a.send(*range(1, 201))
        until(lambda: feed.buffer and feed.buffer[-1].chan_seq == 200, feed, what="message 200")
        assert len(feed.buffer) == 50 and [m.chan_seq for m in feed.buffer] == list(range(151, 201))
        a.send(201)  # past the cap as well
        until(lambda: feed.buffer[-1].chan_seq == 201, feed, what="message 201")
        assert len(feed.buffer) == 50
        a.router.send_multipart([client, encode(snapshot(190))])  # at last, as of message 190
        until(lambda: feed.synced, feed, what="the sync")
        a.send(202)
        assert applied_trades(feed, 1) == ["1-202"]
        assert feed.chan_seq["trade"] == 202 and feed.resyncs == 0


def test_a_snapshot_older_than_what_the_bounded_buffer_kept_makes_the_feed_resync(notifiers, monkeypatch):
    """The messages let go of are missing between the snapshot and the buffer: a gap, so a re-sync
    (whose snapshot covers them)."""
    monkeypatch.setattr(feed_module, "MAX_AHEAD", 50)
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60, snapshot_timeout_s=60) as feed:
        a.wait_subscribed(feed)
        client = first_request(a, feed)
        a.send(*range(1, 201))
        until(lambda: feed.buffer and feed.buffer[-1].chan_seq == 200, feed, what="message 200")
        a.router.send_multipart([client, encode(snapshot(100))])  # 101-150 were let go of
        until(lambda: a.answer(snapshot(200)) == 1, feed, what="the re-sync's request")
        until(lambda: feed.synced, feed, what="the re-sync")
        assert feed.resyncs == 1 and feed.chan_seq["trade"] == 200


# -- event types the client does not know -------------------------------------------------------

def test_a_book_feed_skips_an_event_type_it_does_not_know(notifiers):
    """docs/wire.md, "Evolution": a client skips a tag it does not know on the feeds; the rest of
    the message, and of the batch the feed drained, is applied, and the channel's numbering counts
    the message whose events were all skipped (no gap, no heartbeat)."""
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60) as feed:
        a.wait_subscribed(feed)
        synced(feed, a)
        a.send(1)
        a.send_raw("trade", [SYMBOL, "trade", 1, 2, [future_event(2)]])
        a.send_raw("trade", [SYMBOL, "trade", 1, 3, [future_event(3), trade_event(3), future_event(3)]])
        a.send(4)
        assert applied_trades(feed, 3) == ["1-1", "1-3", "1-4"]
        assert feed.chan_seq["trade"] == 4 and feed.resyncs == 0 and feed.synced


def test_a_book_feed_skips_an_unknown_event_type_in_what_it_buffered(notifiers):
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60) as feed:
        a.wait_subscribed(feed)
        client = first_request(a, feed)
        a.send(1)
        a.send_raw("trade", [SYMBOL, "trade", 1, 2, [future_event(2)]])
        a.send(3)
        until(lambda: len(feed.buffer) == 3, feed, what="three buffered messages")
        a.router.send_multipart([client, encode(snapshot(0))])
        assert applied_trades(feed, 2) == ["1-1", "1-3"]
        assert feed.chan_seq["trade"] == 3 and feed.resyncs == 0


def test_a_malformed_event_of_a_known_type_is_still_an_error(notifiers):
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60) as feed:
        a.wait_subscribed(feed)
        synced(feed, a)
        a.send_raw("trade", [SYMBOL, "trade", 1, 1, [["Trade", "not a seq"]]])
        with pytest.raises(WireError, match="MarketData"):
            feed.poll(2.0)


def test_the_raw_market_data_client_skips_an_event_type_it_does_not_know(notifiers):
    a = notifiers("a")
    with MarketDataClient(a.publish, [SYMBOL], channels=("trade",)) as client:
        until(lambda: a.pub.poll(0) and a.pub.recv(), what="the subscription")
        a.send_raw("trade", [SYMBOL, "trade", 1, 1, [future_event(1), trade_event(1)]])
        message = client.receive(5)
        assert (message.chan_seq, [e.trade_id for e in message.events]) == (1, ["1-1"])


def test_the_private_feed_skips_an_event_type_it_does_not_know(tmp_path):
    """The private feed's events evolve by new type names too (protocol.md, schema evolution)."""
    ctx = zmq.Context()
    server_public, server_secret = zmq.curve_keypair()
    public, secret = zmq.curve_keypair()
    xpub = ctx.socket(zmq.XPUB)
    xpub.curve_server = True
    xpub.curve_secretkey = server_secret
    endpoint = f"ipc://{tmp_path}/private"
    xpub.bind(endpoint)
    feed = None
    try:
        feed = PrivateFeed(endpoint, server_public, "alice", public, secret, admitted_within=5)
        assert xpub.poll(5000) and xpub.recv() == b"\x01" + private_topic("alice")
        canceled = ["OrderCanceled", 10, 0, "BTC-USD", "1-7", "alice", "BUY", 5, "USER", ""]
        triggered = ["OrderTriggered", 9, 0, "BTC-USD", "1-7", "alice"]
        for events in ([triggered], [triggered, canceled]):
            xpub.send_multipart([private_topic("alice"), msgspec.msgpack.encode(["alice", "e1", 1, events])])
        assert feed.receive(timeout=5).events == []
        second = feed.receive(timeout=5)
        assert [type(e).__name__ for e in second.events] == ["OrderCanceled"] and second.events[0].order_id == "1-7"
        malformed = ["alice", "e1", 1, [["OrderCanceled", "x"]]]  # a known type, not as it is
        xpub.send_multipart([private_topic("alice"), msgspec.msgpack.encode(malformed)])
        with pytest.raises(WireError, match="PrivateData"):
            feed.receive(timeout=5)
    finally:
        if feed is not None:
            feed.close()
        xpub.close(linger=0)
        ctx.term()


# -- a snapshot that names fewer channels than the feed follows ----------------------------------

def test_a_snapshot_without_a_channel_the_feed_follows_counts_it_from_zero(notifiers):
    a = notifiers("a")
    with BookFeed(a.publish, a.snapshots, SYMBOL, silence_s=60, orders=True) as feed:
        a.wait_subscribed(feed, count=4)
        client = first_request(a, feed)
        added = BookOrderAdded(5, 0, SYMBOL, "1-1", Side.BUY, 10_000, 3)
        a.pub.send_multipart([topic(SYMBOL, "l3"), encode(MarketData(SYMBOL, "l3", 1, 1, [added]))])
        until(lambda: len(feed.buffer) == 1, feed, what="the buffered l3 message")
        a.router.send_multipart([client, encode(snapshot(0, channels=("trade", "bbo", "l2")))])
        until(lambda: feed.synced, feed, what="the sync")
        assert feed.depth.resting() == [("1-1", Side.BUY, 10_000, 3)] and feed.chan_seq["l3"] == 1


# -- the client imports the docs show ------------------------------------------------------------

def documented_imports() -> list[tuple[str, str]]:
    """(doc, line) for every line of a doc that imports from exchange."""
    found = []
    for path in sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")]):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from exchange(\.\w+)* import |import exchange)", line):
                found.append((str(path.relative_to(ROOT)), line.strip()))
    return found


def test_the_docs_show_the_client_imports():
    lines = [line for _doc, line in documented_imports()]
    assert {"from exchange.client import ZmqClient", "from exchange.client import PrivateFeed"} <= set(lines)
    assert any("BookFeed" in line for line in lines)


@pytest.mark.parametrize("doc,line", documented_imports())
def test_each_documented_import_works(doc, line):
    exec(line, {})
