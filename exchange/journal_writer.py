"""Journal writer role: every engine's event batches into SQLite, then the durable watermark back.

Sockets:
    events      PULL    bound    ← engines: EventBatch
    watermarks  PUB     bound    → engines: Durable after each group commit, and every second
    replay      DEALER  connect  → each engine's replay ROUTER: ReplayRequest when a batch is missing

With ``mesh_curve`` on, the bound sockets are CURVE servers that admit mesh roles only and the
DEALERs CURVE clients of their engines (exchange.mesh_curve).

Batches of one engine must arrive in order, ``batch`` +1 each. A batch from the future is held
and the missing ones are requested again; a batch seen before is dropped; a batch of a newer
epoch (the engine restarted and rebuilt from this journal) replaces whatever an older epoch
wrote at or after its position, because nothing of that was ever released.
"""

from __future__ import annotations

import logging
import time

import zmq

from exchange import curve, journal, mesh
from exchange.config import Config
from exchange.errors import WireError
from exchange.mesh_curve import MeshSecurity
from exchange.wire import Decoder, Durable, EventBatch, ReplayRequest, encode

log = logging.getLogger(__name__)

REPLAY_RETRY_S = 0.5
MAX_HELD_BATCHES = 10_000
ANNOUNCE_S = 0.2  # repeat every watermark this often: a lost one (PUB/SUB, slow joiner) costs no more


class Sequencer:
    """Decides, per engine, which arriving batches to write, hold, drop or ask for again."""

    def __init__(self, positions: dict[str, journal.EnginePosition]):
        self.positions = dict(positions)
        self.held: dict[str, dict[int, EventBatch]] = {}

    def accept(self, batches: list[EventBatch]) -> tuple[list[EventBatch], list[tuple[str, int, int]], set[str]]:
        """(batches to write in order, truncations (engine, batch, seq) to do first, engines with gaps)."""
        to_write, truncations, gaps = [], [], set()
        for b in batches:
            pos = self.positions.get(b.engine, journal.EnginePosition())
            if b.epoch < pos.epoch or (b.epoch == pos.epoch and b.batch <= pos.batch):
                continue  # stale or already written
            if b.epoch > pos.epoch and pos.epoch and b.batch <= pos.batch:
                truncations.append((b.engine, b.batch, b.first_seq))
                pos = journal.EnginePosition(pos.epoch, b.batch - 1, b.first_seq - 1)
            held = self.held.setdefault(b.engine, {})
            held[b.batch] = b
            while pos.batch + 1 in held:
                nxt = held.pop(pos.batch + 1)
                if nxt.epoch < pos.epoch:
                    continue
                to_write.append(nxt)
                pos = journal.EnginePosition(nxt.epoch, nxt.batch, nxt.last_seq)
            self.positions[b.engine] = pos
            if held:
                gaps.add(b.engine)
                if len(held) > MAX_HELD_BATCHES:
                    held.clear()  # they will come again with the replay
        return to_write, truncations, gaps


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
    replay = {e.name: mesh.socket(ctx, zmq.DEALER, connect=e.replay, security=security, peer=e.role)
              for e in config.engines}  # → engines
    batches = Decoder(EventBatch)
    log.info("ready: journal %s (synchronous=%s), events on %s", spec.path, spec.synchronous, spec.events)
    for engine, sock in replay.items():  # whatever the engines produced while we were away
        sock.send(encode(ReplayRequest(engine, sequencer.positions.get(engine, journal.EnginePosition()).batch + 1)))
    mesh.freeze_startup_objects()
    poller = zmq.Poller()
    for sock in (events, *replay.values()):
        poller.register(sock, zmq.POLLIN)
    last_announce = last_replay = 0.0
    written = 0
    try:
        while not stopper.requested:
            ready = dict(poller.poll(100))
            arrived = []
            for sock in ready:
                for parts in mesh.drain(sock):
                    try:
                        arrived.append(batches.decode(parts[-1]))
                    except WireError as e:
                        log.warning("events: dropped %s", e)
            changed: set[str] = set()
            if arrived:
                to_write, truncations, gaps = sequencer.accept(arrived)
                for engine, batch, seq in truncations:
                    removed = writer.truncate(engine, batch, seq)
                    log.warning("%s restarted in a new epoch: removed %d unreleased events from seq %d",
                                engine, removed, seq)
                if to_write:
                    writer.append(to_write)  # one transaction: the group commit
                    written += len(to_write)
                    changed = {b.engine for b in to_write}
                now = time.monotonic()
                if gaps and now - last_replay > REPLAY_RETRY_S:
                    last_replay = now
                    for engine in gaps:
                        if engine in replay:
                            from_batch = sequencer.positions[engine].batch + 1
                            log.warning("%s: batches missing from %d; asking for a replay", engine, from_batch)
                            replay[engine].send(encode(ReplayRequest(engine, from_batch)), zmq.NOBLOCK)
            now = time.monotonic()
            if now - last_announce > ANNOUNCE_S:
                last_announce = now
                changed = set(sequencer.positions)
            for engine in changed:
                pos = sequencer.positions[engine]
                watermarks.send(encode(Durable(engine, pos.epoch, pos.batch, pos.seq)))
    finally:
        for sock in (events, watermarks, *replay.values()):
            sock.close()
        if auth is not None:
            auth.stop()
        ctx.term()
        db.conn.close()
        log.info("stopped: %d batches written", written)
