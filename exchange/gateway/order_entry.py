"""Order entry, independent of transport: login, requests → engine commands, replies back.

The gateway role wires this to sockets; this module never touches one. It keeps:
- sessions (text or ZMQ), each with an ordered output queue: a request's reply holds back
  anything queued after it, so every client sees ACK before the FILLs of that order and gets
  replies in request order;
- requests in flight, keyed by request id, until their engine's reply is released;
- a view of every order its users placed (for STATUS, REPLACE and #client-order-id lookups).

Who may do what (docs/security.md): the user of every command is the session's user, set by a
LOGIN whose key verified (exchange.gateway.access.Logins, off the event loop) or by the connection's
CURVE key; never a field of a request. Each session has a token bucket (RATE_LIMITED), each
user a session cap (MAX_SESSIONS), the gateway a connection cap (MAX_CONNECTIONS), and a session
that sends nothing for ``idle_timeout`` is closed. A session that asked for it has its open
orders canceled when it ends, however it ends (CancelAll with reason DISCONNECT).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from exchange.gateway.access import Logins, TokenBucket
from exchange.config import Config
from exchange.core.messages import (
    CancelAll, CancelOrder, Command, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, OrderReplaced,
    PlaceOrder,
)
from exchange.core.orders import CancelReason
from exchange.errors import JournalError, ProtocolError, RejectCode
from exchange.gateway.order_views import OrderViews, not_yours
from exchange.gateway.protocol.messages import (
    Bye, CancelAllOk, CancelAllRequest, CancelRequest, ClientReply, ClientRequest, LoginOk, LoginRequest, Out,
    PingRequest, PlaceRequest, Pong, Rej, ReplaceRequest, StatusRequest,
)
from exchange.gateway.protocol.translate import (
    cancel_all_command, cancel_command, place_command, replace_command, reply_for_event,
)
from exchange.gateway.sessions import Session
from exchange.wire.messages import Reply

log = logging.getLogger(__name__)


class Pending:
    """A request sent to engines whose answer has not been released yet."""

    __slots__ = ("session", "slot", "command", "waiting", "count", "key", "sent", "also", "engine", "lines",
                 "counted")

    def __init__(self, session: Session, slot: list, command: Command, waiting: int = 1, key=None,
                 sent: float = 0.0):
        self.session, self.slot, self.command, self.waiting, self.key, self.sent = (
            session, slot, command, waiting, key, sent)
        self.count = 0  # orders canceled so far, for CANCELALL
        self.also: list[tuple[Session, list]] = []  # resends of the same order, answered alike
        self.engine: str | None = None  # the one engine asked, if only one
        self.counted: list[str] = []  # the engines whose in-flight count this request holds
        self.lines: list[ClientReply] = []  # CANCELALL: the requester's OUT lines, until all engines answer

    def answer(self, replies: list[ClientReply]) -> None:
        """Give the requester, and whoever resent the same order, these replies."""
        for session, slot in [(self.session, self.slot), *self.also]:
            session.fill(slot, replies)


class OrderEntry:
    """The gateway's state and logic; ``send(engine_name, command, session_id, request_id)`` → bool."""

    def __init__(self, config: Config, send: Callable[[str, Command, int, int], bool],
                 gateway: str = "gateway", clock: Callable[[], float] = time.monotonic,
                 history: Callable[[str], Iterable] = lambda order_id: (),
                 run_blocking: Callable | None = None, later: Callable | None = None):
        """``run_blocking(fn, done)`` runs ``fn`` (scrypt for a LOGIN, a journal read for a resend)
        away from the caller's loop and calls ``done(result)`` back on it; ``later(delay, fn)``
        delays failed logins; both default to "now", for tests in memory. ``history`` may raise
        JournalError."""
        self.config = config
        self.history = history  # order_id → its journaled order events, for resends we never saw answered
        self.gateway = gateway  # this incarnation's name: replies to others' requests only update views
        self.clock = clock
        self.instruments = config.instrument_map()
        self.owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        self.engine_by_id = {str(e.id): e.name for e in config.engines}
        self.send = send
        self.sessions: dict[int, Session] = {}
        self.by_user: dict[str, set[Session]] = {}
        self.pending: dict[int, Pending] = {}
        self.waiting_on: Counter[str] = Counter()  # requests in flight per engine
        # the longest of the engines' client order id windows: a gateway serves them all
        self.window_ns = max(round(e.client_order_id_window * 1e9) for e in config.engines)
        self.views = OrderViews(self.instruments, self.window_ns)
        self.orders = self.views.orders  # order id → OrderView
        self.client_order_ids = self.views.client_order_ids  # (user, client order id) → order id
        self.load = self.views.load
        self.in_flight: dict[tuple[str, str], Pending] = {}  # (user, client order id) → its placement
        self.run_blocking = run_blocking or (lambda fn, done: done(fn()))
        self.logins = Logins(config, self.run_blocking,
                             later or (lambda delay, fn: fn()), clock)
        self.unsent: list[tuple[str, CancelAll]] = []  # disconnect cancels an engine had no room for
        self._nobody = Session(0, lambda replies: None)  # answers to the gateway's own requests
        self._next_session = self._next_request = 0

    # -- sessions ----------------------------------------------------------------------------

    def open(self, write: Callable[[list[ClientReply]], None], disconnect: Callable[[], None] = lambda: None,
             address: str = "", user: str | None = None, resume: Callable[[], None] = lambda: None,
             login_timeout: float = 0.0) -> Session:
        """A new session; ``user`` when the connection itself proved it (a CURVE key). ``resume``
        is called when a session that had no room (``Session.has_room``) has room again; a session
        nobody logged in on ends after ``login_timeout`` seconds without a request, if given.

        Raises ProtocolError MAX_CONNECTIONS (or MAX_SESSIONS for ``user``): no session is made.
        """
        gateway = self.config.gateway
        if len(self.sessions) >= gateway.max_connections:
            raise ProtocolError(RejectCode.MAX_CONNECTIONS, f"the gateway has {gateway.max_connections}"
                                " connections, the most it takes; try again later")
        if user is not None:
            self._check_sessions(user)
        now = self.clock()
        self._next_session += 1
        session = Session(self._next_session, write, disconnect, address,
                          TokenBucket(gateway.max_rate, gateway.max_burst, now), now, gateway.max_unanswered, resume)
        session.login_timeout = login_timeout
        self.sessions[session.id] = session
        if user is not None:
            session.keyed = True
            self._logged_in(session, user, None)
        return session

    def close(self, session: Session) -> None:
        """The session ended (closed by either side, or expired); cancel its orders if it asked."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        if session.user:
            self.by_user.get(session.user, set()).discard(session)
            if session.cancel_on_disconnect:
                self._cancel_on_disconnect(session, list(session.own_orders))
        for order_id in session.own_orders:
            view = self.orders.get(order_id)
            if view is not None and view.session is session:
                view.session = None  # a closed session is kept by nothing (OrderView is not GC-tracked)
        session.own_orders.clear()

    def expire_idle(self) -> int:
        """Close every session that sent nothing for ``gateway.idle_timeout`` seconds, or for its
        ``login_timeout`` while nobody is logged in on it; return how many."""
        now = self.clock()
        idle = [(session, timeout) for session in self.sessions.values()
                if (timeout := self._idle_timeout(session)) and now - session.last_request > timeout]
        for session, timeout in idle:
            log.info("session %d: idle for %g s; closing it", session.id, timeout)
            session.write([Bye(RejectCode.IDLE_TIMEOUT, f"no request in {timeout:g} s; send PING to stay"
                                                        " connected")])
            session.disconnect()
            self.close(session)
        return len(idle)

    def _idle_timeout(self, session: Session) -> float:
        timeout = self.config.gateway.idle_timeout
        if session.login_timeout and session.user is None and session.waiting is None:  # no LOGIN being checked
            return min(timeout, session.login_timeout) if timeout else session.login_timeout
        return timeout

    def _check_sessions(self, user: str) -> None:
        known = self.config.user(user)
        limit = (known.max_sessions if known is not None else None) or self.config.gateway.max_sessions_per_user
        if len(self.by_user.get(user, ())) >= limit:
            raise ProtocolError(RejectCode.MAX_SESSIONS, f"user {user} has {limit} sessions, the most"
                                " allowed; close one first")

    def _logged_in(self, session: Session, user: str, request: LoginRequest | None) -> None:
        known = self.config.user(user)
        session.user = user
        session.cancel_on_disconnect = known is not None and known.cancel_on_disconnect
        if request is not None and request.cancel_on_disconnect is not None:
            session.cancel_on_disconnect = request.cancel_on_disconnect
        if known is not None:
            session.max_open_orders = known.max_open_orders or 0
            if known.max_rate is not None:
                gateway = self.config.gateway
                burst = max(1, math.ceil(gateway.max_burst * known.max_rate / gateway.max_rate))
                session.bucket = TokenBucket(known.max_rate, burst, self.clock())
        self.by_user.setdefault(user, set()).add(session)
        log.info("session %d: %s logged in%s%s", session.id, user, " by CURVE key" if session.keyed else "",
                 ", cancel on disconnect" if session.cancel_on_disconnect else "")

    # -- requests ----------------------------------------------------------------------------

    def on_request(self, session: Session, request: ClientRequest) -> None:
        """Handle one request; its reply comes now or when the engine's answer is released."""
        self.guarded(session, self._request, session, request)

    def on_error(self, session: Session, error: Rej) -> None:
        """Answer a line or frame that is not a request (its one reply)."""
        self.guarded(session, self._error, session, error)

    def guarded(self, session: Session, fn: Callable, *args) -> None:
        """``fn(*args)`` on behalf of ``session``: a bug there ends that session only, after one
        ``REJ INTERNAL`` (the one exception to "our bugs crash": docs/architecture.md)."""
        try:
            fn(*args)
        except Exception:
            log.exception("session %d: internal error; closing the session", session.id)
            if not session.closed:
                session.write([Rej(RejectCode.INTERNAL, "the gateway failed on this request; closing the session")])
                session.disconnect()
                self.close(session)

    def _request(self, session: Session, request: ClientRequest) -> None:
        slot = self._admit(session, getattr(request, "client_order_id", ""))
        if slot is None:
            return
        if session.waiting is not None:  # a LOGIN is being checked: this request waits its turn
            session.waiting.append((request, slot))
            return
        self._handle(session, request, slot)

    def _error(self, session: Session, error: Rej) -> None:
        slot = self._admit(session, error.client_order_id)
        if slot is not None:
            session.fill(slot, [error])

    def _admit(self, session: Session, client_order_id: str) -> list | None:
        """The slot for one more request of the session; None if it is answered RATE_LIMITED, or
        ended because it has ``max_unanswered`` requests already (a transport that stops reading
        at ``Session.has_room`` never gets there; a ZMQ client, which cannot be left unread, may)."""
        if session.closed:
            return None
        if not session.has_room():
            limit = session.max_unanswered
            log.warning("session %d: %d requests wait for their answers; closing it", session.id, limit)
            session.write([Bye(RejectCode.RATE_LIMITED, f"more than {limit} requests wait for their answers;"
                                                        " closing the session")])
            session.disconnect()
            self.close(session)
            return None
        now = self.clock()
        session.last_request = now
        if session.bucket is not None and not session.bucket.take(now):
            session.fill(session.reserve(), [Rej(RejectCode.RATE_LIMITED, f"more than {session.bucket.rate:g}"
                                                 " requests per second; slow down", client_order_id)])
            return None
        return session.reserve()

    def _handle(self, session: Session, request: ClientRequest, slot: list) -> None:
        try:
            replies = self._dispatch(session, request, slot)
        except ProtocolError as e:
            replies = [Rej(e.code, e.reason, getattr(request, "client_order_id", ""))]
        if replies is not None:
            session.fill(slot, replies)

    def _dispatch(self, session: Session, request: ClientRequest, slot: list) -> list | None:
        if isinstance(request, PingRequest):
            return [Pong()]
        if isinstance(request, LoginRequest):
            return self._login(session, request, slot)
        user = session.user
        if user is None:
            raise ProtocolError(RejectCode.NOT_LOGGED_IN, "log in first: LOGIN <user> <key>")
        ts = time.time_ns()
        match request:
            case PlaceRequest():
                instrument = self.instruments.get(request.symbol)
                if instrument is None:
                    raise ProtocolError(RejectCode.UNKNOWN_SYMBOL, f"no instrument {request.symbol}; there are"
                                        f" {', '.join(self.instruments)}")
                command = place_command(request, instrument, user, ts, session.max_open_orders)
                key = (user, request.client_order_id) if request.client_order_id else None
                if key and (key in self.client_order_ids or key in self.in_flight):
                    return self._resent(session, slot, key, command)
                return self._forward(session, slot, self.owner[request.symbol], command, key)
            case CancelRequest():
                key = (user, request.client_order_id)
                if request.client_order_id and key in self.in_flight:
                    # placed but not yet acknowledged: the engine gets the cancel after the order
                    return self._forward(session, slot, self.owner[self.in_flight[key].command.symbol],
                                         cancel_command("", user, ts, request.client_order_id))
                order_id = request.order_id or self.client_order_ids.get(key, "")
                engine = self._engine_of(order_id)
                if engine is None:
                    raise not_yours(user, request.order_id, request.client_order_id)
                # an order this gateway has not seen may still be the user's: the engine decides
                return self._forward(session, slot, engine,
                                     cancel_command(order_id, user, ts, request.client_order_id))
            case ReplaceRequest():
                key = (user, request.client_order_id)
                if request.client_order_id and key in self.in_flight:
                    symbol, order_id = self.in_flight[key].command.symbol, ""  # not yet acknowledged
                else:
                    view = self.views.own(user, request.order_id, request.client_order_id)
                    symbol, order_id = view.symbol, view.order_id
                command = replace_command(request, self.instruments[symbol], order_id, user, ts)
                return self._forward(session, slot, self.owner[symbol], command)
            case CancelAllRequest():
                if request.symbol is not None and request.symbol not in self.instruments:
                    raise ProtocolError(RejectCode.UNKNOWN_SYMBOL, f"no instrument {request.symbol}")
                engines = ([self.owner[request.symbol]] if request.symbol
                           else [e.name for e in self.config.engines])
                busy = [e for e in engines if self.waiting_on[e] >= self.config.gateway.max_in_flight]
                if busy:  # it waits in line like any order (and costs like one per engine)
                    raise ProtocolError(RejectCode.BUSY, f"engine {', '.join(busy)} is busy; try again")
                self._next_request += 1
                command = cancel_all_command(request.symbol, user, ts)
                pending = self.pending[self._next_request] = Pending(session, slot, command, len(engines),
                                                                     sent=self.clock())
                for engine in engines:
                    if self.send(engine, command, session.id, self._next_request):
                        self.waiting_on[engine] += 1
                        pending.counted.append(engine)
                    else:
                        pending.waiting -= 1  # that engine is busy: its orders stay
                if pending.waiting == 0:
                    del self.pending[self._next_request]
                    raise ProtocolError(RejectCode.BUSY, "the engines are busy; try again")
                return None
            case StatusRequest():
                # answered in turn, after the replies to earlier requests (which may create the order)
                return lambda: self.views.status(user, request)
        raise ProtocolError(RejectCode.MALFORMED, f"unexpected request {type(request).__name__}")

    def _login(self, session: Session, request: LoginRequest, slot: list) -> list | None:
        if session.keyed:  # the CURVE key named the user; a LOGIN only sets the session's options
            if request.user != session.user:
                raise ProtocolError(RejectCode.BAD_LOGIN, f"this connection's key is {session.user}'s")
            if session.login_seen:
                raise ProtocolError(RejectCode.ALREADY_LOGGED_IN, f"this session is logged in as {session.user}")
            session.login_seen = True
            if request.cancel_on_disconnect is not None:
                session.cancel_on_disconnect = request.cancel_on_disconnect
            return [LoginOk(session.user, session.cancel_on_disconnect)]
        if session.user is not None:
            raise ProtocolError(RejectCode.ALREADY_LOGGED_IN, f"this session is logged in as {session.user}")
        session.waiting = deque()  # until the key is checked, later requests wait (replies stay in order)
        self.logins.check(request.user, request.key, session.address,
                          lambda error: self.guarded(session, self._checked, session, request, slot, error))
        return None

    def _checked(self, session: Session, request: LoginRequest, slot: list, error: ProtocolError | None) -> None:
        """The LOGIN's key was checked: answer it, then the requests that waited behind it."""
        waiting, session.waiting = session.waiting, None
        if session.closed:
            return
        if error is None:
            try:
                self._check_sessions(request.user)
            except ProtocolError as e:
                error = e
        if error is None:
            self._logged_in(session, request.user, request)
            session.fill(slot, [LoginOk(request.user, session.cancel_on_disconnect)])
        else:
            session.fill(slot, [Rej(error.code, error.reason)])
        while waiting:
            if session.waiting is not None:  # a LOGIN among them is being checked: the rest wait for it
                session.waiting.extend(waiting)
                break
            self._handle(session, *waiting.popleft())

    def _engine_of(self, order_id: str) -> str | None:
        return self.engine_by_id.get(order_id.split("-", 1)[0])

    def _forward(self, session: Session, slot: list, engine: str, command: Command, key=None) -> None:
        if self.waiting_on[engine] >= self.config.gateway.max_in_flight and not isinstance(command, CancelOrder):
            # the engine (or the journal behind it) is not keeping up: refuse rather than queue
            raise ProtocolError(RejectCode.BUSY, f"engine {engine} is busy; try again")
        self._next_request += 1
        if not self.send(engine, command, session.id, self._next_request):
            raise ProtocolError(RejectCode.BUSY, f"engine {engine} is busy; try again")
        pending = self.pending[self._next_request] = Pending(session, slot, command, 1, key, self.clock())
        pending.engine = engine
        self.waiting_on[engine] += 1
        if key:
            self.in_flight[key] = pending
        return None

    def _done(self, request_id: int) -> None:
        pending = self.pending.pop(request_id)
        if pending.engine is not None:
            self.waiting_on[pending.engine] -= 1
        for engine in pending.counted:
            self.waiting_on[engine] -= 1

    def _cancel_on_disconnect(self, session: Session, order_ids: list[str]) -> None:
        """Cancel those of ``order_ids`` that are still open: one CancelAll per engine, reason DISCONNECT."""
        by_engine: dict[str, list[str]] = {}
        for order_id in order_ids:
            view = self.orders.get(order_id)
            engine = self._engine_of(order_id)
            if view is not None and view.leaves_qty and engine is not None:
                by_engine.setdefault(engine, []).append(order_id)
        for engine, ids in by_engine.items():
            log.info("session %d of %s ended: canceling its %d open orders on %s", session.id, session.user,
                     len(ids), engine)
            self._send_own(engine, CancelAll(session.user, None, time.time_ns(), CancelReason.DISCONNECT,
                                             tuple(ids)))

    def _send_own(self, engine: str, command: CancelAll) -> None:
        """Send a request of the gateway's own (no session waits for it); retried if the engine is busy."""
        self._next_request += 1
        if not self.send(engine, command, 0, self._next_request):
            self.unsent.append((engine, command))
            return
        self.pending[self._next_request] = Pending(self._nobody, self._nobody.reserve(), command,
                                                   sent=self.clock())

    def _resent(self, session: Session, slot: list, key: tuple[str, str], command: PlaceOrder):
        """A placement with a client order id seen before: the same order gets the original answer
        (so a client may resend an order whose ACK it never got); a different one is refused."""
        pending = self.in_flight.get(key)
        if pending is not None:
            if _same_order(pending.command, command):
                pending.also.append((session, slot))
                return None
        else:
            view = self.orders.get(self.client_order_ids[key])
            if view is not None and _same_order(view.accepted, command):
                return [reply_for_event(view.accepted, self.instruments[view.symbol])]
        raise ProtocolError(RejectCode.DUPLICATE_ID, f"client order id #{key[1]} was already used")

    def _original(self, rejected: OrderRejected, resent: PlaceOrder):
        """The original acceptance of a resent order, or the reject if it differs.

        This happens when an engine accepted an order and stopped before its answer was released:
        the client resent it, and the restarted engine knows the client order id.
        """
        view = self.orders.get(rejected.order_id)
        if view is not None and _same_order(view.accepted, resent):
            return view.accepted
        return rejected

    def _look_up(self, reply: Reply, pending: Pending) -> None:
        """Read the history of the order a resend duplicates from the journal, off the event loop;
        then answer the reply. A journal that cannot be read answers this request only."""
        order_id = reply.events[0].order_id

        def read() -> list | JournalError:
            try:
                return list(self.history(order_id))
            except JournalError as e:
                return e

        def done(history: list | JournalError) -> None:
            if isinstance(history, JournalError):
                log.warning("could not read order %s from the journal: %s", order_id, history)
                pending.answer([Rej(RejectCode.UNAVAILABLE, f"could not tell from the journal whether this is"
                                    f" order {order_id}; the outcome is unknown: send the same order again with its"
                                    " #client-order-id, or ask STATUS", pending.command.client_order_id)])
                self._replied(reply, None)  # the views learn the events; nobody else is answered
                return
            for event in history:
                self.views.track(event)
            self._replied(reply, pending)

        self.run_blocking(read, lambda history: self.guarded(pending.session, done, history))

    def not_sent(self, engine: str, request_id: int) -> None:
        """The gateway could not hand this request to its engine after all: answer BUSY now, or keep
        a cancel-on-disconnect for the next retry. A request to several engines (CANCELALL) is
        left to its timeout: the other engines may have acted on it."""
        pending = self.pending.get(request_id)
        if pending is None:
            return
        if pending.session is self._nobody:
            del self.pending[request_id]
            self.unsent.append((engine, pending.command))
            return
        if pending.engine is None:
            return
        self._done(request_id)
        if pending.key:
            self.in_flight.pop(pending.key, None)
        cid = getattr(pending.command, "client_order_id", "")
        pending.answer([Rej(RejectCode.BUSY, f"engine {pending.engine} is busy; try again", cid)])

    def expire(self, timeout: float) -> int:
        """Answer requests an engine has not answered within ``timeout`` seconds; return how many.

        The outcome is unknown (the engine may have died with the command in its queue, or be
        slow); the client resends a placement with the same client order id to learn it.
        """
        unsent, self.unsent = self.unsent, []
        for engine, command in unsent:
            self._send_own(engine, command)
        now = self.clock()
        late = [(request_id, p) for request_id, p in self.pending.items() if now - p.sent > timeout]
        for request_id, pending in late:
            self._done(request_id)
            if pending.key:
                self.in_flight.pop(pending.key, None)
            reason = (f"no answer from the engine in {timeout:.0f} s; the outcome is unknown: send the same"
                      " order again with its #client-order-id, or ask STATUS")
            pending.answer([Rej(RejectCode.UNAVAILABLE, reason, getattr(pending.command, "client_order_id", ""))])
        return len(late)

    # -- replies from engines ----------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        """An engine's released answer to one request: tell the requester, push to owners.

        A bug while answering ends the requester's session only (``guarded``)."""
        pending = self.pending.get(reply.request_id) if reply.gateway == self.gateway else None
        if pending is None:
            self._replied(reply, None)
            return
        if isinstance(pending.command, CancelAll):
            pending.count += sum(isinstance(e, OrderCanceled) for e in reply.events)
            pending.waiting -= 1
        else:
            self._done(reply.request_id)
            if pending.key:
                self.in_flight.pop(pending.key, None)
            answer = reply.events[0] if reply.events else None
            if _duplicate(pending, answer) and answer.order_id not in self.orders:
                self._look_up(reply, pending)  # the engine knows the order and this gateway does not
                return
        self.guarded(pending.session, self._replied, reply, pending)

    def _replied(self, reply: Reply, pending: Pending | None) -> None:
        answer = original = None
        if pending is not None and not isinstance(pending.command, CancelAll):
            answer = reply.events[0] if reply.events else None
            if _duplicate(pending, answer):
                original = self._original(answer, pending.command)
        for event in reply.events:
            self.views.track(event)
        if pending is not None and isinstance(original or answer, OrderAccepted):
            self._placed(pending.session, (original or answer).order_id)
        requester = pending.session if pending is not None else None
        own: list[ClientReply] = []  # what the requester hears, in its reply slot
        for event in reply.events:
            message = reply_for_event(original if event is answer and original else event,
                                      self.instruments.get(event.symbol))
            lines = [message]
            if isinstance(event, OrderFilled) and event.leaves_qty == 0:
                lines.append(Out(event.order_id, event.client_order_id, "FILLED"))
            if event is answer:
                own.extend(lines)
                continue
            if isinstance(event, (OrderAccepted, OrderRejected, OrderReplaced)):
                continue  # answers only: no session gets an unsolicited ACK or REJ
            for session in list(self.by_user.get(event.user, ())):  # a write may close a session
                if session is requester:
                    own.extend(lines)
                else:
                    session.push(lines)
        if answer is not None and requester.id in self.sessions:
            requester.fill(pending.slot, own)
        elif pending is not None and isinstance(pending.command, CancelAll):
            pending.lines.extend(own)  # the OUT lines follow "OK CANCELALL n", once every engine answered
            if pending.waiting == 0:
                self._done(reply.request_id)
                pending.session.fill(pending.slot, [CancelAllOk(pending.count), *pending.lines])
        elif requester is not None and own:
            requester.push(own)
        if pending is not None and answer is not None:
            for session, slot in pending.also:
                if session.id in self.sessions:
                    session.fill(slot, [reply_for_event(original or answer, self.instruments.get(answer.symbol))])

    def _placed(self, session: Session, order_id: str) -> None:
        """``session`` placed ``order_id``: remember it while it is open, for cancel on disconnect."""
        view = self.orders.get(order_id)
        if view is None or not view.leaves_qty:
            return
        if session.closed:  # it ended while the order was on its way: cancel it now, if it asked
            if session.cancel_on_disconnect:
                self._cancel_on_disconnect(session, [order_id])
            return
        view.session = session
        session.own_orders[order_id] = None


def _duplicate(pending: Pending, answer) -> bool:
    """Whether ``answer`` refuses a placement with a client order id the engine already holds (a resend)."""
    return bool(pending.key and isinstance(answer, OrderRejected) and answer.code is RejectCode.DUPLICATE_ID
                and answer.order_id)


def _same_order(original: PlaceOrder | OrderAccepted, again: PlaceOrder) -> bool:
    return (original.side, original.symbol, original.qty, original.price, original.tif) == (
        again.side, again.symbol, again.qty, again.price, again.tif)
