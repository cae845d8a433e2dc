"""Signed-in browsers: each holds a gateway session (never the key it signed in with), what the
page shows of its user's account, a CSRF token and a rate bucket, and expires when silent.

A browser is known by a random session token in an HttpOnly cookie. Its account view (open
orders, fills seen since sign-in, balances) is the gateway's answer for its own user only: the
gateway decides who the session is, so a browser can never see another user's orders or balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque

from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    AccountBalances, Ack, BalanceRequest, ClientReply, Fill, Orders, OrdersRequest, Out, Reduced, Rej, ReplaceAck,
    State, StatusRequest,
)
from exchange.web.gateway_session import GatewayBusy, GatewaySession

log = logging.getLogger(__name__)

FILLS_KEPT = 200
# a third of the gateway's idle time for a front end's sessions (30 s, exchange.gateway.session_table): a
# session this role keeps never idles out there, and one it can no longer ping (it died) ends there in 30 s
PING_EVERY_S = 10.0
# what the page's account view shows is asked again at every ping too: the user's other clients (another
# browser, a ZMQ or text session) place, replace and cancel orders that no reply to this session tells of


class TokenBucket:
    """``rate`` requests per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class WebSession:
    """One signed-in browser."""

    def __init__(self, user: str, gateway: GatewaySession, bucket: TokenBucket):
        self.token = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.user, self.gateway, self.bucket = user, gateway, bucket
        self.last_seen = time.monotonic()
        self.orders: list[dict] = []
        self.sides: dict[str, tuple[str, str]] = {}  # order id → (symbol, side), to name a fill's
        self.fills: deque[dict] = deque(maxlen=FILLS_KEPT)
        self.balances: list[dict] | None = []  # None: accounts are off (the gateway's NOT_ALLOWED)
        # why the orders or balances shown may be out of date (the gateway's reason, say a ledger shard
        # busy): they are the last ones it gave, and they are asked for again every second until it answers
        self.stale: str | None = None
        self.listeners: set = set()  # callables given the account message on every change
        self.dirty = asyncio.Event()
        self.ended = False

    def on_push(self, reply: ClientReply) -> None:
        """A fill, an out or a reduction of one of the user's orders."""
        if isinstance(reply, Fill):
            # an order this session does not know (placed from another of the user's sessions) is named
            # by the refresh this fill sets off, which asks the gateway for its STATUS if need be
            symbol, side = self.sides.get(reply.order_id, ("", ""))
            self.fills.appendleft({"order_id": reply.order_id, "symbol": symbol, "side": side, "qty": reply.qty,
                                   "price": reply.price, "leaves_qty": reply.leaves_qty, "trade_id": reply.trade_id,
                                   "ts": int(time.time() * 1000)})
        self.dirty.set()

    def note(self, reply: ClientReply) -> None:
        """A reply to this browser's own request: remember what its order is, and refresh the account."""
        if isinstance(reply, (Ack, ReplaceAck)):
            self.sides[reply.order_id] = (reply.symbol, reply.side.value)
        if isinstance(reply, (Ack, ReplaceAck, Out, Reduced)):
            self.dirty.set()

    async def refresh(self) -> None:
        """Ask the gateway for the user's open orders and balances; tell the listeners."""
        stale = None
        try:
            orders = await self.gateway.request(OrdersRequest())
            if isinstance(orders, Orders):
                self.orders = [_order_row(state) for state in orders.orders]
                for state in orders.orders:
                    self.sides[state.order_id] = (state.symbol, state.side.value)
            else:
                stale = _why(orders)
            await self._name_fills()
            balances = await self.gateway.request(BalanceRequest())
            if isinstance(balances, AccountBalances):
                self.balances = [{"asset": a, "available": free, "held": held}
                                 for a, free, held in balances.balances]
            elif isinstance(balances, Rej) and balances.code is RejectCode.NOT_ALLOWED:
                self.balances = None  # accounts are off on this exchange
            else:  # busy or unavailable (a ledger shard down, say): the balances shown stay, marked so
                stale = stale or _why(balances)
        except GatewayBusy as e:  # no answer in time: what is shown stays, marked so
            stale = str(e)
        self.stale = stale
        message = self.account()
        for listener in list(self.listeners):
            listener(message)

    async def _name_fills(self) -> None:
        """Name the fills of orders this session did not know of when they came (another of the user's
        sessions placed them): by the open orders just asked for, or else by the order's STATUS."""
        for order_id in {f["order_id"] for f in self.fills if not f["symbol"]}:
            if order_id not in self.sides:
                state = await self.gateway.request(StatusRequest(order_id=order_id))
                if isinstance(state, Rej) and state.code not in (RejectCode.BUSY, RejectCode.UNAVAILABLE):
                    self.sides[order_id] = ("", "")  # the gateway cannot say: not asked again
                if not isinstance(state, State):
                    continue  # busy: asked again at the next refresh
                self.sides[order_id] = (state.symbol, state.side.value)
            symbol, side = self.sides[order_id]
            for fill in self.fills:
                if fill["order_id"] == order_id:
                    fill["symbol"], fill["side"] = symbol, side

    def account(self) -> dict:
        return {"type": "account", "user": self.user, "orders": self.orders, "fills": list(self.fills),
                "balances": self.balances, "stale": self.stale}

    async def keep(self, expiry_s: float, on_expired) -> None:
        """The session's life: refresh when something changed, ping the gateway, expire when silent."""
        pinged = time.monotonic()
        while not self.ended:
            try:
                await asyncio.wait_for(self.dirty.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if self.gateway.ended or now - self.last_seen > expiry_s:
                on_expired(self)
                return
            try:
                if now - pinged > PING_EVERY_S:
                    pinged = now
                    await self.gateway.ping()
                    self.dirty.set()  # what the user's other sessions changed shows within a ping
                if self.dirty.is_set() or self.stale is not None:  # stale: asked again every second
                    self.dirty.clear()
                    await self.refresh()
            except GatewayBusy as e:
                log.info("session of %s: %s", self.user, e)
                self.dirty.set()

    def end(self) -> None:
        self.ended = True
        self.gateway.close()
        for listener in list(self.listeners):
            listener({"type": "signed_out", "reason": "the session ended; sign in again"})
        self.listeners.clear()


def _why(reply: ClientReply) -> str:
    """Why the gateway did not give what was asked, for the page."""
    if isinstance(reply, Rej):
        return f"{reply.code.value}: {reply.reason}"
    return f"the gateway answered {type(reply).__name__}"


def _order_row(state: State) -> dict:
    return {"order_id": state.order_id, "client_order_id": state.client_order_id, "status": state.status,
            "side": state.side.value, "symbol": state.symbol, "price": state.price, "filled_qty": state.filled_qty,
            "leaves_qty": state.leaves_qty}


class SessionsFull(Exception):
    """Every one of ``max_sessions`` places is taken: its reason is for the user."""


class WebSessions:
    """Every signed-in browser, by session token, with the limits of the `web` config."""

    def __init__(self, max_sessions: int, expiry_s: float, rate: float, burst: int):
        self.by_token: dict[str, WebSession] = {}
        self.max_sessions, self.expiry_s, self.rate, self.burst = max_sessions, expiry_s, rate, burst
        self.signing_in = 0  # places held for browsers whose sign-in the gateway has not answered yet
        # a browser (the csrf cookie its sign-in came with, then its session's) → its session
        self.by_browser: dict[str, WebSession] = {}
        self.tasks: set[asyncio.Task] = set()

    def full(self, replacing: WebSession | None = None) -> bool:
        taken = len(self.by_token) - (replacing is not None and replacing.token in self.by_token)
        return taken + self.signing_in >= self.max_sessions

    @contextlib.contextmanager
    def place(self, replacing: WebSession | None = None):
        """A place for one browser signing in, held while it does (so that sign-ins at the same
        time cannot exceed ``max_sessions``); it becomes the session ``add`` makes, or is freed.
        The place of ``replacing`` (the browser's session now, which a successful sign-in ends)
        counts as free. Raises SessionsFull if every place is taken."""
        if self.full(replacing):
            raise SessionsFull(f"{self.max_sessions} browsers are signed in, the most this server takes;"
                               " try again later")
        self.signing_in += 1
        try:
            yield
        finally:
            self.signing_in -= 1

    def add(self, user: str, gateway: GatewaySession) -> WebSession:
        session = WebSession(user, gateway, TokenBucket(self.rate, self.burst))
        self.by_token[session.token] = session
        task = asyncio.get_running_loop().create_task(session.keep(self.expiry_s, self.remove))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return session

    def get(self, token: str | None) -> WebSession | None:
        """The live session of a cookie's token, seen now; None if there is none (or it expired)."""
        session = self.by_token.get(token or "")
        if session is None or session.ended:
            return None
        if time.monotonic() - session.last_seen > self.expiry_s:
            self.remove(session)
            return None
        session.last_seen = time.monotonic()
        return session

    def replaced(self, browser: str, session: WebSession) -> list[WebSession]:
        """Make ``session`` the one of ``browser`` (the csrf cookie its sign-in came with); the live
        sessions it replaces there, to be signed out: the browser's earlier one, or one that a
        sign-in at the same moment from the same browser made."""
        old = [s for s in (self.by_browser.get(browser), self.by_browser.get(session.csrf))
               if s is not None and s is not session and not s.ended]
        self.by_browser[browser] = self.by_browser[session.csrf] = session
        return old

    async def sign_out(self, session: WebSession) -> None:
        """The browser signs out: its gateway session ends on the gateway before this returns."""
        self.by_token.pop(session.token, None)
        await session.gateway.logout()
        self.remove(session)

    def remove(self, session: WebSession) -> None:
        self.by_token.pop(session.token, None)
        for browser in [b for b, s in self.by_browser.items() if s is session]:
            del self.by_browser[browser]
        if not session.ended:
            session.end()

    def close(self) -> None:
        for session in list(self.by_token.values()):
            self.remove(session)
        for task in self.tasks:
            task.cancel()
