"""The public book as a subscriber keeps it: price levels, best bid/offer, last trade, and (with
the "l3" channel) every resting order. Pure.

A subscriber builds it from a snapshot and the messages after it; the notifier's snapshots come
from the same events, so both end with the same book.
"""

from __future__ import annotations

from exchange.core.messages import (
    BookOrderAdded, BookOrderDeleted, BookOrderExecuted, BookOrderReduced, DepthUpdate, TopOfBook, Trade,
)
from exchange.core.orders import Side
from exchange.marketdata.levels import in_priority

BUY = Side.BUY


class Depth:
    """Levels of one instrument (price → total qty per side), the top of book and the last trade."""

    __slots__ = ("symbol", "bids", "asks", "top", "last_trade", "seq", "orders")

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.top: TopOfBook | None = None
        self.last_trade: Trade | None = None
        self.seq = 0  # engine seq of the last event applied
        self.orders: dict[str, list] = {}  # l3: order id → [side, price, qty], each level oldest first

    def apply(self, event) -> None:
        if isinstance(event, DepthUpdate):
            levels = self.bids if event.side is BUY else self.asks
            if event.qty:
                levels[event.price] = event.qty
            else:
                levels.pop(event.price, None)
        elif isinstance(event, TopOfBook):
            self.top = event
        elif isinstance(event, Trade):
            self.last_trade = event
        elif isinstance(event, BookOrderAdded):
            self.orders[event.order_id] = [event.side, event.price, event.qty]
        elif isinstance(event, (BookOrderExecuted, BookOrderReduced)):
            if event.leaves_qty:
                self.orders[event.order_id][2] = event.leaves_qty
            else:
                del self.orders[event.order_id]
        elif isinstance(event, BookOrderDeleted):
            del self.orders[event.order_id]
        self.seq = max(self.seq, event.seq)

    def levels(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """(price, qty) of one side, best first."""
        levels = self.bids if side is BUY else self.asks
        return sorted(levels.items(), reverse=side is BUY)[:limit]

    def load(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]], top: TopOfBook | None,
             last_trade: Trade | None, seq: int, orders=()) -> None:
        self.bids, self.asks = dict(bids), dict(asks)
        self.top, self.last_trade, self.seq = top, last_trade, seq
        self.orders = {order_id: [side, price, qty] for order_id, side, price, qty in orders}

    def resting(self) -> list[tuple[str, Side, int, int]]:
        """The resting orders (with "l3"): bids best price first, then asks, each level oldest first."""
        return in_priority(self.orders)

    def state(self) -> tuple:
        """What two copies must agree on."""
        return (self.symbol, self.levels(Side.BUY), self.levels(Side.SELL))
