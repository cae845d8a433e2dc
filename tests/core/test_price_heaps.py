"""The book's price heaps: the best price after levels come and go, the walk in price order, and
the heaps' size (a level that goes while not the best leaves its price behind until it is popped
or the heap is rebuilt)."""

import pytest
from scenario import BTC, Market, buy, cancel, sell

from exchange.core import book as book_module
from exchange.core.book import OrderBook
from exchange.core.orders import Side

BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture(autouse=True, params=["sorted", "heap walk"])
def walk(request, monkeypatch):
    """Every test twice: ``prices`` sorting the side (a shallow book) and popping the heap (a deep one)."""
    if request.param == "heap walk":
        monkeypatch.setattr(book_module, "SORT_UP_TO", 0)


def test_the_best_bid_follows_levels_that_go_best_first_and_worst_first():
    market = Market()
    placed = [market.handle(buy("alice", "1", at=f"{100 + i}.00"))[0].order_id for i in range(5)]  # 100..104
    book = market.matcher.books["BTC-USD"]
    market.handle(cancel("alice", placed[0]))  # the worst goes: the best stays
    assert book.best_bid == BTC.to_ticks("104.00")
    market.handle(cancel("alice", placed[4]))  # the best goes: the next one is found under it
    assert book.best_bid == BTC.to_ticks("103.00")
    market.handle(cancel("alice", placed[3]))
    market.handle(cancel("alice", placed[2]))
    assert book.best_bid == BTC.to_ticks("101.00")  # 100.00's gone price was popped on the way
    market.handle(cancel("alice", placed[1]))
    assert book.best_bid is None and book.bid_heap == []


def test_a_price_that_comes_back_is_walked_once_and_leaves_the_heap_when_its_level_goes():
    market = Market()
    first = market.handle(sell("bob", "1", at="101.00"))[0].order_id
    market.handle(sell("bob", "1", at="102.00"))
    market.handle(cancel("bob", first))
    market.handle(sell("carol", "2", at="101.00"))  # the same price again: it may be in the heap twice
    book = market.matcher.books["BTC-USD"]
    assert list(book.prices(SELL)) == [BTC.to_ticks("101.00"), BTC.to_ticks("102.00")]
    events = market.handle(buy("dave", "2", at="101.00"))  # takes the whole level
    assert [e.user for e in events if type(e).__name__ == "OrderFilled" and e.maker] == ["carol"]
    assert book.best_ask == BTC.to_ticks("102.00")
    assert list(book.prices(SELL)) == [BTC.to_ticks("102.00")]
    assert BTC.to_ticks("101.00") not in book.ask_heap  # popped with its level, both copies


def test_levels_that_go_behind_the_best_do_not_grow_the_heap_without_bound():
    market = Market()
    market.handle(buy("alice", "1", at="500.00"))  # the best, which never goes
    book = market.matcher.books["BTC-USD"]
    for i in range(2_000):  # a level below the best, made and canceled: its price stays behind
        order_id = market.handle(buy("bob", "1", at=f"{100 + i % 300}.00"))[0].order_id
        market.handle(cancel("bob", order_id))
        assert len(book.bid_heap) <= 2 * len(book.bids) + 33
    assert book.best_bid == BTC.to_ticks("500.00")
    assert list(book.prices(BUY)) == [BTC.to_ticks("500.00")]


def test_the_walk_in_price_order_stops_where_it_is_read_and_levels_are_best_first():
    market = Market()
    for price in ("100.00", "103.00", "101.00", "102.00"):
        market.handle(buy("alice", "1", at=price))
        market.handle(sell("bob", "1", at=f"{int(price[:3]) + 10}.00"))
    book = market.matcher.books["BTC-USD"]
    walk = book.prices(BUY)
    assert next(walk) == BTC.to_ticks("103.00") and next(walk) == BTC.to_ticks("102.00")
    assert [level.price for level in book.levels(BUY)] == [BTC.to_ticks(p) for p in ("103.00", "102.00",
                                                                                     "101.00", "100.00")]
    assert [level.price for level in book.levels(SELL)] == [BTC.to_ticks(p) for p in ("110.00", "111.00",
                                                                                      "112.00", "113.00")]
    assert list(OrderBook(BTC).prices(SELL)) == []


def test_fill_or_kill_counts_only_live_levels_up_to_its_limit():
    market = Market()
    gone = market.handle(sell("bob", "5", at="100.00"))[0].order_id
    market.handle(sell("carol", "1", at="101.00"))
    market.handle(sell("carol", "1", at="103.00"))
    market.handle(cancel("bob", gone))  # 100.00's price may linger in the heap: it holds nothing now
    assert market.handle(buy("dave", "2", at="102.00", tif="FOK"))[-1].reason.value == "FOK"
    assert [type(e).__name__ for e in market.handle(buy("dave", "2", at="103.00", tif="FOK"))].count("Trade") == 2
