"""Notifier role: fans the engines' released events out to any number of subscribers.

Sockets:
    upstream   XSUB    connect  → every engine's PUB and every ledger shard's PUB (subscribed to everything)
    public     XPUB    bound    ← anyone: market data, topics ``md.<SYMBOL>.<channel>|``
    lanes      XPUB    bound    ← anyone: the same market data on more endpoints (``notifier.lanes``)
    private    XPUB    bound    ← users with a CURVE key: their own ``priv.<user>|`` topic, nothing else
    snapshots  ROUTER  bound    ← subscribers' SnapshotRequests, relayed to the owning engine, and
                                  InstrumentsRequests, answered here from the config
    engines    DEALER  connect  → each engine's ROUTER, for those snapshots

With ``mesh_curve`` on, ``upstream`` and ``engines`` are CURVE clients of their engines and ledger shards
(exchange.wire.security.mesh_keys); the notifier binds no mesh socket, so its ZAP handler serves users only.
Ledger shards (accounts on) publish only private topics: each user's balances after a change, which
reach the user on ``priv.<user>|`` next to the order events that caused them.

Snapshot requests are bounded before they cost an engine anything: at most
``MAX_SNAPSHOTS_PER_ENGINE`` relayed and unanswered per engine, and ``MAX_SNAPSHOTS_PER_CLIENT``
per subscriber connection; beyond that, or when an engine cannot take a request at once, the
subscriber gets ``SnapshotRefused`` with the reason. A request unanswered after
``SNAPSHOT_TIMEOUT_S`` no longer counts. A request that cannot be read is answered
``RequestRefused`` saying what was wrong. No send here ever blocks.

Fairness: one XPUB serves its subscribers in the same order for every message (libzmq walks
them in a fixed order), so some are always first. With lanes, each public message goes out on
every lane, a different lane first each time: who is first rotates from lane to lane, and only
the order inside a lane stays fixed. Spread the subscribers over the lanes.

Messages pass through unchanged: one message per (symbol, channel) per engine release, so fan-out
is paid per batch. PUB drops for a subscriber that cannot keep up; it sees the gap in ``chan_seq``
and re-syncs from a snapshot. On the private feed, XPUB_MANUAL hands every subscription to this
loop, which allows exactly ``priv.<User-Id>|`` — the User-Id that the CURVE handshake (ZAP)
attached to the connection — and refuses the rest, the empty "everything" subscription included.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import zmq

from exchange.wire import sockets
from exchange.config import Config
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    NOTIFIER_REQUEST_FORM, Instruments, InstrumentSpec, InstrumentsRequest, RequestRefused, SnapshotRefused, SnapshotRequest, decode_notifier_request, encode, private_topic,
)
from exchange.wire.security.curve_keys import make_server, server_secret_key
from exchange.wire.security.zap import start_authenticator, user_keys

log = logging.getLogger(__name__)

SUBSCRIBER_HWM = 10_000
MAX_SUBSCRIPTION_SIZE = 4096  # CURVE handshakes need about 512 bytes
MAX_SNAPSHOTS_PER_ENGINE = 64  # requests relayed to one engine and not yet answered
MAX_SNAPSHOTS_PER_CLIENT = 4  # the same, per subscriber connection (a BookFeed has one at a time)
SNAPSHOT_TIMEOUT_S = 5.0  # after this, an unanswered request is taken as lost and no longer counts
MAX_REQUESTS_PER_TURN = 1000  # snapshot requests read per loop turn, so the feed is forwarded meanwhile
TOO_MANY = "too many snapshot requests; try again in a moment"


class Outstanding:
    """Snapshot requests relayed to engines and not yet answered, counted per engine and per client."""

    def __init__(self) -> None:
        self.requests: dict[bytes, tuple[str, bytes, float]] = {}  # token → (engine, client, when); oldest first
        self.per_engine: Counter[str] = Counter()
        self.per_client: Counter[bytes] = Counter()
        self.next_token = 0

    def refusal(self, engine: str, client: bytes) -> str | None:
        """Why one more request of ``client`` to ``engine`` is refused now (None: it is not)."""
        if self.per_client[client] >= MAX_SNAPSHOTS_PER_CLIENT:
            return f"{TOO_MANY} (at most {MAX_SNAPSHOTS_PER_CLIENT} unanswered per connection)"
        if self.per_engine[engine] >= MAX_SNAPSHOTS_PER_ENGINE:
            return TOO_MANY
        return None

    def add(self, engine: str, client: bytes, now: float) -> bytes:
        """Count a request; the token that its answer brings back."""
        self.next_token += 1
        token = self.next_token.to_bytes(8, "big")
        self.requests[token] = (engine, client, now)
        self.per_engine[engine] += 1
        self.per_client[client] += 1
        return token

    def done(self, token: bytes) -> None:
        """The request of ``token`` is answered (or lost); unknown tokens (expired) are ignored."""
        entry = self.requests.pop(token, None)
        if entry is not None:
            engine, client, _ = entry
            for counter, key in ((self.per_engine, engine), (self.per_client, client)):
                counter[key] -= 1
                if not counter[key]:
                    del counter[key]

    def expire(self, now: float) -> None:
        """Forget requests unanswered for SNAPSHOT_TIMEOUT_S (an engine dropped them or restarted)."""
        while self.requests:
            token, (_, _, when) = next(iter(self.requests.items()))
            if now - when < SNAPSHOT_TIMEOUT_S:
                return
            self.done(token)


class Notifier:
    def __init__(self, config: Config, replica: str | None = None):
        """The first notifier of ``config``, or its replica named ``replica``."""
        self.config = config
        self.section = section = config.notifier.replica(replica)
        self.role = f"notifier-{replica}" if replica else "notifier"
        security = MeshSecurity.for_role(config, self.role)
        self.ctx = ctx = zmq.Context(io_threads=section.io_threads)
        ctx.linger = sockets.LINGER_MS
        self.auth = start_authenticator(ctx, users=user_keys(config))
        self.public = self._xpub(section.publish)  # ← anyone
        self.lanes = [self.public, *(self._xpub(lane) for lane in section.lanes)]  # ← anyone, the same feed
        self.published: Counter[bytes] = Counter()  # public messages per topic, to rotate which lane goes first
        self.private = self._xpub(section.private, manual=True)  # ← users with CURVE keys
        self.snapshots = sockets.socket(ctx, zmq.ROUTER, bind=section.snapshots,
                                     max_msg_size=MAX_SUBSCRIPTION_SIZE)  # ← subscribers
        self.upstream = sockets.socket(ctx, zmq.XSUB)  # → engines and ledger shards
        for publisher in (*config.engines, *config.ledgers):
            sockets.connect_to(self.upstream, publisher.publish, security, publisher.role)
        self.upstream.send(b"\x01")  # everything: public and private topics are split here
        self.engines = {e.name: sockets.socket(ctx, zmq.DEALER, connect=e.replay, security=security, peer=e.role)
                        for e in config.engines}
        self.owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        self.outstanding = Outstanding()
        self.instruments = instruments_frame(config)  # the answer to every InstrumentsRequest
        self.forwarded = self.refused = self.snapshots_refused = self.malformed = 0

    def _xpub(self, endpoint: str, manual: bool = False) -> zmq.Socket:
        sock = sockets.socket(self.ctx, zmq.XPUB, max_msg_size=MAX_SUBSCRIPTION_SIZE)
        sock.setsockopt(zmq.SNDHWM, SUBSCRIBER_HWM)
        sock.setsockopt(zmq.BACKLOG, 1024)
        if manual:
            make_server(sock, server_secret_key(self.section.secret_key_file))
            sock.setsockopt(zmq.XPUB_MANUAL, 1)
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        sock.bind(endpoint)
        return sock

    def run(self, stopper: sockets.Stopper) -> None:
        log.info("%s ready: market data on %s, private feed on %s, snapshots on %s, from %d engines"
                 " and %d ledger shards", self.role, ", ".join([self.section.publish, *self.section.lanes]),
                 self.section.private, self.section.snapshots, len(self.config.engines), len(self.config.ledgers))
        sockets.report_ready()
        poller = zmq.Poller()
        for sock in (self.upstream, *self.lanes, self.private, self.snapshots, *self.engines.values()):
            poller.register(sock, zmq.POLLIN)
        while not stopper.requested:
            ready = dict(poller.poll(100))
            if self.upstream in ready:
                for parts in sockets.drain(self.upstream):
                    if parts[0].startswith(b"priv."):
                        self.private.send_multipart(parts)
                    else:
                        self.publish(parts)
                    self.forwarded += 1
            for lane in self.lanes:
                if lane in ready:
                    sockets.drain(lane)  # subscriptions: nothing to do, upstream gets everything
            if self.private in ready:
                self.authorise()
            for sock in self.engines.values():
                if sock in ready:
                    for parts in sockets.drain(sock):
                        self.reply(parts)
            self.outstanding.expire(time.monotonic())
            if self.snapshots in ready:
                for parts in sockets.drain(self.snapshots, MAX_REQUESTS_PER_TURN):
                    self.on_request(parts)

    def publish(self, parts: list[bytes]) -> None:
        """A public message on every lane, a different lane first each time (XPUB drops, never blocks).

        The turn is counted per topic: one release makes a message on several channels, and a count over
        all of them would start one channel's messages on the same lane whenever it divides by the lanes.
        """
        if len(self.lanes) == 1:  # no lanes configured: nothing to rotate
            self.public.send_multipart(parts)
            return
        topic = parts[0]
        for lane in in_turn(self.lanes, self.published[topic]):
            lane.send_multipart(parts)
        self.published[topic] += 1

    def authorise(self) -> None:
        """Decide each (un)subscription on the private feed at once, before the next recv (libzmq #1568)."""
        while True:
            try:
                frame = self.private.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue
            topic = data[1:]
            if data[0] == 0:
                # narrows what a peer gets, so it needs no authorisation; libzmq also hands us the
                # unsubscriptions of a peer that has gone, whose frame has no metadata left to read
                self.private.setsockopt(zmq.UNSUBSCRIBE, topic)
                continue
            user = subscriber(frame)
            if user and topic == private_topic(user):
                self.private.setsockopt(zmq.SUBSCRIBE, topic)
            else:
                self.refused += 1
                log.warning("refused private subscription %r for user %s", topic[:64], user)

    def on_request(self, parts: list[bytes]) -> None:
        """Answer a subscriber's request [client, request]: every one gets exactly one answer."""
        client = parts[0]
        request = (decode_notifier_request(parts[1]) if len(parts) == 2 else
                   RequestRefused(f"a message of {len(parts) - 1} frames; {NOTIFIER_REQUEST_FORM}"))
        match request:
            case SnapshotRequest():
                self.relay_request(client, request)
            case InstrumentsRequest():
                self.answer(client, self.instruments)
            case RequestRefused():
                self.malformed += 1
                log.debug("snapshots: refused a request: %s", request.reason)
                self.answer(client, encode(request))

    def relay_request(self, client: bytes, request: SnapshotRequest) -> None:
        """Pass a subscriber's SnapshotRequest to the engine of its symbol, or refuse it."""
        engine = self.owner.get(request.symbol)
        reason = f"no instrument {request.symbol}" if engine is None else self.outstanding.refusal(engine, client)
        if reason is None:
            token = self.outstanding.add(engine, client, time.monotonic())
            try:  # re-encoded: the engine gets what was understood, not what was sent
                self.engines[engine].send_multipart([client, token, encode(request)], zmq.NOBLOCK)
                return
            except zmq.Again:  # the engine is not connected, or not reading
                self.outstanding.done(token)
                reason = TOO_MANY
        self.snapshots_refused += 1
        self.answer(client, encode(SnapshotRefused(request.symbol, reason)))

    def reply(self, parts: list[bytes]) -> None:
        """An engine's answer [client, token, reply]: count the request answered, pass the reply on."""
        if len(parts) != 3:
            log.warning("snapshots: dropped an engine reply of %d frames", len(parts))
            return
        client, token, body = parts
        self.outstanding.done(token)
        self.answer(client, body)

    def answer(self, client: bytes, body: bytes) -> None:
        try:
            self.snapshots.send_multipart([client, body], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the subscriber left or does not read; it will ask again if it still cares

    def close(self) -> None:
        for sock in (self.upstream, *self.lanes, self.private, self.snapshots, *self.engines.values()):
            sock.close()
        self.auth.stop()
        self.ctx.term()


def in_turn(items: list, n: int) -> list:
    """``items`` starting at the (n mod len)-th: over len(items) calls, each item is first once."""
    k = n % len(items)
    return items[k:] + items[:k]


def instruments_frame(config: Config) -> bytes:
    """``Instruments`` of every instrument in ``config``, encoded (limits with their defaults filled in)."""
    specs = []
    for section in config.instruments:
        built = section.build()
        specs.append(InstrumentSpec(
            section.symbol, section.tick_size, section.lot_size, built.format_qty(built.min_qty),
            built.format_qty(built.max_qty), built.format_price(built.max_price), section.price_band,
            section.reference_price, section.max_notional, section.max_open_orders, section.stp_default,
            section.base, section.quote))
    return encode(Instruments(specs))


def subscriber(frame: zmq.Frame) -> str | None:
    """The User-Id that ZAP attached to the connection of a subscription frame (None if unreadable)."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:  # EINVAL: no metadata, e.g. the connection is already gone
        return None


def run(config: Config, replica: str | None = None) -> None:
    """Run the first notifier, or the replica named ``replica``, until SIGINT or SIGTERM."""
    stopper = sockets.Stopper()
    notifier = Notifier(config, replica)
    sockets.freeze_startup_objects()
    try:
        notifier.run(stopper)
    finally:
        notifier.close()
    log.info("stopped: %d messages forwarded, %d private subscriptions and %d snapshot requests refused,"
             " %d unreadable requests answered", notifier.forwarded, notifier.refused, notifier.snapshots_refused,
             notifier.malformed)
