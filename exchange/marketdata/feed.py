"""Following the public feed from the client's side: raw messages (MarketDataClient) and a book kept
in step by snapshot plus deltas, over one or several notifiers' lines (BookFeed).
"""

from __future__ import annotations

import socket
import time
from collections import deque

import msgspec
import zmq
from exchange.wire import sockets
from exchange.wire.lenient import LenientDecoder
from exchange.marketdata.depth import Depth
from exchange.wire.messages import (
    BookSnapshot, Decoder, MarketData, MarketDataEvent, SnapshotReply, SnapshotRequest, encode, topic,
)


# a lagging SUB with libzmq's default queue (1,000) can hit an assertion (libzmq #3937); a deep
# queue also lets a briefly busy subscriber catch up without a re-sync
SUBSCRIBER_RCVHWM = 100_000


# messages a BookFeed holds past a gap while its other lines may fill it, and (the newest ones)
# while it waits for a snapshot
MAX_AHEAD = 10_000


# a BookFeed that every notifier it asks refused a snapshot for now ("try again") asks again after this
REFUSED_RETRY_S = 0.5


class _Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A MarketData with its events left as the bytes they came in, to be decoded one by one."""

    symbol: str
    channel: str
    epoch: int
    chan_seq: int
    events: list[msgspec.Raw]


class Skipped(MarketData, frozen=True):
    """A MarketData whose events were all of types this client does not know, so left out: no
    heartbeat, its ``chan_seq`` counts like any message's."""


class MarketDataDecoder:
    """Reads MarketData frames, leaving out events of types this client does not know
    (exchange.wire.lenient); a message whose every event was left out is ``Skipped``."""

    def __init__(self):
        self.lenient = LenientDecoder(MarketData, _Envelope, MarketDataEvent)

    def decode(self, frame: bytes) -> MarketData:
        message, events = self.lenient.decode(frame)
        if events is None:
            return message
        kind = Skipped if message.events and not events else MarketData
        return kind(message.symbol, message.channel, message.epoch, message.chan_seq, events)


