"""Journal writer role: every engine's event batches into SQLite, then the durable watermark back.

Sockets:
    events      PULL    bound    ← engines: EventBatch
    watermarks  PUB     bound    → engines: Durable after each group commit, and every second
    recovery    ROUTER  bound    ← engines: OpenEpoch at start; gateways: GetPositions at start
    replay      DEALER  connect  → each engine's replay ROUTER: ReplayRequest when a batch is missing

With ``mesh_curve`` on, the bound sockets are CURVE servers that admit mesh roles only and the
DEALERs CURVE clients of their engines (exchange.mesh_curve).

Every engine start is a new epoch, and this process hands them out: an engine asks for one
(OpenEpoch) before it rebuilds its books, the epoch is committed to the journal before the answer
leaves, and from then on only that epoch's batches are written. So the history an engine rebuilds
from cannot change under it, and a batch from an earlier start (an engine that died, or one that
cannot see the journal) is never written nor acknowledged. Within an epoch, batches must arrive in
order, ``batch`` +1 each: a batch from the future is held and the missing ones are asked for again;
a batch seen before is dropped.
"""

from __future__ import annotations

import logging
import time

import zmq

from exchange import curve, journal, mesh
from exchange.config import Config
from exchange.errors import WireError
from exchange.mesh_curve import MeshSecurity
from exchange.wire import (
    Decoder, Durable, EpochOpened, EventBatch, GetPositions, JournalRefused, JournalRequest, OpenEpoch, Positions,
    ReplayRequest, encode,
)

log = logging.getLogger(__name__)

REPLAY_RETRY_S = 0.5
MAX_HELD_BATCHES = 10_000
ANNOUNCE_S = 0.2  # repeat every watermark this often: a lost one (PUB/SUB, slow joiner) costs no more


class Sequencer:
    """Decides, per engine, which arriving batches to write, hold, drop or ask for again.

    Only the engine's current epoch (the last one ``open_epoch`` gave it) is written: a batch of an
    older epoch comes from a process that has since restarted, and nothing it sent was released.
    """

    def __init__(self, positions: dict[str, journal.EnginePosition]):
        self.positions = dict(positions)
        self.held: dict[str, dict[int, EventBatch]] = {}
        self.foreign: set[tuple[str, int]] = set()  # (engine, epoch) never opened here, already logged

    def open_epoch(self, engine: str, epoch: int) -> journal.EnginePosition:
        """``engine`` restarted in ``epoch``: from now on only that epoch's batches count."""
        pos = self.positions.get(engine, journal.EnginePosition())
        self.positions[engine] = pos = journal.EnginePosition(epoch, pos.batch, pos.seq)
        self.held.pop(engine, None)
        return pos

    def accept(self, batches: list[EventBatch]) -> tuple[list[EventBatch], set[str]]:
        """(batches to write in order, engines with a gap before a held batch)."""
        to_write, gaps = [], set()
        for b in batches:
            pos = self.positions.get(b.engine, journal.EnginePosition())
            if b.epoch != pos.epoch or b.batch <= pos.batch:
                if b.epoch > pos.epoch and (b.engine, b.epoch) not in self.foreign:
                    self.foreign.add((b.engine, b.epoch))
                    log.error("%s sends epoch %d, which this journal never opened (it is at %d):"
                              " dropping its batches; restart that engine", b.engine, b.epoch, pos.epoch)
                continue  # an older start's, or already written
            held = self.held.setdefault(b.engine, {})
            held[b.batch] = b
            while pos.batch + 1 in held:
                nxt = held.pop(pos.batch + 1)
                to_write.append(nxt)
                pos = journal.EnginePosition(nxt.epoch, nxt.batch, nxt.last_seq)
            self.positions[b.engine] = pos
            if held:
                gaps.add(b.engine)
                if len(held) > MAX_HELD_BATCHES:
                    held.clear()  # they will come again with the replay
        return to_write, gaps


def answer(request: OpenEpoch | GetPositions, sequencer: Sequencer, writer: journal.Writer, config: Config):
    """The reply to a role's request at its start."""
    match request:
        case OpenEpoch(engine=engine, nonce=nonce):
            if engine not in {e.name for e in config.engines}:
                return JournalRefused(nonce, f"no engine {engine} in this journal writer's config")
            pos = sequencer.positions.get(engine, journal.EnginePosition())
            epoch = writer.open_epoch(engine, pos)  # durable before anyone hears of it
            pos = sequencer.open_epoch(engine, epoch)
            log.info("%s starts epoch %d after batch %d seq %d", engine, epoch, pos.batch, pos.seq)
            return EpochOpened(engine, nonce, epoch, pos.batch, pos.seq)
        case GetPositions(nonce=nonce):
            return Positions(nonce, {engine: (p.epoch, p.batch, p.seq) for engine, p in sequencer.positions.items()})


