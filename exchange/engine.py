"""Engine role: owns the books of some instruments; matches commands; releases output once durable.

Sockets (this process binds the stable side):
    commands  PULL   bound    ← gateways' Requests (several per message)
    journal   PUSH   connect  → journal writer: EventBatch per drained set of commands
    durable   SUB    connect  ← journal writer: Durable watermarks
    replay    ROUTER bound    ← journal writer: ReplayRequest → the retained batches again;
                                notifier: SnapshotRequest → the released book
    replies   PUSH   connect  → gateway: acks, fills and order updates, released at the watermark
    publish   PUB    bound    → notifier: market data and private order updates, released at the watermark

With ``mesh_curve`` on, the bound sockets are CURVE servers that admit mesh roles only and the
connected ones CURVE clients of the journal writer and the gateway (exchange.mesh_curve).

Matching runs ahead of the journal; nothing leaves towards clients before the journal holds it
(docs/architecture.md, guarantee 2). Batches stay in memory until durable, for replay; past
``max_undurable_events`` the engine stops reading commands.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

import zmq

from exchange import curve, journal, journal_recovery, mesh
from exchange.config import Config
from exchange.core import checkpoint
from exchange.core.client_order_ids import DEFAULT_WINDOW_NS
from exchange.core.matching import Matcher
from exchange.core.messages import MARKET_DATA_EVENTS, ORDER_EVENTS, PlaceOrder, ReplaceOrder
from exchange.errors import ConfigError, JournalError, WireError
from exchange.mesh_curve import MeshSecurity
from exchange.publisher import Publisher, released_depths
from exchange.wire import (
    Decoder, Durable, EngineRequest, Entry, EventBatch, OpenEpoch, Replies, Reply, ReplayRequest, Request,
    Requests, SnapshotRequest, encode,
)

log = logging.getLogger(__name__)

_SINGLE_REQUEST = Decoder(Request)

MAX_MESSAGES_PER_BATCH = 200  # each holds one gateway loop turn's requests, bounded by max_in_flight
FLUSH_ON_STOP_S = 2.0
HEARTBEAT_S = 1.0
MAX_ENGINE_REQUESTS_PER_TURN = 64  # snapshot and replay requests read per loop turn; the rest wait in the socket


def recover(path: str, name: str, engine_id: int, instruments: list,
            client_order_id_window: int = DEFAULT_WINDOW_NS) -> tuple[Matcher, journal.EnginePosition]:
    """The matcher rebuilt from the journal's events of this engine, and where they end."""
    matcher, position, _ = recover_all(path, name, engine_id, instruments, client_order_id_window)
    return matcher, position


def recover_all(path: str, name: str, engine_id: int, instruments: list,
                client_order_id_window: int = DEFAULT_WINDOW_NS):
    """(matcher, position, last trade per symbol) from the journal's events of this engine, all
    read in one read transaction: a batch the writer commits meanwhile is in none of them.

    ``client_order_id_window`` (ns) is the configured uniqueness window of client order ids; it
    replaces the one a restored checkpoint was taken with, so a changed window applies from the
    restart on.
    """
    if not Path(path).exists():
        return Matcher(engine_id, instruments, client_order_id_window), journal.EnginePosition(), {}
    with journal.read_snapshot(path) as conn:
        check_instruments(journal.engine_symbols(conn, name), name, instruments, path)
        position = journal.positions(conn).get(name, journal.EnginePosition())
        state = journal.latest_checkpoint(conn, name)
        if state is None:
            matcher = Matcher(engine_id, instruments, client_order_id_window)
        else:
            matcher = checkpoint.restore(instruments, state)
            matcher.client_order_ids.window = client_order_id_window
            log.info("restored the checkpoint at seq %d", matcher.seq)
        for event in journal.engine_events(conn, name, matcher.seq):
            matcher.apply(event)
        last_trades = journal.last_trades(conn, name)
    return matcher, position, last_trades


