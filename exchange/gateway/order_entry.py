"""Order entry, independent of transport: a session's requests in, engines' answers out.

The gateway role wires this to sockets; this module never touches one. Its parts:
- the sessions (exchange.gateway.session_table), each with an ordered output queue: a
  request's reply holds back anything queued after it, so every client sees ACK before the
  FILLs of that order and gets replies in request order;
- the requests in flight to engines (exchange.gateway.in_flight), until their engine's reply
  is released, and the dispatcher that chooses each request's engine (exchange.gateway.dispatch);
- a view of every order its users placed (for STATUS, ORDERS, REPLACE and #client-order-id lookups);
- with accounts on, the ledger shards' own answers: a refused hold, balances, transfers
  (exchange.gateway.account_requests);
- the BOOKs waiting for the notifier's snapshots (exchange.gateway.book_requests).

Who may do what (docs/security.md): the user of every command is the session's user, set by a
LOGIN whose key verified (exchange.gateway.access.Logins, off the event loop) or by the connection's
CURVE key; never a field of a request. A session that asked for it has its open orders canceled
when it ends, however it ends (CancelAll with reason DISCONNECT).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from exchange.config import Config
from exchange.core.ledger_messages import HoldRejected
from exchange.core.messages import (
    CancelAll, Command, OrderAccepted, OrderRejected, OrderReplaced, PlaceOrder, expand,
)
from exchange.errors import JournalError, ProtocolError, RejectCode
from exchange.gateway.access import Logins
from exchange.gateway.account_requests import LEDGER_ANSWERS
from exchange.gateway.book_requests import BookRequests
from exchange.gateway.dispatch import Dispatcher, same_order
from exchange.gateway.in_flight import InFlight, Pending, engines_are_busy
from exchange.gateway.ledger_routes import Routes
from exchange.gateway.order_views import OrderViews
from exchange.gateway.protocol.messages import (
    CancelAllOk, CancelAllRequest, CancelRequest, ClientReply, ClientRequest, LoginOk, LoginRequest, LogoutOk,
    LogoutRequest, PingRequest, PlaceRequest, Pong, Rej, ReplaceRequest,
)
from exchange.gateway.protocol.translate import replies_for_event, reply_for_event
from exchange.gateway.session_table import SessionTable
from exchange.gateway.sessions import Session
from exchange.wire.messages import Reply

log = logging.getLogger(__name__)

_ANSWERS_ONLY = (OrderAccepted, OrderRejected, OrderReplaced)  # events only the requester is told of
_ORDER_REQUESTS = (PlaceRequest, CancelRequest, ReplaceRequest, CancelAllRequest)  # what changes balances


class OrderEntry:
    """A gateway's order entry, built of the parts above; ``send(engine_name, command, session_id,
    request_id)`` → bool hands a command to the way to an engine."""

    def __init__(self, config: Config, send: Callable[[str, Command, int, int], bool],
                 gateway: str = "gateway", clock: Callable[[], float] = time.monotonic,
                 history: Callable[[str], Iterable] = lambda order_id: (),
                 run_blocking: Callable | None = None, later: Callable | None = None,
                 ask_book: Callable[[str], bool] = lambda symbol: False):
        """``ask_book(symbol)`` hands a SnapshotRequest to the notifier (False: it cannot take one now);
        its answers come back through ``on_book``. ``run_blocking(fn, done)`` runs ``fn`` (scrypt for a LOGIN, a journal read for a resend)
        away from the caller's loop and calls ``done(result)`` back on it; ``later(delay, fn)``
        delays failed logins; both default to "now", for tests in memory. ``history`` may raise
        JournalError."""
        self.config = config
        self.history = history  # order_id → its journaled order events, for resends we never saw answered
        self.gateway = gateway  # this incarnation's name: replies to others' requests only update views
        self.clock = clock
        self.instruments = config.instrument_map()
        # the longest of the engines' client order id windows: a gateway serves them all
        self.window_ns = max(round(e.client_order_id_window * 1e9) for e in config.engines)
        self.views = OrderViews(self.instruments, self.window_ns)
        self.orders = self.views.orders  # order id → OrderView
        self.load = self.views.load
        self.table = SessionTable(config, clock, self._ended)
        self.in_flight = InFlight(config, send, clock, Routes(config))
        self.books = BookRequests(self.instruments, ask_book, clock)
        self.dispatcher = Dispatcher(config, self.instruments, self.views, self.in_flight, self.books, self.guarded)
        self.accounts = self.dispatcher.accounts if config.accounts else None
        self.run_blocking = run_blocking or (lambda fn, done: done(fn()))
        self.logins = Logins(config, self.run_blocking, later or (lambda delay, fn: fn()), clock)
        # what the transports and the role call, from the part that does it
        self.open, self.close, self.expire_idle = self.table.open, self.table.close, self.table.expire_idle
        self.expire, self.not_sent = self.in_flight.expire, self.in_flight.not_sent
        self.on_book, self.expire_books = self.books.answered, self.books.expire
        self.sessions, self.waiting_on = self.table.sessions, self.in_flight.waiting_on

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
        slot = self.table.admit(session, getattr(request, "client_order_id", ""))
        if slot is None:
            return
        if isinstance(request, LogoutRequest):
            session.logging_out = True  # nothing after it is answered, even while it waits behind a LOGIN
        if session.waiting is not None:  # a LOGIN is being checked: this request waits its turn
            session.waiting.append((request, slot))
            return
        self._handle(session, request, slot)

    def _error(self, session: Session, error: Rej) -> None:
        slot = self.table.admit(session, error.client_order_id)
        if slot is not None:
            session.fill(slot, [error])

    def _handle(self, session: Session, request: ClientRequest, slot: list) -> None:
        try:
            replies = self._dispatch(session, request, slot)
        except ProtocolError as e:
            replies = [Rej(e.code, e.reason, getattr(request, "client_order_id", ""))]
        if replies is not None:
            session.fill(slot, replies)
        elif self.accounts is not None and isinstance(request, _ORDER_REQUESTS) and not slot[0]:
            session.await_answer(slot)  # a BALANCE after it shows what it did (exchange.gateway.account_requests)

    def _dispatch(self, session: Session, request: ClientRequest, slot: list) -> list | None:
        if isinstance(request, PingRequest):
            return [Pong()]
        if isinstance(request, LoginRequest):
            return self._login(session, request, slot)
        if isinstance(request, LogoutRequest):
            return self._logout(session)
        if session.user is None:
            raise ProtocolError(RejectCode.NOT_LOGGED_IN, "log in first: LOGIN <user> <key>")
        return self.dispatcher.dispatch(session, session.user, request, slot)

    def _logout(self, session: Session) -> list[ClientReply]:
        """LOGOUT: its answer comes in turn, then the session ends as if its client had left."""
        log.info("session %d: %s logged out", session.id, session.user or "nobody")

        def end() -> None:
            session.disconnect()
            self.close(session)

        session.ending = end
        return [LogoutOk(session.user or "")]

    def _login(self, session: Session, request: LoginRequest, slot: list) -> list | None:
        if request.address is not None and not session.front_end:  # nobody else may say where they are
            raise ProtocolError(RejectCode.NOT_ALLOWED, "only a front end of the gateway may say where a LOGIN"
                                " comes from; leave `address` out")
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
        # a front end's user is throttled by where the user is, not by where the front end is
        self.logins.check(request.user, request.key, request.address or session.address,
                          lambda error: self.guarded(session, self._checked, session, request, slot, error))
        return None

    def _checked(self, session: Session, request: LoginRequest, slot: list, error: ProtocolError | None) -> None:
        """The LOGIN's key was checked: answer it, then the requests that waited behind it."""
        waiting, session.waiting = session.waiting, None
        if session.closed:
            return
        if error is None:
            try:
                self.table.check(request.user)
            except ProtocolError as e:
                error = e
        if error is None:
            self.table.logged_in(session, request.user, request)
            session.fill(slot, [LoginOk(request.user, session.cancel_on_disconnect)])
        else:
            session.fill(slot, [Rej(error.code, error.reason)])
        while waiting:
            if session.waiting is not None:  # a LOGIN among them is being checked: the rest wait for it
                session.waiting.extend(waiting)
                break
            self._handle(session, *waiting.popleft())

    # -- cancel on disconnect ----------------------------------------------------------------

    def _ended(self, session: Session) -> None:
        """The session closed: cancel its open orders if it asked; its orders' views forget it."""
        if session.user and session.cancel_on_disconnect:
            self.dispatcher.cancel_on_disconnect(session, list(session.own_orders))
        for order_id in session.own_orders:
            view = self.orders.get(order_id)
            if view is not None and view.session is session:
                view.session = None  # a closed session is kept by nothing (OrderView is not GC-tracked)
        session.own_orders.clear()

    def _placed(self, session: Session, order_id: str) -> None:
        """``session`` placed ``order_id``: remember it while it is open, for cancel on disconnect."""
        view = self.orders.get(order_id)
        if view is None or not view.leaves_qty:
            return
        if session.closed:  # it ended while the order was on its way: cancel it now, if it asked
            if session.cancel_on_disconnect:
                self.dispatcher.cancel_on_disconnect(session, [order_id])
            return
        view.session = session
        session.own_orders[order_id] = None

    # -- replies from engines ----------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        """An engine's released answer to one request: tell the requester, push to owners.

        A bug while answering ends the requester's session only (``guarded``)."""
        pending = self.in_flight.answered(reply) if reply.gateway == self.gateway else None
        if reply.events and isinstance(reply.events[0], LEDGER_ANSWERS):
            if pending is not None:  # a shard's answer changes no order: nobody else hears of it
                self.guarded(pending.session, self._ledger_answered, reply.events[0], pending)
            return
        if reply.events and self.accounts is not None:  # before its answer lets a BALANCE go (``seen``)
            self.accounts.taken(reply.events[-1])
        if pending is None:
            self._replied(reply, None)
            late = self.in_flight.timed_out.pop(reply.request_id, None) if reply.gateway == self.gateway else None
            if late is not None and reply.events and isinstance(reply.events[0], OrderAccepted):
                self._placed(late, reply.events[0].order_id)  # its client heard UNAVAILABLE; it is still theirs
            return
        if not isinstance(pending.command, CancelAll):
            answer = reply.events[0] if reply.events else None
            if pending.refused_as_duplicate(answer) and answer.order_id not in self.orders:
                # the engine knows the order and this gateway does not: the views learn it from the journal
                # (or, if it cannot be read, only the events; the request is answered UNAVAILABLE)
                self._look_up(answer.order_id, pending, lambda read: self._replied(reply, pending if read else None))
                return
        self.guarded(pending.session, self._replied, reply, pending)

    def _ledger_answered(self, answer, pending: Pending) -> None:
        """A ledger shard answered: a refused hold, balances or a transfer's outcome. A hold refused
        DUPLICATE_ID may be a resend: see ``_in_use``."""
        replies = self.dispatcher.accounts.answer(answer, pending)
        if (isinstance(answer, HoldRejected) and answer.code is RejectCode.DUPLICATE_ID and pending.key
                and isinstance(pending.command, PlaceOrder)):
            self._in_use(pending, replies, answer.order_id)
            return
        pending.answer(replies)

    def _in_use(self, pending: Pending, refusal: list[ClientReply], order_id: str, looked_up: bool = False) -> None:
        """A placement with a client order id was refused because an order holds that id: ``order_id``, or
        one the shard has not bound to its order id yet (""). The same order gets the original ACK, another
        one ``refusal`` (DUPLICATE_ID). An order placed on another gateway may not have reached this one
        yet (the shard's answer and the journal writer's batch come from different peers): the placement
        then waits for its acceptance or refusal (``_heard``); one this gateway never will take in is read
        from the journal."""
        command = pending.command
        order_id = order_id or self.views.client_order_ids.taken(pending.key, command.ts_received)
        view = self.orders.get(order_id) if order_id else None
        if view is not None:
            pending.answer([reply_for_event(view.accepted, self.instruments[view.symbol])]
                           if same_order(view.accepted, command) else refusal)
        elif order_id and looked_up:
            pending.answer(refusal)  # not in the journal either
        elif order_id and self.views.passed(order_id):
            self._look_up(order_id, pending, lambda read: read and self._in_use(pending, refusal, order_id, True))
        else:
            self.in_flight.wait_for_order(pending, refusal, order_id)

    def _heard(self, event) -> None:
        """An engine's answer to a placement was taken in: answer the placements that waited for it
        (``_in_use``), and those waiting for an order that this one shows will not come."""
        in_flight = self.in_flight
        if isinstance(event, OrderAccepted) or (isinstance(event, OrderRejected) and event.command == "PlaceOrder"):
            for pending in in_flight.heard((event.user, event.client_order_id)):
                self.guarded(pending.session, self._answer_resend, pending, event)
        if isinstance(event, OrderAccepted) and in_flight.resends:
            passed = self.views.passed
            for pending in in_flight.stop_waiting(lambda pending: pending.awaited and passed(pending.awaited)):
                self.guarded(pending.session, self._in_use, pending, pending.refusal, pending.awaited)

    def _answer_resend(self, pending: Pending, event: OrderAccepted | OrderRejected) -> None:
        """Answer a placement that waited for the order that holds its client order id, now taken in:
        the same order gets the original answer (its ACK, or the engine's refusal of it), another one
        DUPLICATE_ID."""
        command = pending.command
        if isinstance(event, OrderAccepted):
            pending.answer([reply_for_event(event, self.instruments[event.symbol])] if same_order(event, command)
                           else pending.refusal)
        elif event.code is RejectCode.DUPLICATE_ID and event.order_id:
            self._in_use(pending, pending.refusal, event.order_id)  # the held order was itself a resend
        else:  # the order was refused: its id is free again, and a resend of it gets that refusal
            pending.answer([reply_for_event(event, self.instruments.get(event.symbol))]
                           if event.symbol == command.symbol else pending.refusal)

    def _replied(self, reply: Reply, pending: Pending | None) -> None:
        answer = original = None
        if pending is not None and not isinstance(pending.command, CancelAll):
            answer = reply.events[0] if reply.events else None
            if pending.refused_as_duplicate(answer):
                original = self._original(answer, pending.command)
        requester = pending.session if pending is not None else None
        own: list[ClientReply] = []  # what the requester hears, in its reply slot
        pushed: list[tuple[Session, list[ClientReply]]] = []  # what others hear, once every event is known
        by_user = self.table.by_user
        # one pass: the views learn each event, and who hears of it (a Match: the maker of its fill, the
        # taker of theirs)
        for event in expand(reply.events, trades=False):
            self.views.track(event)
            if event is answer:
                own.extend(replies_for_event(original or answer, self.instruments.get(event.symbol)))
                continue
            if isinstance(event, _ANSWERS_ONLY):
                continue  # no session gets an unsolicited ACK or REJ
            sessions = by_user.get(event.user)
            if not sessions:
                continue  # none of the user's sessions is on this gateway
            lines = replies_for_event(event, self.instruments.get(event.symbol))
            for session in sessions:
                if session is requester:
                    own.extend(lines)
                else:
                    pushed.append((session, lines))
        if pending is not None and isinstance(original or answer, OrderAccepted):
            self._placed(pending.session, (original or answer).order_id)
        if self.in_flight.resends and reply.events:  # a placement's answer comes first in its reply
            self._heard(reply.events[0])
        # resends of the order get its ACK before its pushed lines, which may go to their sessions too
        if pending is not None and answer is not None:
            for session, slot in pending.also:
                if session.id in self.sessions:
                    session.fill(slot, [reply_for_event(original or answer, self.instruments.get(answer.symbol))])
        for session, lines in pushed:  # a write may close a session: it then takes no more
            session.push(lines)
        if answer is not None and requester.id in self.sessions:
            requester.fill(pending.slot, own)
        elif pending is not None and isinstance(pending.command, CancelAll):
            pending.lines.extend(own)  # the OUT lines follow "OK CANCELALL n", once every engine answered
            if pending.waiting == 0:
                self.in_flight.done(reply.request_id)
                head = (Rej(RejectCode.BUSY, f"{engines_are_busy(pending.unreached)}: its orders stay;"
                            f" {pending.count} canceled elsewhere; try again") if pending.unreached
                        else CancelAllOk(pending.count))
                pending.session.fill(pending.slot, [head, *pending.lines])
        elif requester is not None and own:
            requester.push(own)

    def _original(self, rejected: OrderRejected, resent: PlaceOrder):
        """The original acceptance of a resent order, or the reject if it differs.

        This happens when an engine accepted an order and stopped before its answer was released:
        the client resent it, and the restarted engine knows the client order id.
        """
        view = self.orders.get(rejected.order_id)
        if view is not None and same_order(view.accepted, resent):
            return view.accepted
        return rejected

    def _look_up(self, order_id: str, pending: Pending, then: Callable[[bool], None]) -> None:
        """Read the history of the order a resend duplicates from the journal, off the event loop; the
        views learn it, then ``then(True)``. A journal that cannot be read answers this request only
        (UNAVAILABLE), then ``then(False)``."""

        def read() -> list | Exception:
            # any failure is this request's: one raised here would never reach ``done``, and the
            # client would wait for an answer that never comes
            try:
                return list(self.history(order_id))
            except JournalError as e:
                return e
            except Exception as e:
                log.exception("reading order %s from the journal failed", order_id)
                return e

        def done(history: list | Exception) -> None:
            if isinstance(history, Exception):
                log.warning("could not read order %s from the journal: %s", order_id, history)
                pending.answer([Rej(RejectCode.UNAVAILABLE, f"could not tell from the journal whether this is"
                                    f" order {order_id}; the outcome is unknown: send the same order again with its"
                                    " #client-order-id, or ask STATUS", pending.command.client_order_id)])
                then(False)
                return
            self.views.learn(history)
            then(True)

        self.run_blocking(read, lambda history: self.guarded(pending.session, done, history))
