"""One signed-in browser's order entry session on the gateway: a ZMQ DEALER speaking the client
protocol (exchange.gateway.protocol.messages) to the gateway's endpoint for trusted front ends
(``gateway.front_end``; with ``mesh_curve``, as the mesh role ``web``), driven from the web
role's event loop. It ends with a ``LogoutRequest``, so that the gateway ends its side at once.

The gateway answers requests one by one, in order, with pushed messages (fills, outs, reductions)
in between; so a reply is matched to the oldest request still waiting, and anything else is
pushed. The one ambiguity is ``Out``: it answers a ``CancelRequest`` (status CANCELED, no reason,
naming the order asked for) and is otherwise pushed. Sends never block: a gateway that cannot take
a request at once is the caller's ``GatewayBusy``.

The session ends when the gateway says so (``Bye``) and when it answers ``NOT_LOGGED_IN``: a
gateway that restarted has no login for this DEALER, which reconnects to it by itself, and answers
so every request that needs one. A PING it answers Pong all the same, so the keep-alive is a
request that needs a login.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import msgspec
import zmq
import zmq.asyncio

from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    AnyReply, Bye, CancelRequest, ClientReply, ClientRequest, Fill, LogoutRequest, Out, Reduced, Rej, StatusRequest,
)
from exchange.wire import sockets
from exchange.wire.messages import encode
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

PUSHED = (Fill, Out, Reduced)
LOGOUT_LINGER_MS = 1000  # a closed session's LogoutRequest may take this long to leave
LOGOUT_WAIT_S = 2.0  # a sign-out waits this long for the gateway to say the session ended
# the keep-alive: a STATUS of an order id no engine makes (engine ids start at 1), which the gateway answers
# from its own memory, NOT_YOUR_ORDER, while logged in, and NOT_LOGGED_IN once it has forgotten the session
KEEP_ALIVE = StatusRequest(order_id="0-0")


class GatewayBusy(Exception):
    """The gateway did not take or did not answer a request: its reason is for the user."""


class GatewaySession:
    """Requests in, their replies out (awaitable), pushed messages to ``on_push``; ``on_end`` once.

    ``on_reply`` sees each reply as it is read, before any pushed message after it (the fills of an
    order come right behind its ``Ack``, before the request's awaiter runs).
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, security: MeshSecurity | None, on_reply, on_push,
                 on_end, timeout_s: float = 15.0):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        sockets.connect_to(self.sock, endpoint, security, "gateway")
        self.on_reply, self.on_push, self.on_end, self.timeout_s = on_reply, on_push, on_end, timeout_s
        self.decoder = msgspec.msgpack.Decoder(AnyReply)
        self.waiting: deque[tuple[ClientRequest, asyncio.Future]] = deque()
        self.ended = self.logged_out = False
        self.forgotten = False  # the gateway answered NOT_LOGGED_IN: it holds a session for us, without a login
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def request(self, request: ClientRequest) -> ClientReply:
        """Send one request; its reply. Raises GatewayBusy if the gateway cannot take it or does not answer."""
        if self.ended:
            raise GatewayBusy("the session with the gateway has ended; sign in again")
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_seen)
        try:
            self.sock.send(encode(request), zmq.NOBLOCK)
        except zmq.Again:
            raise GatewayBusy("the gateway is not taking requests now; try again") from None
        self.waiting.append((request, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise GatewayBusy(f"no answer from the gateway in {self.timeout_s:g} s") from None

    async def ping(self) -> None:
        """Keep the gateway session from idling out, and learn within one ping that the gateway forgot
        it (a PING would be answered all the same)."""
        try:
            await self.request(KEEP_ALIVE)
        except GatewayBusy as e:
            log.info("ping: %s", e)

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.sock.recv()
                try:
                    reply = self.decoder.decode(frame)
                except msgspec.DecodeError:
                    log.warning("unreadable frame from the gateway: %r", frame[:64])
                    continue
                if isinstance(reply, Bye):
                    log.info("the gateway ended a session: %s %s", reply.code.value, reply.reason)
                    break
                if self._is_reply(reply):
                    request, future = self.waiting.popleft()
                    self.on_reply(reply)
                    if not future.done():
                        future.set_result(reply)
                else:
                    self.on_push(reply)
                if isinstance(reply, Rej) and reply.code is RejectCode.NOT_LOGGED_IN:
                    # whichever request it answers, no other request of this session will be answered either
                    log.info("the gateway no longer knows a session (it restarted?): %s", reply.reason)
                    self.forgotten = True
                    break
        except (asyncio.CancelledError, zmq.ZMQError):
            pass
        finally:
            self._end()

    def _is_reply(self, reply: ClientReply) -> bool:
        if not self.waiting:
            return False
        if not isinstance(reply, PUSHED):
            return True
        request = self.waiting[0][0]
        if not (isinstance(reply, Out) and isinstance(request, CancelRequest) and reply.status == "CANCELED"
                and not reply.reason):
            return False
        return reply.order_id == request.order_id or bool(
            request.client_order_id and reply.client_order_id == request.client_order_id)

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for _, future in self.waiting:
            if not future.done():
                future.set_exception(GatewayBusy("the gateway ended the session"))
        self.waiting.clear()
        self.on_end()

    async def logout(self) -> None:
        """End the session on the gateway, waiting (a little) for it to say so; then close."""
        if not self.ended:
            try:
                await asyncio.wait_for(self.request(LogoutRequest()), LOGOUT_WAIT_S)
            except (GatewayBusy, asyncio.TimeoutError) as e:
                log.info("logout: %s", str(e) or "no answer")
            self.logged_out = True  # the gateway has forgotten the session (or will not hear more)
        self.close()

    def close(self) -> None:
        """End the session: tell the gateway (without waiting), as a closed DEALER is not seen leaving
        (one it forgot it still holds, without a login, until it hears this or its login timeout ends it)."""
        if (not self.ended or self.forgotten) and not self.logged_out:
            try:
                self.sock.send(encode(LogoutRequest()), zmq.NOBLOCK)
                self.sock.linger = LOGOUT_LINGER_MS
            except zmq.ZMQError:
                pass
        self.reader.cancel()
        self.sock.close()
        self._end()


def _seen(future: asyncio.Future) -> None:
    """Retrieve a request's outcome, so that one nobody waits for any more is not reported as lost."""
    if not future.cancelled():
        future.exception()
