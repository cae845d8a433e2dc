"""One instrument's order book: price levels of resting orders in time priority. No matching here.

Invariants (the matcher keeps them; ``check()`` asserts them):
- ``bids``/``asks`` map price → Level, and hold only levels with at least one live order;
- ``bid_prices``/``ask_prices`` hold exactly the keys of ``bids``/``asks``, sorted;
- ``best_bid``/``best_ask`` are the highest bid / lowest ask price, or None;
- a Level's ``qty`` is the sum of ``leaves_qty`` over its live orders, and ``dead`` the number of
  dead orders still in its deque; every live order has ``leaves_qty`` > 0, so a level has live
  orders exactly when its ``qty`` is > 0 (no count of live orders is needed);
- ``orders`` maps order_id → every live Order on the book, in the order they entered it;
- ``user_orders`` maps user → their orders of ``orders`` (order_id → Order), in the same order;
  users with none are absent. Cancel-all and the open-order limit read it, so that their cost is
  the user's own orders, not the book's. Only ``add`` and ``unlist`` change these two maps.

``last_price`` is the price of the book's last trade (None before the first); the matcher sets it.

A canceled order is marked dead and left in its level's deque: it is dropped when it reaches the
front, or when dead orders outnumber live ones (compaction), so a cancel is O(1).
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedList

from exchange.core.instruments import Instrument
from exchange.core.orders import Order, Side

BUY = Side.BUY


class Level:
    """The orders resting at one price, oldest first."""

    __slots__ = ("price", "orders", "qty", "dead")

    def __init__(self, price: int):
        self.price = price
        self.orders: deque[Order] = deque()
        self.qty = 0
        self.dead = 0

    def live_orders(self) -> list[Order]:
        return [order for order in self.orders if order.live]


class OrderBook:
    """Bids and asks of one instrument."""

    __slots__ = ("instrument", "symbol", "bids", "asks", "bid_prices", "ask_prices",
                 "best_bid", "best_ask", "orders", "last_top", "user_orders", "last_price",
                 "limited")

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_prices = SortedList()
        self.ask_prices = SortedList()
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.orders: dict[str, Order] = {}
        # the top of book as a core that still published it last did (journals and checkpoints from
        # before the matcher emitted only what matching decides); part of their digests, no longer changed
        self.last_top: tuple = (None, 0, None, 0)
        self.user_orders: dict[str, dict[str, Order]] = {}  # user → their orders on this book
        self.last_price: int | None = None  # of the last trade
        # whether the instrument sets any risk limit (the matcher skips them all if not)
        self.limited = (instrument.max_notional is not None or instrument.price_band is not None
                        or bool(instrument.max_open_orders))

    def add(self, order: Order) -> Level:
        """Rest ``order`` at the back of its price level; return that level."""
        price = order.price
        side = order.side
        level = (self.bids if side is BUY else self.asks).get(price)
        if level is None:
            level = self.new_level(side, price)
        level.orders.append(order)
        level.qty += order.leaves_qty
        order_id = order.order_id
        self.orders[order_id] = order
        mine = self.user_orders.get(order.user)
        if mine is None:
            self.user_orders[order.user] = {order_id: order}
        else:
            mine[order_id] = order
        return level

    def new_level(self, side: Side, price: int) -> Level:
        """A new, empty level at ``price`` (which has none yet); it may be the new best."""
        level = Level(price)
        if side is BUY:
            self.bids[price] = level
            self.bid_prices.add(price)
            if self.best_bid is None or price > self.best_bid:
                self.best_bid = price
        else:
            self.asks[price] = level
            self.ask_prices.add(price)
            if self.best_ask is None or price < self.best_ask:
                self.best_ask = price
        return level

    def remove(self, order: Order) -> int:
        """Take a live ``order`` off the book, whatever its remaining quantity.

        Returns the quantity left at its price level (0 if the level is gone).
        """
        self.unlist(order)
        side, price = order.side, order.price
        level = (self.bids if side is BUY else self.asks)[price]
        level.qty = qty = level.qty - order.leaves_qty
        orders = level.orders
        if qty == 0:
            self.drop_level(side, price)
        elif orders[0] is order:
            orders.popleft()
        else:  # it stays in the deque, dead, until it reaches the front or dead orders outnumber live ones
            level.dead = dead = level.dead + 1
            if dead > len(orders) - dead + 16:
                self.compact(level)
        return qty

    @staticmethod
    def compact(level: Level) -> None:
        """Drop the dead orders from ``level``'s deque."""
        level.orders = deque(o for o in level.orders if o.live)
        level.dead = 0

    def reduce(self, order: Order, qty: int) -> None:
        """Take ``qty`` off a live order's remaining quantity (it keeps its place; stays if > 0)."""
        order.leaves_qty -= qty
        (self.bids if order.side is BUY else self.asks)[order.price].qty -= qty
        if order.leaves_qty == 0:
            self.remove(order)

    def unlist(self, order: Order) -> None:
        """``order`` is no longer live: take it out of ``orders`` and ``user_orders``.

        Its level is the caller's to update (``remove`` does; the matcher's fill of a level's
        front order does it its own way). Every path by which an order leaves a book comes here.
        """
        order.live = False
        order_id = order.order_id
        del self.orders[order_id]
        mine = self.user_orders[order.user]
        del mine[order_id]
        if not mine:
            del self.user_orders[order.user]

    def open_orders_of(self, user: str) -> int:
        """How many orders ``user`` has on this book."""
        mine = self.user_orders.get(user)
        return len(mine) if mine is not None else 0

    def drop_level(self, side: Side, price: int) -> None:
        """Forget the level at ``price``, whose last live order just left; the best may move."""
        # ``if self.bids`` rather than ``if prices``: a dict's length is C, a SortedList's a Python call
        if side is BUY:
            del self.bids[price]
            prices = self.bid_prices
            prices.remove(price)
            if price == self.best_bid:
                self.best_bid = prices[-1] if self.bids else None
        else:
            del self.asks[price]
            prices = self.ask_prices
            prices.remove(price)
            if price == self.best_ask:
                self.best_ask = prices[0] if self.asks else None

    def level_qty(self, side: Side, price: int) -> int:
        level = (self.bids if side is BUY else self.asks).get(price)
        return level.qty if level is not None else 0

    def top(self) -> tuple:
        """(bid_price, bid_qty, ask_price, ask_qty); None and 0 for an empty side."""
        bid, ask = self.best_bid, self.best_ask
        return (bid, self.bids[bid].qty if bid is not None else 0,
                ask, self.asks[ask].qty if ask is not None else 0)

    def levels(self, side: Side) -> list[Level]:
        """Price levels of one side, best first."""
        if side is BUY:
            return [self.bids[p] for p in reversed(self.bid_prices)]
        return [self.asks[p] for p in self.ask_prices]

    def depth(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """(price, qty) of one side's levels, best first, at most ``limit`` of them."""
        return [(level.price, level.qty) for level in self.levels(side)[:limit]]

    def priority_orders(self, side: Side) -> list[Order]:
        """Every live order of one side in matching priority."""
        return [order for level in self.levels(side) for order in level.live_orders()]

    def state(self) -> tuple:
        """Everything that defines the book, in priority order (for digests and comparisons)."""
        return (self.symbol,
                tuple(o.state() for o in self.priority_orders(Side.BUY)),
                tuple(o.state() for o in self.priority_orders(Side.SELL)))

    def render(self) -> str:
        """The book as ``bid | price | ask`` lines, asks on top, one line per order.

        Quantities and prices are shown in decimal units, e.g.::

                      |  101.00 | 2.0 carol
              1.5 bob |  100.00 |
        """
        fmt_p, fmt_q = self.instrument.format_price, self.instrument.format_qty
        lines = []
        for level in reversed(self.levels(Side.SELL)):
            for order in level.live_orders():
                lines.append(f"{'':>16} | {fmt_p(level.price):>10} | {fmt_q(order.leaves_qty)} {order.user}")
        for level in self.levels(Side.BUY):
            for order in level.live_orders():
                bid = f"{fmt_q(order.leaves_qty)} {order.user}"
                lines.append(f"{bid:>16} | {fmt_p(level.price):>10} |")
        return "\n".join(line.rstrip() for line in lines)

    def check(self) -> None:
        """Assert every invariant in the module docstring (used by tests and replay)."""
        for side, levels, prices, best in ((Side.BUY, self.bids, self.bid_prices, self.best_bid),
                                           (Side.SELL, self.asks, self.ask_prices, self.best_ask)):
            assert list(prices) == sorted(levels), f"{side} price index out of step"
            expected_best = (prices[-1] if side is BUY else prices[0]) if prices else None
            assert best == expected_best, f"best {side} is {best}, expected {expected_best}"
            for price, level in levels.items():
                live = level.live_orders()
                assert live, f"empty {side} level {price}"
                assert level.dead == len(level.orders) - len(live), f"{side} level {price} dead out of step"
                assert level.qty == sum(o.leaves_qty for o in live), f"{side} level {price} qty out of step"
                for order in live:
                    assert order.price == price and order.side is side and order.leaves_qty > 0
                    assert self.orders.get(order.order_id) is order
        assert len(self.orders) == sum(len(level.orders) - level.dead
                                       for level in (*self.bids.values(), *self.asks.values()))
        users: dict[str, list[str]] = {}
        for order in self.orders.values():
            users.setdefault(order.user, []).append(order.order_id)
        indexed = {user: list(mine) for user, mine in self.user_orders.items()}
        assert indexed == users, f"orders per user {indexed}, expected {users}"
        for mine in self.user_orders.values():
            assert all(self.orders[order_id] is order for order_id, order in mine.items())
        if self.best_bid is not None and self.best_ask is not None:
            assert self.best_bid < self.best_ask, f"crossed book: {self.best_bid} >= {self.best_ask}"
