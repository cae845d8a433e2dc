"""Engine role: owns the books of some instruments; matches commands; releases output once durable.

Sockets (this process binds the stable side):
    commands  PULL   bound    ← gateways' Requests (several per message)
    journal   PUSH   connect  → journal writer: EventBatch per drained set of commands
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
import zmq
from exchange.journal import handshake
from exchange.wire import sockets
from exchange.config import Config
from exchange.errors import JournalError, WireError
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    Decoder, Durable, EngineRequest, HistoryReply, OpenEpoch, durable_prefix, ReplayRequest, Requests, SnapshotRequest, encode,
)
from exchange.engine.recovery import recover_over_mesh
from exchange.engine.batches import Engine
from exchange.journal.readers import EnginePosition
from exchange.wire.security.zap import start_authenticator


log = logging.getLogger(__name__)


MAX_MESSAGES_PER_BATCH = 200  # each holds one gateway loop turn's requests, bounded by max_in_flight


FLUSH_ON_STOP_S = 2.0


MAX_ENGINE_REQUESTS_PER_TURN = 64  # snapshot and replay requests read per loop turn; the rest wait in the socket


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
        self.replay = sockets.socket(ctx, zmq.ROUTER, bind=spec.replay,
                                  security=security)  # ← journal writer, notifiers
        self.to_journal = sockets.socket(ctx, zmq.PUSH, connect=config.journal.events, security=security,
                                      peer="journal-writer")  # → journal writer
        self.durable = sockets.socket(ctx, zmq.SUB, connect=config.journal.watermarks, security=security,
                                   peer="journal-writer")  # ← journal writer
        self.durable.setsockopt(zmq.SUBSCRIBE, durable_prefix(name))  # its own watermarks only
        self.requests, self.durables, self.engine_requests = (
            Decoder(Requests), Decoder(Durable), Decoder(EngineRequest))
        self.replays: dict[tuple[bytes, ...], int] = {}  # requester → next batch of a replay under way

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
            ready = dict(poller.poll(100))
            if self.durable in ready:
                self.on_durable()
            if self.replay in ready:
                self.on_engine_requests()
            if self.commands in ready:
                too_old, ahead = engine.too_old, engine.ahead
                frame = engine.handle_requests(sockets.drain(self.commands, MAX_MESSAGES_PER_BATCH), self.requests,
                                               time.time_ns())
                if frame is not None:
                    engine.unsent.append(frame)
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

        A book for a notifier (``Engine.book``) is built when asked: notifiers ask when they start,
        once per instrument. A reply that does not fit the requester's queue is dropped: the
        notifier asks again. A replay that does not fit goes on from where it stopped at the next
        call (``replays``).
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
                self.answer(envelope, [encode(self.engine.book(request.symbol))])
            else:
                log.info("replay from batch %d requested", request.from_batch)
                self.replays[envelope] = request.from_batch
        self.resume_replays()

    def resume_replays(self) -> None:
        """Send each replay's next retained batches until the requester's queue is full."""
        for envelope, from_batch in list(self.replays.items()):
            frames = self.engine.replay_frames(ReplayRequest(self.engine.name, from_batch))
            sent = self.answer(envelope, frames)
            if sent == len(frames) or sent < 0:
                del self.replays[envelope]
                if sent >= 0:
                    log.info("replay from batch %d: sent up to the last batch (%d more)", from_batch, sent)
            elif sent:  # retained batches are consecutive: the next one to send follows the last sent
                self.replays[envelope] = max(from_batch, self.engine.retained[0][0]) + sent

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
