"""Gateway role: clients' order entry, over raw TCP text lines and over ZMQ, routed to engines.

Sockets:
    text     asyncio TCP server  ← people and programs typing the text protocol (docs/protocol.md)
    zmq      ROUTER bound        ← programs with a DEALER: msgpack requests, msgpack replies
    engines  PUSH connect, one per engine → each engine's commands PULL
    replies  PULL bound          ← engines: Replies, released once the journal holds them

One asyncio loop serves everything; the logic lives in exchange.sessions.OrderEntry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time

import msgspec
import zmq
import zmq.asyncio

from exchange import mesh
from exchange.journal import journal_order_events, order_history
from exchange.config import Config
from exchange.errors import ProtocolError, RejectCode, WireError
from exchange.protocol import AnyRequest, ClientReply, check_request, format_reply, parse_line
from exchange.sessions import OrderEntry, Session
from exchange.wire import Decoder, Replies, Request, encode

log = logging.getLogger(__name__)

MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a client that reads slower than this is disconnected
MAX_ZMQ_MESSAGE = 64 * 1024  # larger frames cost the client its connection; smaller ones get TOO_LARGE
_CLIENT_ORDER_ID = re.compile(r"(?:^|\s)#([A-Za-z0-9_.:\-]{1,36})(?:\s|$)")


class TextConnection(asyncio.Protocol):
    """One TCP client: splits lines (with a length cap), answers each with one line."""

    def __init__(self, entry: OrderEntry, max_line: int):
        self.entry = entry
        self.max_line = max_line
        self.buffer = b""
        self.discarding = False
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.session = self.entry.open(self.write)

    def connection_lost(self, exc) -> None:
        self.entry.close(self.session)

    def write(self, replies: list[ClientReply]) -> None:
        if self.transport.is_closing():
            return
        self.transport.write("".join(format_reply(r) + "\n" for r in replies).encode())
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("session %d: client does not read its replies; disconnecting", self.session.id)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if self.discarding:
                self.discarding = False  # the rest of an overlong line, already answered
                continue
            self.line_received(line)
        if len(self.buffer) > self.max_line:
            self.buffer = b""
            if not self.discarding:  # one answer per overlong line, however many pieces it comes in
                self.discarding = True
                self.entry.on_error(self.session, ProtocolError(
                    RejectCode.TOO_LARGE, f"line longer than {self.max_line} bytes; discarded"))

    def line_received(self, raw: bytes) -> None:
        if len(raw) > self.max_line:
            self.entry.on_error(self.session, ProtocolError(
                RejectCode.TOO_LARGE, f"line longer than {self.max_line} bytes; discarded"))
            return
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            self.entry.on_error(self.session, ProtocolError(RejectCode.MALFORMED, "the line is not UTF-8"))
            return
        try:
            request = parse_line(line)
        except ProtocolError as e:
            match = _CLIENT_ORDER_ID.search(line)
            self.entry.on_error(self.session, e, match.group(1) if match else "")
            return
        try:
            self.entry.on_request(self.session, request)
        except Exception:  # our bug: this session only ends, with a reason (STYLE.md 7.3)
            log.exception("session %d: internal error; closing the session", self.session.id)
            self.transport.write(b"REJ INTERNAL the gateway failed on this request; closing the session\n")
            self.transport.close()


class Gateway:
    def __init__(self, config: Config):
        self.config = config
        self.ctx = zmq.asyncio.Context()
        self.ctx.linger = mesh.LINGER_MS
        self.pushes = {e.name: mesh.socket(self.ctx, zmq.PUSH, connect=e.commands)
                       for e in config.engines}  # → engines
        self.engines = {name: self._sync(sock) for name, sock in self.pushes.items()}
        self.replies = mesh.socket(self.ctx, zmq.PULL, bind=config.gateway.replies)  # ← engines
        self.router = mesh.socket(self.ctx, zmq.ROUTER, bind=config.gateway.zmq,
                                  max_msg_size=MAX_ZMQ_MESSAGE)  # ← ZMQ clients
        # each start is a new incarnation: replies to a previous one's requests only update views
        self.name = f"{config.gateway.name}/{time.time_ns()}"
        self.entry = OrderEntry(config, self.send, self.name,
                                history=lambda order_id: order_history(config.journal.path, order_id))
        self.zmq_sessions: dict[bytes, Session] = {}
        known = self.entry.load(journal_order_events(config.journal.path))
        log.info("%d orders known from the journal", known)

    @staticmethod
    def _sync(sock: zmq.asyncio.Socket) -> zmq.Socket:
        return zmq.Socket.shadow(sock.underlying)

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        try:
            self.engines[engine].send(encode(Request(self.name, session_id, request_id, command)), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    async def pump_replies(self) -> None:
        decoder = Decoder(Replies)
        sync = self._sync(self.replies)
        while True:
            # await one message, then drain the rest without awaiting (ZEROMQ.md, asyncio vs blocking);
            # awaiting poll() alone spins: the edge-triggered FD keeps waking with nothing to read
            first = await self.replies.recv_multipart()
            for parts in [first, *mesh.drain(sync)]:
                try:
                    batch = decoder.decode(parts[-1])
                except WireError as e:
                    log.warning("replies: dropped %s", e)
                    continue
                for reply in batch.replies:
                    self.entry.on_reply(reply)

    async def expire_requests(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            timeout = self.config.gateway.request_timeout
            late = self.entry.expire(timeout)
            if late:
                log.warning("%d requests got no answer from an engine in %.1f s", late, timeout)

    async def pump_zmq_clients(self) -> None:
        decoder = msgspec.msgpack.Decoder(AnyRequest)
        sync = self._sync(self.router)
        while True:
            first = await self.router.recv_multipart()
            for parts in [first, *mesh.drain(sync)]:
                identity = parts[0]
                session = self.zmq_sessions.get(identity)
                if session is None:
                    session = self.zmq_sessions[identity] = self.entry.open(self._zmq_writer(sync, identity))
                if len(parts) != 2 or len(parts[1]) > self.config.gateway.max_line:
                    self.entry.on_error(session, ProtocolError(
                        RejectCode.TOO_LARGE if len(parts) == 2 else RejectCode.MALFORMED,
                        f"a request is one frame of at most {self.config.gateway.max_line} bytes"))
                    continue
                try:
                    request = check_request(decoder.decode(parts[1]))
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    self.entry.on_error(session, ProtocolError(RejectCode.MALFORMED, f"bad request: {e}"))
                    continue
                except ProtocolError as e:
                    self.entry.on_error(session, e)
                    continue
                self.entry.on_request(session, request)

    def _zmq_writer(self, sock: zmq.Socket, identity: bytes):
        def write(replies: list[ClientReply]) -> None:
            try:
                for reply in replies:
                    sock.send_multipart([identity, encode(reply)], zmq.NOBLOCK)
            except zmq.ZMQError:
                session = self.zmq_sessions.pop(identity, None)
                if session is not None:
                    self.entry.close(session)
        return write

    def close(self) -> None:
        for sock in (*self.engines.values(), *self.pushes.values(), self.replies, self.router):
            sock.close()
        self.ctx.term()


async def serve(config: Config) -> None:
    gateway = Gateway(config)
    host, port = config.gateway.text.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(lambda: TextConnection(gateway.entry, config.gateway.max_line),
                                      host, int(port), backlog=1024, reuse_address=True)
    tasks = [asyncio.create_task(gateway.pump_replies()), asyncio.create_task(gateway.pump_zmq_clients()),
             asyncio.create_task(gateway.expire_requests())]
    log.info("ready: text protocol on %s, zmq on %s", config.gateway.text, config.gateway.zmq)
    try:
        done, _ = await asyncio.wait([asyncio.create_task(stop.wait()), *tasks],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        gateway.close()
        log.info("stopped")


def run(config: Config, name: str = "gateway") -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    asyncio.run(serve(config))
