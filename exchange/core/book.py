"""One instrument's order book: price levels of resting orders in time priority. No matching here.

Invariants (the matcher keeps them; ``check()`` asserts them):
- ``bids``/``asks`` map price → Level, and hold only levels with at least one order;
- ``bid_heap``/``ask_heap`` are heaps (heapq) holding every key of ``bids``/``asks`` (bids negated,
  so that the top of either heap is its best price), and possibly prices whose level is gone;
- ``best_bid``/``best_ask`` are the highest bid / lowest ask price, or None; when a side is not
  empty, the top of its heap is its best price;
- a Level is a queue of orders, oldest first: ``first``, then each order's ``next``, to ``last``;
  each order's ``prev`` is the id of the one before it (None for ``first``). Its ``qty`` is the
  sum of ``leaves_qty`` over its orders; every resting order has ``leaves_qty`` > 0, so a level
  has orders exactly when its ``qty`` is > 0;
- ``orders`` maps order_id → every Order on the book, in the order they entered it;
- each user with orders on the book has a queue of them too, in the order they entered it:
  ``user_last[user]`` is the newest, each order's ``user_prev`` the id of the one before it (None
  for the oldest) and ``user_next`` the one after it; users with none are absent. Cancel-all and
  the open-order limit walk it, so that their cost is the user's own orders, not the book's.

Only ``add`` puts an order on the book; every way off it goes through ``unlist`` (the maps and the
user's queue) and then takes it out of its level (``remove``, or the matcher's fill of a level's
first order). An order off the book has ``live`` False; its links are stale and never read again.

Why links rather than a deque per level and a dict per user: a cancel takes the order out of
both queues at once (O(1), no dead orders left behind to skip or compact), and a level or a user
costs a few pointers, not a deque's 600-byte block or a dict's 200 bytes. Links go forward as
objects and back as ids (``Order``'s docstring says why), so the book holds no reference cycle.

Why heaps rather than a sorted list of prices: the hot paths only ever need the best price, and a
level that appears or goes costs a heap push (C) or nothing, where a SortedList costs two Python
calls of about 700 ns in all. A level that goes while it is not the best leaves its price in the
heap; the price is popped when it reaches the top (``drop_level``), and a heap with more gone
prices than live ones is rebuilt from its side's keys, so the heaps stay within about twice the
levels. The rare walks in price order (fill or kill, depth, digests) sort or pop a copy.

``last_price`` is the price of the book's last trade (None before the first); the matcher sets it.
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from itertools import islice

from exchange.core.instruments import Instrument
from exchange.core.orders import Order, Side

BUY = Side.BUY
SORT_UP_TO = 1000  # levels of a side that ``prices`` sorts at once; deeper, it walks the heap


class Level:
    """The orders resting at one price, oldest (``first``) to newest (``last``), and their quantity."""

    __slots__ = ("price", "first", "last", "qty")

    def __init__(self, price: int, order: Order):
        self.price = price
        self.first = self.last = order
        self.qty = 0

    def orders(self) -> list[Order]:
        """The level's orders, oldest first."""
        orders = []
        order = self.first
        while order is not None:
            orders.append(order)
            order = order.next
        return orders


