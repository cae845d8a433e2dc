"""Notifier role: keeps the public books from the batches the journal releases, and fans market data out.

Sockets:
    released   SUB     connect  → the journal writer's watermarks PUB: every engine batch once written
                                  (topic ``released``, exchange.journal.release), and the engines' watermarks
    upstream   XSUB    connect  → every ledger shard's XPUB: the balances of each user who follows their
                                  private feed here, after each change (subscribed per user)
    public     XPUB    bound    ← anyone: market data, topics ``md.<SYMBOL>.<channel>|`` (a subscription
                                  must be a prefix of one: nothing else is kept)
    lanes      XPUB    bound    ← anyone: the same market data on more endpoints (``notifier.lanes``)
    private    XPUB    bound    ← users with a CURVE key: their own ``priv.<user>|`` topic, nothing else
    snapshots  ROUTER  bound    ← subscribers (and other notifiers): SnapshotRequest, answered from this
                                  notifier's books; TradesRequest, from its recent trades; InstrumentsRequest,
                                  answered from the config
    siblings   DEALER  connect  → every other notifier's snapshots ROUTER, for books to start from
    engines    DEALER  connect  → each engine's ROUTER, for books to start from when no other notifier has them

With ``mesh_curve`` on, ``released``, ``upstream`` and ``engines`` are CURVE clients of their roles
(exchange.wire.security.mesh_keys); the notifier binds no mesh socket, so its ZAP handler serves users only.

The books. For every released engine batch the notifier derives, per instrument, one message per
channel that the batch changes (exchange.marketdata.publisher), and each user's order events for
their private topic. To do that from the middle of an engine's history it needs a start per
instrument, the book as of some batch (exchange.marketdata.following): it asks the other notifiers
first (a ``BookSnapshot`` with the batch it reflects), so that it numbers every channel as they do
and a subscriber can take the same message from either; the first notifier turns to the engines
after ``ENGINE_AFTER_S`` without a live sibling, a replica after ``REPLICA_ENGINE_AFTER_S``. A book
from an engine begins a new numbering (a new ``epoch``). Notifiers that could not reach each other
at their start (a partition, or an engine that came up late for all of them) may each have begun
one; so every ``NUMBERING_CHECK_S`` a live notifier asks each sibling which numbering it publishes
each instrument in (a ``TradesRequest`` for no trades: its answer carries the epoch), and one that
finds an older numbering than its own at a sibling starts that engine's instruments over from the
siblings, keeping the older numbering (its subscribers re-sync once). The oldest numbering never
changes, so the notifiers end up all numbering alike. Until an engine's instruments are live,
snapshot requests for them are refused "try again". A gap in an engine's batch numbers (the
notifier was too slow and the journal writer's queue for it overflowed) stops its instruments and
starts them again the same way; their subscribers see the heartbeats stop and re-sync.

Snapshot requests are answered from a cached encoding of the book (one build per batch that
changes it, then a send each), at most ``MAX_REQUESTS_PER_TURN`` per loop turn, and
``TradesRequest`` answers until they have read about ``TRADES_ANSWERED_PER_TURN`` recent trades
(an answer reads only those from its ``since_ns`` on, about as many as it holds: none for
``NO_TRADES``); a request that cannot be read is answered ``RequestRefused`` saying what was wrong.
No send here ever blocks.

Fairness: one XPUB serves its subscribers in the same order for every message (libzmq walks
them in a fixed order), so some are always first. With lanes, each public message goes out on
every lane, a different lane first each time: who is first rotates from lane to lane, and only
the order inside a lane stays fixed. Spread the subscribers over the lanes.

PUB drops for a subscriber that cannot keep up; it sees the gap in ``chan_seq`` and re-syncs from
a snapshot. On the private feed, XPUB_MANUAL hands every subscription to this loop, which allows
exactly ``priv.<User-Id>|`` — the User-Id that the CURVE handshake (ZAP) attached to the connection —
and refuses the rest, the empty "everything" subscription included.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import zmq

from exchange.core.messages import Match, Trade
from exchange.wire import sockets
from exchange.config import Config
from exchange.errors import JournalError, WireError
from exchange.journal.handshake import JournalClient
from exchange.marketdata.following import EngineFollower, Start, Step
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.publisher import CHANNEL_NAMES, MAX_RECENT_TRADES, Publisher, ReleasedBook
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    DAY_NS, NOTIFIER_REQUEST_FORM, RELEASED, BookSnapshot, Decoder, Durable, EngineBook, EngineBookReply, EventBatch,
    HistoryReply, Instruments, InstrumentSpec, InstrumentsRequest, RecentTradesRequest, RequestRefused, SnapshotReply,
    SnapshotRequest, Trades, TradesRefused, TradesRequest, decode_notifier_request,
    durable_prefix, encode, private_topic, topic,
)
from exchange.wire.security.curve_keys import make_server, server_secret_key
from exchange.wire.security.zap import start_authenticator, user_keys

log = logging.getLogger(__name__)

SUBSCRIBER_HWM = 10_000
RELEASED_HWM = 10_000  # released batches queued here; the journal writer holds as many more
MAX_SUBSCRIPTION_SIZE = 4096  # CURVE handshakes need about 512 bytes
MAX_REQUESTS_PER_TURN = 1000  # snapshot requests read per loop turn, so the feed is forwarded meanwhile
# recent trades read for TradesRequest answers per loop turn (a full answer, MAX_RECENT_TRADES, takes
# about 0.4 ms to build): the request that goes past it is the turn's last. Read, not held: an answer
# holds fewer than it reads when a gateway's clock is behind the others'
TRADES_ANSWERED_PER_TURN = 50_000
MAX_SUBSCRIPTIONS_PER_TURN = 1000  # private (un)subscriptions decided per loop turn, for the same reason
# answers queued for one peer that does not read them (then dropped: it asks again); the
# default of 1,000 let one client make the notifier hold a thousand full answers per connection
ANSWERS_PER_PEER = 64
LOGGED_REFUSALS = 100  # refused private subscriptions logged one by one; after that, one in 10,000
HEARTBEAT_S = 1.0  # a channel quiet this long gets an empty message with its current chan_seq
ASK_EVERY_S = 0.5  # while an engine's instruments have no start, ask for them this often
ENGINE_AFTER_S = 1.0  # the first notifier asks the engines once no other notifier has had books for this long
REPLICA_ENGINE_AFTER_S = 10.0  # a replica waits longer: the first notifier's numbering is the one to copy
NUMBERING_CHECK_S = 5.0  # how often a live notifier asks its siblings which numbering they publish in
NO_TRADES = 2**63 - 1  # a TradesRequest's since_ns that asks for no trades, only the numbering
RECENT_WAIT_S = 5.0  # at start, for the journal writer's recent trades


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
        self.public = self._xpub(section.publish, manual=True)  # ← anyone
        self.lanes = [self.public, *(self._xpub(lane, manual=True) for lane in section.lanes)]  # ← anyone, the same feed
        self.published: Counter[bytes] = Counter()  # public messages per topic, to rotate which lane goes first
        self.private = self._xpub(section.private, manual=True, curve=True)  # ← users with CURVE keys
        # what the public feed carries: a subscription must be a prefix of one of these (libzmq would
        # keep any, up to MAX_SUBSCRIPTION_SIZE bytes each, for as long as its client stays)
        self.public_topics = [topic(symbol, channel) for engine in config.engines for symbol in engine.instruments
                              for channel in CHANNEL_NAMES]
        self.refused_public = 0
        self.snapshots = snapshots_socket(ctx, section.snapshots)  # ← subscribers, other notifiers
        self.released = sockets.socket(ctx, zmq.SUB, rcvhwm=RELEASED_HWM)  # → journal writer
        sockets.connect_to(self.released, config.journal.watermarks, security, "journal-writer")
        self.released.setsockopt(zmq.SUBSCRIBE, RELEASED)
        for engine in config.engines:  # the watermarks tell when an engine's book taken at start is released
            self.released.setsockopt(zmq.SUBSCRIBE, durable_prefix(engine.name))
        # → ledger shards. No send limit: on reconnecting, the XSUB sends every user it follows at once
        # (libzmq drops what exceeds the limit, silently); they are at most the config's users
        self.upstream = sockets.socket(ctx, zmq.XSUB, sndhwm=0)
        for shard in config.ledgers:
            sockets.connect_to(self.upstream, shard.publish, security, shard.role)
        # a user's balances are asked of the ledger shards each time the user follows their private
        # feed here (``authorise``): a shard answers each subscription with the balances as they are
        # (its XPUB is verbose), so a second subscriber gets them at once too, not when they next
        # change; the shards send nobody's otherwise. Never taken back: an unsubscription does not say
        # whose it is once its peer has gone
        self.siblings = [sockets.socket(ctx, zmq.DEALER, connect=endpoint)
                         for endpoint in sibling_snapshots(config, replica)]
        self.engines = {e.name: sockets.socket(ctx, zmq.DEALER, connect=e.replay, security=security, peer=e.role)
                        for e in config.engines}
        self.publisher = Publisher({symbol: e.name for e in config.engines for symbol in e.instruments}, HEARTBEAT_S)
        self.remember_recent_trades(security)
        self.followers = {e.name: EngineFollower(e.name, e.instruments) for e in config.engines}
        now = time.monotonic()
        self.following_since = dict.fromkeys(self.followers, now)  # when each began gathering its starts
        self.asked = dict.fromkeys(self.followers, 0.0)
        self.engine_after = REPLICA_ENGINE_AFTER_S if replica else ENGINE_AFTER_S
        self.batches, self.durables = Decoder(EventBatch), Decoder(Durable)
        self.sibling_answers = Decoder(SnapshotReply | Trades | TradesRefused)
        self.engine_books = Decoder(EngineBookReply)
        self.numbering_checked = now
        self.instruments = instruments_frame(config)  # the answer to every InstrumentsRequest
        self.forwarded = self.refused = self.malformed = 0
        self.reported = False  # ready, to the launcher: once every engine's books are live

    def remember_recent_trades(self, security: MeshSecurity | None) -> None:
        """Each instrument's trades of the last day, as the journal holds them now (the released batches
        from here on come after: the SUB is already subscribed). Without an answer in RECENT_WAIT_S, the
        notifier starts without them: its recent trades are then those it publishes."""
        since = time.time_ns() - DAY_NS
        try:
            with JournalClient(self.config.journal.history, security, HistoryReply) as history:
                for engine in self.config.engines:
                    for symbol in engine.instruments:
                        answer = history.ask(RecentTradesRequest(time.time_ns(), engine.name, symbol, since,
                                                                 MAX_RECENT_TRADES), RECENT_WAIT_S)
                        for trade in answer.trades:
                            self.publisher.remember(trade)
        except JournalError as e:
            log.warning("starting without the recent trades from the journal: %s", e)

    def _xpub(self, endpoint: str, manual: bool = False, curve: bool = False) -> zmq.Socket:
        """An XPUB; ``manual``: each (un)subscription is handed to this loop to decide."""
        sock = sockets.socket(self.ctx, zmq.XPUB, max_msg_size=MAX_SUBSCRIPTION_SIZE)
        sock.setsockopt(zmq.SNDHWM, SUBSCRIBER_HWM)
        sock.setsockopt(zmq.BACKLOG, 1024)
        if curve:
            make_server(sock, server_secret_key(self.section.secret_key_file))
        if manual:
            sock.setsockopt(zmq.XPUB_MANUAL, 1)
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        sock.bind(endpoint)
        return sock

    def run(self, stopper: sockets.Stopper) -> None:
        log.info("%s ready: market data on %s, private feed on %s, snapshots on %s, from %d engines"
                 " and %d ledger shards", self.role, ", ".join([self.section.publish, *self.section.lanes]),
                 self.section.private, self.section.snapshots, len(self.config.engines), len(self.config.ledgers))
        poller = zmq.Poller()
        starts = (*self.siblings, *self.engines.values())
        for sock in (self.released, self.upstream, *self.lanes, self.private, self.snapshots, *starts):
            poller.register(sock, zmq.POLLIN)
        while not stopper.requested:
            ready = dict(poller.poll(100))
            now = time.monotonic()
            if self.released in ready:
                for parts in sockets.drain(self.released):
                    self.on_released(parts, now)
            if self.upstream in ready:
                for parts in sockets.drain(self.upstream):
                    self.private.send_multipart(parts)
                    self.forwarded += 1
            for lane in self.lanes:
                if lane in ready:
                    self.subscribe_public(lane)
            if self.private in ready:
                self.authorise()
            for sock in self.siblings:
                if sock in ready:
                    for parts in sockets.drain(sock):
                        self.on_start(parts[-1], self.sibling_answers, now)
            for sock in self.engines.values():
                if sock in ready:
                    for parts in sockets.drain(sock):
                        self.on_start(parts[-1], self.engine_books, now)
            if self.snapshots in ready:  # after the released batches of this turn: a BOOK asked after
                self.answer_requests()  # an ACK shows the order
            for frames in self.publisher.heartbeats(now):
                self.publish(frames)
            self.ask_for_starts(now)
            self.check_numberings(now)

    def on_released(self, parts: list[bytes], now: float) -> None:
        """One engine batch that the journal writer has written (private updates, then market data), or
        an engine's durable watermark."""
        try:
            if len(parts) == 1:
                durable = self.durables.decode(parts[0])
                follower = self.followers.get(durable.engine)
                if follower is not None:
                    self.take(follower, follower.durable(durable.epoch, durable.batch), now)
                return
            batch = self.batches.decode(parts[-1])
        except WireError as e:
            log.warning("released: dropped %s", e)
            return
        follower = self.followers.get(batch.engine)
        if follower is None:
            return
        was_live = follower.live
        new, step = follower.released(batch)
        if new:
            events = [event for entry in batch.entries for event in entry.events]
            for frames in self.publisher.private(batch.engine, batch.epoch, events):
                self.private.send_multipart(frames)
            if not (was_live and step.apply):
                # not published at once (held while the notifier gathers its start, or already in the
                # book it started from): its trades are recent trades all the same, or an answer to a
                # TradesRequest would have a hole (a batch published at once is remembered as it is
                # published)
                remember = self.publisher.remember
                for event in events:
                    if type(event) is Match and event.symbol in self.publisher.recent:
                        remember(event.trade())
                    elif type(event) is Trade and event.symbol in self.publisher.recent:
                        remember(event)
        self.take(follower, step, now)

    def on_start(self, body: bytes, decoder: Decoder, now: float) -> None:
        """Another notifier's book (BookSnapshot) or an engine's (EngineBook), to start an instrument from;
        or another notifier's ``Trades`` for no trades, saying which numbering it publishes the instrument in."""
        try:
            reply = decoder.decode(body)
        except WireError as e:
            log.warning("starts: dropped %s", e)
            return
        engine = self.publisher.engine_of.get(reply.symbol)
        if engine is None:
            return
        if isinstance(reply, Trades):  # the numbering a sibling publishes the instrument in
            self.on_sibling_numbering(engine, reply, now)
            return
        if isinstance(reply, BookSnapshot) and reply.batch is not None:  # batch 0: live before any batch
            where = (reply.batch, reply.epoch, dict(reply.chan_seqs), 0, True)
        elif isinstance(reply, EngineBook):
            where = (reply.batch, 0, {}, reply.engine_epoch, reply.durable_batch >= reply.batch)
        else:
            return  # refused ("try again": that notifier is starting too), or from a notifier that says no batch
        levels = LevelBook(reply.symbol)
        levels.load(reply.orders)
        start = Start(ReleasedBook(levels, reply.last_trade, reply.seq), *where)
        follower = self.followers[engine]
        self.take(follower, follower.started(reply.symbol, start), now)

    def take(self, follower: EngineFollower, step: Step, now: float) -> None:
        """Do what the follower says: load the books it went live with, publish batches, or stop."""
        publisher = self.publisher
        if step.stopped:
            log.warning("engine %s: stopped publishing its instruments (released batches were lost on the way"
                        " here, or another notifier numbers them in an older numbering); taking its books again",
                        follower.engine)
            for symbol in follower.symbols:
                publisher.unload(symbol)
            self.following_since[follower.engine] = now
            self.asked[follower.engine] = 0.0
        if step.starts:
            epoch = time.time_ns()  # for the books that begin a numbering here
            for symbol, start in step.starts.items():
                publisher.load(symbol, start.book, follower.last, start.epoch or epoch, start.chan_seqs, now)
            fresh = sum(not start.epoch for start in step.starts.values())
            log.info("engine %s: publishing from batch %d (%d instruments from another notifier, %d from the"
                     " engine)", follower.engine, follower.last, len(step.starts) - fresh, fresh)
            if not self.reported and all(f.live for f in self.followers.values()):
                self.reported = True
                sockets.report_ready()  # the launcher's banner waits for the market data, not just the sockets
        for batch, symbols in step.apply:
            commands = [entry.events for entry in batch.entries if entry.events]
            if symbols is not None:
                commands = [kept for events in commands if (kept := [e for e in events if e.symbol in symbols])]
            for frames in publisher.market_data(batch.engine, batch.batch, commands, now):
                self.publish(frames)

    def ask_for_starts(self, now: float) -> None:
        """For every engine not live: ask the other notifiers, and after a while the engine, for its books."""
        for name, follower in self.followers.items():
            missing = follower.missing()
            if not missing or now - self.asked[name] < ASK_EVERY_S:
                continue
            self.asked[name] = now
            targets = list(self.siblings)
            if now - self.following_since[name] >= self.engine_after or not targets:
                targets.append(self.engines[name])
            for symbol in missing:
                ask(targets, SnapshotRequest(symbol))

    def check_numberings(self, now: float) -> None:
        """Every NUMBERING_CHECK_S, ask each sibling which numbering it publishes each live instrument in."""
        if not self.siblings or now - self.numbering_checked < NUMBERING_CHECK_S:
            return
        self.numbering_checked = now
        for symbol in self.publisher.books:
            ask(self.siblings, TradesRequest(symbol, NO_TRADES))

    def on_sibling_numbering(self, engine: str, trades: Trades, now: float) -> None:
        """A sibling numbers ``trades.symbol`` in ``trades.epoch``: if that is older than this notifier's
        numbering, start the engine's instruments over, to continue the older one."""
        ours = self.publisher.epoch.get(trades.symbol)
        if ours is None or trades.epoch >= ours:
            return
        log.warning("engine %s: another notifier numbers %s in an older numbering (epoch %d, here %d); taking"
                    " its books again to number as it does", engine, trades.symbol, trades.epoch, ours)
        follower = self.followers[engine]
        self.take(follower, follower.start_over(), now)

    def publish(self, parts: list[bytes]) -> None:
        """A public message on every lane, a different lane first each time (XPUB drops, never blocks).

        The turn is counted per topic: one release makes a message on several channels, and a count over
        all of them would start one channel's messages on the same lane whenever it divides by the lanes.
        """
        self.forwarded += 1
        if len(self.lanes) == 1:  # no lanes configured: nothing to rotate
            self.public.send_multipart(parts)
            return
        topic = parts[0]
        for lane in in_turn(self.lanes, self.published[topic]):
            lane.send_multipart(parts)
        self.published[topic] += 1

    def subscribe_public(self, lane: zmq.Socket) -> None:
        """Take each (un)subscription on a public lane that names what the feed carries (a prefix of a
        topic of it: one channel, a symbol's channels, everything), before the next recv (libzmq
        #1568); at most MAX_SUBSCRIPTIONS_PER_TURN a turn. Anything else is not kept."""
        topics = self.public_topics
        for _ in range(MAX_SUBSCRIPTIONS_PER_TURN):
            try:
                data = lane.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not data or data[0] not in (0, 1):
                continue
            wanted = data[1:]
            if data[0] == 0:
                lane.setsockopt(zmq.UNSUBSCRIBE, wanted)
            elif any(t.startswith(wanted) for t in topics):
                lane.setsockopt(zmq.SUBSCRIBE, wanted)
            else:
                self.refused_public += 1
                if self.refused_public <= LOGGED_REFUSALS or self.refused_public % 10_000 == 0:
                    log.warning("ignored public subscription %r: no topic of the feed begins so (%d so far)",
                                wanted[:64], self.refused_public)

    def authorise(self) -> None:
        """Decide each (un)subscription on the private feed at once, before the next recv (libzmq #1568);
        at most MAX_SUBSCRIPTIONS_PER_TURN per turn (the rest wait in the socket for the next), so
        that a flood of them cannot hold the loop."""
        for _ in range(MAX_SUBSCRIPTIONS_PER_TURN):
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
                self.upstream.send(b"\x01" + topic)  # and the shards answer it with the balances as they are
            else:
                self.refused += 1
                if self.refused <= LOGGED_REFUSALS or self.refused % 10_000 == 0:
                    log.warning("refused private subscription %r for user %s (%d refused so far)", topic[:64],
                                user, self.refused)

    def answer_requests(self) -> int:
        """Answer the requests waiting, at most MAX_REQUESTS_PER_TURN of them and until their answers
        have read TRADES_ANSWERED_PER_TURN recent trades; the rest wait in the socket for the next
        turns. Returns how many were answered."""
        budget = TRADES_ANSWERED_PER_TURN
        answered = 0
        while answered < MAX_REQUESTS_PER_TURN and budget > 0:
            try:
                parts = self.snapshots.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            budget -= self.on_request(parts)
            answered += 1
        return answered

    def on_request(self, parts: list[bytes]) -> int:
        """Answer a subscriber's request [client, request]: every one gets exactly one answer. Returns
        how many recent trades were read for the answer."""
        client = parts[0]
        request = (decode_notifier_request(parts[1]) if len(parts) == 2 else
                   RequestRefused(f"a message of {len(parts) - 1} frames; {NOTIFIER_REQUEST_FORM}"))
        match request:
            case SnapshotRequest():
                self.answer(client, self.publisher.snapshot_frame(request.symbol))
            case InstrumentsRequest():
                self.answer(client, self.instruments)
            case TradesRequest():
                trades, read = self.publisher.trades(request.symbol, request.since_ns, time.time_ns())
                self.answer(client, encode(trades))
                return read
            case RequestRefused():
                self.malformed += 1
                log.debug("snapshots: refused a request: %s", request.reason)
                self.answer(client, encode(request))
        return 0

    def answer(self, client: bytes, body: bytes) -> None:
        try:
            # not copied: the answers queued for many peers share the one cached snapshot frame
            self.snapshots.send_multipart([client, body], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            pass  # the subscriber left or does not read; it will ask again if it still cares

    def close(self) -> None:
        for sock in (self.released, self.upstream, *self.lanes, self.private, self.snapshots, *self.siblings,
                     *self.engines.values()):
            sock.close()
        self.auth.stop()
        self.ctx.term()


def snapshots_socket(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """The ROUTER that takes subscribers' (and other notifiers') requests, bound at ``endpoint``."""
    return sockets.socket(ctx, zmq.ROUTER, bind=endpoint, sndhwm=ANSWERS_PER_PEER, max_msg_size=MAX_SUBSCRIPTION_SIZE)


def ask(socks: list[zmq.Socket], request) -> None:
    """Send ``request`` to each of ``socks`` that can take it now (one not connected, or whose queue is
    full, is skipped: whoever asks, asks again later)."""
    frame = encode(request)
    for sock in socks:
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass


def sibling_snapshots(config: Config, replica: str | None) -> list[str]:
    """The snapshots endpoints of every notifier of ``config`` but the one named ``replica``
    (None: the first)."""
    section = config.notifier
    endpoints = {None: section.snapshots, **{r.name: r.snapshots for r in section.replicas}}
    return [endpoint for name, endpoint in endpoints.items() if name != replica]


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
    restarts = sum(f.restarts for f in notifier.followers.values())
    log.info("stopped: %d messages published, %d private subscriptions refused, %d unreadable requests"
             " answered, %d times behind the journal", notifier.forwarded, notifier.refused, notifier.malformed,
             restarts)
