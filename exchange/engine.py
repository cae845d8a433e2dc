"""Engine role: owns the books of some instruments; matches commands; releases output once durable.

Sockets (this process binds the stable side):
    commands  PULL   bound    ← gateways' Requests
    journal   PUSH   connect  → journal writer: EventBatch per drained set of commands
    durable   SUB    connect  ← journal writer: Durable watermarks
    replay    ROUTER bound    ← journal writer: ReplayRequest → the retained batches again
    replies   PUSH   connect  → gateway: acks, fills and order updates, released at the watermark
    publish   PUB    bound    → notifier: market data, released at the watermark

Matching runs ahead of the journal; nothing leaves towards clients before the journal holds it
(DESIGN.md guarantee 2). Batches stay in memory until durable, for replay; past
``max_undurable_events`` the engine stops reading commands, so gateways see their queue fill up
and answer BUSY instead of queueing without end.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

import zmq

from exchange import journal, mesh
from exchange.config import Config
from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import MARKET_DATA_EVENTS, ORDER_EVENTS
from exchange.errors import WireError
from exchange.wire import (
    CHANNELS, Decoder, Durable, Entry, EventBatch, MarketData, Replies, Reply, ReplayRequest,
    Request, encode, topic,
)

log = logging.getLogger(__name__)

MAX_COMMANDS_PER_BATCH = 2000
FLUSH_ON_STOP_S = 2.0


def recover(path: str, name: str, engine_id: int, instruments: list) -> tuple[Matcher, journal.EnginePosition]:
    """The matcher rebuilt from the journal's events of this engine, and where they end."""
    if not Path(path).exists():
        return Matcher(engine_id, instruments), journal.EnginePosition()
    conn = journal.open_readonly(path)
    try:
        position = journal.positions(conn).get(name, journal.EnginePosition())
        state = journal.latest_checkpoint(conn, name)
        if state is None:
            matcher = Matcher(engine_id, instruments)
        else:
            matcher = checkpoint.restore(instruments, state)
            log.info("restored the checkpoint at seq %d", matcher.seq)
        for event in journal.engine_events(conn, name, matcher.seq):
            matcher.apply(event)
    finally:
        conn.close()
    return matcher, position


class Engine:
    def __init__(self, name: str, matcher: Matcher, position: journal.EnginePosition,
                 checkpoint_every: int = 100_000):
        self.name = name
        self.matcher = matcher
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seq = matcher.seq
        self.epoch = position.epoch + 1
        self.batch = position.batch  # the last batch number used
        self.durable_batch = position.batch
        self.retained: deque[tuple[int, int, bytes]] = deque()  # (batch, event count, frame)
        self.retained_events = 0
        self.unreleased: deque[tuple[int, list[Reply], list]] = deque()  # (batch, replies, market data)
        self.chan_seq: dict[tuple[str, str], int] = {}
        self.unsent: deque[bytes] = deque()  # batches the journal PUSH had no room for yet

    def handle_requests(self, frames: list[list[bytes]], decoder: Decoder) -> bytes | None:
        """Match every request; return the EventBatch frame (None if no request was valid)."""
        handle = self.matcher.handle
        entries, replies, market_data = [], [], []
        first_seq = self.matcher.seq + 1
        for parts in frames:
            try:
                request: Request = decoder.decode(parts[-1])
            except WireError as e:
                log.warning("commands: dropped %s", e)
                continue
            events = handle(request.command)
            entries.append(Entry(request.gateway, request.session, request.request_id, request.command,
                                 events))
            replies.append(Reply(request.session, request.request_id,
                                 [e for e in events if isinstance(e, ORDER_EVENTS)], request.gateway))
            market_data.extend(e for e in events if isinstance(e, MARKET_DATA_EVENTS))
        if not entries:
            return None
        self.batch += 1
        state = b""
        if self.matcher.seq - self.checkpoint_seq >= self.checkpoint_every:
            state, self.checkpoint_seq = checkpoint.take(self.matcher), self.matcher.seq
        frame = encode(EventBatch(self.name, self.epoch, self.batch, first_seq, self.matcher.seq, entries, state))
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

    def market_data_frames(self, events: list) -> list[list[bytes]]:
        """One [topic, MarketData] message per (symbol, channel), each with its next chan_seq."""
        groups: dict[tuple[str, str], list] = {}
        for event in events:
            groups.setdefault((event.symbol, CHANNELS[type(event)]), []).append(event)
        frames = []
        for (symbol, channel), group in groups.items():
            seq = self.chan_seq[(symbol, channel)] = self.chan_seq.get((symbol, channel), 0) + 1
            frames.append([topic(symbol, channel), encode(MarketData(symbol, channel, self.epoch, seq, group))])
        return frames

    def replay_frames(self, request: ReplayRequest) -> list[bytes]:
        return [frame for batch, _, frame in self.retained if batch >= request.from_batch]


