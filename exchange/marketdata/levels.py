"""The public book of one instrument, rebuilt from its order events. Pure.

The matching core says only what matching decided: an order accepted, filled, canceled, replaced,
reduced or expired, and the trades. Everything a public feed shows follows from those: an
accepted limit order that may rest (GTC or post-only) is on its level until fills, a cancel, a
reduction or an expiry have taken all of it; a replace moves what is left of it. ``LevelBook``
keeps each resting order (side, price, open quantity, in time priority) and each level's total,
and after each command's events says what changed, in three channels' events:

- "l3", order by order (``BookOrderAdded``, ``BookOrderExecuted``, ``BookOrderReduced``,
  ``BookOrderDeleted``), in the order it happened: a replace that keeps its place (the same price,
  less quantity) is a reduction; any other replace deletes the order, which is added again at the
  back of its new level if some of it rests;
- "l2", one ``DepthUpdate`` per level whose total moved, in the order the command first touched them;
- "bbo", a ``TopOfBook`` if the best bid or offer moved.

All carry the ``seq`` of the command's last event on that book. A command's own order (placed, or
moved by a replace) goes on its level at the end of the command, with what its fills, reductions
and self-trade prevention left of it, so the levels never cross in between.
"""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter

from sortedcontainers import SortedDict

from exchange.core.messages import (
    BookOrderAdded, BookOrderDeleted, BookOrderExecuted, BookOrderReduced, DepthUpdate, Match, OrderAccepted,
    OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderReplaced, TopOfBook,
)
from exchange.core.orders import Side, TimeInForce

BUY = Side.BUY
RESTING_TIFS = (TimeInForce.GTC, TimeInForce.POST)
TAKE_FROM_RESTING = frozenset({OrderFilled, OrderReduced, OrderCanceled, OrderExpired})


