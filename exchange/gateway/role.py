"""Gateway role: clients' order entry, over raw TCP text lines and over ZMQ, routed to engines.

Sockets:
    text     asyncio TCP server  ← people and programs typing the text protocol (docs/protocol.md)
    zmq      ROUTER bound        ← programs with a DEALER: msgpack requests, msgpack replies; a CURVE
                                   server whose ZAP handler names each client's user (or plain, with
                                   LOGIN, if ``gateway.zmq_auth`` is ``login``)
    engines  PUSH connect, one per engine → each engine's commands PULL (one Requests per loop turn)
    replies  PULL bound          ← engines: Replies, released once the journal holds them

With ``mesh_curve`` on, ``replies`` is a CURVE server that admits mesh roles only and the PUSHes
are CURVE clients of their engines (exchange.wire.security.mesh_keys); one ZAP handler serves both the users
of ``zmq`` and the roles of ``replies``, each in its own ZAP domain (exchange.wire.security.zap).

One asyncio loop serves everything; the logic lives in exchange.gateway.order_entry.OrderEntry. scrypt for
LOGIN and the journal reads for resent orders run on a small thread pool, so neither stalls
anyone else's orders. Bad input is
bounded here (docs/security.md): lines are capped at ``max_line``; a client that stops reading
is no longer read from, and is cut off once ``max_write_buffer`` bytes wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import sqlite3
import time
from collections import deque
from typing import NamedTuple

import msgspec
import zmq
import zmq.asyncio

from exchange.journal import handshake
from exchange.wire import sockets
from exchange.journal.readers import open_and_recent_order_events, order_history
from exchange.config import Config, GatewayConfig
from exchange.errors import JournalError, ProtocolError, RejectCode, WireError
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.gateway.protocol.grammar import decode_request, format_reply, parse_bytes
from exchange.gateway.protocol.messages import Bye, ClientReply, Rej
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.sessions import Session
from exchange.wire.messages import Decoder, Replies, Request, encode
from exchange.wire.security.curve_keys import make_server, server_secret_key
from exchange.wire.security.zap import start_authenticator, user_keys

log = logging.getLogger(__name__)

MAX_ZMQ_MESSAGE = 64 * 1024  # larger frames cost the client its connection; smaller ones get TOO_LARGE
MAX_ZMQ_BACKLOG = 10_000  # replies waiting for one ZMQ client before it is cut off
ZMQ_STALL_S = 5.0  # seconds a ZMQ client may take no reply at all before it is cut off
HANDSHAKE_MS = 3000  # a ZMQ client that has not finished its (CURVE) handshake by then is dropped
BLOCKING_THREADS = 2  # scrypt and journal reads run here, off the event loop; more would only let a
#                      login flood eat more CPU


class TextConnection(asyncio.Protocol):
    """One TCP client: splits lines (with a length cap), answers each with one line.

    Lines are taken only while the session has room for another unanswered request and the
    client reads its replies; otherwise the connection is not read from, and what was read
    already waits in ``buffer`` (at most one read, 256 KiB) until the session drains.
    """

    def __init__(self, entry: OrderEntry, config: GatewayConfig):
        self.entry = entry
        self.max_line = config.max_line
        self.max_write_buffer = config.max_write_buffer
        self.buffer = b""
        self.discarding = False
        self.unwritten: list[str] = []  # reply lines of this event-loop turn, written together ...
        self.unwritten_size = 0  # ... unless they grow past UNWRITTEN_MAX characters
        self.held = False  # the session has no room for another request: lines wait in ``buffer``
        self.writing_paused = False  # the client does not read fast enough
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None

    UNWRITTEN_MAX = 64 * 1024

    def connection_made(self, transport) -> None:
        self.transport = transport
        # above this many unread bytes, stop reading the client's requests until it reads its replies
        transport.set_write_buffer_limits(high=min(256 * 1024, self.max_write_buffer // 2))
        peer = transport.get_extra_info("peername")
        try:
            self.session = self.entry.open(self.write, self.disconnect, peer[0] if peer else "",
                                           resume=self.drained)
        except ProtocolError as e:  # no room: say so, and close
            log.warning("refused a connection from %s: %s", peer, e.reason)
            transport.write((format_reply(Bye(e.code, e.reason)) + "\n").encode())
            transport.close()

    def connection_lost(self, exc) -> None:
        if self.session is not None:
            self.entry.close(self.session)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.transport.pause_reading()  # the client is not reading: take no more requests from it

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.go_on()

    def drained(self) -> None:
        """The session has room again (called while it writes replies): go on at the end of this turn."""
        asyncio.get_running_loop().call_soon(self.go_on)

    def go_on(self) -> None:
        """Take the lines that waited, then read the client again, if nothing holds it back."""
        if self.transport.is_closing() or self.session is None or self.session.closed:
            return
        if self.held and not self.writing_paused:
            self.held = False
            self.take_lines()
        if not self.held and not self.writing_paused:
            self.transport.resume_reading()

    def disconnect(self) -> None:
        self.flush()
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # it does not read: a graceful close would wait for it forever
        else:
            self.transport.close()

    def write(self, replies: list[ClientReply]) -> None:
        """Queue reply lines; they leave in one write at the end of this event-loop turn, or at once
        if many wait (so that the transport sees, and says, when the client does not read them)."""
        if not self.unwritten:
            asyncio.get_running_loop().call_soon(self.flush)
        text = "".join(format_reply(r) + "\n" for r in replies)
        self.unwritten.append(text)
        self.unwritten_size += len(text)
        if self.unwritten_size > self.UNWRITTEN_MAX:
            self.flush()

    def flush(self) -> None:
        if not self.unwritten:
            return
        text = "".join(self.unwritten)
        self.unwritten.clear()
        self.unwritten_size = 0
        if self.transport.is_closing():
            return
        self.transport.write(text.encode())
        if self.transport.get_write_buffer_size() > self.max_write_buffer:
            log.warning("session %d: client does not read its replies; disconnecting", self.session.id)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return
        self.buffer = self.buffer + data if self.buffer else data
        self.take_lines()

    def take_lines(self) -> None:
        """Answer the whole lines in ``buffer`` while the session has room and the client reads."""
        buffer, start = self.buffer, 0
        while not self.session.closed:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if not self.may_take():
                break
            line, start = buffer[start:end], end + 1
            if self.discarding:
                self.discarding = False  # the rest of an overlong line, already answered
                continue
            self.line_received(line)
        self.buffer = buffer[start:]
        if not self.held and len(self.buffer) > self.max_line and self.may_take():
            self.buffer = b""
            if not self.discarding:  # one answer per overlong line, however many pieces it comes in
                self.discarding = True
                self.entry.on_error(self.session, Rej(
                    RejectCode.TOO_LARGE, f"line longer than {self.max_line} bytes; discarded"))

    def may_take(self) -> bool:
        """Whether the session may take a request now; if not, stop reading until ``go_on``."""
        if self.writing_paused or not self.session.has_room():
            self.held = True  # go_on takes the rest, once the session drains or the client reads
            self.transport.pause_reading()
            return False
        return True

    def line_received(self, raw: bytes) -> None:
        if self.session.closed:
            return
        request = parse_bytes(raw, self.max_line)
        if isinstance(request, Rej):
            self.entry.on_error(self.session, request)
            return
        self.entry.on_request(self.session, request)  # a bug there ends this session (OrderEntry.guarded)


class ZmqReplies:
    """The replies to one ZMQ client, in order.

    A reply the ROUTER cannot take at once waits here and is tried again every RETRY_S: the
    client's queue may be full, or libzmq may not have seen yet that it has room again (it then
    answers EHOSTUNREACH for a peer that is still there). A client that takes nothing for
    ZMQ_STALL_S, or lets more than MAX_ZMQ_BACKLOG replies wait, is cut off, as a text client
    that does not read is: its session ends.
    """

    RETRY_S = 0.002

    def __init__(self, sock: zmq.Socket, identity: bytes, cut_off, wrote):
        self.sock, self.identity, self.cut_off, self.wrote = sock, identity, cut_off, wrote
        self.backlog: deque[bytes] = deque()
        self.stalled_since = 0.0
        self.retrying = self.closed = False

    def write(self, replies: list[ClientReply]) -> None:
        if self.closed:
            return
        self.backlog.extend(encode(reply) for reply in replies)
        if not self.retrying:
            self.stalled_since = time.monotonic()
            self.send()
        if len(self.backlog) > MAX_ZMQ_BACKLOG:
            self.end(f"{len(self.backlog)} replies wait for it")

    def send(self) -> None:
        self.retrying = False
        if self.closed:
            return
        try:
            while self.backlog:
                try:
                    self.sock.send_multipart([self.identity, self.backlog[0]], zmq.NOBLOCK)
                except zmq.ZMQError:
                    if time.monotonic() - self.stalled_since > ZMQ_STALL_S:
                        self.end(f"it took no reply for {ZMQ_STALL_S:g} s")
                    else:
                        self.retrying = True
                        asyncio.get_running_loop().call_later(self.RETRY_S, self.send)
                    return
                self.backlog.popleft()
                self.stalled_since = time.monotonic()
        finally:
            self.wrote()  # every send, failed ones too, may have taken the edge of the ROUTER's FD

    def end(self, why: str) -> None:
        log.warning("ZMQ client %s does not read its replies (%s); ending its session", self.identity.hex(), why)
        self.close()
        self.cut_off()

    def close(self) -> None:
        """Send nothing more, not even what waits."""
        self.closed = True
        self.backlog.clear()


class ZmqSession(NamedTuple):
    """A ZMQ client's session, bound to its routing id and to who its connection proved to be."""

    proof: tuple[str | None, str]  # (the CURVE key's user, or None with zmq_auth: login; the peer address)
    session: Session
    replies: ZmqReplies