def run(config: Config, name: str) -> None:
    """Run the engine ``name`` until SIGINT or SIGTERM."""
    spec = config.engine(name)
    instruments = [config.instrument_map()[symbol] for symbol in spec.instruments]
    matcher, position = recover(config.journal.path, name, spec.id, instruments)
    engine = Engine(name, matcher, position, spec.checkpoint_every)
    stopper = mesh.Stopper()
    ctx = mesh.context()
    commands = mesh.socket(ctx, zmq.PULL, bind=spec.commands)  # ← gateways
    publish = mesh.socket(ctx, zmq.PUB, bind=spec.publish)  # → notifier
    replay = mesh.socket(ctx, zmq.ROUTER, bind=spec.replay)  # ← journal writer
    to_journal = mesh.socket(ctx, zmq.PUSH, connect=config.journal.events)  # → journal writer
    durable = mesh.socket(ctx, zmq.SUB, connect=config.journal.watermarks)  # ← journal writer
    durable.setsockopt(zmq.SUBSCRIBE, b"")
    replies = mesh.socket(ctx, zmq.PUSH, connect=config.gateway.replies)  # → gateway
    requests, durables, replays = Decoder(Request), Decoder(Durable), Decoder(ReplayRequest)
    log.info("ready: engine %s id %d epoch %d, %s from batch %d seq %d, commands on %s",
             name, spec.id, engine.epoch, ",".join(spec.instruments), engine.batch, matcher.seq,
             spec.commands)
    busy = False
    poller = zmq.Poller()
    for sock in (durable, replay, commands):
        poller.register(sock, zmq.POLLIN)
    try:
        while not stopper.requested:
            full = engine.retained_events >= spec.max_undurable_events
            if full != busy:
                busy = full
                poller.modify(commands, 0 if busy else zmq.POLLIN)
                log.warning("journal behind by %d events: %s", engine.retained_events,
                            "no longer reading commands" if busy else "reading commands again")
            ready = dict(poller.poll(100))
            if durable in ready:
                for parts in mesh.drain(durable):
                    try:
                        released = engine.on_durable(durables.decode(parts[-1]))
                    except WireError as e:
                        log.warning("durable: dropped %s", e)
                        continue
                    _release(engine, released, replies, publish, config.gateway.name)
            if replay in ready:
                for parts in mesh.drain(replay):
                    try:
                        request = replays.decode(parts[-1])
                    except WireError as e:
                        log.warning("replay: dropped %s", e)
                        continue
                    frames = engine.replay_frames(request)
                    log.info("replay from batch %d: sending %d batches", request.from_batch, len(frames))
                    try:
                        for frame in frames:
                            replay.send_multipart([parts[0], frame])
                    except zmq.ZMQError as e:
                        log.warning("replay: requester gone (%s)", e)
            if commands in ready:
                frame = engine.handle_requests(mesh.drain(commands, MAX_COMMANDS_PER_BATCH), requests)
                if frame is not None:
                    engine.unsent.append(frame)
            while engine.unsent:
                try:
                    to_journal.send(engine.unsent[0], zmq.NOBLOCK)
                except zmq.Again:
                    break  # the journal writer is behind or away; it replays what it misses
                engine.unsent.popleft()
        _finish(engine, durable, durables, to_journal, replies, publish, config.gateway.name)
    finally:
        for sock in (commands, publish, replay, to_journal, durable, replies):
            sock.close()
        ctx.term()
    log.info("stopped: engine %s at seq %d digest %s", name, matcher.seq, matcher.digest())


def _finish(engine: Engine, durable, durables, to_journal, replies, publish, gateway: str) -> None:
    """On a clean stop, give the journal a moment to make the last batches durable and release them."""
    deadline = time.monotonic() + FLUSH_ON_STOP_S
    while (engine.retained or engine.unsent) and time.monotonic() < deadline:
        while engine.unsent:
            try:
                to_journal.send(engine.unsent[0], zmq.NOBLOCK)
            except zmq.Again:
                break
            engine.unsent.popleft()
        if durable.poll(50):
            for parts in mesh.drain(durable):
                _release(engine, engine.on_durable(durables.decode(parts[-1])), replies, publish, gateway)
    if engine.retained:
        log.warning("stopping with %d events not yet durable (never acknowledged or published)",
                    engine.retained_events)


def _release(engine: Engine, released: tuple, replies: zmq.Socket, publish: zmq.Socket,
             gateway: str) -> None:
    reply_list, market_data = released
    if reply_list:
        try:
            replies.send(encode(Replies(gateway, reply_list)), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("gateway not reading: %d replies dropped", len(reply_list))
    for frames in engine.market_data_frames(market_data):
        publish.send_multipart(frames)
