"""The gateway's ZMQ transport: a ROUTER for programs with a DEALER, one msgpack frame per message.

    zmq        ROUTER bound      ← programs with a DEALER: msgpack requests, msgpack replies; a CURVE
                                   server whose ZAP handler names each client's user (or plain, with
                                   LOGIN, if ``gateway.zmq_auth`` is ``login``)
    front_end  ROUTER bound      ← the gateway's trusted front ends (the web role), one DEALER per user
                                   it signs in: the same messages, LOGIN with user and key whatever
                                   ``zmq_auth`` says, and the user's address in it believed; a mesh
                                   endpoint (with ``mesh_curve``, a CURVE server admitting roles only)

Each connection (a routing id, proved by its CURVE key and address) has a session of
exchange.gateway.order_entry.OrderEntry. A client that does not take its replies is cut off, as
a text client that does not read is (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import NamedTuple

import zmq
import zmq.asyncio

from exchange.config import Config
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.protocol.grammar import decode_request
from exchange.gateway.protocol.messages import ClientReply, Rej
from exchange.gateway.sessions import Session
from exchange.wire import sockets
from exchange.wire.messages import encode
from exchange.wire.security.curve_keys import make_server, server_secret_key
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

MAX_ZMQ_MESSAGE = 64 * 1024  # larger frames cost the client its connection; smaller ones get TOO_LARGE
MAX_ZMQ_BACKLOG = 10_000  # replies that may wait for one ZMQ client (and at most gateway.max_write_buffer bytes)
ZMQ_STALL_S = 5.0  # seconds a ZMQ client may take no reply at all before it is cut off
HANDSHAKE_MS = 3000  # a ZMQ client that has not finished its (CURVE) handshake by then is dropped


class ZmqReplies:
    """The replies to one ZMQ client, in order.

    A reply the ROUTER cannot take at once waits here and is tried again every RETRY_S: the
    client's queue may be full, or libzmq may not have seen yet that it has room again (it then
    answers EHOSTUNREACH for a peer that is still there). A client that takes nothing for
    ZMQ_STALL_S, or would have more than ``max_bytes`` (``gateway.max_write_buffer``) or
    MAX_ZMQ_BACKLOG replies wait, is cut off without a word, as a text client that does not read
    is: its session ends.
    """

    RETRY_S = 0.002

    def __init__(self, sock: zmq.Socket, identity: bytes, cut_off, wrote, max_bytes: int):
        self.sock, self.identity, self.cut_off, self.wrote = sock, identity, cut_off, wrote
        self.max_bytes = max_bytes
        self.backlog: deque[bytes] = deque()
        self.waiting = 0  # the bytes in ``backlog``
        self.stalled_since = 0.0
        self.retrying = self.closed = False

    def write(self, replies: list[ClientReply]) -> None:
        if self.closed:
            return
        frames = deque(encode(reply) for reply in replies)
        if not self.backlog:  # nothing waits: what the ROUTER takes now is never kept
            self.hand_over(frames)
            self.wrote()
            if frames:
                self.stalled_since = time.monotonic()  # a stall begins now
        if frames:
            self.keep(frames)

    def keep(self, frames: deque[bytes]) -> None:
        """Keep ``frames`` to send later, behind the others, if the limits leave room; else cut the client off."""
        size = sum(map(len, frames))
        if self.waiting + size > self.max_bytes:
            self.end(f"{self.waiting + size} bytes of replies would wait for it")
        elif len(self.backlog) + len(frames) > MAX_ZMQ_BACKLOG:
            self.end(f"{len(self.backlog) + len(frames)} replies would wait for it")
        else:
            self.backlog.extend(frames)
            self.waiting += size
            if not self.retrying:
                self.retry_later()

    def send(self) -> None:
        """Try the waiting replies again."""
        self.retrying = False
        if self.closed:
            return
        self.waiting -= self.hand_over(self.backlog)
        self.wrote()
        if not self.backlog:
            return
        if time.monotonic() - self.stalled_since > ZMQ_STALL_S:
            self.end(f"it took no reply for {ZMQ_STALL_S:g} s")
        else:
            self.retry_later()

    def hand_over(self, frames: deque[bytes]) -> int:
        """Send ``frames`` from the first until the ROUTER takes no more; return the bytes it took."""
        sent = 0
        while frames:
            try:
                self.sock.send_multipart([self.identity, frames[0]], zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            sent += len(frames.popleft())
        if sent:
            self.stalled_since = time.monotonic()
        return sent

    def retry_later(self) -> None:
        self.retrying = True
        asyncio.get_running_loop().call_later(self.RETRY_S, self.send)

    def end(self, why: str) -> None:
        log.warning("ZMQ client %s does not read its replies (%s); ending its session", self.identity.hex(), why)
        self.close()
        self.cut_off()

    def close(self) -> None:
        """Send nothing more, not even what waits."""
        self.closed = True
        self.backlog.clear()
        self.waiting = 0


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


class ZmqServer:
    """The ROUTER for ZMQ clients (or, ``front_end``, for the trusted front ends), and their sessions
    by routing id."""

    def __init__(self, ctx: zmq.asyncio.Context, config: Config, entry: OrderEntry, front_end: bool = False,
                 security: MeshSecurity | None = None):
        self.config = config
        self.entry = entry
        self.front_end = front_end
        self.keyed = not front_end and config.gateway.zmq_auth == "curve"  # CURVE keys name the users (else LOGIN)
        self.router = self._router(ctx, security)  # ← ZMQ clients, or front ends
        self._sync_router = zmq.Socket.shadow(self.router.underlying)
        self.read_scheduled = False
        self.sessions: dict[bytes, ZmqSession] = {}  # by routing id

    def _router(self, ctx: zmq.asyncio.Context, security: MeshSecurity | None) -> zmq.asyncio.Socket:
        """The ROUTER for ZMQ clients: a CURVE server with ZAP naming each client's user, or plain; for
        front ends: a mesh socket (admitting roles only with ``mesh_curve``, plain without)."""
        sock = sockets.socket(ctx, zmq.ROUTER, max_msg_size=MAX_ZMQ_MESSAGE)
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        sock.setsockopt(zmq.BACKLOG, 1024)
        if self.front_end:
            if security is not None:
                security.serve(sock)
            sock.bind(self.config.gateway.front_end)
            return sock
        if self.keyed:
            make_server(sock, server_secret_key(self.config.gateway.secret_key_file))
        sock.bind(self.config.gateway.zmq)
        return sock

    async def pump(self) -> None:
        """Read the ZMQ clients' requests for as long as the gateway runs.

        The ROUTER's ZMQ_FD is edge-triggered, and the replies written to the same socket can
        take the edge that announces new requests; an awaited receive would then sleep while
        requests wait (a client's queue filled at 1,000 and it stalled). So the socket is read
        whenever its FD wakes the loop *and* after every turn that wrote to it, each time for
        as long as ZMQ_EVENTS says a message waits.
        """
        loop = asyncio.get_running_loop()
        fd = self._sync_router.get(zmq.FD)
        loop.add_reader(fd, self.read)
        self.read()
        try:
            await asyncio.Event().wait()  # until the gateway stops (this task is cancelled)
        finally:
            loop.remove_reader(fd)

    def read(self) -> None:
        self.read_scheduled = False
        if self.router.closed:  # a read scheduled before the gateway stopped
            return
        sync = self._sync_router
        more = True  # messages may still wait: read on at the end of this turn, also if a bug cut it short
        try:
            for _ in range(10_000):  # then let the rest of the loop run; the next turn goes on
                if not sync.get(zmq.EVENTS) & zmq.POLLIN:
                    more = False
                    return
                parts = sync.recv_multipart(zmq.NOBLOCK, copy=False)
                session = self._session(sync, parts[0].bytes, parts[-1])
                if session is not None:  # a bug on one message ends its session only
                    self.entry.guarded(session, self._take, session, parts)
        finally:
            if more:
                self.after_write()

    def _take(self, session: Session, parts: list[zmq.Frame]) -> None:
        """One message from ``session``'s client (its routing id, then its frames): its request, or the Rej
        for what is none."""
        max_line = self.config.gateway.max_line
        if len(parts) != 2:
            self.entry.on_error(session, Rej(RejectCode.MALFORMED,
                                             f"a request is one frame of at most {max_line} bytes"))
            return
        request = decode_request(parts[1].bytes, max_line)
        if isinstance(request, Rej):
            self.entry.on_error(session, request)
        else:
            self.entry.on_request(session, request)

    def after_write(self) -> None:
        """Read the ROUTER again at the end of this turn: a write may have taken its FD's edge."""
        if not self.read_scheduled:
            self.read_scheduled = True
            asyncio.get_running_loop().call_soon(self.read)

    def _session(self, sock: zmq.Socket, identity: bytes, frame: zmq.Frame) -> Session | None:
        """The session of the connection that sent ``frame``: the one bound to its routing id *and*
        to who the connection is (its CURVE key's user, the ZAP User-Id, and its address), else a
        new one (logged in as that user, or nobody until LOGIN).

        The routing id is the client's choice, and a ROUTER gives one to a new connection only
        once the connection that had it is gone. So a frame under a known routing id from someone
        else means that session's client left: its session ends, and the newcomer gets its own.
        """
        proof = (frame.get("User-Id") if self.keyed else None, _peer_address(frame))
        known = self.sessions.get(identity)
        if known is not None:
            if known.proof == proof:
                return known.session
            log.info("ZMQ routing id %s is another connection's now; ending session %d", identity.hex(),
                     known.session.id)
            known.replies.close()  # nothing more of the old session's goes to this routing id
            self._forget(identity, known.replies)
        replies = ZmqReplies(sock, identity, lambda: self._forget(identity, replies), self.after_write,
                             self.config.gateway.max_write_buffer)
        try:
            session = self.entry.open(replies.write, lambda: self._forget(identity, replies), proof[1], proof[0],
                                      login_timeout=self.config.gateway.zmq_login_timeout, front_end=self.front_end)
        except ProtocolError as e:  # no room for it: this request gets the reason, and nothing else
            try:
                sock.send_multipart([identity, encode(Rej(e.code, e.reason))], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            return None
        self.sessions[identity] = ZmqSession(proof, session, replies)
        return session

    def _forget(self, identity: bytes, replies: ZmqReplies) -> None:
        """End the session that writes to ``replies``, if it is still the one of ``identity``."""
        known = self.sessions.get(identity)
        if known is not None and known.replies is replies:
            del self.sessions[identity]
            self.entry.close(known.session)

    def close(self) -> None:
        self.router.close()