def _peer_address(frame: zmq.Frame) -> str:
    try:
        return frame.get("Peer-Address")
    except zmq.ZMQError:  # not every transport has one
        return ""


class Gateway:
    def __init__(self, config: Config):
        self.config = config
        self.ctx = zmq.asyncio.Context()
        self.ctx.linger = sockets.LINGER_MS
        security = MeshSecurity.for_role(config, "gateway")
        handshake.require_history(config, security)  # before its views are loaded from the journal
        self.keyed = config.gateway.zmq_auth == "curve"
        self.auth = None
        if self.keyed or security is not None:
            # the authenticator thread needs a plain context; a shadow shares the ZAP endpoint
            self.auth = start_authenticator(zmq.Context.shadow(self.ctx.underlying),
                                                  users=user_keys(config) if self.keyed else None,
                                                  roles=security.role_keys() if security else None)
        self.pushes = {e.name: self._push(e.commands, security, e.role) for e in config.engines}  # → engines
        self.engines = {name: self._sync(sock) for name, sock in self.pushes.items()}
        self.outbox: dict[str, list[Request]] = {name: [] for name in self.engines}  # sent by flush_requests
        self.flush_scheduled = False
        self.replies = sockets.socket(self.ctx, zmq.PULL, bind=config.gateway.replies,
                                   security=security)  # ← engines
        self.router = self._router()  # ← ZMQ clients
        self._sync_router = self._sync(self.router)
        self.zmq_read_scheduled = False
        # each start is a new incarnation: replies to a previous one's requests only update views
        self.name = f"{config.gateway.name}/{time.time_ns()}"
        loop = asyncio.get_running_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="blocking")

        def run_blocking(fn, done) -> None:
            loop.run_in_executor(self.executor, fn).add_done_callback(
                lambda future: None if future.cancelled() else done(future.result()))

        self.entry = OrderEntry(config, self.send, self.name, history=self._history,
                                run_blocking=run_blocking, later=loop.call_later)
        self.zmq_sessions: dict[bytes, ZmqSession] = {}  # by routing id
        known = self.entry.load(open_and_recent_order_events(config.journal.path,
                                                             time.time_ns() - self.entry.window_ns))
        log.info("%d orders known from the journal", known)

    def _push(self, endpoint: str, security: MeshSecurity | None, peer: str) -> zmq.asyncio.Socket:
        """A PUSH to one engine that queues nothing while the engine is not connected (IMMEDIATE):
        an order for an engine that is down is refused BUSY at once, rather than kept here and
        run whenever the engine comes back."""
        sock = sockets.socket(self.ctx, zmq.PUSH)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # before connecting: it applies to connections made after
        sockets.connect_to(sock, endpoint, security, peer)
        return sock

    def _history(self, order_id: str) -> list:
        """The journaled events of one order (on the executor: SQLite never runs on the loop)."""
        path = self.config.journal.path
        try:
            return order_history(path, order_id)
        except (sqlite3.Error, msgspec.DecodeError) as e:
            raise JournalError(f"{path}: {e}") from e

    def _router(self) -> zmq.asyncio.Socket:
        """The ROUTER for ZMQ clients: a CURVE server with ZAP naming each client's user, or plain."""
        sock = sockets.socket(self.ctx, zmq.ROUTER, max_msg_size=MAX_ZMQ_MESSAGE)
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        sock.setsockopt(zmq.BACKLOG, 1024)
        if self.keyed:
            make_server(sock, server_secret_key(self.config.gateway.secret_key_file))
        sock.bind(self.config.gateway.zmq)
        return sock

    @staticmethod
    def _sync(sock: zmq.asyncio.Socket) -> zmq.Socket:
        return zmq.Socket.shadow(sock.underlying)

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        """Queue a request for ``engine``, or return False if the way to it is full (the client gets
        BUSY). The requests of one event-loop turn leave as one message (a batch per hop: docs/architecture.md)."""
        outbox = self.outbox[engine]
        if not outbox and not self.engines[engine].get(zmq.EVENTS) & zmq.POLLOUT:
            return False
        outbox.append(Request(self.name, session_id, request_id, command))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_requests)
        return True

    def flush_requests(self) -> None:
        self.flush_scheduled = False
        for engine, outbox in self.outbox.items():
            if not outbox:
                continue
            requests = outbox.copy()
            outbox.clear()
            try:
                self.engines[engine].send(encode(requests), zmq.NOBLOCK)
            except zmq.ZMQError as e:  # only if the way to the engine closed since send() looked
                log.warning("engine %s: %d requests not sent (%s)", engine, len(requests), e)
                for request in requests:
                    self.entry.not_sent(engine, request.request_id)

    async def pump_replies(self) -> None:
        decoder = Decoder(Replies)
        sync = self._sync(self.replies)
        while True:
            # await one message, then drain the rest without awaiting (docs/architecture.md, ZeroMQ);
            # awaiting poll() alone spins: the edge-triggered FD keeps waking with nothing to read
            first = await self.replies.recv_multipart()
            for parts in [first, *sockets.drain(sync)]:
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
            self.entry.expire_idle()

    async def pump_zmq_clients(self) -> None:
        """Read the ZMQ clients' requests for as long as the gateway runs.

        The ROUTER's ZMQ_FD is edge-triggered, and the replies written to the same socket can
        take the edge that announces new requests; an awaited receive would then sleep while
        requests wait (a client's queue filled at 1,000 and it stalled). So the socket is read
        whenever its FD wakes the loop *and* after every turn that wrote to it, each time for
        as long as ZMQ_EVENTS says a message waits.
        """
        sync = self._sync(self.router)
        loop = asyncio.get_running_loop()
        fd = sync.get(zmq.FD)
        loop.add_reader(fd, self.read_zmq_clients)
        self.read_zmq_clients()
        try:
            await asyncio.Event().wait()  # until the gateway stops (this task is cancelled)
        finally:
            loop.remove_reader(fd)

    def read_zmq_clients(self) -> None:
        self.zmq_read_scheduled = False
        if self.router.closed:  # a read scheduled before the gateway stopped
            return
        sync = self._sync_router
        max_line = self.config.gateway.max_line
        for _ in range(10_000):  # then let the rest of the loop run; the next turn goes on
            if not sync.get(zmq.EVENTS) & zmq.POLLIN:
                return
            parts = sync.recv_multipart(zmq.NOBLOCK, copy=False)
            session = self._zmq_session(sync, parts[0].bytes, parts[-1])
            if session is None:
                continue
            if len(parts) != 2:
                self.entry.on_error(session, Rej(RejectCode.MALFORMED,
                                                 f"a request is one frame of at most {max_line} bytes"))
                continue
            request = decode_request(parts[1].bytes, max_line)
            if isinstance(request, Rej):
                self.entry.on_error(session, request)
            else:
                self.entry.on_request(session, request)
        self.after_zmq_write()

    def after_zmq_write(self) -> None:
        """Read the ROUTER again at the end of this turn: a write may have taken its FD's edge."""
        if not self.zmq_read_scheduled:
            self.zmq_read_scheduled = True
            asyncio.get_running_loop().call_soon(self.read_zmq_clients)

    def _zmq_session(self, sock: zmq.Socket, identity: bytes, frame: zmq.Frame) -> Session | None:
        """The session of the connection that sent ``frame``: the one bound to its routing id *and*
        to who the connection is (its CURVE key's user, the ZAP User-Id, and its address), else a
        new one (logged in as that user, or nobody until LOGIN).

        The routing id is the client's choice, and a ROUTER gives one to a new connection only
        once the connection that had it is gone. So a frame under a known routing id from someone
        else means that session's client left: its session ends, and the newcomer gets its own.
        """
        proof = (frame.get("User-Id") if self.keyed else None, _peer_address(frame))
        known = self.zmq_sessions.get(identity)
        if known is not None:
            if known.proof == proof:
                return known.session
            log.info("ZMQ routing id %s is another connection's now; ending session %d", identity.hex(),
                     known.session.id)
            known.replies.close()  # nothing more of the old session's goes to this routing id
            self._forget(identity, known.replies)
        replies = ZmqReplies(sock, identity, lambda: self._forget(identity, replies), self.after_zmq_write)
        try:
            session = self.entry.open(replies.write, lambda: self._forget(identity, replies), proof[1], proof[0],
                                      login_timeout=self.config.gateway.zmq_login_timeout)
        except ProtocolError as e:  # no room for it: this request gets the reason, and nothing else
            try:
                sock.send_multipart([identity, encode(Rej(e.code, e.reason))], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            return None
        self.zmq_sessions[identity] = ZmqSession(proof, session, replies)
        return session

    def _forget(self, identity: bytes, replies: ZmqReplies) -> None:
        """End the session that writes to ``replies``, if it is still the one of ``identity``."""
        known = self.zmq_sessions.get(identity)
        if known is not None and known.replies is replies:
            del self.zmq_sessions[identity]
            self.entry.close(known.session)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.flush_requests()  # e.g. the cancels of sessions that asked for cancel on disconnect
        for sock in (*self.engines.values(), *self.pushes.values(), self.replies, self.router):
            sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


async def serve(config: Config) -> None:
    gateway = Gateway(config)
    sockets.freeze_startup_objects()
    host, port = config.gateway.text.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(lambda: TextConnection(gateway.entry, config.gateway),
                                      host, int(port), backlog=1024, reuse_address=True)
    tasks = [asyncio.create_task(gateway.pump_replies()), asyncio.create_task(gateway.pump_zmq_clients()),
             asyncio.create_task(gateway.expire_requests())]
    log.info("ready: text protocol on %s, zmq on %s (%s)", config.gateway.text, config.gateway.zmq,
             "CURVE keys" if gateway.keyed else "LOGIN")
    sockets.report_ready()
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