class OrderBook:
    """Bids and asks of one instrument."""

    __slots__ = ("instrument", "symbol", "bids", "asks", "bid_heap", "ask_heap",
                 "best_bid", "best_ask", "orders", "last_top", "user_last", "last_price",
                 "limited")

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_heap: list[int] = []  # minus the price of every bid level (and of some gone ones)
        self.ask_heap: list[int] = []  # the price of every ask level (and of some gone ones)
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.orders: dict[str, Order] = {}
        # the top of book as a core that still published it last did (journals and checkpoints from
        # before the matcher emitted only what matching decides); part of their digests, no longer changed
        self.last_top: tuple = (None, 0, None, 0)
        self.user_last: dict[str, Order] = {}  # user → their newest order on this book
        self.last_price: int | None = None  # of the last trade
        # whether the instrument sets any risk limit (the matcher skips them all if not)
        self.limited = (instrument.max_notional is not None or instrument.price_band is not None
                        or bool(instrument.max_open_orders))

    def add(self, order: Order) -> Level:
        """Rest ``order`` (new to the book, its links unset) at the back of its price level; return that level."""
        price = order.price
        level = (self.bids if order.side is BUY else self.asks).get(price)
        if level is None:
            level = self.new_level(order, price)
        else:
            last = level.last
            last.next = order
            order.prev = last.order_id
            level.last = order
        level.qty += order.leaves_qty
        self.orders[order.order_id] = order
        user = order.user
        last = self.user_last.get(user)
        if last is not None:
            last.user_next = order
            order.user_prev = last.order_id
        self.user_last[user] = order
        return level

    def new_level(self, order: Order, price: int) -> Level:
        """A new level at ``price`` (which has none yet) holding ``order``; it may be the new best."""
        level = Level(price, order)
        if order.side is BUY:
            self.bids[price] = level
            heappush(self.bid_heap, -price)
            if self.best_bid is None or price > self.best_bid:
                self.best_bid = price
        else:
            self.asks[price] = level
            heappush(self.ask_heap, price)
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
        if qty == 0:
            self.drop_level(side, price)
            return 0
        prev, after = order.prev, order.next
        order.next = None  # (see ``unlist``)
        if prev is None:
            level.first = after
            after.prev = None
        else:
            before = self.orders[prev]
            before.next = after
            if after is None:
                level.last = before
            else:
                after.prev = prev
        return qty

    def reduce(self, order: Order, qty: int) -> None:
        """Take ``qty`` off a live order's remaining quantity (it keeps its place; stays if > 0)."""
        order.leaves_qty -= qty
        (self.bids if order.side is BUY else self.asks)[order.price].qty -= qty
        if order.leaves_qty == 0:
            self.remove(order)

    def unlist(self, order: Order) -> None:
        """``order`` is no longer live: take it out of ``orders`` and its user's queue.

        Its level is the caller's to update (``remove`` does; the matcher's fill of a level's
        first order does it its own way). Every path by which an order leaves a book comes here.
        """
        order.live = False
        orders = self.orders
        del orders[order.order_id]
        prev, after = order.user_prev, order.user_next
        if prev is None:
            if after is None:
                del self.user_last[order.user]
            else:
                after.user_prev = None
        else:
            before = orders[prev]
            before.user_next = after
            if after is None:
                self.user_last[order.user] = before
            else:
                after.user_prev = prev
        # an order gone from the book links to no newer one: a chain of gone orders would be freed
        # one inside the other, and a long one (a cancel-all of 150,000) overflows the C stack
        order.user_next = None

    def orders_of(self, user: str) -> list[Order]:
        """``user``'s orders on this book, oldest first."""
        orders = list(self._newest_first(user))
        orders.reverse()
        return orders

    def open_orders_of(self, user: str, up_to: int | None = None) -> int:
        """How many orders ``user`` has on this book; with ``up_to``, counted up to that many at most
        (a walk of the user's queue: a limit's check costs the limit, not the user's whole book)."""
        return sum(1 for _ in islice(self._newest_first(user), up_to))

    def _newest_first(self, user: str) -> Iterator[Order]:
        """``user``'s orders on this book, from their newest back (each ``user_prev`` looked up)."""
        order = self.user_last.get(user)
        while order is not None:
            yield order
            order = self.orders[order.user_prev] if order.user_prev is not None else None

    def drop_level(self, side: Side, price: int) -> None:
        """Forget the level at ``price``, whose last live order just left; the best may move.

        The price stays in its heap until it reaches the top: then it and every gone price under
        it are popped, and the top is the new best. A heap that holds more than twice its side's
        levels (and a few) is rebuilt from the side's keys.
        """
        if side is BUY:
            bids = self.bids
            del bids[price]
            heap = self.bid_heap
            if price == self.best_bid:
                while heap and -heap[0] not in bids:
                    heappop(heap)
                self.best_bid = -heap[0] if heap else None
            elif len(heap) > 2 * len(bids) + 32:
                self.bid_heap = [-p for p in bids]
                heapify(self.bid_heap)
        else:
            asks = self.asks
            del asks[price]
            heap = self.ask_heap
            if price == self.best_ask:
                while heap and heap[0] not in asks:
                    heappop(heap)
                self.best_ask = heap[0] if heap else None
            elif len(heap) > 2 * len(asks) + 32:
                self.ask_heap = list(asks)
                heapify(self.ask_heap)

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
        levels = self.bids if side is BUY else self.asks
        return [levels[price] for price in sorted(levels, reverse=side is BUY)]

    def prices(self, side: Side) -> Iterator[int]:
        """The prices of one side's levels, best first.

        Up to ``SORT_UP_TO`` levels the side's prices are sorted at once (fast in C: a thousand
        take about 25 µs). A deeper side is walked by popping a copy of its heap, so a walk that
        stops after k levels (a fill or kill near the top) costs a list copy and k pops instead
        of a sort of the whole side.
        """
        if side is BUY:
            heap, levels, sign = self.bid_heap, self.bids, -1
        else:
            heap, levels, sign = self.ask_heap, self.asks, 1
        if len(levels) <= SORT_UP_TO:
            yield from sorted(levels, reverse=side is BUY)
            return
        heap = heap[:]
        last = None
        while heap:
            key = heappop(heap)
            if key != last and key * sign in levels:  # a price twice in the heap is read once
                yield key * sign
            last = key

    def depth(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """(price, qty) of one side's levels, best first, at most ``limit`` of them."""
        return [(level.price, level.qty) for level in self.levels(side)[:limit]]

    def priority_orders(self, side: Side) -> list[Order]:
        """Every live order of one side in matching priority."""
        return [order for level in self.levels(side) for order in level.orders()]

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
            for order in level.orders():
                lines.append(f"{'':>16} | {fmt_p(level.price):>10} | {fmt_q(order.leaves_qty)} {order.user}")
        for level in self.levels(Side.BUY):
            for order in level.orders():
                bid = f"{fmt_q(order.leaves_qty)} {order.user}"
                lines.append(f"{bid:>16} | {fmt_p(level.price):>10} |")
        return "\n".join(line.rstrip() for line in lines)

    def check(self) -> None:
        """Assert every invariant in the module docstring (used by tests and replay)."""
        for side, levels, heap, best in ((Side.BUY, self.bids, self.bid_heap, self.best_bid),
                                         (Side.SELL, self.asks, self.ask_heap, self.best_ask)):
            keys = {-key for key in heap} if side is BUY else set(heap)
            assert keys >= set(levels), f"{side} prices missing from the heap: {set(levels) - keys}"
            assert _is_heap(heap), f"{side} heap out of order"
            expected_best = (max(levels) if side is BUY else min(levels)) if levels else None
            assert not levels or heap[0] == (-expected_best if side is BUY else expected_best), \
                f"{side} heap's top is not the best price"
            assert best == expected_best, f"best {side} is {best}, expected {expected_best}"
            for price, level in levels.items():
                queue = level.orders()
                assert queue, f"empty {side} level {price}"
                assert level.last is queue[-1], f"{side} level {price}: last is not the end of its queue"
                assert [o.prev for o in queue] == [None, *(o.order_id for o in queue[:-1])], \
                    f"{side} level {price}: links back out of step"
                assert level.qty == sum(o.leaves_qty for o in queue), f"{side} level {price} qty out of step"
                for order in queue:
                    assert order.live and order.price == price and order.side is side and order.leaves_qty > 0
                    assert self.orders.get(order.order_id) is order
        assert len(self.orders) == sum(len(level.orders())
                                       for level in (*self.bids.values(), *self.asks.values()))
        users: dict[str, list[str]] = {}
        for order in self.orders.values():
            users.setdefault(order.user, []).append(order.order_id)
        indexed = {user: [o.order_id for o in self.orders_of(user)] for user in self.user_last}
        assert indexed == users, f"orders per user {indexed}, expected {users}"
        for user in self.user_last:
            queue = self.orders_of(user)
            assert [o.user_next for o in queue] == [*queue[1:], None], f"{user}: links forward out of step"
            assert all(self.orders[o.order_id] is o and o.user == user for o in queue)
        if self.best_bid is not None and self.best_ask is not None:
            assert self.best_bid < self.best_ask, f"crossed book: {self.best_bid} >= {self.best_ask}"


def _is_heap(heap: list[int]) -> bool:
    return all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap)))
