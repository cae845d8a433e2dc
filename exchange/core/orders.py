"""Order vocabulary (side, time in force, self-trade prevention, reasons) and resting order state."""

from __future__ import annotations

import enum

import msgspec


class Side(enum.Enum):
    """Which way an order trades."""

    BUY = "BUY"  # rests on the bids, takes from the asks
    SELL = "SELL"  # rests on the asks, takes from the bids


class TimeInForce(enum.Enum):
    """How long the unfilled part of an order lives."""

    GTC = "GTC"  # good till canceled: the remainder rests on the book
    IOC = "IOC"  # immediate or cancel: the remainder expires at once
    FOK = "FOK"  # fill or kill: all of it at once, or nothing and the book untouched
    POST = "POST"  # post only: rests, and is rejected if any of it would take liquidity


class SelfTradePrevention(enum.Enum):
    """What happens when an order would trade against a resting order of the same user."""

    CANCEL_NEWEST = "CANCEL_NEWEST"  # cancel the incoming order's remainder (the default)
    CANCEL_OLDEST = "CANCEL_OLDEST"  # cancel the resting order, keep matching
    CANCEL_BOTH = "CANCEL_BOTH"  # cancel both
    DECREMENT = "DECREMENT"  # reduce both by the smaller quantity; cancel what reaches zero


class CancelReason(enum.Enum):
    """Why an order left the book before it was filled."""

    USER = "USER"  # the user asked (CANCEL)
    CANCEL_ALL = "CANCEL_ALL"  # the user asked for all their orders (CANCELALL)
    SELF_TRADE = "SELF_TRADE"  # self-trade prevention
    DISCONNECT = "DISCONNECT"  # the session asked for cancel on disconnect and went away


class ExpireReason(enum.Enum):
    """Why the unfilled part of an order expired instead of resting."""

    IOC = "IOC"  # immediate or cancel: no more liquidity at an acceptable price
    MARKET = "MARKET"  # a market order never rests
    FOK = "FOK"  # fill or kill could not fill completely; nothing was touched
    FUNDS = "FUNDS"  # a market buy spent its budget (PlaceOrder.funds) before its quantity


class OrderStatus(enum.Enum):
    """Where an order is in its life cycle."""

    NEW = "NEW"  # accepted, nothing filled, resting
    PARTIALLY_FILLED = "PARTIALLY_FILLED"  # some filled, the rest resting
    FILLED = "FILLED"  # completely filled
    CANCELED = "CANCELED"  # left the book by a cancel
    EXPIRED = "EXPIRED"  # the remainder expired (IOC, FOK, market)
    REJECTED = "REJECTED"  # never accepted


class Order(msgspec.Struct, eq=False, gc=False):
    """A resting order's mutable state, owned by one OrderBook; never sent anywhere.

    ``live`` turns False when the order leaves the book (or, for an order that never rested,
    when it is canceled or expires).

    The last four fields chain the order into two queues of its book (exchange.core.book): the
    orders at its price, and its user's orders, each oldest first. A link to a newer order is the
    order itself; a link to an older one is that order's id, looked up in the book when needed.
    So links only ever point forward in time, and orders never form a cycle. An order that leaves
    the book drops its forward links (``OrderBook.unlist``, ``remove``): freed orders chained to
    each other would be freed one inside the other, and msgspec has no guard against that depth.

    A mutable msgspec Struct rather than a plain class with ``__slots__`` because one is built
    for nearly every command and Struct's C constructor costs about half as much. ``eq=False``
    keeps identity equality (two orders are never "equal"); ``gc=False`` is safe because an
    order holds only strings, ints, enum members and newer orders, so it is never part of a cycle.
    """

    order_id: str
    user: str
    side: Side
    price: int | None  # None: a market order (never rests)
    qty: int
    leaves_qty: int
    tif: TimeInForce
    stp: SelfTradePrevention
    client_order_id: str
    live: bool = True
    next: Order | None = None  # the next order at this price (newer), while resting
    prev: str | None = None  # the id of the previous order at this price (older)
    user_next: Order | None = None  # the user's next order on this book (newer)
    user_prev: str | None = None  # the id of the user's previous order on this book (older)

    @property
    def filled_qty(self) -> int:
        return self.qty - self.leaves_qty

    def state(self) -> tuple:
        """Everything that defines this order, for digests and comparisons."""
        return (self.order_id, self.user, self.side.value, self.price, self.qty, self.leaves_qty,
                self.tif.value, self.stp.value, self.client_order_id)

    def __repr__(self) -> str:
        return (f"Order({self.order_id} {self.user} {self.side.value} {self.leaves_qty}/{self.qty}"
                f" @ {self.price})")