def check_instruments(history: dict[str, tuple[int, int, int]], name: str, instruments: list, path: str) -> None:
    """Raise ConfigError if the journal holds history of an instrument the config no longer gives
    this engine: its books could not be rebuilt, and its orders would be lost without a word."""
    missing = sorted(set(history) - {i.symbol for i in instruments})
    if missing:
        rows = "; ".join(f"{symbol}: {history[symbol][0]} events, seq {history[symbol][1]}..{history[symbol][2]}"
                         for symbol in missing)
        raise ConfigError(f"engine {name}: the journal {path} holds history of {', '.join(missing)}, which"
                          f" the config no longer gives this engine ({rows}); give it back to engine {name}"
                          " (`engines[].instruments`), or start from a new journal")


class Engine:
    def __init__(self, name: str, matcher: Matcher, epoch: int, position: journal.EnginePosition,
                 checkpoint_every: int = 100_000, checkpoint_part_size: int = checkpoint.DEFAULT_PART_SIZE):
        """An engine in ``epoch`` (the journal writer's, new for this start) whose journaled history
        ends at ``position``."""
        self.name = name
        self.matcher = matcher
        self.checkpoint_every = checkpoint_every
        self.checkpoint_part_size = checkpoint_part_size
        self.checkpoint_seq = matcher.seq
        self.checkpoint_parts: deque[bytes] = deque()  # of the last checkpoint, one per batch
        self.epoch = epoch
        self.max_order_age_ns = 0  # 0: no limit (see handle_requests)
        self.too_old = 0  # orders not executed because they came too late
        self.batch = position.batch  # the last batch number used
        self.durable_batch = position.batch
        self.retained: deque[tuple[int, int, bytes]] = deque()  # (batch, event count, frame)
        self.retained_events = 0
        self.unreleased: deque[tuple[int, list[Reply], list]] = deque()  # (batch, replies, market data)
        self.unsent: deque[bytes] = deque()  # batches the journal PUSH had no room for yet

    def handle_requests(self, frames: list[list[bytes]], decoder: Decoder, now_ns: int = 0) -> bytes | None:
        """Match every request of every frame (each a Requests list); return the EventBatch frame
        (None if no request was valid).

        A placement or replace received by its gateway more than ``max_order_age_ns`` before
        ``now_ns`` is not executed: its gateway has answered it or is about to (UNAVAILABLE, outcome
        unknown), and it must not trade behind that answer. It is journaled with no events and gets no
        reply. Cancels always execute: late or not, they only take risk away.
        """
        handle = self.matcher.handle
        entries, replies, market_data = [], [], []
        first_seq = self.matcher.seq + 1
        oldest = now_ns - self.max_order_age_ns if now_ns and self.max_order_age_ns else 0
        for parts in frames:
            try:
                requests: list[Request] = decoder.decode(parts[-1])
            except WireError as e:
                try:  # one Request per message, from a gateway older than Requests
                    requests = [_SINGLE_REQUEST.decode(parts[-1])]
                except WireError:
                    log.warning("commands: dropped %s", e)
                    continue
            for request in requests:
                command = request.command
                if command.ts_received < oldest and isinstance(command, (PlaceOrder, ReplaceOrder)):
                    self.too_old += 1
                    entries.append(Entry(request.gateway, request.session, request.request_id, command, []))
                    continue
                events = handle(command)
                entries.append(Entry(request.gateway, request.session, request.request_id, request.command,
                                     events))
                replies.append(Reply(request.session, request.request_id,
                                     [e for e in events if isinstance(e, ORDER_EVENTS)], request.gateway))
                market_data.extend(e for e in events if isinstance(e, MARKET_DATA_EVENTS))
        if not entries:
            return None
        self.batch += 1
        # A checkpoint goes out one part per batch (each far below the mesh's message cap); the
        # journal uses it once it holds every part. No digest of the books is computed here.
        if not self.checkpoint_parts and self.matcher.seq - self.checkpoint_seq >= self.checkpoint_every:
            self.checkpoint_parts.extend(checkpoint.take(self.matcher, self.checkpoint_part_size))
            self.checkpoint_seq = self.matcher.seq
        state = self.checkpoint_parts.popleft() if self.checkpoint_parts else b""
        frame = encode(EventBatch(self.name, self.epoch, self.batch, first_seq, self.matcher.seq, entries, state,
                                  time.time_ns()))
        count = self.matcher.seq - first_seq + 1
        self.retained.append((self.batch, count, frame))
        self.retained_events += count
        self.unreleased.append((self.batch, replies, market_data))
        return frame

    def on_durable(self, durable: Durable) -> tuple[list[Reply], list]:
        """Advance the watermark; return the replies and market data it releases."""
        if durable.engine != self.name or durable.epoch != self.epoch or durable.batch <= self.durable_batch:
            return [], []
        self.durable_batch = durable.batch
        while self.retained and self.retained[0][0] <= durable.batch:
            self.retained_events -= self.retained.popleft()[1]
        replies, market_data = [], []
        while self.unreleased and self.unreleased[0][0] <= durable.batch:
            _, batch_replies, batch_md = self.unreleased.popleft()
            replies.extend(batch_replies)
            market_data.extend(batch_md)
        return replies, market_data

    def replay_frames(self, request: ReplayRequest) -> list[bytes]:
        return [frame for batch, _, frame in self.retained if batch >= request.from_batch]


