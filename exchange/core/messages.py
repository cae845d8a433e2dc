"""Commands into an engine and events out of it: frozen, tagged msgspec structs.

These are the domain types *and* the wire types: a struct's class name is its tag on the wire,
the ``kind`` column in the journal and the word in the docs. Structs are ``array_like`` (fields
travel by position), so the evolution rule is strict: new fields get defaults and go last; a
field's type never changes; nothing is ever renamed or removed.

Every event carries ``seq``, the engine's sequence number (+1 per event, across all the
engine's instruments; a Match takes three), and ``ts_event``, the ``ts_received`` of the command that caused it.
Prices are int ticks, quantities int lots (see exchange.core).
"""

from __future__ import annotations

from typing import Union

import msgspec

from exchange.core.orders import CancelReason, ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.errors import RejectCode


class Command(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """A request into an engine."""


class PlaceOrder(Command):
    """Place a limit order (``price`` in ticks) or a market order (``price`` None)."""

    user: str
    symbol: str
    side: Side
    qty: int
    price: int | None = None
    tif: TimeInForce = TimeInForce.GTC
    stp: SelfTradePrevention | None = None  # None: the instrument's default
    client_order_id: str = ""
    ts_received: int = 0
    max_open_orders: int = 0  # the user's own limit, set by the gateway from the config; 0: none
    # a market buy's budget: it trades for at most this sum of qty × price (lots × ticks); 0: none
    funds: int = 0


class CancelOrder(Command):
    """Cancel one open order, named by ``order_id`` or by the user's ``client_order_id``.

    ``symbol`` may be empty: the engine then looks the order up in all its books.
    """

    user: str
    symbol: str
    order_id: str = ""
    client_order_id: str = ""
    ts_received: int = 0


class ReplaceOrder(Command):
    """Change an open order's total ``qty`` and/or ``price`` (None keeps the price).

    Reducing the quantity at the same price keeps time priority; anything else loses it.
    ``qty`` is the new total ordered quantity and must exceed what is already filled.
    ``symbol`` may be empty, as for CancelOrder.
    """

    user: str
    symbol: str
    qty: int
    price: int | None = None
    order_id: str = ""
    client_order_id: str = ""
    ts_received: int = 0


class CancelAll(Command):
    """Cancel all open orders of ``user``, on one instrument or (``symbol`` None) on all.

    ``order_ids``, when given, narrows it to those of the user's open orders (a session's own
    orders, canceled when it disconnects); ``reason`` goes into every ``OrderCanceled``.
    """

    user: str
    symbol: str | None = None
    ts_received: int = 0
    reason: CancelReason = CancelReason.CANCEL_ALL
    order_ids: tuple[str, ...] | None = None


class Event(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """A fact out of an engine."""


class OrderAccepted(Event):
    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    qty: int
    price: int | None  # None: a market order
    tif: TimeInForce
    stp: SelfTradePrevention
    client_order_id: str = ""


class OrderRejected(Event):
    """A command refused; ``order_id`` names the target of a refused cancel or replace.

    ``command`` is the refused command's kind (``"PlaceOrder"``, ``"ReplaceOrder"``,
    ``"CancelOrder"`` or ``"CancelAll"``): a refused cancel naming a client order id looks like a
    refused order with that id otherwise, and settlement must tell them apart. Empty in journals
    written before it.
    """

    seq: int
    ts_event: int
    symbol: str
    user: str
    code: RejectCode
    reason: str
    client_order_id: str = ""
    order_id: str = ""
    command: str = ""


class OrderFilled(Event):
    """One order's share of a trade (two per trade: the maker's and the taker's)."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    trade_id: str
    last_qty: int
    last_price: int
    leaves_qty: int
    filled_qty: int
    maker: bool
    client_order_id: str = ""


class Trade(Event):
    """A match, as the public sees it."""

    seq: int
    ts_event: int
    symbol: str
    trade_id: str
    price: int
    qty: int
    taker_side: Side


class Match(Event):
    """One match of a taker against a maker: both orders' shares and the public trade, in one event.

    It stands for what earlier versions sent as three events, and takes their three sequence
    numbers: ``seq - 2`` is the maker's fill, ``seq - 1`` the taker's and ``seq`` the trade, so a
    stream's numbers (and the journal's tables, which list those three) read as before.
    ``maker_fill``, ``taker_fill`` and ``trade`` give them back; ``expand`` does so for a list of
    events. The maker's side is the opposite of ``taker_side``; the price is always the maker's. Its
    first seven fields are a Trade's; it is not a subclass of Trade, so that nothing that looks for
    trades takes a Match (with both users in it) for one.
    """

    seq: int
    ts_event: int
    symbol: str
    trade_id: str
    price: int
    qty: int
    taker_side: Side
    maker_order_id: str
    maker_user: str
    maker_leaves_qty: int
    maker_filled_qty: int
    taker_order_id: str
    taker_user: str
    taker_leaves_qty: int
    taker_filled_qty: int
    maker_client_order_id: str = ""
    taker_client_order_id: str = ""

    def maker_fill(self) -> OrderFilled:
        return OrderFilled(self.seq - 2, self.ts_event, self.symbol, self.maker_order_id, self.maker_user,
                           _OTHER_SIDE[self.taker_side], self.trade_id, self.qty, self.price, self.maker_leaves_qty,
                           self.maker_filled_qty, True, self.maker_client_order_id)

    def taker_fill(self) -> OrderFilled:
        return OrderFilled(self.seq - 1, self.ts_event, self.symbol, self.taker_order_id, self.taker_user,
                           self.taker_side, self.trade_id, self.qty, self.price, self.taker_leaves_qty,
                           self.taker_filled_qty, False, self.taker_client_order_id)

    def trade(self) -> Trade:
        return Trade(self.seq, self.ts_event, self.symbol, self.trade_id, self.price, self.qty, self.taker_side)


_OTHER_SIDE = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}


def expand(events: list, trades: bool = True) -> list:
    """``events`` with each Match replaced by the maker's fill, the taker's fill and the trade: the
    events of one number each, as earlier versions sent them. ``trades=False`` leaves the trades
    out: what the orders' owners are told."""
    if not any(type(event) is Match for event in events):
        return events
    out = []
    for event in events:
        if type(event) is Match:
            out += (event.maker_fill(), event.taker_fill(), event.trade()) if trades else \
                (event.maker_fill(), event.taker_fill())
        else:
            out.append(event)
    return out


class OrderCanceled(Event):
    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    canceled_qty: int
    reason: CancelReason
    client_order_id: str = ""


class OrderReplaced(Event):
    """An order's new total ``qty``, ``price`` and ``leaves_qty`` after a replace."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    qty: int
    price: int
    leaves_qty: int
    priority_kept: bool
    client_order_id: str = ""


class OrderReduced(Event):
    """Self-trade prevention (DECREMENT) took ``reduced_qty`` off an order that stays open."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    reduced_qty: int
    leaves_qty: int
    client_order_id: str = ""


class OrderExpired(Event):
    """The unfilled part of an IOC, FOK or market order; it never rested."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    user: str
    side: Side
    expired_qty: int
    reason: ExpireReason
    client_order_id: str = ""


class TopOfBook(Event):
    """Best bid and offer after a command changed either; None price and 0 qty for an empty side."""

    seq: int
    ts_event: int
    symbol: str
    bid_price: int | None
    bid_qty: int
    ask_price: int | None
    ask_qty: int


class DepthUpdate(Event):
    """The new total quantity resting at one price level; 0 means the level is gone."""

    seq: int
    ts_event: int
    symbol: str
    side: Side
    price: int
    qty: int


# The order-by-order public feed (channel "l3"), derived from the order events outside the matcher
# (exchange.marketdata.levels): the resting orders of the book, by order id, with no user.


class BookOrderAdded(Event):
    """An order now rests at the back of its price level (placed, or moved by a replace)."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    side: Side
    price: int
    qty: int


class BookOrderExecuted(Event):
    """A resting order traded ``qty`` at its ``price``; ``leaves_qty`` 0: it left the book."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    trade_id: str
    qty: int
    price: int
    leaves_qty: int


class BookOrderReduced(Event):
    """A resting order lost ``qty`` without trading (a replace down, self-trade prevention) and keeps its place."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str
    qty: int
    leaves_qty: int


class BookOrderDeleted(Event):
    """A resting order left the book without trading (canceled, or moved by a replace: an add follows)."""

    seq: int
    ts_event: int
    symbol: str
    order_id: str


BOOK_ORDER_EVENTS = (BookOrderAdded, BookOrderExecuted, BookOrderReduced, BookOrderDeleted)


AnyCommand = Union[PlaceOrder, CancelOrder, ReplaceOrder, CancelAll]
AnyEvent = Union[
    OrderAccepted, OrderRejected, OrderFilled, Trade, OrderCanceled, OrderReplaced, OrderReduced,
    OrderExpired, TopOfBook, DepthUpdate, Match,
]
ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderFilled, OrderCanceled, OrderReplaced, OrderReduced,
                OrderExpired, Match)  # private: they name a user (a Match names two)
MARKET_DATA_EVENTS = (Trade, TopOfBook, DepthUpdate)  # public
