"""The journal writer's history service: what a role reads of the journal at its start, over the mesh.

No role but the journal writer opens the journal file, so roles can run on other machines with
nothing shared but the network (the `exchange journal` commands, an operator's tools, read it on
the journal's host). An engine or a ledger shard that starts asks here for its history
(exchange.journal.handshake.stream_start and events_after): where it ends, the newest whole
checkpoint, part by part, then the events after it, a chunk at a time; a ledger shard later asks
for the engine batches that did not reach it to settle; a notifier, at its start, for each
instrument's recent trades. A gateway that starts asks for the order events of the orders it must
know (open ones, and recent ones whose client order ids still count), later for the history of
one order (a resend it never saw answered), and for the engine batches passed on to it that never
arrived (``LoggedBatchesRequest``: the batches as logged, to take as if they had come). Each answer is one message of at most ``MAX_EVENTS`` events or one
checkpoint part (which the engine made at most ``checkpoint_part_size``), and a reader asks for the
next only once it has the last, so neither side ever holds more than a chunk. One order's history
comes the same way: ``OrderHistoryRequest.after_seq`` is the seq of the last event the asker has,
and ``last`` says whether more follow. A bound asked below the least there is (a limit of recent
trades, the events of batches asked for) is taken as that least: no trades, one batch.

A gateway's reading is one read transaction over several answers: the service keeps it open under
a cursor, at most ``MAX_CURSORS`` at a time (beyond: refused, "try again"), each closed once read to
the end or after ``CURSOR_IDLE_S`` without a request.

The service is a thread of the journal writer's process, with its own read-only connection (the
journal is in WAL mode: it reads while the writer writes) and its own ROUTER, ``journal.history``,
under the mesh's security like the writer's other sockets. The writer's loop never waits for it.
What it reads cannot change under a reader: once the journal writer has opened an engine's new
epoch, it writes nothing more of that engine until the engine sends it batches, which it does only
once it has rebuilt its books.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from itertools import islice

import zmq

from exchange.wire import sockets
from exchange.errors import WireError
from exchange.journal.readers import (
    EnginePosition, engine_symbols, last_trades, latest_checkpoint_seq, log_events, logged_batch_bodies,
    open_and_recent_order_events, order_history, positions, recent_trades,
)
from exchange.journal.ledger_readers import released_batches
from exchange.journal.schema import one_reading, open_readonly
from exchange.wire.messages import (
    CheckpointPart, CheckpointPartRequest, Decoder, EngineHistory, EngineHistoryRequest, Events, EventsRequest,
    HistoryRequest, JournalRefused, LoggedBatches, LoggedBatchesRequest, OrderEventsRequest, OrderHistoryRequest,
    RecentTrades, RecentTradesRequest, ReleasedBatches, ReleasedBatchesRequest, encode,
)
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

MAX_EVENTS = 5_000  # per answer: a few hundred kB
MAX_CURSORS = 4  # readings under way at once (a gateway has one while it starts)
CURSOR_IDLE_S = 30.0
POLL_MS = 100


def answer(conn: sqlite3.Connection, path: str, request, streams: set[str]):
    """The answer to one history request but a gateway's reading (``Cursors``), read from ``conn``
    (or the journal at ``path``) in one read transaction: an answer made of several queries (the
    tables, then the log past what they hold) must not see the indexer commit between them."""
    with one_reading(conn):
        return _answer(conn, path, request, streams)


def _answer(conn: sqlite3.Connection, path: str, request, streams: set[str]):
    if isinstance(request, OrderHistoryRequest):
        return _order_history_chunk(path, request)
    stream = request.stream if isinstance(request, EventsRequest) else request.engine
    if stream not in streams:
        return JournalRefused(request.nonce, f"no engine or ledger shard {stream} in this journal writer's config")
    match request:
        case EngineHistoryRequest(nonce=nonce, engine=engine):
            pos = positions(conn, [engine]).get(engine, EnginePosition())
            seq = latest_checkpoint_seq(conn, engine)
            parts = conn.execute("SELECT COUNT(*) FROM checkpoints WHERE engine=? AND seq=?",
                                 (engine, seq)).fetchone()[0] if seq else 0  # counted, not read
            return EngineHistory(nonce, (pos.epoch, pos.batch, pos.seq), seq, parts, engine_symbols(conn, engine),
                                 sorted(last_trades(conn, engine).values(), key=lambda t: t.seq))
        case CheckpointPartRequest(nonce=nonce, engine=engine, seq=seq, part=part):
            row = conn.execute("SELECT state FROM checkpoints WHERE engine=? AND seq=? AND part=?",
                               (engine, seq, part)).fetchone()  # that part alone: a restart asks for each in turn
            if row is None:
                return JournalRefused(nonce, f"engine {engine} has no part {part} of a checkpoint at seq {seq}")
            return CheckpointPart(nonce, row[0])
        case EventsRequest(nonce=nonce, stream=stream, after_seq=after):
            chunk = list(islice(log_events(conn, stream, after), MAX_EVENTS + 1))
            return Events(nonce, chunk[:MAX_EVENTS], len(chunk) <= MAX_EVENTS)
        case RecentTradesRequest(nonce=nonce, engine=engine, symbol=symbol, since_ns=since, limit=limit):
            # at least 0: SQLite takes a negative LIMIT as none
            return RecentTrades(nonce, recent_trades(conn, engine, symbol, since, max(0, min(limit, MAX_EVENTS))))
        case ReleasedBatchesRequest(nonce=nonce, engine=engine, after_seq=after, max_events=most):
            # at least 1: released_batches gives none for 0, which a shard would take for "nothing new"
            return ReleasedBatches(nonce, released_batches(path, engine, after, max(1, min(most, MAX_EVENTS))))
        case LoggedBatchesRequest(nonce=nonce, engine=engine, after_batch=after, before_batch=before, max_events=most):
            return LoggedBatches(nonce, logged_batch_bodies(conn, engine, after, before, max(1, min(most, MAX_EVENTS))))


def _order_history_chunk(path: str, request: OrderHistoryRequest) -> Events:
    """The next chunk of one order's events after ``request.after_seq``, read one past the chunk to
    know whether more follow."""
    chunk = order_history(path, request.order_id, request.after_seq, MAX_EVENTS + 1)
    return Events(request.nonce, chunk[:MAX_EVENTS], len(chunk) <= MAX_EVENTS)


class Cursors:
    """The gateways' readings under way: cursor → [the events still to read, when last asked, the one
    read ahead of the last chunk (to know whether another follows)]."""

    def __init__(self, path: str):
        self.path = path
        self.open: dict[int, list] = {}
        self.next_id = 0

    def answer(self, request: OrderEventsRequest, now: float) -> Events | JournalRefused:
        self.expire(now)
        if not request.cursor:
            if len(self.open) >= MAX_CURSORS:
                return JournalRefused(request.nonce, f"{MAX_CURSORS} readings under way; try again in a moment")
            self.next_id += 1
            self.open[self.next_id] = [open_and_recent_order_events(self.path, request.since_ns), now, []]
            cursor = self.next_id
        else:
            cursor = request.cursor
        entry = self.open.get(cursor)
        if entry is None:
            return JournalRefused(request.nonce, f"no reading {cursor} under way (it ended, or was idle"
                                                 f" for {CURSOR_IDLE_S:g} s); begin again")
        events, _, ahead = entry
        entry[1] = now
        chunk = ahead + list(islice(events, MAX_EVENTS + 1 - len(ahead)))  # one more: is there a next chunk?
        entry[2] = chunk[MAX_EVENTS:]
        last = not entry[2]
        if last:
            self.close(cursor)
        return Events(request.nonce, chunk[:MAX_EVENTS], last, cursor)

    def expire(self, now: float) -> None:
        for cursor, (_, when, _) in list(self.open.items()):
            if now - when > CURSOR_IDLE_S:
                self.close(cursor)

    def close(self, cursor: int) -> None:
        events, _, _ = self.open.pop(cursor)
        events.close()  # ends its read transaction


class HistoryService:
    """The thread that answers history requests until ``stop``."""

    def __init__(self, ctx: zmq.Context, path: str, endpoint: str, streams: list[str],
                 security: MeshSecurity | None):
        self.path, self.streams = path, set(streams)
        self.sock = sockets.socket(ctx, zmq.ROUTER, bind=endpoint, security=security)  # ← starting roles
        self.stopped = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self.run, name="journal-history", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        requests = Decoder(HistoryRequest)
        cursors = Cursors(self.path)
        conn = open_readonly(self.path)
        try:
            while not self.stopped.is_set():
                # every turn, idle or not: an abandoned reading's snapshot pins the WAL until it is closed
                cursors.expire(time.monotonic())
                if not self.sock.poll(POLL_MS):
                    continue
                for parts in sockets.drain(self.sock, 10):
                    try:
                        request = requests.decode(parts[-1])
                    except WireError as e:
                        log.warning("history: dropped %s", e)
                        continue
                    try:
                        if isinstance(request, OrderEventsRequest):
                            reply = cursors.answer(request, time.monotonic())
                        else:
                            reply = answer(conn, self.path, request, self.streams)
                    except Exception as e:  # the service goes on: this request is refused, with why
                        log.exception("history: could not answer %s", type(request).__name__)
                        reply = JournalRefused(request.nonce, f"the journal could not be read: {e}")
                    if sockets.send_routed(self.sock, tuple(parts[:-1]), [encode(reply)]) == 1:
                        self.answered += 1
        finally:
            for cursor in list(cursors.open):
                cursors.close(cursor)
            conn.close()
            self.sock.close(linger=0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
