"""The ASGI app: the page and its static files, the JSON routes and the WebSocket.

Routes (docs/web.md has the messages):

    GET  /                         the page                 GET  /api/markets            every instrument
    GET  /api/markets/{symbol}     one instrument's view    GET  /api/session            who is signed in; a CSRF token
    POST /api/login                sign in (user, key)      POST /api/logout             sign out
    GET  /api/account              my orders, fills, balances
    POST /api/orders               place an order           DELETE /api/orders/{id}      cancel one
    POST /api/orders/{id}/replace  replace one              WS   /ws                     the live feed (and my account)

Every state-changing request needs the ``X-CSRF-Token`` header to match the ``csrf`` cookie
(double submit) and, once signed in, the session's token; an ``Origin`` other than this server's
(or ``web.public_origin``) is refused; signed-in requests take a token from the session's rate bucket.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import msgspec
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from exchange.config import WebConfig, plain
from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    Ack, CancelRequest, LoginOk, LoginRequest, Out, Rej, ReplaceAck,
)
from exchange.web import api, live
from exchange.web.gateway_session import GatewayBusy, GatewaySession
from exchange.web.hub import Hub
from exchange.web.security import (
    ClientAddress, LoginAttempts, SecurityHeaders, ip_address, same_origin, token_matches,
)
from exchange.web.sessions import SessionsFull, WebSession, WebSessions
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = {"httponly": True, "samesite": "strict", "path": "/"}
# a refused sign-in's HTTP status, by the gateway's code, as docs/web.md lists them (any other: 400, as every
# gateway refusal); MAX_SESSIONS: the user has as many gateway sessions as allowed, a wait that may end
LOGIN_STATUS = {"BAD_LOGIN": 401, "LOGIN_THROTTLED": 429, "MAX_SESSIONS": 503, "BUSY": 503, "UNAVAILABLE": 503,
                "RATE_LIMITED": 503}


class Web:
    """The app's state: the market views, the signed-in sessions, and the way to the gateway (its
    endpoint for front ends, and the role's mesh keys for it if the mesh uses CURVE)."""

    def __init__(self, config: WebConfig, hub: Hub, ctx: zmq.asyncio.Context, gateway_endpoint: str,
                 security: MeshSecurity | None = None):
        self.config, self.hub, self.ctx, self.gateway_endpoint = config, hub, ctx, gateway_endpoint
        self.security = security
        self.sessions = WebSessions(config.max_sessions, config.session_expiry, config.max_rate, config.max_burst)
        self.logins = LoginAttempts(config.max_logins)
        self.addresses = ClientAddress(config.trusted_proxies)
        self.public_origin = config.origin()  # an Origin also accepted as this server's (a TLS proxy's)
        self.sockets = 0  # WebSockets open now

    def session(self, request: Request | WebSocket) -> WebSession | None:
        return self.sessions.get(request.cookies.get("session"))

    def address(self, request: Request) -> str:
        """Where the browser is: the peer, or what a trusted proxy says (web.trusted_proxies)."""
        peer = request.client.host if request.client else ""
        return self.addresses.of(peer, request.headers.getlist("x-forwarded-for"))

    # -- guards ----------------------------------------------------------------------------------

    def refused(self, request: Request, session: WebSession | None) -> Response | None:
        """Why a state-changing request may not go on (None: it may)."""
        if not same_origin(request.headers, request.url.scheme, self.public_origin):
            return api.error(403, "CSRF", "requests from another site's page are refused")
        expected = session.csrf if session is not None else request.cookies.get("csrf")
        if not token_matches(request.headers.get("x-csrf-token"), expected):
            return api.error(403, "CSRF", "missing or wrong X-CSRF-Token header; reload the page"
                                          " (GET /api/session gives the token)")
        if session is not None and not session.bucket.take():
            return api.error(429, "RATE_LIMITED", f"more than {plain(self.config.max_rate)} requests per second;"
                                                  " slow down")
        return None

    async def json_body(self, request: Request, kind: type) -> tuple[object, Response | None]:
        """The request's JSON body as ``kind``, or why not: more than ``api.MAX_BODY`` bytes (413, the
        rest unread), or malformed (400)."""
        try:
            return api.decode(await api.read(request), kind), None
        except ClientDisconnect:  # gone (or cut at the connection's deadline) before its body was whole
            return None, api.error(400, "MALFORMED", "the request's body did not arrive whole")
        except api.TooLarge as e:
            return None, api.too_large(str(e))
        except ValueError as e:
            return None, api.error(400, "MALFORMED", str(e))

    def signed_in(self, request: Request) -> tuple[WebSession | None, Response | None]:
        session = self.session(request)
        if session is None:
            return None, api.error(401, "NOT_LOGGED_IN", "sign in first (or the session expired)")
        return session, self.refused(request, session)

    # -- public routes ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def markets(self, request: Request) -> Response:
        return JSONResponse(self.hub.summaries())

    async def market(self, request: Request) -> Response:
        symbol = request.path_params["symbol"]
        view = self.hub.markets.get(symbol)
        if view is None:
            return api.error(404, "UNKNOWN_SYMBOL", f"no instrument {symbol[:32]!r}; there are"
                                                    f" {', '.join(self.hub.markets)}")
        return Response(view.snapshot_text(), media_type="application/json")

    async def whoami(self, request: Request) -> Response:
        session = self.session(request)
        if session is not None:
            return JSONResponse({"user": session.user, "csrf": session.csrf})
        token = request.cookies.get("csrf") or secrets.token_urlsafe(32)
        response = JSONResponse({"user": None, "csrf": token})
        response.set_cookie("csrf", token, **COOKIE)
        return response

    # -- signing in and out ----------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        refusal = self.refused(request, None)
        if refusal is not None:
            return refusal
        address = self.address(request)
        wait = self.logins.take(address)
        if wait:
            return api.error(429, "LOGIN_THROTTLED", f"too many sign-in attempts from this address;"
                                                     f" try again in {wait:.0f} s")
        body, refusal = await self.json_body(request, api.Login)
        if refusal is not None:
            return refusal
        previous = self.session(request)  # signed in already: ended once the new sign-in succeeds
        try:
            with self.sessions.place(replacing=previous):
                session, refusal = await self._gateway_sign_in(body, address)
        except SessionsFull as e:
            return api.error(503, "MAX_SESSIONS", str(e))
        if refusal is not None:
            return refusal  # the browser keeps the session it had
        replaced = self.sessions.replaced(request.cookies.get("csrf", ""), session)
        if previous is not None and previous not in replaced and not previous.ended:
            replaced.append(previous)
        for old in replaced:  # a browser holds one session: its earlier one, or one of a double click
            await self.sessions.sign_out(old)
        try:
            await session.refresh()  # the page shows the account from the first moment
        except GatewayBusy:
            session.dirty.set()
        log.info("%s signed in from %s", session.user, address or "?")
        response = JSONResponse({"user": session.user, "csrf": session.csrf})
        response.set_cookie("session", session.token, **COOKIE)
        response.set_cookie("csrf", session.csrf, **COOKIE)
        return response

    async def _gateway_sign_in(self, body: api.Login, address: str) -> tuple[WebSession | None, Response | None]:
        """Sign ``body``'s user in on the gateway: the new session, or the answer saying why not."""
        holder: list[WebSession] = []  # the session, once the sign-in succeeded
        # the gateway ending its session (Bye, or NOT_LOGGED_IN after it restarted) ends the browser's at once
        gateway = GatewaySession(self.ctx, self.gateway_endpoint, self.security,
                                 lambda reply: holder[0].note(reply) if holder else None,
                                 lambda reply: holder[0].on_push(reply) if holder else None,
                                 lambda: self.sessions.remove(holder[0]) if holder else None)
        try:  # the gateway throttles failed logins by the browser's address, which it believes from us only
            reply = await gateway.request(LoginRequest(body.user, body.key, address=ip_address(address)))
        except GatewayBusy as e:
            gateway.close()
            return None, api.error(503, "UNAVAILABLE", str(e))
        if not isinstance(reply, LoginOk):
            gateway.close()
            code = reply.code.value if isinstance(reply, Rej) else "BAD_LOGIN"
            return None, api.error(LOGIN_STATUS.get(code, 400), code,  # the gateway's other refusals: 400
                                   reply.reason if isinstance(reply, Rej) else "the gateway refused the sign-in")
        holder.append(self.sessions.add(reply.user, gateway))
        return holder[0], None

    async def logout(self, request: Request) -> Response:
        session, refusal = self.signed_in(request)
        if refusal is not None:
            return refusal
        await self.sessions.sign_out(session)
        response = JSONResponse({"user": None})
        response.delete_cookie("session", path="/")
        return response

    # -- my account ------------------------------------------------------------------------------

    async def account(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return api.error(401, "NOT_LOGGED_IN", "sign in first (or the session expired)")
        return JSONResponse(session.account())

    async def place(self, request: Request) -> Response:
        session, refusal = self.signed_in(request)
        if refusal is not None:
            return refusal
        ticket, refusal = await self.json_body(request, api.OrderTicket)
        if refusal is not None:
            return refusal
        try:
            order = ticket.request()
        except ValueError as e:
            return api.error(400, "MALFORMED", str(e))
        return await self._ask(session, order, (Ack,))

    async def cancel(self, request: Request) -> Response:
        session, refusal = self.signed_in(request)
        if refusal is not None:
            return refusal
        return await self._ask(session, CancelRequest(order_id=request.path_params["order_id"][:64]), (Out,))

    async def replace(self, request: Request) -> Response:
        session, refusal = self.signed_in(request)
        if refusal is not None:
            return refusal
        body, refusal = await self.json_body(request, api.Replace)
        if refusal is not None:
            return refusal
        replace = body.request(request.path_params["order_id"][:64])
        return await self._ask(session, replace, (ReplaceAck,))

    async def _ask(self, session: WebSession, request, accepted: tuple[type, ...]) -> Response:
        try:
            reply = await session.gateway.request(request)
        except GatewayBusy as e:
            if session.ended:  # the gateway ended the session, or the browser signed out, while it waited
                return self.ended()
            return api.error(503, "UNAVAILABLE", str(e))
        if isinstance(reply, Rej) and reply.code is RejectCode.NOT_LOGGED_IN:  # the session ended with it
            return self.ended()
        if isinstance(reply, Rej):
            return api.error(400 if reply.code.value not in ("BUSY", "UNAVAILABLE", "RATE_LIMITED") else 503,
                             reply.code.value, reply.reason)
        if not isinstance(reply, accepted):
            return api.error(502, "INTERNAL", f"the gateway answered {type(reply).__name__}")
        return JSONResponse({"type": type(reply).__name__, **msgspec.to_builtins(reply)})

    @staticmethod
    def ended() -> Response:
        """The answer to a request whose session ended while the gateway had it: not signed in (any
        more), as a request after it would be told; the page hears ``signed_out`` on its socket."""
        return api.error(401, "NOT_LOGGED_IN", "the session ended; sign in again")


def make_app(web: Web) -> SecurityHeaders:
    routes = [
        Route("/", web.page),
        Route("/api/markets", web.markets),
        Route("/api/markets/{symbol}", web.market),
        Route("/api/session", web.whoami),
        Route("/api/login", web.login, methods=["POST"]),
        Route("/api/logout", web.logout, methods=["POST"]),
        Route("/api/account", web.account),
        Route("/api/orders", web.place, methods=["POST"]),
        Route("/api/orders/{order_id}", web.cancel, methods=["DELETE"]),
        Route("/api/orders/{order_id}/replace", web.replace, methods=["POST"]),
        WebSocketRoute("/ws", lambda websocket: live.serve(web, websocket)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))
