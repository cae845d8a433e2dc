"""Small, blocking Python clients for the exchange: order entry (text or ZMQ) and market data.

    with TextClient("127.0.0.1", 7001) as c:
        c.request("LOGIN alice alice-key")          # -> "OK LOGIN alice"
        c.request("BUY BTC-USD 0.5 @ 43000.10")     # -> "ACK 1-1 BUY BTC-USD 0.5000 @ 43000.10 GTC"
        c.read_line()                               # a pushed FILL/OUT line, when one comes

Every wait has a timeout (TimeoutError), so a test or a script never hangs.
"""

from __future__ import annotations

import socket
import time
from collections import deque

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from exchange import curve, mesh
from exchange.market_data import Depth
from exchange.protocol import AnyReply, ClientReply, ClientRequest
from exchange.wire import (
    BookSnapshot, Decoder, MarketData, PrivateData, SnapshotReply, SnapshotRequest, encode, private_topic,
    topic,
)

HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
PUSHED = ("FILL ", "OUT ", "REDUCED ")  # lines the gateway sends without a request
# a lagging SUB with libzmq's default queue (1,000) can hit an assertion (libzmq #3937); a deep
# queue also lets a briefly busy subscriber catch up without a re-sync
SUBSCRIBER_RCVHWM = 100_000
MAX_AHEAD = 10_000  # messages a BookFeed holds past a gap while its other lines may fill it
REFUSED_RETRY_S = 0.5  # a BookFeed refused a snapshot for now ("try again") asks again after this


