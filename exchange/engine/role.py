"""Engine role: owns the books of some instruments; matches commands; releases output once durable.

Sockets (this process binds the stable side):
    commands  PULL   bound    ← gateways' Requests (several per message)
    journal   PUSH   connect  → journal writer: EventBatch per drained set of commands (several if large)
    durable   SUB    connect  ← journal writer: Durable watermarks
    replay    ROUTER bound    ← journal writer: ReplayRequest → the retained batches again;
                                a notifier that starts: SnapshotRequest → EngineBook, the book as matched

With ``mesh_curve`` on, the bound sockets are CURVE servers that admit mesh roles only and the
connected ones CURVE clients of the journal writer (exchange.wire.security.mesh_keys).

Matching runs ahead of the journal; nothing leaves towards clients before the journal holds it
(docs/architecture.md, guarantee 2). Everything that does leaves from the journal writer, as it
writes each batch (exchange.journal.release): the answers to the gateway, the batches for the
ledger shards and for the notifiers, which derive the market data. Batches stay in memory until
durable, for replay; past ``max_undurable_events`` the engine stops reading commands.
"""

from __future__ import annotations

import logging
import time
from itertools import islice

import zmq
from exchange.journal import handshake
from exchange.wire import sockets
from exchange.config import Config
from exchange.errors import JournalError, WireError
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    Decoder, Durable, EngineRequest, HistoryReply, OpenEpoch, durable_prefix, Requests, SnapshotRequest, encode,
)
from exchange.engine.recovery import recover_over_mesh
from exchange.engine.batches import Engine
from exchange.journal.readers import EnginePosition
from exchange.wire.security.zap import start_authenticator


log = logging.getLogger(__name__)


MAX_MESSAGES_PER_BATCH = 200  # each holds one gateway loop turn's requests, bounded by max_in_flight


FLUSH_ON_STOP_S = 2.0


MAX_ENGINE_REQUESTS_PER_TURN = 64  # snapshot and replay requests read per loop turn; the rest wait in the socket
# answers queued on the replay socket for one requester that does not read them: past it a book is
# dropped (the notifier asks again) and a replay goes on at a later turn. The default of 1,000 let
# one notifier that stopped reading make the engine hold a thousand books
ANSWERS_PER_PEER = 64
# replays under way at once, one per requester: the journal writer's (and a restarted writer's,
# whose old one ends when its connection does); past it the oldest is dropped (its writer asks again)
MAX_REPLAYS = 8
REPLAY_POLL_MS = 10  # the loop's wait while a replay is under way: each turn sends it on


