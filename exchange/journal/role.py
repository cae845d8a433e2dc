"""Journal writer role: every stream's event batches into SQLite, then the durable watermark back.

A stream is an engine, or a ledger shard (``ledger-<shard>``, with accounts on): both are written,
sequenced, given epochs and asked for replays alike; "engine" below means either.

Sockets:
    events      PULL    bound    ← engines, ledger shards: EventBatch
    watermarks  PUB     bound    → engines, ledger shards: Durable after each group commit, and every 0.2 s;
                                   notifiers: each engine batch once written, [RELEASED, EventBatch]
    released    PUSH    connect  → each gateway: each engine batch once written, [RELEASED, EventBatch]
    settle      PUSH    connect  → each ledger shard: the same batches, to settle (exchange.journal.release)
    recovery    ROUTER  bound    ← engines, ledger shards: OpenEpoch at start; a new ledger shard: GetPositions
    history     ROUTER  bound    ← engines, ledger shards, gateways: what they read of the journal (a thread of its own,
                                   exchange.journal.history)
    replay      DEALER  connect  → each engine's and ledger shard's replay ROUTER: ReplayRequest when a
                                   batch is missing

With ``mesh_curve`` on, the bound sockets are CURVE servers that admit mesh roles only and the
DEALERs CURVE clients of their engines (exchange.wire.security.mesh_keys).

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
from exchange.wire import sockets
from exchange.config import Config
from exchange.errors import WireError
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    BatchHeader, Decoder, Durable, EpochOpened, GetPositions, JournalRefused, JournalRequest, OpenEpoch, Positions, ReplayRequest, encode,
)
from exchange.journal.sequencer import Sequencer
from exchange.journal.readers import EnginePosition, positions
from exchange.journal.ledger_readers import agree_on_ledger_shards
from exchange.journal.history import HistoryService
from exchange.journal.release import NOTIFIER_HWM, Release
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer, unreadable
from exchange.wire.security.zap import start_authenticator


log = logging.getLogger(__name__)


REPLAY_RETRY_S = 0.5


ANNOUNCE_S = 0.2  # repeat every watermark this often: a lost one (PUB/SUB, slow joiner) costs no more


INDEX_SLICE_S = 0.002  # the tables catch up for about this long at a time, so a batch arriving meanwhile waits no longer


INDEX_CHUNK = 100  # events per indexing transaction (about 25 orders, about 1 ms here): a slice ends on time


STOP_INDEX_S = 2.0  # at a stop, index for up to this long; the rest at the next start


class IndexPacing:
    """When the journal writer builds its tables from its log, between commits (docs/journal.md).

    Writing the log comes first: under load the tables get a slice every EVERY_S, and all the time
    the writer has nothing else to do; so a burst is written at full speed and indexed after it.
    Once EAGER batches behind they get a slice on every turn (a long flood pays as it goes), and
    past MAX_LAG no more batches are read until they have caught up."""

    EVERY_S = 0.05  # a slice at least this often
    IDLE_MS = 5  # nothing arrived for this long: the writer is idle, and indexes
    EAGER = 40_000  # batches behind (about a minute of a flood, ~525 batches/s): a slice on every turn, busy or not
    MAX_LAG = 200_000  # batches behind: no more batches are read until the tables catch up (engines then wait)

    def __init__(self) -> None:
        self.last = 0.0
        self.idle = False  # the last turn found nothing to write, and indexed

    def reads_batches(self, lag: int) -> bool:
        return lag <= self.MAX_LAG

    def poll_ms(self, lag: int) -> float:
        """How long a turn may wait for something to arrive."""
        if not lag:
            return 100
        return 0 if lag >= self.EAGER or self.idle else self.IDLE_MS  # idle: slice after slice

    def due(self, lag: int, idle: bool, now: float) -> bool:
        """Whether to index a slice now (and, if so, noted as done at ``now``)."""
        self.idle = idle
        if lag and (idle or lag >= self.EAGER or now - self.last >= self.EVERY_S):
            self.last = now
            return True
        return False


def index_for(writer: Writer, seconds: float) -> int:
    """Index logged batches, a chunk per transaction, for about ``seconds``; return how many."""
    deadline = time.monotonic() + seconds
    total = 0
    while n := writer.index(INDEX_CHUNK):
        total += n
        if time.monotonic() >= deadline:
            break
    return total


def answer(request: OpenEpoch | GetPositions, sequencer: Sequencer, writer: Writer, config: Config):
    """The reply to a role's request at its start."""
    match request:
        case OpenEpoch(engine=engine, nonce=nonce):
            if engine not in config.streams():
                return JournalRefused(nonce, f"no engine or ledger shard {engine} in this journal writer's config")
            pos = sequencer.positions.get(engine, EnginePosition())
            if sequencer.opened.get(engine, (None, 0))[0] == nonce:  # the same start asking again
                return EpochOpened(engine, nonce, pos.epoch, pos.batch, pos.seq)
            epoch = writer.open_epoch(engine, pos)  # durable before anyone hears of it
            pos = sequencer.open_epoch(engine, epoch)
            sequencer.opened[engine] = (nonce, epoch)
            log.info("%s starts epoch %d after batch %d seq %d", engine, epoch, pos.batch, pos.seq)
            return EpochOpened(engine, nonce, epoch, pos.batch, pos.seq)
        case GetPositions(nonce=nonce):
            return Positions(nonce, {engine: (p.epoch, p.batch, p.seq) for engine, p in sequencer.positions.items()})