class TextClient:
    """A text-protocol session over TCP. ``request`` sends a line and returns its one reply line;
    pushed lines (FILL, OUT, REDUCED) that arrive meanwhile are kept in ``pushed``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""
        self.pushed: deque[str] = deque()

    def send_line(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data if data.endswith(b"\n") else data + b"\n")

    def read_line(self, timeout: float | None = None) -> str:
        """The next line from the gateway, whatever it is."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from the gateway in time; have {self.buffer[:80]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def read_reply(self, timeout: float | None = None, canceling: str | None = None) -> str:
        """The next reply line, keeping pushed lines aside in ``pushed``.

        The reply to ``CANCEL x`` is itself an ``OUT`` line: pass ``canceling=x`` to accept
        ``OUT … CANCELED`` naming ``x`` as the reply.
        """
        while True:
            line = self.read_line(timeout)
            words = line.split()
            if canceling and words[0] == "OUT" and canceling in words[1:3] and words[-1] == "CANCELED":
                return line
            if line.startswith(PUSHED):
                self.pushed.append(line)
            else:
                return line

    def request(self, line: str, timeout: float | None = None) -> str:
        """Send one request line; return its reply line."""
        self.send_line(line)
        words = line.split()
        canceling = words[1] if len(words) == 2 and words[0].upper() == "CANCEL" else None
        return self.read_reply(timeout, canceling)

    def next_pushed(self, timeout: float | None = None) -> str:
        """The next pushed line (FILL, OUT, REDUCED), from ``pushed`` or the socket."""
        if self.pushed:
            return self.pushed.popleft()
        line = self.read_line(timeout)
        if not line.startswith(PUSHED):
            raise AssertionError(f"expected a pushed line, got {line!r}")
        return line

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TextClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZmqClient:
    """An order entry session over ZMQ (DEALER): msgpack requests in, msgpack replies out.

    For a gateway with ``zmq_auth: curve`` give ``curve_keys=(gateway public key, own public key,
    own secret key)`` (Z85): the session is then logged in as the user whose key it holds.
    """

    def __init__(self, endpoint: str, timeout: float = 10.0,
                 curve_keys: tuple[bytes, bytes, bytes] | None = None):
        self.timeout = timeout
        self.ctx = mesh.context()
        self.sock = mesh.socket(self.ctx, zmq.DEALER)
        if curve_keys is not None:
            curve.make_client(self.sock, *curve_keys)
        self.sock.connect(endpoint)
        self.decoder = msgspec.msgpack.Decoder(AnyReply)

    def send(self, request: ClientRequest) -> None:
        self.sock.send(encode(request))

    def receive(self, timeout: float | None = None) -> ClientReply:
        if not self.sock.poll(int(1000 * (timeout if timeout is not None else self.timeout))):
            raise TimeoutError("no reply from the gateway in time")
        return self.decoder.decode(self.sock.recv())

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()

    def __enter__(self) -> ZmqClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MarketDataClient:
    """A subscriber to the notifier's public channels ("trade", "bbo", "l2") of some symbols."""

    def __init__(self, endpoint: str, symbols: list[str], channels=("trade", "bbo", "l2")):
        self.ctx = mesh.context()
        self.sock = mesh.socket(self.ctx, zmq.SUB, rcvhwm=SUBSCRIBER_RCVHWM, connect=endpoint)
        for symbol in symbols:
            for channel in channels:
                self.sock.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
        self.decoder = Decoder(MarketData)

    def receive(self, timeout: float = 10.0) -> MarketData:
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

    It subscribes first, then asks for a snapshot, drops buffered messages the snapshot already
    covers and applies the rest (the ZeroMQ Guide's Clone pattern). A gap in any channel's
    ``chan_seq`` (seen on a message or a heartbeat), a new engine epoch, or silence longer than
    ``silence_s`` makes it re-sync the same way; ``resyncs`` counts how often.

    A/B feeds: given several notifiers (the first and its replicas, which carry the same messages
    with the same ``chan_seq``s), it takes each message from whichever copy arrives first and
    ignores the other. A message missing on one line is filled from another, and losing a
    notifier costs no re-sync; a gap that no line fills within ``gap_wait_s`` does. Events stay in
    order within each channel; messages held for a gap come out once it is filled, so they may
    follow later events of other channels. Snapshots are asked of one notifier at a time, the
    next one whenever a request goes unanswered.

        feed = BookFeed(["tcp://127.0.0.1:7003", "tcp://127.0.0.1:7103"],
                        ["tcp://127.0.0.1:7005", "tcp://127.0.0.1:7105"], "BTC-USD")
    """

    def __init__(self, publish: str | list[str], snapshots: str | list[str], symbol: str,
                 silence_s: float = 3.0, snapshot_timeout_s: float = 2.0, gap_wait_s: float = 0.5):
        self.symbol = symbol
        self.silence_s, self.snapshot_timeout_s, self.gap_wait_s = silence_s, snapshot_timeout_s, gap_wait_s
        self.ctx = mesh.context()
        self.lines = [publish] if isinstance(publish, str) else list(publish)
        self.snapshot_endpoints = [snapshots] if isinstance(snapshots, str) else list(snapshots)
        if not self.lines or not self.snapshot_endpoints:
            raise ValueError("BookFeed needs at least one publish and one snapshots endpoint")
        self.sub = mesh.socket(self.ctx, zmq.SUB, rcvhwm=SUBSCRIBER_RCVHWM)
        for channel in ("trade", "bbo", "l2"):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
        for endpoint in self.lines:
            self.sub.connect(endpoint)
        self.snapshot_from = 0  # index into snapshot_endpoints: whom to ask; moves on when one does not answer
        self.dealer: zmq.Socket | None = None
        self.messages, self.replies = Decoder(MarketData), Decoder(SnapshotReply)
        self.depth = Depth(symbol)
        self.synced = False
        self.epoch = 0
        self.chan_seq: dict[str, int] = {}
        self.resyncs = -1  # the first sync is not a re-sync
        self.last_heard = time.monotonic()
        self.buffer: list[MarketData] = []
        self.asked_at = 0.0
        self.retry_at = 0.0  # after a refusal for now: when to ask again
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
            socks = dict(self._poller().poll(max(0, int(left * 1000))))
            now = time.monotonic()
            left = deadline - now
            if self.sub in socks:
                for parts in mesh.drain(self.sub):
                    self.last_heard = now
                    message = self.messages.decode(parts[-1])
                    if not self.synced:
                        self.buffer.append(message)
                    elif not self._apply(message, applied):
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
        self.dealer = mesh.socket(self.ctx, zmq.DEALER, connect=self.snapshot_endpoints[self.snapshot_from])
        self.dealer.send(encode(SnapshotRequest(self.symbol)))
        self.asked_at = time.monotonic()

    def _resync(self) -> None:
        self.synced = False
        self.buffer = []
        self.ahead, self.known, self.gap_since = {}, {}, {}
        self._ask()

    def _on_snapshot(self, reply, applied: list) -> None:
        self.dealer.close(linger=0)
        self.dealer = None
        if not isinstance(reply, BookSnapshot):
            if "try again" not in reply.reason:
                raise ValueError(f"snapshot refused: {reply.reason}")
            self.retry_at = time.monotonic() + REFUSED_RETRY_S  # too many requests at the notifier
            return
        self.depth.load(reply.bids, reply.asks, reply.top, reply.last_trade, reply.seq)
        self.epoch, self.chan_seq = reply.epoch, dict(reply.chan_seqs)
        self.synced = True
        self.resyncs += 1
        buffered, self.buffer = self.buffer, []
        for message in buffered:
            if message.epoch < self.epoch or (
                    message.epoch == self.epoch and message.chan_seq <= self.chan_seq[message.channel]):
                continue  # already in the snapshot
            if not self._apply(message, applied):
                self._resync()
                return

    def _apply(self, message: MarketData, applied: list) -> bool:
        """Apply one message in sequence; False if it shows that something was missed."""
        if message.epoch != self.epoch:
            return message.epoch < self.epoch  # older: stale, ignore; newer: the engine restarted
        channel = message.channel
        expected = self.chan_seq.get(channel, 0)
        if message.chan_seq <= expected:
            return True  # another line's copy came first (a heartbeat: nothing new)
        if not message.events or message.chan_seq > expected + 1:
            # a heartbeat naming a message we lack, or a message after a gap
            if len(self.lines) == 1:
                return False  # one line: nothing else can fill the gap
            if message.events:
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


class PrivateFeed:
    """A user's own order updates from the notifier's CURVE-protected private feed.

    The notifier refuses a key it does not know during the CURVE handshake (its ZAP handler), so
    nothing is ever sent to it. With ``admitted_within`` (seconds) the feed waits for the
    handshake's outcome, seen on a socket monitor: PermissionError if the key was refused,
    TimeoutError if the notifier did not answer in time. Without it, a refused key just stays silent.
    """

    def __init__(self, endpoint: str, server_public: bytes, user: str, public: bytes, secret: bytes,
                 admitted_within: float | None = None):
        self.ctx = mesh.context()
        self.sub = self.ctx.socket(zmq.SUB)
        curve.make_client(self.sub, server_public, public, secret)
        self.sub.setsockopt(zmq.SUBSCRIBE, private_topic(user))
        monitor = self.sub.get_monitor_socket(HANDSHAKE_EVENTS) if admitted_within is not None else None
        self.sub.connect(endpoint)
        self.decoder = Decoder(PrivateData)
        if monitor is not None:
            try:
                refusal = handshake_refusal(monitor, admitted_within, f"{user}'s CURVE key", endpoint)
            finally:
                self.sub.disable_monitor()
                monitor.close(linger=0)
            if refusal is not None:
                self.close()
                raise refusal

    def receive(self, timeout: float = 10.0) -> PrivateData:
        if not self.sub.poll(int(1000 * timeout)):
            raise TimeoutError("no private update in time")
        return self.decoder.decode(self.sub.recv_multipart()[-1])

    def close(self) -> None:
        self.sub.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> PrivateFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def handshake_refusal(monitor: zmq.Socket, timeout: float, key: str, endpoint: str) -> Exception | None:
    """None once a CURVE handshake succeeds on the monitored socket; else why not (the error to raise)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not monitor.poll(int(left * 1000)):
            break
        event = recv_monitor_message(monitor)
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return None
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return PermissionError(f"the notifier refused {key}: it lists no user with this key"
                                   f" (status {event['value']}); a new key needs the notifier restarted"
                                   " with a config that lists it")
        return PermissionError(f"the CURVE handshake with {endpoint} failed: was the notifier's public key"
                               " the one it has now?")
    return TimeoutError(f"no answer from {endpoint} to the CURVE handshake within {timeout:g} s")
