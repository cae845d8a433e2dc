"""The client side of the journal writer's recovery and history endpoints: what a role asks it before it starts.

An engine or a ledger shard asks for its new epoch (OpenEpoch), and a new ledger shard for where
every engine's history ends (GetPositions). An engine or a ledger shard then reads its history, and
a gateway the orders it must know, from the journal writer's history service
(exchange.journal.history): no role but the journal writer opens the journal file. A role that cannot reach the journal writer, or cannot see the history it holds,
does not start: it would otherwise come back with an empty or stale view and tell clients things
that are not so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import zmq

from exchange.config import Config
from exchange.errors import JournalError, WireError
from exchange.wire import sockets
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.messages import (
    CheckpointPartRequest, Decoder, EngineHistory, EngineHistoryRequest, EventsRequest, GetPositions, JournalReply,
    JournalRefused, JournalRequest, encode,
)

log = logging.getLogger(__name__)

ASK_EVERY_S = 1.0  # a request unanswered this long is sent again (the writer may be starting)
START_WAIT_S = 30.0  # then the role gives up and exits; the launcher starts it again later


class JournalClient:
    """A DEALER to one of the journal writer's endpoints (``recovery``, or ``history``), asking one
    request at a time: each is sent again every ASK_EVERY_S until its answer (by nonce) comes."""

    def __init__(self, endpoint: str, security: MeshSecurity | None, replies, stopped=lambda: False):
        self.endpoint, self.stopped = endpoint, stopped
        self.ctx = sockets.context()
        self.sock = sockets.socket(self.ctx, zmq.DEALER, connect=endpoint, security=security, peer="journal-writer")
        self.replies = Decoder(replies)

    def ask(self, request, wait_s: float = START_WAIT_S):
        """The journal writer's answer to ``request``. Raises JournalError if it refuses, or does not
        answer within ``wait_s``."""
        sock = self.sock
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not self.stopped():
            try:
                sock.send(encode(request), zmq.NOBLOCK)
            except zmq.Again:
                pass  # not connected yet: ask again after the wait
            asked = time.monotonic()
            while (left := min(asked + ASK_EVERY_S, deadline) - time.monotonic()) > 0:
                if not sock.poll(int(left * 1000) + 1):
                    break
                try:
                    reply = self.replies.decode(sock.recv())
                except WireError as e:
                    log.warning("journal: dropped %s", e)
                    continue
                if reply.nonce != request.nonce:
                    continue  # the answer to an earlier try
                if isinstance(reply, JournalRefused):
                    raise JournalError(f"the journal writer refused: {reply.reason}")
                return reply
            log.info("waiting for the journal writer at %s", self.endpoint)
        raise JournalError(f"no answer from the journal writer at {self.endpoint} in {wait_s:g} s;"
                           " a role that needs the journal's history does not start without it")

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> JournalClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_start(history: JournalClient, stream: str) -> tuple[EngineHistory, list[bytes] | None]:
    """Where an engine's or a ledger shard's history ends, and the parts of its newest whole
    checkpoint (None: it has none), from the journal writer's history service."""
    start = history.ask(EngineHistoryRequest(time.time_ns(), stream))
    if not start.checkpoint_seq:
        return start, None
    return start, [history.ask(CheckpointPartRequest(time.time_ns(), stream, start.checkpoint_seq, part)).state
                   for part in range(start.checkpoint_parts)]


def events_after(history: JournalClient, stream: str, seq: int) -> Iterator:
    """Every journaled event of ``stream`` after ``seq``, in order, asked for a chunk at a time."""
    while True:
        chunk = history.ask(EventsRequest(time.time_ns(), stream, seq))
        yield from chunk.events
        if chunk.last or not chunk.events:
            return
        seq = chunk.events[-1].seq


def ask(config: Config, request: JournalRequest, security: MeshSecurity | None,
        wait_s: float = START_WAIT_S, stopped=lambda: False):
    """The journal writer's answer to ``request`` on its recovery endpoint (see JournalClient.ask)."""
    with JournalClient(config.journal.recovery, security, JournalReply, stopped) as client:
        return client.ask(request, wait_s)