class LevelBook:
    """One instrument's resting orders and levels, from its order events; ``changes(events)`` after
    each command."""

    __slots__ = ("symbol", "orders", "bids", "asks", "top")

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.orders: dict[str, list] = {}  # order id → [side, price, open qty], oldest first
        self.bids: SortedDict = SortedDict()  # price → total open qty
        self.asks: SortedDict = SortedDict()
        self.top: tuple = (None, 0, None, 0)  # bid, bid qty, ask, ask qty: the last published

    def load(self, resting) -> None:
        """Start from the orders resting now: (order id, side, price, open qty), each level's in
        time priority."""
        for order_id, side, price, open_qty in resting:
            self.orders[order_id] = [side, price, open_qty]
            levels = self.bids if side is BUY else self.asks
            levels[price] = levels.get(price, 0) + open_qty
        self.top = self.best()

    def best(self) -> tuple:
        bids, asks = self.bids, self.asks
        bid = bids.peekitem(-1) if bids else (None, 0)
        ask = asks.peekitem(0) if asks else (None, 0)
        return (*bid, *ask)

    def levels(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """(price, qty) of one side, best first."""
        levels = self.bids if side is BUY else self.asks
        prices = reversed(levels) if side is BUY else iter(levels)
        out = []
        for price in prices:
            if limit is not None and len(out) >= limit:
                break
            out.append((price, levels[price]))
        return out

    def resting(self) -> list[tuple[str, Side, int, int]]:
        """Every resting order: see ``in_priority``."""
        return in_priority(self.orders)

    def changes(self, events: list) -> list:
        """Apply one command's events; the l3 events, DepthUpdates and TopOfBook they make."""
        touched: dict[tuple[Side, int], int] = {}  # (side, price) → its total before this command
        orders = self.orders
        out: list = []  # the l3 events, as they happen
        incoming = None  # [order id, side, price, open qty]: the command's own order, placed at the end
        seq, ts, symbol = events[-1].seq, events[-1].ts_event, self.symbol
        for event in events:
            cls = type(event)
            if cls is Match:  # the maker trades from its level; the taker is the command's own order, if any
                if incoming is not None and event.taker_order_id == incoming[0]:
                    incoming[3] -= event.qty
                order = orders.get(event.maker_order_id)
                if order is not None:
                    self._take(event.maker_order_id, order, event.qty, touched)
                    out.append(BookOrderExecuted(seq, ts, symbol, event.maker_order_id, event.trade_id, event.qty,
                                                 event.price, event.maker_leaves_qty))
            elif cls is OrderAccepted:
                if event.price is not None and event.tif in RESTING_TIFS:
                    incoming = [event.order_id, event.side, event.price, event.qty]
            elif cls is OrderReplaced:
                order = orders.get(event.order_id)
                if order is None:
                    continue
                if event.priority_kept:  # the same price, less of it (or as much): it keeps its place
                    cut = order[2] - event.leaves_qty
                    if cut:
                        self._take(event.order_id, order, cut, touched)
                        out.append(BookOrderReduced(seq, ts, symbol, event.order_id, cut, event.leaves_qty))
                else:
                    self._take(event.order_id, order, order[2], touched)
                    out.append(BookOrderDeleted(seq, ts, symbol, event.order_id))
                    incoming = [event.order_id, order[0], event.price, event.leaves_qty]
            elif incoming is not None and cls in TAKE_FROM_RESTING and event.order_id == incoming[0]:
                if cls is OrderFilled:
                    incoming[3] -= event.last_qty
                elif cls is OrderReduced:
                    incoming[3] = event.leaves_qty
                else:  # canceled (self-trade prevention) or expired
                    incoming = None
            elif cls in TAKE_FROM_RESTING:
                order = orders.get(event.order_id)
                if order is None:  # an order that never rested
                    continue
                if cls is OrderFilled:
                    self._take(event.order_id, order, event.last_qty, touched)
                    out.append(BookOrderExecuted(seq, ts, symbol, event.order_id, event.trade_id, event.last_qty,
                                                 event.last_price, event.leaves_qty))
                elif cls is OrderReduced:
                    cut = order[2] - event.leaves_qty
                    self._take(event.order_id, order, cut, touched)
                    out.append(BookOrderReduced(seq, ts, symbol, event.order_id, cut, event.leaves_qty))
                else:  # canceled or expired
                    self._take(event.order_id, order, order[2], touched)
                    out.append(BookOrderDeleted(seq, ts, symbol, event.order_id))
        if incoming is not None and incoming[3]:  # what is left of it rests, at the back of its level
            order_id, side, price, qty = incoming
            orders[order_id] = [side, price, qty]
            self._add(side, price, qty, touched)
            out.append(BookOrderAdded(seq, ts, symbol, order_id, side, price, qty))
        for (side, price), before in touched.items():
            qty = (self.bids if side is BUY else self.asks).get(price, 0)
            if qty != before:
                out.append(DepthUpdate(seq, ts, symbol, side, price, qty))
        if touched:
            top = self.best()
            if top != self.top:
                self.top = top
                out.append(TopOfBook(seq, ts, symbol, *top))
        return out

    def _add(self, side: Side, price: int, qty: int, touched: dict) -> None:
        levels = self.bids if side is BUY else self.asks
        was = levels.get(price, 0)
        touched.setdefault((side, price), was)
        levels[price] = was + qty

    def _take(self, order_id: str, order: list, qty: int, touched: dict) -> None:
        side, price, open_qty = order
        levels = self.bids if side is BUY else self.asks
        was = levels[price]
        touched.setdefault((side, price), was)
        if was == qty:
            del levels[price]
        else:
            levels[price] = was - qty
        order[2] = open_qty - qty
        if not order[2]:
            del self.orders[order_id]


def in_priority(orders: dict[str, list]) -> list[tuple[str, Side, int, int]]:
    """``orders`` (order id → [side, price, open qty], oldest first) as (order id, side, price, open
    qty): bids best price first, then asks best price first, each level in time priority."""
    bids = [(o, s, p, q) for o, (s, p, q) in orders.items() if s is BUY]
    asks = [(o, s, p, q) for o, (s, p, q) in orders.items() if s is not BUY]
    bids.sort(key=lambda o: -o[2])  # stable: time priority within a level
    asks.sort(key=lambda o: o[2])
    return bids + asks


_symbol = attrgetter("symbol")


def level_changes(books: dict[str, LevelBook], events: list) -> list:
    """The l3 events, DepthUpdates and TopOfBooks of one command's events, book by book (only a
    cancel-all of every instrument touches several; a command refused for an unknown symbol none)."""
    out: list = []
    for symbol, group in groupby(events, key=_symbol):
        book = books.get(symbol)
        if book is not None:
            out.extend(book.changes(list(group)))
    return out