def run(config: Config, name: str = "journal-writer") -> None:
    """Run the journal writer until SIGINT or SIGTERM."""
    spec = config.journal
    security = MeshSecurity.for_role(config, "journal-writer")  # before the journal: fail fast
    db = open_db(spec.path, spec.synchronous)
    agree_on_ledger_shards(db.conn, len(config.ledgers))  # before any shard's batch is written
    writer = Writer(db, config.instrument_map(), config.streams())
    sequencer = Sequencer(positions(db.conn, config.streams()), lambda stream, epoch: db.conn.execute(
        "SELECT COALESCE(MAX(batch), 0) FROM batches WHERE engine=? AND epoch=?", (stream, epoch)).fetchone()[0])
    stopper = sockets.Stopper()
    ctx = sockets.context()
    auth = start_authenticator(ctx, roles=security.role_keys()) if security else None
    events = sockets.socket(ctx, zmq.PULL, bind=spec.events, security=security)  # ← engines
    watermarks = sockets.socket(ctx, zmq.PUB, bind=spec.watermarks, security=security)  # → engines, notifiers
    watermarks.setsockopt(zmq.SNDHWM, NOTIFIER_HWM)
    recovery = sockets.socket(ctx, zmq.ROUTER, bind=spec.recovery, security=security)  # ← engines, gateways
    history = HistoryService(ctx, spec.path, spec.history, config.streams(), security)  # ← starting engines
    replay = {s.name: sockets.socket(ctx, zmq.DEALER, connect=s.replay, security=security, peer=s.role)
              for s in (*config.engines, *config.ledgers)}  # → engines, ledger shards
    release = Release([sockets.socket(ctx, zmq.PUSH, connect=gateway.replies, security=security, peer=role)
                       for role, gateway in config.gateway.all()],
                      [sockets.socket(ctx, zmq.PUSH, connect=s.settle, security=security, peer=s.role)
                       for s in config.ledgers],
                      watermarks, {e.name for e in config.engines})
    batches, requests = Decoder(BatchHeader), Decoder(JournalRequest)
    log.info("ready: journal %s (synchronous=%s), events on %s", spec.path, spec.synchronous, spec.events)
    history.start()
    sockets.report_ready()

    def ask_replay(engine: str) -> None:
        from_batch = sequencer.positions.get(engine, EnginePosition()).batch + 1
        try:
            replay[engine].send(encode(ReplayRequest(engine, from_batch)), zmq.NOBLOCK)
        except zmq.Again:
            pass  # its queue is full of earlier requests; the next retry asks again

    again = release.send_again(db.conn, int(config.gateway.request_timeout * 1e9), time.time_ns())
    if again:
        log.info("passed on again the %d engine batches of the last %.1f s", again, config.gateway.request_timeout)

    def announce(streams) -> None:
        for engine in streams:
            pos = sequencer.positions[engine]
            if (engine, pos.epoch) in sequencer.refused:  # it waits on a lost ledger batch: start again
                watermarks.send(encode(Durable(engine, pos.epoch, -1, -1)))
            else:
                watermarks.send(encode(Durable(engine, pos.epoch, pos.batch, pos.seq)))

    for engine in replay:  # whatever the engines produced while we were away
        ask_replay(engine)
    sockets.freeze_startup_objects()
    poller = zmq.Poller()
    for sock in (events, recovery, *replay.values()):
        poller.register(sock, zmq.POLLIN)
    last_announce = 0.0
    last_replay: dict[str, float] = {}  # stream → when a replay of it was last asked for
    written = 0
    pacing, lag = IndexPacing(), writer.unindexed()
    try:
        while not stopper.requested:
            poller.modify(events, zmq.POLLIN if pacing.reads_batches(lag) else 0)
            ready = dict(poller.poll(pacing.poll_ms(lag)))
            arrived = []
            for sock in ready:
                if sock is recovery:
                    continue
                for parts in sockets.drain(sock):
                    try:
                        header = batches.decode(parts[-1])
                    except WireError as e:
                        log.warning("events: dropped %s", e)
                        continue
                    header.body = parts[-1]
                    problem = unreadable(header)
                    if problem:
                        log.warning("events: dropped batch %d of %s, whose checkpoint part does not read back: %s",
                                    header.batch, header.engine, problem[:200])
                        continue
                    arrived.append(header)
            changed: set[str] = set()
            if arrived:
                to_write, _ = sequencer.accept(arrived)
                if to_write:
                    writer.append(to_write)  # one transaction: the group commit
                    # the watermarks first: an engine frees what the journal holds at once
                    announce({b.engine for b in to_write})
                    release.send(to_write)
                    written += len(to_write)
            # every turn, not only when batches came: the batches that would fill a gap may be the
            # only ones its stream has to send, and a request may have found its socket full
            now = time.monotonic()
            for engine in sequencer.gaps() & replay.keys():
                if now - last_replay.get(engine, 0.0) > REPLAY_RETRY_S:
                    last_replay[engine] = now
                    log.warning("%s: batches missing after %d; asking for a replay", engine,
                                sequencer.positions[engine].batch)
                    ask_replay(engine)
            if recovery in ready:  # after this turn's batches: an epoch opens after all they wrote
                refused = set(sequencer.refused)
                for parts in sockets.drain(recovery, 100):
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
                # a shard's new epoch refuses at once the engine epochs that needed a batch its old one
                # lost (Sequencer.open_epoch): each is told now, before it matches more in an epoch
                # never written (nothing of it was written, so no commit comes first)
                changed.update(engine for engine, _ in sequencer.refused - refused)
            now = time.monotonic()
            lag = writer.unindexed()
            if pacing.due(lag, not ready, now):
                index_for(writer, INDEX_SLICE_S)  # the tables follow the log, between commits
                lag = writer.unindexed()
            if now - last_announce > ANNOUNCE_S:
                last_announce = now
                changed = set(sequencer.positions)
            announce(changed)
        index_for(writer, STOP_INDEX_S)  # what is left is indexed at the next start
    finally:
        history.stop()
        for sock in (events, watermarks, recovery, *replay.values(), *release.gateways, *release.ledgers):
            sock.close()
        if auth is not None:
            auth.stop()
        ctx.term()
        db.conn.close()
        log.info("stopped: %d batches written", written)
