"""Order entry sessions, independent of transport: login, requests → engine commands, replies back.

The gateway role wires this to sockets; this module never touches one. It keeps:
- sessions (text or ZMQ), each with an ordered output queue: a request's reply holds back
  anything queued after it, so every client sees ACK before the FILLs of that order and gets
  replies in request order;
- requests in flight, keyed by request id, until their engine's reply is released;
- a view of every order its users placed (for STATUS, REPLACE and #client-order-id lookups).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable

from exchange.config import Config, verify_key
from exchange.core.messages import (
    CancelAll, CancelOrder, Command, OrderAccepted, PlaceOrder, OrderCanceled, OrderExpired, OrderFilled, OrderReduced,
    OrderRejected, OrderReplaced,
)
from exchange.core.orders import OrderStatus
from exchange.errors import ProtocolError, RejectCode
from exchange.protocol import (
    CancelAllOk, CancelAllRequest, CancelRequest, ClientReply, ClientRequest, LoginOk, LoginRequest,
    Out, PingRequest, PlaceRequest, Pong, Rej, ReplaceRequest, State, StatusRequest, cancel_all_command,
    cancel_command, place_command, replace_command, reply_for_event,
)
from exchange.wire import Reply

log = logging.getLogger(__name__)

MAX_FINISHED_ORDERS = 100_000  # finished orders kept for STATUS


class Session:
    """One client connection. ``write`` takes a list of replies, in order.

    Replies leave in request order: each request reserves a slot in ``queue``, and a slot that is
    not answered yet holds back everything behind it. A pushed update (FILL, OUT, REDUCED) waits
    in the queue only while a line about the same order is still queued (so an order's ACK always
    comes before its fills); otherwise it leaves at once, so an order's lines stay in the order
    things happened to it even when a request about it (a CANCEL, say) is still unanswered.
    """

    def __init__(self, session_id: int, write: Callable[[list[ClientReply]], None]):
        self.id = session_id
        self.user: str | None = None
        self.write = write
        self.queue: deque[list] = deque()  # [ready, replies] slots, flushed from the head
        self.held: Counter[str] = Counter()  # order id → queued lines about it

    def reserve(self) -> list:
        slot = [False, []]
        self.queue.append(slot)
        return slot

    def fill(self, slot: list, replies: list[ClientReply] | Callable[[], list[ClientReply]]) -> None:
        """Complete a reserved slot; a callable is called only when the slot's turn comes."""
        slot[0] = True
        if callable(replies):
            slot[1] = replies
        else:
            slot[1].extend(replies)
            self._count(replies, +1)
        self.flush()

    def push(self, replies: list[ClientReply]) -> None:
        if self.queue and any(self.held[getattr(r, "order_id", "")] for r in replies):
            self.queue.append([True, replies])
            self._count(replies, +1)
            self.flush()
        else:
            self.write(replies)

    def flush(self) -> None:
        out = []
        while self.queue and self.queue[0][0]:
            replies = self.queue.popleft()[1]
            if callable(replies):
                out.extend(replies())
            else:
                out.extend(replies)
                self._count(replies, -1)
        if out:
            self.write(out)

    def _count(self, replies: list[ClientReply], step: int) -> None:
        for reply in replies:
            order_id = getattr(reply, "order_id", None)
            if order_id:
                self.held[order_id] += step
                if not self.held[order_id]:
                    del self.held[order_id]


class OrderView:
    """What the gateway knows of one order, from the events it has seen."""

    __slots__ = ("order_id", "user", "symbol", "side", "price", "qty", "filled_qty", "leaves_qty",
                 "status", "client_order_id", "accepted")

    def __init__(self, e: OrderAccepted):
        self.accepted = e
        self.order_id, self.user, self.symbol, self.side = e.order_id, e.user, e.symbol, e.side
        self.price, self.qty, self.filled_qty, self.leaves_qty = e.price, e.qty, 0, e.qty
        self.status = OrderStatus.NEW
        self.client_order_id = e.client_order_id


class Pending:
    """A request sent to engines whose answer has not been released yet."""

    __slots__ = ("session", "slot", "command", "waiting", "count", "key", "sent", "also", "engine", "lines")

    def __init__(self, session: Session, slot: list, command: Command, waiting: int = 1, key=None,
                 sent: float = 0.0):
        self.session, self.slot, self.command, self.waiting, self.key, self.sent = (
            session, slot, command, waiting, key, sent)
        self.count = 0  # orders canceled so far, for CANCELALL
        self.also: list[tuple[Session, list]] = []  # resends of the same order, answered alike
        self.engine: str | None = None  # the one engine asked, if only one
        self.lines: list[ClientReply] = []  # CANCELALL: the requester's OUT lines, until all engines answer