class EngineProcess:
    """The engine's sockets around an Engine and its Publisher: one poll loop, one handler per socket."""

    def __init__(self, config: Config, name: str, stopper: sockets.Stopper):
        self.config = config
        self.spec = spec = config.engine(name)
        self.security = security = MeshSecurity.for_role(config, spec.role)  # before recovery: fail fast
        instruments = [config.instrument_map()[symbol] for symbol in spec.instruments]
        opened = handshake.ask(config, OpenEpoch(name, time.time_ns()), security,
                                      stopped=lambda: stopper.requested)
        held = EnginePosition(opened.epoch, opened.batch, opened.seq)
        with handshake.JournalClient(config.journal.history, security, HistoryReply,
                                     stopped=lambda: stopper.requested) as history:
            matcher, position, last_trades = recover_over_mesh(history, name, spec.id, instruments,
                                                               round(spec.client_order_id_window * 1e9))
        if (position.batch, matcher.seq) != (held.batch, held.seq):  # the writer froze this history for us
            raise JournalError(f"engine {name}: the journal holds batch {held.batch} seq {held.seq}, but its"
                               f" events rebuild batch {position.batch} seq {matcher.seq}; run"
                               " `exchange journal verify`")
        self.engine = Engine(name, matcher, opened.epoch, held, spec.checkpoint_every, spec.checkpoint_part_size,
                             last_trades)
        # half the gateway's wait: what executes is answered before the gateway gives up on it
        self.engine.max_order_age_ns = int(config.gateway.request_timeout * 1e9 / 2)
        self.ctx = ctx = sockets.context()
        self.auth = start_authenticator(ctx, roles=security.role_keys()) if security else None
        self.commands = sockets.socket(ctx, zmq.PULL, bind=spec.commands, security=security)  # ← gateways
        self.open_replay(ctx, spec.replay, security)  # ← journal writer, notifiers
        self.to_journal = sockets.socket(ctx, zmq.PUSH, connect=config.journal.events, security=security,
                                      peer="journal-writer")  # → journal writer
        self.durable = sockets.socket(ctx, zmq.SUB, connect=config.journal.watermarks, security=security,
                                   peer="journal-writer")  # ← journal writer
        self.durable.setsockopt(zmq.SUBSCRIBE, durable_prefix(name))  # its own watermarks only
        self.requests, self.durables = Decoder(Requests), Decoder(Durable)

    def open_replay(self, ctx: zmq.Context, endpoint: str, security: MeshSecurity | None) -> None:
        """The replay ROUTER, bound at ``endpoint``, and what its handlers keep between turns."""
        self.replay = sockets.socket(ctx, zmq.ROUTER, bind=endpoint, sndhwm=ANSWERS_PER_PEER, security=security)
        self.engine_requests = Decoder(EngineRequest)
        # requester's routing id → (its envelope, the next batch to send it) of a replay under way,
        # oldest first
        self.replays: dict[bytes, tuple[tuple[bytes, ...], int]] = {}
        self.books: dict[str, bytes] = {}  # symbol → its encoded Engine.book, as of ``books_at``
        self.books_at = (-1, -1)  # the engine's (batch, durable_batch) the books are of

    def run(self, stopper: sockets.Stopper) -> None:
        engine, spec = self.engine, self.spec
        log.info("ready: engine %s id %d epoch %d, %s from batch %d seq %d, commands on %s",
                 engine.name, spec.id, engine.epoch, ",".join(spec.instruments), engine.batch,
                 engine.matcher.seq, spec.commands)
        sockets.report_ready()
        busy = False
        poller = zmq.Poller()
        for sock in (self.durable, self.replay, self.commands):
            poller.register(sock, zmq.POLLIN)
        while not stopper.requested:
            full = engine.retained_events >= spec.max_undurable_events
            if full != busy:
                busy = full
                poller.modify(self.commands, 0 if busy else zmq.POLLIN)
                log.warning("journal behind by %d events: %s", engine.retained_events,
                            "no longer reading commands" if busy else "reading commands again")
            ready = dict(poller.poll(REPLAY_POLL_MS if self.replays else 100))
            if self.durable in ready:
                self.on_durable()
            if self.replay in ready:
                self.on_engine_requests()
            if self.commands in ready:
                too_old, ahead = engine.too_old, engine.ahead
                engine.handle_requests(sockets.drain(self.commands, MAX_MESSAGES_PER_BATCH), self.requests,
                                       time.time_ns())  # queues its batches in engine.unsent
                if engine.too_old > too_old:
                    log.warning("%d orders came more than %.1f s after their gateway received them; not executed"
                                " (their gateway answers UNAVAILABLE)", engine.too_old - too_old,
                                engine.max_order_age_ns / 1e9)
                if engine.ahead > ahead:
                    log.warning("%d orders were stamped more than %.1f s ahead of this engine's clock; not executed"
                                " (is the gateway's clock in sync with this host's?)", engine.ahead - ahead,
                                engine.max_order_age_ns / 1e9)
            self.send_to_journal()
            self.resume_replays()

    def send_to_journal(self) -> None:
        sockets.send_queued(self.to_journal, self.engine.unsent)  # the writer replays what it misses

    def on_durable(self) -> None:
        for parts in sockets.drain(self.durable):
            try:
                self.engine.on_durable(self.durables.decode(parts[-1]))
            except WireError as e:
                log.warning("durable: dropped %s", e)

    def on_engine_requests(self) -> None:
        """Answer what waits on the replay socket, a bounded number per loop turn, never blocking.

        A book for a notifier (``Engine.book``) is built when asked, once per instrument and batch
        (``book_frame``): notifiers ask when they start, once per instrument. A reply that does not
        fit the requester's queue (``ANSWERS_PER_PEER``) is dropped: the notifier asks again. A
        replay that does not fit goes on from where it stopped at the next call (``replays``).
        """
        self.resume_replays()
        for parts in sockets.drain(self.replay, MAX_ENGINE_REQUESTS_PER_TURN):
            try:
                request = self.engine_requests.decode(parts[-1])
            except WireError as e:
                log.warning("replay: dropped %s", e)
                continue
            envelope = tuple(parts[:-1])  # the requester's routing id (and, via the notifier, its client's)
            if isinstance(request, SnapshotRequest):
                self.answer(envelope, [self.book_frame(request.symbol)])
            else:
                self.start_replay(envelope, request.from_batch)
        self.resume_replays()

    def book_frame(self, symbol: str) -> bytes:
        """``Engine.book`` of ``symbol``, encoded, built once per batch and watermark for every
        requester: each build walks the whole book, and one per request let a burst of them keep
        the loop from matching for seconds. Only the commands of a new batch change the book."""
        engine = self.engine
        at = (engine.batch, engine.durable_batch)  # both are in the answer
        if at != self.books_at:
            self.books_at, self.books = at, {}
        frame = self.books.get(symbol)
        if frame is None:
            frame = encode(engine.book(symbol))
            if symbol in engine.matcher.books:  # a refusal is not kept: any name can be asked for
                self.books[symbol] = frame
        return frame

    def start_replay(self, envelope: tuple[bytes, ...], from_batch: int) -> None:
        """Keep a replay under way for the requester of ``envelope`` (one per requester: its new
        request replaces the old), dropping the oldest of them past ``MAX_REPLAYS``."""
        requester = envelope[0]
        log.info("replay from batch %d requested", from_batch)
        if self.replays.pop(requester, None) is None and len(self.replays) >= MAX_REPLAYS:
            oldest = next(iter(self.replays))
            _, at = self.replays.pop(oldest)
            log.warning("replay: %d under way; dropped the oldest (requester %s, at batch %d) for a new one",
                        MAX_REPLAYS, oldest.hex(), at)
        self.replays[requester] = (envelope, from_batch)

    def resume_replays(self) -> None:
        """Send each replay's next retained batches, from where it stopped, until the requester's
        queue is full; at most ``ANSWERS_PER_PEER`` are looked at per replay and call."""
        engine = self.engine
        for requester, (envelope, at) in list(self.replays.items()):
            # retained batches are consecutive, up to engine.batch: the next one is found by its number
            first = engine.retained[0][0] if engine.retained else engine.batch + 1
            skip = max(at, first) - first
            frames = [frame for _, _, frame in islice(engine.retained, skip, skip + ANSWERS_PER_PEER)]
            sent = self.answer(envelope, frames)
            if sent < 0:  # the requester is gone
                del self.replays[requester]
            elif first + skip + sent > engine.batch:
                del self.replays[requester]
                log.info("replay: sent up to the last batch, %d", engine.batch)
            else:
                self.replays[requester] = (envelope, first + skip + sent)

    def answer(self, envelope: tuple[bytes, ...], frames: list[bytes]) -> int:
        """Send ``frames`` to ``envelope`` without blocking; how many went (-1: the requester is gone)."""
        return sockets.send_routed(self.replay, envelope, frames)

    def finish(self) -> None:
        """On a clean stop, give the journal a moment to make the last batches durable (and so released)."""
        engine = self.engine
        deadline = time.monotonic() + FLUSH_ON_STOP_S
        while (engine.retained or engine.unsent) and time.monotonic() < deadline:
            self.send_to_journal()
            if self.durable.poll(50):
                self.on_durable()
        if engine.retained:
            log.warning("stopping with %d events not yet durable (never acknowledged or published)",
                        engine.retained_events)

    def close(self) -> None:
        sockets.close_all([self.commands, self.replay, self.to_journal, self.durable],
                          self.auth, self.ctx)


def run(config: Config, name: str) -> None:
    """Run the engine ``name`` until SIGINT or SIGTERM."""
    stopper = sockets.Stopper()
    process = EngineProcess(config, name, stopper)
    sockets.freeze_startup_objects()
    try:
        process.run(stopper)
        process.finish()
    finally:
        process.close()
    matcher = process.engine.matcher
    log.info("stopped: engine %s at seq %d digest %s", name, matcher.seq, matcher.digest())