def run(config: Config, name: str = "journal-writer") -> None:
    """Run the journal writer until SIGINT or SIGTERM."""
    spec = config.journal
    security = MeshSecurity.for_role(config, "journal-writer")  # before the journal: fail fast
    db = journal.open_db(spec.path, spec.synchronous)
    writer = journal.Writer(db, config.instrument_map())
    sequencer = Sequencer(journal.positions(db.conn))
    stopper = mesh.Stopper()
    ctx = mesh.context()
    auth = curve.start_authenticator(ctx, roles=security.role_keys()) if security else None
    events = mesh.socket(ctx, zmq.PULL, bind=spec.events, security=security)  # ← engines
    watermarks = mesh.socket(ctx, zmq.PUB, bind=spec.watermarks, security=security)  # → engines
    recovery = mesh.socket(ctx, zmq.ROUTER, bind=spec.recovery, security=security)  # ← engines, gateways
    replay = {e.name: mesh.socket(ctx, zmq.DEALER, connect=e.replay, security=security, peer=e.role)
              for e in config.engines}  # → engines
    batches, requests = Decoder(EventBatch), Decoder(JournalRequest)
    log.info("ready: journal %s (synchronous=%s), events on %s", spec.path, spec.synchronous, spec.events)
    mesh.report_ready()

    def ask_replay(engine: str) -> None:
        from_batch = sequencer.positions.get(engine, journal.EnginePosition()).batch + 1
        try:
            replay[engine].send(encode(ReplayRequest(engine, from_batch)), zmq.NOBLOCK)
        except zmq.Again:
            pass  # its queue is full of earlier requests; the next retry asks again

    for engine in replay:  # whatever the engines produced while we were away
        ask_replay(engine)
    mesh.freeze_startup_objects()
    poller = zmq.Poller()
    for sock in (events, recovery, *replay.values()):
        poller.register(sock, zmq.POLLIN)
    last_announce = last_replay = 0.0
    written = 0
    try:
        while not stopper.requested:
            ready = dict(poller.poll(100))
            arrived = []
            for sock in ready:
                if sock is recovery:
                    continue
                for parts in mesh.drain(sock):
                    try:
                        arrived.append(batches.decode(parts[-1]))
                    except WireError as e:
                        log.warning("events: dropped %s", e)
            changed: set[str] = set()
            if arrived:
                to_write, gaps = sequencer.accept(arrived)
                if to_write:
                    writer.append(to_write)  # one transaction: the group commit
                    written += len(to_write)
                    changed = {b.engine for b in to_write}
                now = time.monotonic()
                if gaps and now - last_replay > REPLAY_RETRY_S:
                    last_replay = now
                    for engine in gaps & replay.keys():
                        log.warning("%s: batches missing after %d; asking for a replay", engine,
                                    sequencer.positions[engine].batch)
                        ask_replay(engine)
            if recovery in ready:  # after this turn's batches: an epoch opens after all they wrote
                for parts in mesh.drain(recovery, 100):
                    try:
                        reply = answer(requests.decode(parts[-1]), sequencer, writer, config)
                    except WireError as e:
                        log.warning("recovery: dropped %s", e)
                        continue
                    try:
                        recovery.send_multipart([*parts[:-1], encode(reply)], zmq.NOBLOCK)
                    except zmq.ZMQError as e:  # gone, or not reading: it asks again
                        log.warning("recovery: answer not sent (%s)", e)
                    if isinstance(reply, EpochOpened):
                        changed.add(reply.engine)
            now = time.monotonic()
            if now - last_announce > ANNOUNCE_S:
                last_announce = now
                changed = set(sequencer.positions)
            for engine in changed:
                pos = sequencer.positions[engine]
                watermarks.send(encode(Durable(engine, pos.epoch, pos.batch, pos.seq)))
    finally:
        for sock in (events, watermarks, recovery, *replay.values()):
            sock.close()
        if auth is not None:
            auth.stop()
        ctx.term()
        db.conn.close()
        log.info("stopped: %d batches written", written)
