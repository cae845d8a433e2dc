"""The journal writer's history service: what a role reads of the journal at its start, over the mesh.

No role but the journal writer opens the journal file, so roles can run on other machines with
nothing shared but the network (the `exchange journal` commands, an operator's tools, read it on
the journal's host). An engine that starts asks here for its history (exchange.engine.recovery):
where it ends, the newest whole checkpoint, part by part, then the events after it, a chunk at a
time. Each answer is one message of at most ``MAX_EVENTS`` events or one checkpoint part (which the
engine made at most ``checkpoint_part_size``), and a reader asks for the next only once it has the
last, so neither side ever holds more than a chunk.

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
from itertools import islice

import zmq

from exchange.wire import sockets
from exchange.errors import WireError
from exchange.journal.readers import (
    EnginePosition, checkpoint_parts, engine_symbols, last_trades, latest_checkpoint_seq, log_events, positions,
)
from exchange.journal.schema import open_readonly
from exchange.wire.messages import (
    CheckpointPart, CheckpointPartRequest, Decoder, EngineHistory, EngineHistoryRequest, Events, EventsRequest,
    HistoryRequest, JournalRefused, encode,
)
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

MAX_EVENTS = 5_000  # per answer: a few hundred kB
POLL_MS = 100


def answer(conn: sqlite3.Connection, request, streams: set[str]):
    """The answer to one history request, read from ``conn``."""
    stream = request.engine if not isinstance(request, EventsRequest) else request.stream
    if stream not in streams:
        return JournalRefused(request.nonce, f"no engine or ledger shard {stream} in this journal writer's config")
    match request:
        case EngineHistoryRequest(nonce=nonce, engine=engine):
            pos = positions(conn, [engine]).get(engine, EnginePosition())
            seq = latest_checkpoint_seq(conn, engine)
            parts = len(checkpoint_parts(conn, engine, seq)) if seq else 0
            return EngineHistory(nonce, (pos.epoch, pos.batch, pos.seq), seq, parts, engine_symbols(conn, engine),
                                 sorted(last_trades(conn, engine).values(), key=lambda t: t.seq))
        case CheckpointPartRequest(nonce=nonce, engine=engine, seq=seq, part=part):
            states = checkpoint_parts(conn, engine, seq)
            if not 0 <= part < len(states):
                return JournalRefused(nonce, f"engine {engine} has no part {part} of a checkpoint at seq {seq}")
            return CheckpointPart(nonce, states[part])
        case EventsRequest(nonce=nonce, stream=stream, after_seq=after):
            chunk = list(islice(log_events(conn, stream, after), MAX_EVENTS + 1))
            return Events(nonce, chunk[:MAX_EVENTS], len(chunk) <= MAX_EVENTS)


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
        conn = open_readonly(self.path)
        try:
            while not self.stopped.is_set():
                if not self.sock.poll(POLL_MS):
                    continue
                for parts in sockets.drain(self.sock, 10):
                    try:
                        request = requests.decode(parts[-1])
                    except WireError as e:
                        log.warning("history: dropped %s", e)
                        continue
                    reply = answer(conn, request, self.streams)
                    if sockets.send_routed(self.sock, tuple(parts[:-1]), [encode(reply)]) == 1:
                        self.answered += 1
        finally:
            conn.close()
            self.sock.close(linger=0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