class MarketDataClient:
    """A subscriber to the notifier's public channels ("trade", "bbo", "l2"; "l3" if asked for) of some symbols."""

    def __init__(self, endpoint: str, symbols: list[str], channels=("trade", "bbo", "l2")):
        self.ctx = sockets.context()
        self.sock = sockets.socket(self.ctx, zmq.SUB, rcvhwm=SUBSCRIBER_RCVHWM, connect=endpoint)
        for symbol in symbols:
            for channel in channels:
                self.sock.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
        self.decoder = MarketDataDecoder()

    def receive(self, timeout: float = 10.0) -> MarketData:
        """The next message; events of types this client does not know are left out of it."""
        if not self.sock.poll(int(1000 * timeout)):
            raise TimeoutError("no market data in time")
        return self.decoder.decode(self.sock.recv_multipart()[-1])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()

    def __enter__(self) -> MarketDataClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BookFeed:
    """A consistent, live book of one instrument: snapshot + deltas, re-synced by itself.

        feed = BookFeed("tcp://127.0.0.1:7003", "tcp://127.0.0.1:7005", "BTC-USD")
        while True:
            for event in feed.poll(1.0):      # Trade, TopOfBook, DepthUpdate, in order
                ...
            feed.depth.levels(Side.BUY, 5)    # the book, as of the last event

    With ``orders=True`` it also follows the "l3" channel, and ``depth.resting()`` lists every
    resting order in time priority. It subscribes first, then asks for a snapshot, drops buffered messages the snapshot already
    covers and applies the rest (the ZeroMQ Guide's Clone pattern). While it waits for the snapshot
    it keeps the newest ``MAX_AHEAD`` messages: a snapshot older than those it let go of leaves a
    gap, which re-syncs. A gap in any channel's
    ``chan_seq`` (seen on a message or a heartbeat), a new epoch of the numbering, or silence longer than
    ``silence_s`` makes it re-sync the same way; ``resyncs`` counts how often. Silence is of the
    numbering followed: messages of an older epoch are ignored as stale copies, but notifiers that
    began numberings of their own settle on the oldest one, so a feed that hears nothing but an
    older numbering for ``silence_s`` re-syncs to it. Events of a type this client does not know
    (added to the feed after it) are skipped; their messages still count in the numbering.

    A/B feeds: given several notifiers (the first and its replicas, which carry the same messages
    with the same ``chan_seq``s), it takes each message from whichever copy arrives first and
    ignores the other. A message missing on one line is filled from another, and losing a
    notifier costs no re-sync; a gap that no line fills within ``gap_wait_s`` does. Events stay in
    order within each channel; messages held for a gap come out once it is filled, so they may
    follow later events of other channels. While notifiers disagree on the numbering (each began
    its own, and the newer will soon take the older), the feed stays on the one it follows and
    ignores the others; only once its own has been silent for ``silence_s`` does it re-sync,
    whichever is left. Snapshots are asked of one notifier at a time, the next one whenever a
    request goes unanswered or is refused for now ("try again"); once every one has refused, the
    feed waits ``REFUSED_RETRY_S`` before it asks again.

        feed = BookFeed(["tcp://127.0.0.1:7003", "tcp://127.0.0.1:7103"],
                        ["tcp://127.0.0.1:7005", "tcp://127.0.0.1:7105"], "BTC-USD")
    """

    def __init__(self, publish: str | list[str], snapshots: str | list[str], symbol: str,
                 silence_s: float = 3.0, snapshot_timeout_s: float = 2.0, gap_wait_s: float = 0.5,
                 orders: bool = False):
        self.symbol = symbol
        self.silence_s, self.snapshot_timeout_s, self.gap_wait_s = silence_s, snapshot_timeout_s, gap_wait_s
        self.ctx = sockets.context()
        self.lines = [publish] if isinstance(publish, str) else list(publish)
        self.snapshot_endpoints = [snapshots] if isinstance(snapshots, str) else list(snapshots)
        if not self.lines or not self.snapshot_endpoints:
            raise ValueError("BookFeed needs at least one publish and one snapshots endpoint")
        self.sub = sockets.socket(self.ctx, zmq.SUB, rcvhwm=SUBSCRIBER_RCVHWM)
        self.follows_orders = orders
        for channel in ("trade", "bbo", "l2", "l3") if orders else ("trade", "bbo", "l2"):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
        for endpoint in self.lines:
            self.sub.connect(endpoint)
        self.snapshot_from = 0  # index into snapshot_endpoints: whom to ask; moves on when one does not answer
        self.dealer: zmq.Socket | None = None
        self.messages, self.replies = MarketDataDecoder(), Decoder(SnapshotReply)
        self.depth = Depth(symbol)
        self.synced = False
        self.epoch = 0
        self.chan_seq: dict[str, int] = {}
        self.resyncs = -1  # the first sync is not a re-sync
        self.last_heard = time.monotonic()
        # what came while it waits for a snapshot: the newest MAX_AHEAD messages
        self.buffer: deque[MarketData] = deque(maxlen=MAX_AHEAD)
        self.asked_at = 0.0
        self.retry_at = 0.0  # after a refusal for now by every snapshot endpoint: when to ask again
        self.refusals = 0  # refusals for now in a row, since the last snapshot or wait
        # per channel with a gap that another line may still fill: the messages that came after it
        # (by chan_seq), the highest chan_seq known to exist, and since when the gap is open
        self.ahead: dict[str, dict[int, MarketData]] = {}
        self.known: dict[str, int] = {}
        self.gap_since: dict[str, float] = {}

    def poll(self, timeout: float = 1.0) -> list:
        """Wait up to ``timeout`` s; return the events applied to ``depth`` meanwhile, in order (with
        several lines: in order per channel, see the class docstring)."""
        deadline = time.monotonic() + timeout
        applied: list = []
        while True:
            now = time.monotonic()
            left = deadline - now
            if not self.synced and self.dealer is None:
                if now >= self.retry_at:
                    self._ask()
                else:
                    left = min(left, self.retry_at - now)
            socks = dict(self._poller().poll(sockets.poll_ms(left)))
            now = time.monotonic()
            left = deadline - now
            if self.sub in socks:
                for parts in sockets.drain(self.sub):
                    message = self.messages.decode(parts[-1])
                    if not self.synced:
                        self.buffer.append(message)
                        continue
                    if message.epoch == self.epoch:  # only the numbering followed keeps the feed alive
                        self.last_heard = now
                    if not self._apply(message, applied):
                        self._resync()
            if self.dealer is not None and self.dealer in socks:
                self._on_snapshot(self.replies.decode(self.dealer.recv_multipart()[-1]), applied)
            if self.dealer is not None and now - self.asked_at > self.snapshot_timeout_s:
                self.snapshot_from = (self.snapshot_from + 1) % len(self.snapshot_endpoints)
                self._ask()  # the snapshot (or our request) got lost: ask again, the next notifier
            if self.synced and now - self.last_heard > self.silence_s:
                self.last_heard = now
                self._resync()  # heartbeats stopped: the notifier or our connection went away
            if self.gap_since and now - min(self.gap_since.values()) > self.gap_wait_s:
                self._resync()  # no line had what we missed
            if left <= 0:
                return applied

    def _poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        if self.dealer is not None:
            poller.register(self.dealer, zmq.POLLIN)
        return poller

    def _ask(self) -> None:
        if self.dealer is not None:
            self.dealer.close(linger=0)
        self.dealer = sockets.socket(self.ctx, zmq.DEALER, connect=self.snapshot_endpoints[self.snapshot_from])
        self.dealer.send(encode(SnapshotRequest(self.symbol)))
        self.asked_at = time.monotonic()

    def _resync(self) -> None:
        self.synced = False
        self.buffer = deque(maxlen=MAX_AHEAD)
        self.ahead, self.known, self.gap_since = {}, {}, {}
        self._ask()

    def _on_snapshot(self, reply, applied: list) -> None:
        self.dealer.close(linger=0)
        self.dealer = None
        if not isinstance(reply, BookSnapshot):
            if "try again" not in reply.reason:
                raise ValueError(f"snapshot refused: {reply.reason}")
            # busy, or catching up: the next notifier may have the book now; wait once all have said no
            self.snapshot_from = (self.snapshot_from + 1) % len(self.snapshot_endpoints)
            self.refusals += 1
            if self.refusals >= len(self.snapshot_endpoints):
                self.refusals = 0
                self.retry_at = time.monotonic() + REFUSED_RETRY_S
            return
        self.refusals = 0
        # the resting orders only for a feed that follows "l3": otherwise nothing would keep them up to date
        self.depth.load(reply.bids, reply.asks, reply.top, reply.last_trade, reply.seq,
                        reply.orders if self.follows_orders else ())
        self.epoch, self.chan_seq = reply.epoch, dict(reply.chan_seqs)
        self.synced = True
        self.last_heard = time.monotonic()
        self.resyncs += 1
        buffered, self.buffer = self.buffer, deque(maxlen=MAX_AHEAD)
        for message in buffered:
            if message.epoch < self.epoch or (
                    message.epoch == self.epoch and message.chan_seq <= self.chan_seq.get(message.channel, 0)):
                continue  # already in the snapshot
            if not self._apply(message, applied):
                self._resync()
                return

    def _apply(self, message: MarketData, applied: list) -> bool:
        """Apply one message in sequence; False if it shows that something was missed."""
        if message.epoch != self.epoch:
            # older: stale, ignore. Newer: the numbering began afresh; with several lines, maybe only
            # on one notifier, soon to give it up for the older one: the followed numbering's
            # silence (poll) decides, as for an older one
            return message.epoch < self.epoch or len(self.lines) > 1
        channel = message.channel
        expected = self.chan_seq.get(channel, 0)
        if message.chan_seq <= expected:
            return True  # another line's copy came first (a heartbeat: nothing new)
        heartbeat = not message.events and not isinstance(message, Skipped)
        if heartbeat or message.chan_seq > expected + 1:
            # a heartbeat naming a message we lack, or a message after a gap
            if len(self.lines) == 1:
                return False  # one line: nothing else can fill the gap
            if not heartbeat:
                held = self.ahead.setdefault(channel, {})
                held[message.chan_seq] = message
                if len(held) > MAX_AHEAD:
                    return False
            self.known[channel] = max(self.known.get(channel, 0), message.chan_seq)
            self.gap_since.setdefault(channel, time.monotonic())
            return True
        held = self.ahead.get(channel, {})
        while message is not None:  # this message, then any held ones it makes contiguous
            self.chan_seq[channel] = message.chan_seq
            for event in message.events:
                self.depth.apply(event)
                applied.append(event)
            message = held.pop(message.chan_seq + 1, None)
        if self.chan_seq[channel] >= self.known.get(channel, 0):  # no gap left on this channel
            self.ahead.pop(channel, None)
            self.known.pop(channel, None)
            self.gap_since.pop(channel, None)
        elif channel in self.gap_since:  # a gap was filled, another is still open: it gets its own wait
            self.gap_since[channel] = time.monotonic()
        return True

    def close(self) -> None:
        if self.dealer is not None:
            self.dealer.close(linger=0)
        self.sub.close()
        self.ctx.term()

    def __enter__(self) -> BookFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