class EngineProcess:
    """The engine's sockets around an Engine and its Publisher: one poll loop, one handler per socket."""

    def __init__(self, config: Config, name: str, stopper: mesh.Stopper):
        self.config = config
        self.spec = spec = config.engine(name)
        self.security = security = MeshSecurity.for_role(config, spec.role)  # before recovery: fail fast
        instruments = [config.instrument_map()[symbol] for symbol in spec.instruments]
        opened = journal_recovery.ask(config, OpenEpoch(name, time.time_ns()), security,
                                      stopped=lambda: stopper.requested)
        held = journal.EnginePosition(opened.epoch, opened.batch, opened.seq)
        matcher, position, last_trades = recover_all(config.journal.path, name, spec.id, instruments,
                                                     round(spec.client_order_id_window * 1e9))
        journal_recovery.check_visible({name: position}, {name: held}, config.journal.path)
        if (position.batch, matcher.seq) != (held.batch, held.seq):  # the writer froze this history for us
            raise JournalError(f"engine {name}: the journal holds batch {held.batch} seq {held.seq}, but its"
                               f" events rebuild batch {position.batch} seq {matcher.seq}; run"
                               " `exchange journal verify`")
        self.engine = Engine(name, matcher, opened.epoch, held, spec.checkpoint_every, spec.checkpoint_part_size)
        # half the gateway's wait: what executes is answered before the gateway gives up on it
        self.engine.max_order_age_ns = int(config.gateway.request_timeout * 1e9 / 2)
        self.publisher = Publisher(name, self.engine.epoch, released_depths(matcher, last_trades), HEARTBEAT_S)
        self.ctx = ctx = mesh.context()
        self.auth = curve.start_authenticator(ctx, roles=security.role_keys()) if security else None
        self.commands = mesh.socket(ctx, zmq.PULL, bind=spec.commands, security=security)  # ← gateways
        self.publish = mesh.socket(ctx, zmq.PUB, bind=spec.publish, security=security)  # → notifier
        self.replay = mesh.socket(ctx, zmq.ROUTER, bind=spec.replay,
                                  security=security)  # ← journal writer, notifier
        self.to_journal = mesh.socket(ctx, zmq.PUSH, connect=config.journal.events, security=security,
                                      peer="journal-writer")  # → journal writer
        self.durable = mesh.socket(ctx, zmq.SUB, connect=config.journal.watermarks, security=security,
                                   peer="journal-writer")  # ← journal writer
        self.durable.setsockopt(zmq.SUBSCRIBE, b"")
        self.replies = mesh.socket(ctx, zmq.PUSH, connect=config.gateway.replies, security=security,
                                   peer="gateway")  # → gateway
        self.requests, self.durables, self.engine_requests = (
            Decoder(Requests), Decoder(Durable), Decoder(EngineRequest))
        self.replays: dict[tuple[bytes, ...], int] = {}  # requester → next batch of a replay under way

    def run(self, stopper: mesh.Stopper) -> None:
        engine, spec = self.engine, self.spec
        log.info("ready: engine %s id %d epoch %d, %s from batch %d seq %d, commands on %s",
                 engine.name, spec.id, engine.epoch, ",".join(spec.instruments), engine.batch,
                 engine.matcher.seq, spec.commands)
        mesh.report_ready()
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
                too_old = engine.too_old
                frame = engine.handle_requests(mesh.drain(self.commands, MAX_MESSAGES_PER_BATCH), self.requests,
                                               time.time_ns())
                if frame is not None:
                    engine.unsent.append(frame)
                if engine.too_old > too_old:
                    log.warning("%d orders came more than %.1f s after their gateway received them; not executed"
                                " (their gateway answers UNAVAILABLE)", engine.too_old - too_old,
                                engine.max_order_age_ns / 1e9)
            self.send_to_journal()
            self.resume_replays()
            for frames in self.publisher.heartbeats(time.monotonic()):
                self.publish.send_multipart(frames)

    def send_to_journal(self) -> None:
        engine = self.engine
        while engine.unsent:
            try:
                self.to_journal.send(engine.unsent[0], zmq.NOBLOCK)
            except zmq.Again:
                return  # the journal writer is behind or away; it replays what it misses
            engine.unsent.popleft()

    def on_durable(self) -> None:
        for parts in mesh.drain(self.durable):
            try:
                reply_list, market_data = self.engine.on_durable(self.durables.decode(parts[-1]))
            except WireError as e:
                log.warning("durable: dropped %s", e)
                continue
            if reply_list:
                try:
                    self.replies.send(encode(Replies(self.config.gateway.name, reply_list)), zmq.NOBLOCK)
                except zmq.Again:
                    log.warning("gateway not reading: %d replies dropped", len(reply_list))
                events = [e for reply in reply_list for e in reply.events]
                for frames in self.publisher.private(events):
                    self.publish.send_multipart(frames)
            for frames in self.publisher.market_data(market_data, time.monotonic()):
                self.publish.send_multipart(frames)

    def on_engine_requests(self) -> None:
        """Answer what waits on the replay socket, a bounded number per loop turn, never blocking.

        Snapshots come from the publisher's cache (see Publisher.snapshot_frame). A reply that does
        not fit the requester's queue is dropped: the notifier counts a request unanswered for a
        while as lost, and its subscriber asks again. A replay that does not fit goes on from where
        it stopped at the next call (``replays``).
        """
        self.resume_replays()
        for parts in mesh.drain(self.replay, MAX_ENGINE_REQUESTS_PER_TURN):
            try:
                request = self.engine_requests.decode(parts[-1])
            except WireError as e:
                log.warning("replay: dropped %s", e)
                continue
            envelope = tuple(parts[:-1])  # the requester's routing id (and, via the notifier, its client's)
            if isinstance(request, SnapshotRequest):
                self.answer(envelope, [self.publisher.snapshot_frame(request.symbol)])
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
        for sent, frame in enumerate(frames):
            try:
                self.replay.send_multipart([*envelope, frame], zmq.NOBLOCK)
            except zmq.Again:
                return sent  # its queue is full: it is not reading
            except zmq.ZMQError as e:  # EHOSTUNREACH (ROUTER_MANDATORY): it left
                log.warning("replay: requester gone (%s)", e)
                return -1
        return len(frames)

    def finish(self) -> None:
        """On a clean stop, give the journal a moment to make the last batches durable and release them."""
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
        for sock in (self.commands, self.publish, self.replay, self.to_journal, self.durable, self.replies):
            sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def run(config: Config, name: str) -> None:
    """Run the engine ``name`` until SIGINT or SIGTERM."""
    stopper = mesh.Stopper()
    process = EngineProcess(config, name, stopper)
    mesh.freeze_startup_objects()
    try:
        process.run(stopper)
        process.finish()
    finally:
        process.close()
    matcher = process.engine.matcher
    log.info("stopped: engine %s at seq %d digest %s", name, matcher.seq, matcher.digest())
