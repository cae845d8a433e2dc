"""Price levels derived from the matcher's order events equal the matcher's own books."""

from __future__ import annotations

import random

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import (
    BookOrderAdded, BookOrderDeleted, BookOrderExecuted, BookOrderReduced, CancelAll, CancelOrder, DepthUpdate,
    Match, PlaceOrder, ReplaceOrder, TopOfBook, expand,
)
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.engine.batches import resting_orders
from exchange.marketdata.levels import LevelBook, level_changes

BTC = Instrument("BTC-USD", tick_size="1", lot_size="1")
ETH = Instrument("ETH-USD", tick_size="1", lot_size="1", stp_default=SelfTradePrevention.DECREMENT)
USERS = ("alice", "bob", "carol")


def random_commands(matcher: Matcher, n: int, seed: int):
    """Every kind of command, aimed at orders that really rest, around a price of 100."""
    rng = random.Random(seed)
    for i in range(n):
        book = matcher.books[rng.choice(("BTC-USD", "ETH-USD"))]
        user, side = rng.choice(USERS), rng.choice((Side.BUY, Side.SELL))
        resting = list(book.orders.values())
        kind = rng.random()
        if kind < 0.55 or not resting:
            tif = rng.choice([TimeInForce.GTC] * 5 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST])
            price = None if rng.random() < 0.05 and tif is not TimeInForce.GTC else rng.randint(95, 105)
            stp = rng.choice(list(SelfTradePrevention))
            yield PlaceOrder(user, book.symbol, side, rng.randint(1, 9), price, tif, stp, ts_received=i)
        elif kind < 0.75:
            order = rng.choice(resting)
            yield CancelOrder(order.user if rng.random() < 0.9 else user, book.symbol, order.order_id, ts_received=i)
        elif kind < 0.95:
            order = rng.choice(resting)
            yield ReplaceOrder(order.user if rng.random() < 0.9 else user, book.symbol,
                               order.filled_qty + rng.randint(-1, 6), rng.choice([None, rng.randint(95, 105)]),
                               order.order_id, ts_received=i)
        else:
            yield CancelAll(user, rng.choice((None, book.symbol)), ts_received=i)


def levels_of(matcher: Matcher) -> dict[str, LevelBook]:
    """The books a notifier starts from when it takes them from the engine (EngineBook.orders)."""
    books = {}
    for symbol, book in matcher.books.items():
        books[symbol] = LevelBook(symbol)
        books[symbol].load(resting_orders(book))
    return books


def queues(matcher: Matcher) -> dict[str, list]:
    """Each book's resting orders as (order id, side, price, open qty), every level in time priority."""
    return {symbol: [(o.order_id, side, level.price, o.leaves_qty) for side in Side
                     for level in book.levels(side) for o in level.orders()]
            for symbol, book in matcher.books.items()}


class OrderByOrder:
    """A subscriber's book built from the l3 events alone: per symbol, orders in arrival order."""

    def __init__(self):
        self.orders: dict[str, dict[str, list]] = {}

    def apply(self, event) -> None:
        book = self.orders.setdefault(event.symbol, {})
        if isinstance(event, BookOrderAdded):
            assert event.order_id not in book
            book[event.order_id] = [event.side, event.price, event.qty]
        elif isinstance(event, BookOrderExecuted):
            assert book[event.order_id][2] - event.qty == event.leaves_qty and book[event.order_id][1] == event.price
            book[event.order_id][2] = event.leaves_qty
            if not event.leaves_qty:
                del book[event.order_id]
        elif isinstance(event, BookOrderReduced):
            assert book[event.order_id][2] - event.qty == event.leaves_qty > 0
            book[event.order_id][2] = event.leaves_qty
        elif isinstance(event, BookOrderDeleted):
            del book[event.order_id]

    def queues(self, symbol: str) -> list:
        """As ``queues`` gives them: bids best price first, then asks, each level oldest first."""
        orders = [(o, side, price, qty) for o, (side, price, qty) in self.orders.get(symbol, {}).items()]
        bids = sorted((o for o in orders if o[1] is Side.BUY), key=lambda o: -o[2])
        asks = sorted((o for o in orders if o[1] is Side.SELL), key=lambda o: o[2])
        return bids + asks