class OrderEntry:
    """The gateway's state and logic; ``send(engine_name, command, session_id, request_id)`` → bool."""

    def __init__(self, config: Config, send: Callable[[str, Command, int, int], bool],
                 gateway: str = "gateway", clock: Callable[[], float] = time.monotonic,
                 history: Callable[[str], Iterable] = lambda order_id: ()):
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
        self.orders: dict[str, OrderView] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.client_order_ids: dict[tuple[str, str], str] = {}
        self.in_flight: dict[tuple[str, str], Pending] = {}  # (user, client order id) → its placement
        self._logins: set[bytes] = set()  # digests of keys that verified, to skip scrypt next time
        self._next_session = self._next_request = 0

    # -- sessions ----------------------------------------------------------------------------

    def open(self, write: Callable[[list[ClientReply]], None]) -> Session:
        self._next_session += 1
        session = self.sessions[self._next_session] = Session(self._next_session, write)
        return session

    def close(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        if session.user:
            self.by_user.get(session.user, set()).discard(session)

    # -- requests ----------------------------------------------------------------------------

    def on_request(self, session: Session, request: ClientRequest) -> None:
        """Handle one request; its reply comes now or when the engine's answer is released."""
        slot = session.reserve()
        try:
            replies = self._dispatch(session, request, slot)
        except ProtocolError as e:
            replies = [Rej(e.code, e.reason, getattr(request, "client_order_id", ""))]
        if replies is not None:
            session.fill(slot, replies)

    def on_error(self, session: Session, error: ProtocolError, client_order_id: str = "") -> None:
        session.fill(session.reserve(), [Rej(error.code, error.reason, client_order_id)])

    def _dispatch(self, session: Session, request: ClientRequest, slot: list) -> list | None:
        if isinstance(request, PingRequest):
            return [Pong()]
        if isinstance(request, LoginRequest):
            return self._login(session, request)
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
                command = place_command(request, instrument, user, ts)
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
                    raise self._unknown(user, request.order_id, request.client_order_id)
                # an order this gateway has not seen may still be the user's: the engine decides
                return self._forward(session, slot, engine,
                                     cancel_command(order_id, user, ts, request.client_order_id))
            case ReplaceRequest():
                key = (user, request.client_order_id)
                if request.client_order_id and key in self.in_flight:
                    symbol, order_id = self.in_flight[key].command.symbol, ""  # not yet acknowledged
                else:
                    view = self._own_order(user, request.order_id, request.client_order_id)
                    symbol, order_id = view.symbol, view.order_id
                command = replace_command(request, self.instruments[symbol], order_id, user, ts)
                return self._forward(session, slot, self.owner[symbol], command)
            case CancelAllRequest():
                if request.symbol is not None and request.symbol not in self.instruments:
                    raise ProtocolError(RejectCode.UNKNOWN_SYMBOL, f"no instrument {request.symbol}")
                engines = ([self.owner[request.symbol]] if request.symbol
                           else [e.name for e in self.config.engines])
                self._next_request += 1
                command = cancel_all_command(request.symbol, user, ts)
                pending = self.pending[self._next_request] = Pending(session, slot, command, len(engines),
                                                                     sent=self.clock())
                for engine in engines:
                    if not self.send(engine, command, session.id, self._next_request):
                        pending.waiting -= 1  # that engine is busy: its orders stay
                if pending.waiting == 0:
                    del self.pending[self._next_request]
                    raise ProtocolError(RejectCode.BUSY, "the engines are busy; try again")
                return None
            case StatusRequest():
                # answered in turn, after the replies to earlier requests (which may create the order)
                return lambda: self._status(user, request)
        raise ProtocolError(RejectCode.MALFORMED, f"unexpected request {type(request).__name__}")

    def _status(self, user: str, request: StatusRequest) -> list[ClientReply]:
        try:
            view = self._own_order(user, request.order_id, request.client_order_id)
        except ProtocolError as e:
            return [Rej(e.code, e.reason, request.client_order_id)]
        instrument = self.instruments[view.symbol]
        return [State(view.order_id, view.client_order_id, view.status.value,
                      instrument.format_qty(view.filled_qty), instrument.format_qty(view.leaves_qty),
                      view.side, view.symbol,
                      instrument.format_price(view.price) if view.price is not None else None)]

    def _login(self, session: Session, request: LoginRequest) -> list:
        if session.user is not None:
            raise ProtocolError(RejectCode.ALREADY_LOGGED_IN, f"this session is logged in as {session.user}")
        key_hash = self.config.key_hash(request.user)
        seen = hashlib.sha256(f"{request.user}\0{request.key}\0{key_hash}".encode()).digest()
        if key_hash is None or (seen not in self._logins and not verify_key(request.key, key_hash)):
            log.info("session %d: failed login for %r", session.id, request.user)
            raise ProtocolError(RejectCode.BAD_LOGIN, "unknown user or wrong key")
        self._logins.add(seen)
        session.user = request.user
        self.by_user.setdefault(request.user, set()).add(session)
        log.info("session %d: %s logged in", session.id, request.user)
        return [LoginOk(request.user)]

    def _own_order(self, user: str, order_id: str, client_order_id: str) -> OrderView:
        if client_order_id:
            order_id = self.client_order_ids.get((user, client_order_id), "")
        view = self.orders.get(order_id)
        if view is None or view.user != user:
            raise self._unknown(user, order_id, client_order_id)
        return view

    @staticmethod
    def _unknown(user: str, order_id: str, client_order_id: str) -> ProtocolError:
        name = order_id or f"#{client_order_id}"
        return ProtocolError(RejectCode.UNKNOWN_ORDER, f"no order {name} of user {user}")

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
        """The original acceptance of a resent order (from the journal), or the reject if it differs.

        This happens when an engine accepted an order and stopped before its answer was released:
        the client resent it, and the restarted engine knows the client order id.
        """
        if rejected.order_id not in self.orders:
            for event in self.history(rejected.order_id):
                self._track(event)
        view = self.orders.get(rejected.order_id)
        if view is not None and _same_order(view.accepted, resent):
            return view.accepted
        return rejected

    def expire(self, timeout: float) -> int:
        """Answer requests an engine has not answered within ``timeout`` seconds; return how many.

        The outcome is unknown (the engine may have died with the command in its queue, or be
        slow); the client resends a placement with the same client order id to learn it.
        """
        now = self.clock()
        late = [(request_id, p) for request_id, p in self.pending.items() if now - p.sent > timeout]
        for request_id, pending in late:
            self._done(request_id)
            if pending.key:
                self.in_flight.pop(pending.key, None)
            reason = (f"no answer from the engine in {timeout:.0f} s; the outcome is unknown: send the same"
                      " order again with its #client-order-id, or ask STATUS")
            cid = getattr(pending.command, "client_order_id", "")
            for session, slot in [(pending.session, pending.slot), *pending.also]:
                session.fill(slot, [Rej(RejectCode.UNAVAILABLE, reason, cid)])
        return len(late)

    def load(self, events: Iterable) -> int:
        """Learn the orders of earlier sessions from journaled order events; return how many."""
        before = len(self.orders)
        for event in events:
            self._track(event)
        return len(self.orders) - before

    # -- replies from engines ----------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        """An engine's released answer to one request: tell the requester, push to owners."""
        pending = self.pending.get(reply.request_id) if reply.gateway == self.gateway else None
        answer = original = None
        if pending is not None:
            if isinstance(pending.command, CancelAll):
                pending.count += sum(isinstance(e, OrderCanceled) for e in reply.events)
                pending.waiting -= 1
            else:
                self._done(reply.request_id)
                if pending.key:
                    self.in_flight.pop(pending.key, None)
                answer = reply.events[0] if reply.events else None
                if (pending.key and isinstance(answer, OrderRejected) and answer.code is RejectCode.DUPLICATE_ID
                        and answer.order_id):
                    original = self._original(answer, pending.command)
        for event in reply.events:
            self._track(event)
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
                del self.pending[reply.request_id]
                pending.session.fill(pending.slot, [CancelAllOk(pending.count), *pending.lines])
        elif requester is not None and own:
            requester.push(own)
        if pending is not None and answer is not None:
            for session, slot in pending.also:
                if session.id in self.sessions:
                    session.fill(slot, [reply_for_event(original or answer, self.instruments.get(answer.symbol))])

    def _track(self, event) -> None:
        if isinstance(event, OrderAccepted):
            self.orders[event.order_id] = OrderView(event)
            if event.client_order_id:
                self.client_order_ids[(event.user, event.client_order_id)] = event.order_id
            return
        view = self.orders.get(getattr(event, "order_id", ""))
        if view is None:
            return
        match event:
            case OrderFilled():
                view.filled_qty, view.leaves_qty = event.filled_qty, event.leaves_qty
                view.status = OrderStatus.FILLED if event.leaves_qty == 0 else OrderStatus.PARTIALLY_FILLED
            case OrderCanceled():
                view.status, view.leaves_qty = OrderStatus.CANCELED, 0
            case OrderExpired():
                view.status, view.leaves_qty = OrderStatus.EXPIRED, 0
            case OrderReplaced():
                view.qty, view.price, view.leaves_qty = event.qty, event.price, event.leaves_qty
            case OrderReduced():
                view.qty, view.leaves_qty = view.qty - event.reduced_qty, event.leaves_qty
        if view.leaves_qty == 0:
            self.finished[view.order_id] = None
            while len(self.finished) > MAX_FINISHED_ORDERS:
                self.orders.pop(self.finished.popitem(last=False)[0], None)


def _same_order(original: PlaceOrder | OrderAccepted, again: PlaceOrder) -> bool:
    return (original.side, original.symbol, original.qty, original.price, original.tif) == (
        again.side, again.symbol, again.qty, again.price, again.tif)
