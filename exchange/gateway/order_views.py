"""What the gateway knows of its users' orders, from the order events it has seen (and the journal's).

It answers STATUS, finds the order that a REPLACE or a #client-order-id names, and refuses
someone else's order with the same answer as an order that does not exist (NOT_YOUR_ORDER).
Memory is bounded: every open order, the last ``MAX_FINISHED_ORDERS`` finished ones, and the
client order ids the engines still reserve: with the same rule as the engines
(exchange.core.client_order_ids), an id is kept while its order is open and for the window after
the order's acceptance (by the events' ``ts_event``, which is the command's ``ts_received``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import msgspec

from exchange.core.client_order_ids import DEFAULT_WINDOW_NS, ClientOrderIds
from exchange.core.instruments import Instrument
from exchange.core.messages import (
    OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderReplaced,
)
from exchange.core.orders import OrderStatus, Side
from exchange.errors import ProtocolError, RejectCode, not_your_order
from exchange.gateway.protocol.messages import ClientReply, Orders, OrdersRequest, Rej, State, StatusRequest
from exchange.gateway.protocol.translate import shown
from exchange.gateway.sessions import Session

MAX_FINISHED_ORDERS = 100_000  # finished orders kept for STATUS
MAX_ORDERS_LISTED = 1000  # open orders an ORDERS lists (the oldest); its END line says how many there are


class OrderView(msgspec.Struct, eq=False, gc=False):
    """What the gateway knows of one order, from the events it has seen.

    A struct the cyclic garbage collector does not track (gc=False): the gateway keeps up to
    MAX_FINISHED_ORDERS of them, and tracked, they made every full collection pause the gateway
    for 50-150 ms under load. Its one reference to a tracked object, ``session``, is cleared when
    the order finishes or its session closes, so an untracked view never keeps a cycle alive.
    """

    order_id: str
    user: str
    symbol: str
    side: Side
    price: int | None
    qty: int
    filled_qty: int
    leaves_qty: int
    status: OrderStatus
    client_order_id: str
    accepted: OrderAccepted
    session: Session | None = None  # the session that placed it, while both are open

    @classmethod
    def of(cls, e: OrderAccepted) -> OrderView:
        return cls(e.order_id, e.user, e.symbol, e.side, e.price, e.qty, 0, e.qty, OrderStatus.NEW,
                   e.client_order_id, e)


class OrderViews:
    """Every order the gateway has seen, by order id and by (user, client order id)."""

    def __init__(self, instruments: dict[str, Instrument], client_order_id_window: int = DEFAULT_WINDOW_NS):
        """``client_order_id_window`` (ns): the longest of the engines' windows (see the module docstring)."""
        self.instruments = instruments
        self.orders: dict[str, OrderView] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.open_by_user: dict[str, dict[str, None]] = {}  # user → ids of their open orders, oldest first
        # (user, client order id) → order id, read like a dict (``in``, ``[]``, ``get``)
        self.client_order_ids = ClientOrderIds(client_order_id_window, self._is_open)
        # symbol → the id of the last order accepted on it that the gateway has taken in (from the start's
        # load and the released batches, which come in order): an engine numbers its orders in order
        self.last_accepted: dict[str, str] = {}

    def _is_open(self, order_id: str, symbol: str) -> bool:
        view = self.orders.get(order_id)
        return view is not None and view.leaves_qty > 0

    def load(self, events: Iterable) -> int:
        """Learn the orders of earlier sessions from journaled order events; return how many.

        It needs only the order events (in sequence order per engine) of the orders that are
        still open and of those accepted within the window before now: older closed orders
        cannot be named by a client order id any more. Fed more, it keeps no more than that.
        """
        before = len(self.orders)
        for event in events:
            self.track(event)
        return len(self.orders) - before

    def learn(self, events: Iterable) -> None:
        """Learn one order's journaled events, read out of turn (a resend of an order not taken in): unlike
        the released batches, they say nothing of how far its engine's batches were taken in."""
        last = dict(self.last_accepted)
        for event in events:
            self.track(event)
        self.last_accepted = last

    def passed(self, order_id: str) -> bool:
        """Whether the gateway has taken in the acceptance of ``order_id`` or of an order its engine
        numbered after it: then ``order_id``'s acceptance has come (it may be forgotten since) or never
        will (its batch was skipped, or it came before what was loaded at start). An id that is not an
        engine's counts as passed."""
        head, _, number = order_id.rpartition("-")
        if not head or not number.isdigit():
            return True
        for last in self.last_accepted.values():
            last_head, _, last_number = last.rpartition("-")
            if last_head == head and last_number.isdigit() and int(last_number) >= int(number):
                return True
        return False

    def own(self, user: str, order_id: str, client_order_id: str) -> OrderView:
        """The user's order named by its id or client order id; ProtocolError NOT_YOUR_ORDER if none."""
        if client_order_id:
            order_id = self.client_order_ids.get((user, client_order_id), "")
        view = self.orders.get(order_id)
        if view is None or view.user != user:
            raise not_yours(user, order_id, client_order_id)
        return view

    def status(self, user: str, request: StatusRequest) -> list[ClientReply]:
        """The answer to a STATUS."""
        try:
            view = self.own(user, request.order_id, request.client_order_id)
        except ProtocolError as e:
            return [Rej(e.code, e.reason, request.client_order_id)]
        return [self._state(view)]

    def open_orders(self, user: str, request: OrdersRequest) -> list[ClientReply]:
        """The answer to an ORDERS: the user's open orders (on ``request.symbol``, if it names one)."""
        views = [self.orders[order_id] for order_id in self.open_by_user.get(user, ())]
        if request.symbol is not None:
            views = [view for view in views if view.symbol == request.symbol]
        return [Orders([self._state(view) for view in views[:MAX_ORDERS_LISTED]], len(views))]

    def _state(self, view: OrderView) -> State:
        instrument = self.instruments[view.symbol]
        return State(view.order_id, shown(view.client_order_id), view.status.value,
                     instrument.format_qty(view.filled_qty), instrument.format_qty(view.leaves_qty),
                     view.side, view.symbol, instrument.format_price(view.price) if view.price is not None else None)

    def track(self, event) -> None:
        """Update the view of the order the event is about (if it is an order event)."""
        if isinstance(event, OrderAccepted):
            self.orders[event.order_id] = OrderView.of(event)
            self.last_accepted[event.symbol] = event.order_id
            self.open_by_user.setdefault(event.user, {})[event.order_id] = None
            if event.client_order_id:
                self.client_order_ids.add((event.user, event.client_order_id), event.order_id, event.symbol,
                                          event.ts_event)
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
            self._closed(view)
            if view.session is not None:
                view.session.own_orders.pop(view.order_id, None)
                view.session = None
            self.finished[view.order_id] = None
            while len(self.finished) > MAX_FINISHED_ORDERS:
                self.orders.pop(self.finished.popitem(last=False)[0], None)


    def _closed(self, view: OrderView) -> None:
        mine = self.open_by_user.get(view.user)
        if mine is not None:
            mine.pop(view.order_id, None)
            if not mine:
                del self.open_by_user[view.user]


def not_yours(user: str, order_id: str, client_order_id: str) -> ProtocolError:
    """Not an order of this user: the same answer for someone else's and for none at all."""
    name = order_id or f"#{client_order_id}"
    return ProtocolError(RejectCode.NOT_YOUR_ORDER, not_your_order(name, user))
