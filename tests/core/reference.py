"""A slow, obviously correct reference matcher, to test exchange.core.matching against.

It re-implements the rules written in docs/orders.md and in the docstrings of matching.py,
orders.py and messages.py, with nothing clever: each side of a book is a plain list of orders, sorted into priority again
after every change (bids by price descending, asks ascending, then by arrival), and matching
always looks at element 0 of the opposite list. It shares only the vocabulary with the core
(enums, message structs, Instrument limits), never its book or matcher.

What it returns for a command is the command's order events and trades, in order. Fields that
the reference does not model are zero or empty: ``seq``, ``ts_event`` and a reject's free-text
``reason`` (the test checks those separately), and no ``DepthUpdate`` or ``TopOfBook`` (the test
checks them against the live book instead).

The rules it follows where a reader could hesitate (the last one is written down nowhere else),
so that a change to them is a visible change of behaviour:
- a place is validated in this order: symbol, quantity, market order's time in force, price,
  duplicate client order id (the reject names the original order); then against the book:
  post-only crossing, market order liquidity;
- a client order id is a duplicate while the last order that used it is open, or less than
  ``client_order_id_window`` after that order's acceptance (by the commands' ``ts_received``);
- a replace: quantity (limits, then above what is filled), price, post-only crossing;
- cancel and replace name an order by ``order_id`` or, if that is empty, by the user's
  ``client_order_id``; a ``symbol`` narrows the search to that book (an unknown one finds
  nothing); someone else's order is reported as unknown;
- self-trade prevention uses the incoming order's mode; the resting order's event comes first;
- cancel-all cancels oldest first (by the time each order last entered the book), book by book
  in the engine's instrument order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exchange.core.client_order_ids import DEFAULT_WINDOW_NS

from exchange.core.instruments import Instrument
from exchange.core.messages import (
    CancelAll, CancelOrder, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced,
    OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder, Trade,
)
from exchange.core.orders import (
    CancelReason, ExpireReason, SelfTradePrevention, Side, TimeInForce,
)
from exchange.errors import RejectCode

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, POST = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST
STP = SelfTradePrevention


@dataclass(eq=False)  # identity: list.remove must take this very order
class RefOrder:
    order_id: str
    user: str
    side: Side
    price: int | None
    qty: int
    leaves_qty: int
    tif: TimeInForce
    stp: SelfTradePrevention
    client_order_id: str
    arrival: int = 0  # when the order last entered the book: its time priority
    closed: bool = False  # an incoming order canceled by self-trade prevention

    def state(self) -> tuple:
        """The same tuple as ``exchange.core.orders.Order.state()``."""
        return (self.order_id, self.user, self.side.value, self.price, self.qty, self.leaves_qty,
                self.tif.value, self.stp.value, self.client_order_id)


def opposite(side: Side) -> Side:
    return SELL if side is BUY else BUY


def within(side: Side, limit: int | None, price: int) -> bool:
    """Whether an order on ``side`` with ``limit`` (None: market) may trade at ``price``."""
    return limit is None or (price <= limit if side is BUY else price >= limit)


class RefBook:
    """One instrument: two lists of resting orders, each kept in priority order."""

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.bids: list[RefOrder] = []
        self.asks: list[RefOrder] = []

    def side(self, side: Side) -> list[RefOrder]:
        return self.bids if side is BUY else self.asks

    def sort(self) -> None:
        self.bids.sort(key=lambda o: (-o.price, o.arrival))
        self.asks.sort(key=lambda o: (o.price, o.arrival))

    def orders(self) -> list[RefOrder]:
        return self.bids + self.asks

    def state(self) -> tuple:
        """The same tuple as ``exchange.core.book.OrderBook.state()``."""
        return (self.symbol, tuple(o.state() for o in self.bids), tuple(o.state() for o in self.asks))

    def top(self) -> tuple:
        """(bid_price, bid_qty, ask_price, ask_qty), as ``OrderBook.top()``."""
        top: list = []
        for orders in (self.bids, self.asks):
            best = orders[0].price if orders else None
            top += [best, sum(o.leaves_qty for o in orders if o.price == best)]
        return tuple(top)

    def level_totals(self) -> dict[tuple[Side, int], int]:
        totals: dict[tuple[Side, int], int] = {}
        for order in self.orders():
            key = (order.side, order.price)
            totals[key] = totals.get(key, 0) + order.leaves_qty
        return totals


class ReferenceMatcher:
    """The reference for ``exchange.core.matching.Matcher``: ``handle(command)`` → order events."""

    def __init__(self, engine_id: int, instruments: Iterable[Instrument],
                 client_order_id_window: int = DEFAULT_WINDOW_NS):
        self.engine_id = engine_id
        self.client_order_id_window = client_order_id_window
        self.books = {i.symbol: RefBook(i) for i in instruments}
        self.last_order_number = 0
        self.last_trade_number = 0
        self.arrivals = 0
        self.client_order_ids: dict[tuple[str, str], str] = {}  # every accepted order's, the last per key
        self.accepted_at: dict[tuple[str, str], int] = {}  # when that order was accepted

    def handle(self, command) -> list:
        match command:
            case PlaceOrder():
                return self.place(command)
            case CancelOrder():
                return self.cancel(command)
            case ReplaceOrder():
                return self.replace(command)
            case CancelAll():
                return self.cancel_all(command)
        raise TypeError(command)

    # -- commands ------------------------------------------------------------------------------

    def place(self, cmd: PlaceOrder) -> list:
        book = self.books.get(cmd.symbol)
        if book is None:
            return [self.reject(cmd, RejectCode.UNKNOWN_SYMBOL)]
        instrument = book.instrument
        if not instrument.min_qty <= cmd.qty <= instrument.max_qty:
            return [self.reject(cmd, RejectCode.BAD_QTY)]
        if cmd.price is None and cmd.tif in (GTC, POST):
            return [self.reject(cmd, RejectCode.BAD_TIF)]
        if cmd.price is not None and not 1 <= cmd.price <= instrument.max_price:
            return [self.reject(cmd, RejectCode.BAD_PRICE)]
        original = self.reserved(cmd.ts_received).get((cmd.user, cmd.client_order_id), "")
        if cmd.client_order_id and original:
            return [self.reject(cmd, RejectCode.DUPLICATE_ID, original)]
        makers = book.side(opposite(cmd.side))
        if cmd.tif is POST and makers and within(cmd.side, cmd.price, makers[0].price):
            return [self.reject(cmd, RejectCode.WOULD_CROSS)]
        if cmd.price is None and not makers:
            return [self.reject(cmd, RejectCode.NO_LIQUIDITY)]

        self.last_order_number += 1
        order = RefOrder(f"{self.engine_id}-{self.last_order_number}", cmd.user, cmd.side, cmd.price,
                         cmd.qty, cmd.qty, cmd.tif, cmd.stp or instrument.stp_default,
                         cmd.client_order_id)
        if cmd.client_order_id:
            self.client_order_ids[(cmd.user, cmd.client_order_id)] = order.order_id
            self.accepted_at[(cmd.user, cmd.client_order_id)] = cmd.ts_received
        events: list = [OrderAccepted(0, 0, book.symbol, order.order_id, order.user, order.side,
                                      order.qty, order.price, order.tif, order.stp,
                                      order.client_order_id)]
        if order.tif is FOK and not self.fillable(book, order):
            events.append(self.expired(book, order, ExpireReason.FOK))
            return events
        self.take(book, order, events)
        if order.leaves_qty and not order.closed:
            if order.price is None:
                events.append(self.expired(book, order, ExpireReason.MARKET))
            elif order.tif in (IOC, FOK):
                events.append(self.expired(book, order, ExpireReason.IOC))
            else:
                self.rest(book, order)
        return events

    def cancel(self, cmd: CancelOrder) -> list:
        found = self.find(cmd)
        if isinstance(found, OrderRejected):
            return [found]
        book, order = found
        book.side(order.side).remove(order)
        return [self.canceled(book, order, CancelReason.USER)]

    def replace(self, cmd: ReplaceOrder) -> list:
        found = self.find(cmd)
        if isinstance(found, OrderRejected):
            return [found]
        book, order = found
        instrument = book.instrument
        filled = order.qty - order.leaves_qty
        if not instrument.min_qty <= cmd.qty <= instrument.max_qty or cmd.qty <= filled:
            return [self.reject(cmd, RejectCode.BAD_QTY, order.order_id)]
        price = order.price if cmd.price is None else cmd.price
        if not 1 <= price <= instrument.max_price:
            return [self.reject(cmd, RejectCode.BAD_PRICE, order.order_id)]
        makers = book.side(opposite(order.side))
        if order.tif is POST and makers and within(order.side, price, makers[0].price):
            return [self.reject(cmd, RejectCode.WOULD_CROSS, order.order_id)]

        keep_priority = price == order.price and cmd.qty <= order.qty
        order.qty, order.leaves_qty = cmd.qty, cmd.qty - filled
        events: list = [OrderReplaced(0, 0, book.symbol, order.order_id, order.user, order.side,
                                      order.qty, price, order.leaves_qty, keep_priority,
                                      order.client_order_id)]
        if not keep_priority:
            book.side(order.side).remove(order)
            order.price = price
            self.take(book, order, events)  # a crossing replace trades as a taker
            if order.leaves_qty and not order.closed:
                self.rest(book, order)
        return events

    def cancel_all(self, cmd: CancelAll) -> list:
        if cmd.symbol is None:
            books = list(self.books.values())
        elif cmd.symbol in self.books:
            books = [self.books[cmd.symbol]]
        else:
            return [self.reject(cmd, RejectCode.UNKNOWN_SYMBOL)]
        events: list = []
        for book in books:
            mine = sorted((o for o in book.orders() if o.user == cmd.user), key=lambda o: o.arrival)
            for order in mine:
                book.side(order.side).remove(order)
                events.append(self.canceled(book, order, CancelReason.CANCEL_ALL))
        return events

    # -- matching ------------------------------------------------------------------------------

    def take(self, book: RefBook, taker: RefOrder, events: list) -> None:
        """Trade ``taker`` with the best opposite order, again and again, while it may."""
        makers = book.side(opposite(taker.side))
        while taker.leaves_qty and not taker.closed and makers:
            maker = makers[0]
            if not within(taker.side, taker.price, maker.price):
                return
            if maker.user == taker.user:
                self.prevent_self_trade(book, taker, maker, events)
                continue
            qty = min(maker.leaves_qty, taker.leaves_qty)
            maker.leaves_qty -= qty
            taker.leaves_qty -= qty
            self.last_trade_number += 1
            trade_id = f"{self.engine_id}-{self.last_trade_number}"
            for order in (maker, taker):
                events.append(OrderFilled(0, 0, book.symbol, order.order_id, order.user, order.side,
                                          trade_id, qty, maker.price, order.leaves_qty,
                                          order.qty - order.leaves_qty, order is maker,
                                          order.client_order_id))
            events.append(Trade(0, 0, book.symbol, trade_id, maker.price, qty, taker.side))
            if maker.leaves_qty == 0:
                makers.remove(maker)

    def prevent_self_trade(self, book: RefBook, taker: RefOrder, maker: RefOrder,
                           events: list) -> None:
        """The taker's mode decides; the maker's event (if any) comes first."""
        makers = book.side(maker.side)
        mode = taker.stp
        if mode is STP.DECREMENT:
            smaller = min(maker.leaves_qty, taker.leaves_qty)
            cancel_maker = maker.leaves_qty == smaller
            cancel_taker = taker.leaves_qty == smaller
        else:
            cancel_maker = mode in (STP.CANCEL_OLDEST, STP.CANCEL_BOTH)
            cancel_taker = mode in (STP.CANCEL_NEWEST, STP.CANCEL_BOTH)
        if cancel_maker:
            makers.remove(maker)
            events.append(self.canceled(book, maker, CancelReason.SELF_TRADE))
        elif mode is STP.DECREMENT:
            events.append(self.reduced(book, maker, smaller))
        if cancel_taker:
            events.append(self.canceled(book, taker, CancelReason.SELF_TRADE))
            taker.closed = True
        elif mode is STP.DECREMENT:
            events.append(self.reduced(book, taker, smaller))

    def fillable(self, book: RefBook, taker: RefOrder) -> bool:
        """Fill or kill: opposite liquidity in priority order, up to the limit price, stopping at
        the first order of the same user, covers the whole quantity."""
        needed = taker.qty
        for maker in book.side(opposite(taker.side)):
            if not within(taker.side, taker.price, maker.price) or maker.user == taker.user:
                return False
            needed -= maker.leaves_qty
            if needed <= 0:
                return True
        return False

    # -- helpers -------------------------------------------------------------------------------

    def reserved(self, ts: int) -> dict[tuple[str, str], str]:
        """The client order ids a new order may not use at ``ts``, and the orders that hold them."""
        open_ids = {o.order_id for book in self.books.values() for o in book.orders()}
        return {key: order_id for key, order_id in self.client_order_ids.items()
                if order_id in open_ids or ts - self.accepted_at[key] < self.client_order_id_window}

    def rest(self, book: RefBook, order: RefOrder) -> None:
        self.arrivals += 1
        order.arrival = self.arrivals
        book.side(order.side).append(order)
        book.sort()

    def find(self, cmd: CancelOrder | ReplaceOrder) -> tuple[RefBook, RefOrder] | OrderRejected:
        if not cmd.order_id and not cmd.client_order_id:
            return self.reject(cmd, RejectCode.MALFORMED)
        order_id = cmd.order_id or self.client_order_ids.get((cmd.user, cmd.client_order_id), "")
        if cmd.symbol:
            books = [self.books[cmd.symbol]] if cmd.symbol in self.books else []
        else:
            books = list(self.books.values())
        for book in books:
            for order in book.orders():
                if order.order_id == order_id and order.user == cmd.user:
                    return book, order
        return self.reject(cmd, RejectCode.NOT_YOUR_ORDER)

    @staticmethod
    def reject(cmd, code: RejectCode, order_id: str = "") -> OrderRejected:
        return OrderRejected(0, 0, cmd.symbol or "", cmd.user, code, "",
                             getattr(cmd, "client_order_id", ""),
                             order_id or getattr(cmd, "order_id", ""), type(cmd).__name__)

    @staticmethod
    def canceled(book: RefBook, order: RefOrder, reason: CancelReason) -> OrderCanceled:
        return OrderCanceled(0, 0, book.symbol, order.order_id, order.user, order.side,
                             order.leaves_qty, reason, order.client_order_id)

    @staticmethod
    def expired(book: RefBook, order: RefOrder, reason: ExpireReason) -> OrderExpired:
        return OrderExpired(0, 0, book.symbol, order.order_id, order.user, order.side,
                            order.leaves_qty, reason, order.client_order_id)

    @staticmethod
    def reduced(book: RefBook, order: RefOrder, qty: int) -> OrderReduced:
        order.qty -= qty
        order.leaves_qty -= qty
        return OrderReduced(0, 0, book.symbol, order.order_id, order.user, order.side, qty,
                            order.leaves_qty, order.client_order_id)
