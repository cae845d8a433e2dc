"""How far the journal holds each engine, as a ledger shard's once-a-second check needs it.

The journal writer publishes an engine's watermark (``Durable``) with every commit that holds some
of its batches, and again every fraction of a second. A shard compares the newest of each engine
with what it has settled, once a second, to notice released batches that never reached it
(exchange.ledger.role, ``check``). So it neither needs every watermark nor should it wake for each:
one SUB per engine keeps only the newest message (``CONFLATE``; a watermark is a single frame),
is never polled, and is read when the check comes.
"""

from __future__ import annotations

import logging

import zmq

from exchange.errors import WireError
from exchange.wire import sockets
from exchange.wire.messages import Decoder, Durable, durable_prefix
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)


class EngineWatermarks:
    """The newest watermark of each engine, read on demand."""

    def __init__(self, ctx: zmq.Context, endpoint: str, engines: list[str], security: MeshSecurity | None = None):
        self.sockets: dict[str, zmq.Socket] = {}
        for engine in engines:
            sock = sockets.socket(ctx, zmq.SUB)
            sock.setsockopt(zmq.CONFLATE, 1)  # before connecting: the queue keeps its last message only
            sock.setsockopt(zmq.SUBSCRIBE, durable_prefix(engine))
            sockets.connect_to(sock, endpoint, security, "journal-writer")
            self.sockets[engine] = sock
        self.held: dict[str, int] = {}  # engine → the last seq the journal holds, as of the last read
        self._decode = Decoder(Durable).decode

    def read(self) -> dict[str, int]:
        """Take the newest watermark of each engine that sent one since the last read; return ``held``."""
        for engine, sock in self.sockets.items():
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            try:
                durable = self._decode(frame)
            except WireError as e:
                log.warning("durable: dropped %s", e)
                continue
            if durable.engine == engine and durable.seq >= 0:  # -1: an epoch refused, nothing held
                self.held[engine] = max(durable.seq, self.held.get(engine, 0))
            # (a seq is never taken back: the journal's watermarks of an engine only go up)
        return self.held

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