def test_the_order_by_order_feed_rebuilds_every_queue_in_time_priority():
    matcher = Matcher(1, [BTC, ETH])
    levels = {s: LevelBook(s) for s in matcher.books}
    subscriber = OrderByOrder()
    kinds = set()
    for command in random_commands(matcher, 3000, seed=11):
        for event in level_changes(levels, matcher.handle(command)):
            subscriber.apply(event)
            kinds.add(type(event))
        books = queues(matcher)
        for symbol in matcher.books:
            assert subscriber.queues(symbol) == books[symbol] == levels[symbol].resting()
    assert {BookOrderAdded, BookOrderExecuted, BookOrderReduced, BookOrderDeleted} <= kinds


def same_as_the_books(levels: dict[str, LevelBook], matcher: Matcher) -> None:
    for symbol, book in matcher.books.items():
        assert levels[symbol].levels(Side.BUY) == book.depth(Side.BUY), symbol
        assert levels[symbol].levels(Side.SELL) == book.depth(Side.SELL), symbol
        assert levels[symbol].best() == book.top(), symbol


def test_levels_follow_the_books_command_by_command_and_say_what_changed():
    matcher = Matcher(1, [BTC, ETH])
    levels = {s: LevelBook(s) for s in matcher.books}
    for command in random_commands(matcher, 3000, seed=5):
        before = {(s, side, p): q for s, b in matcher.books.items() for side in Side for p, q in b.depth(side)}
        events = matcher.handle(command)
        changes = level_changes(levels, events)
        after = {(s, side, p): q for s, b in matcher.books.items() for side in Side for p, q in b.depth(side)}
        moved = {k: after.get(k, 0) for k in before.keys() | after.keys() if before.get(k, 0) != after.get(k, 0)}
        assert {(e.symbol, e.side, e.price): e.qty for e in changes if isinstance(e, DepthUpdate)} == moved
        for e in changes:
            if isinstance(e, TopOfBook):
                assert (e.bid_price, e.bid_qty, e.ask_price, e.ask_qty) == matcher.books[e.symbol].top()
        same_as_the_books(levels, matcher)


def test_levels_loaded_from_a_matcher_midway_go_on_like_the_books():
    matcher = Matcher(1, [BTC, ETH])
    for command in random_commands(matcher, 1500, seed=9):
        matcher.handle(command)
    levels = levels_of(matcher)  # as an engine starts: from the books it recovered
    same_as_the_books(levels, matcher)
    assert [levels[s].resting() for s in matcher.books] == list(queues(matcher).values())
    for command in random_commands(matcher, 1500, seed=10):
        level_changes(levels, matcher.handle(command))
    same_as_the_books(levels, matcher)


def test_a_refused_replace_or_cancel_leaves_the_levels_alone():
    matcher = Matcher(1, [BTC])
    levels = {"BTC-USD": LevelBook("BTC-USD")}
    accepted = matcher.handle(PlaceOrder("alice", "BTC-USD", Side.BUY, 5, 100, ts_received=1))
    assert [type(e) for e in level_changes(levels, accepted)] == [BookOrderAdded, DepthUpdate, TopOfBook]
    accepted = accepted[0]
    refused = matcher.handle(ReplaceOrder("bob", "BTC-USD", 9, 101, accepted.order_id, ts_received=2))
    assert type(refused[0]).__name__ == "OrderRejected"
    assert level_changes(levels, refused) == []
    refused = matcher.handle(CancelOrder("bob", "BTC-USD", accepted.order_id, ts_received=3))
    assert level_changes(levels, refused) == []
    assert levels["BTC-USD"].levels(Side.BUY) == [(100, 5)]


def test_a_match_moves_the_levels_as_the_fills_and_trade_it_stands_for_did():
    """Journals from before Match hold two OrderFilled and a Trade per match: a notifier that
    catches up over one must publish what it publishes from the Match."""
    matcher = Matcher(1, [BTC, ETH])
    from_matches = {s: LevelBook(s) for s in matcher.books}
    from_fills = {s: LevelBook(s) for s in matcher.books}
    matches = 0
    for command in random_commands(matcher, 3000, seed=21):
        events = matcher.handle(command)
        matches += sum(type(e) is Match for e in events)
        assert level_changes(from_matches, events) == level_changes(from_fills, expand(events))
    assert matches > 300
    same_as_the_books(from_matches, matcher)
