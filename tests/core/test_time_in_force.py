"""Time in force (GTC, IOC, FOK, POST) and market orders."""

import pytest

from exchange.core.messages import OrderFilled, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from scenario import BTC, buy, drawn, orders_story, sell

# -- IOC -----------------------------------------------------------------------------------------


def test_ioc_remainder_expires_and_never_rests(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="102.00"))
    assert market(buy("carol", "3", at="101.00", tif="IOC")) == [
        "accepted 7-3 carol BUY 3.000 @ 101.00 IOC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 100.00 leaves 2.000",
        "trade 7-1 1.000 @ 100.00 BUY",
        "expired 7-3 carol 2.000 IOC",
        "depth SELL 100.00 0.000",
        "top - | 1.000 @ 102.00",
    ]
    assert market.book() == drawn("| 102.00 | 1.000 bob")


def test_ioc_that_fills_completely_does_not_expire(market):
    market.run(sell("alice", "2", at="100.00"))
    assert orders_story(market.handle(buy("bob", "1", at="100.00", tif="IOC"))) == [
        "accepted 7-2 bob BUY 1.000 @ 100.00 IOC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 1.000",
        "fill 7-2 bob taker 1.000 @ 100.00 leaves 0.000",
    ]


# -- FOK -----------------------------------------------------------------------------------------

def test_fok_fills_completely_across_levels(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.50"), sell("carol", "1", at="101.00"))
    assert market(buy("dave", "1.5", at="100.50", tif="FOK")) == [
        "accepted 7-4 dave BUY 1.500 @ 100.50 FOK",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-4 dave taker 1.000 @ 100.00 leaves 0.500",
        "trade 7-1 1.000 @ 100.00 BUY",
        "fill 7-2 bob maker 0.500 @ 100.50 leaves 0.500",
        "fill 7-4 dave taker 0.500 @ 100.50 leaves 0.000",
        "trade 7-2 0.500 @ 100.50 BUY",
        "depth SELL 100.00 0.000",
        "depth SELL 100.50 0.500",
        "top - | 0.500 @ 100.50",
    ]
    assert market.book() == drawn("""
        | 101.00 | 1.000 carol
        | 100.50 | 0.500 bob
    """)


def test_fok_for_exactly_the_available_quantity_fills(market):
    market.run(buy("alice", "1", at="100.00"), buy("bob", "2", at="99.00"))
    events = market.handle(sell("carol", "3", at="99.00", tif="FOK"))
    assert [e.leaves_qty for e in events if isinstance(e, OrderFilled) and not e.maker] == [2000, 0]
    assert market.book() == ""


FOK_BOOK = [
    sell("alice", "1", at="100.00"),
    sell("zoe", "1", at="100.00"),
    sell("bob", "1", at="101.00"),
    sell("carol", "5", at="102.00"),
]


@pytest.mark.parametrize("fok", [
    pytest.param(buy("dave", "3.5", at="101.00", tif="FOK"), id="not-enough-up-to-the-limit"),
    pytest.param(buy("dave", "8.001", at="102.00", tif="FOK"), id="not-enough-at-all"),
    pytest.param(buy("dave", "8.001", tif="FOK"), id="market-not-enough-at-all"),
    pytest.param(buy("zoe", "1.5", at="102.00", tif="FOK"), id="own-order-reached-first"),
    pytest.param(buy("zoe", "1.5", at="102.00", tif="FOK", stp="CANCEL_OLDEST"), id="own-order-cancel-oldest"),
    pytest.param(buy("zoe", "1.5", at="102.00", tif="FOK", stp="DECREMENT"), id="own-order-decrement"),
    pytest.param(buy("bob", "3", tif="FOK"), id="market-own-order-reached-first"),
    pytest.param(buy("dave", "1", at="99.99", tif="FOK"), id="does-not-cross"),
])
def test_fok_that_cannot_fill_completely_expires_with_nothing_touched(market, fok):
    market.run(*FOK_BOOK)
    before, books_before = market.book(), [b.state() for b in market.matcher.books.values()]
    qty, price = BTC.format_qty(fok.qty), "MARKET" if fok.price is None else BTC.format_price(fok.price)
    assert market(fok) == [
        f"accepted 7-5 {fok.user} BUY {qty} @ {price} FOK",
        f"expired 7-5 {fok.user} {qty} FOK",
    ]
    assert market.book() == before
    assert [b.state() for b in market.matcher.books.values()] == books_before


def test_fok_counts_liquidity_ahead_of_the_users_own_order(market):
    """FOK stops counting at the first own order; liquidity before it is enough here."""
    market.run(*FOK_BOOK)
    assert orders_story(market.handle(buy("bob", "2", at="102.00", tif="FOK"))) == [
        "accepted 7-5 bob BUY 2.000 @ 102.00 FOK",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-5 bob taker 1.000 @ 100.00 leaves 1.000",
        "fill 7-2 zoe maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-5 bob taker 1.000 @ 100.00 leaves 0.000",
    ]
    assert market.book() == drawn("""
        | 102.00 | 5.000 carol
        | 101.00 | 1.000 bob
    """)


# -- POST ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("post, best", [
    (buy("dave", "1", at="100.00", tif="POST"), "100.00"),
    (buy("dave", "1", at="100.50", tif="POST"), "100.00"),
    (sell("dave", "1", at="99.00", tif="POST"), "99.00"),
    (sell("dave", "1", at="0.01", tif="POST"), "99.00"),
])
def test_post_only_order_that_would_take_liquidity_is_rejected(market, post, best):
    market.run(sell("alice", "1", at="100.00"), buy("bob", "1", at="99.00"))
    before = market.book()
    price = BTC.format_price(post.price)
    assert market(post) == [
        f"rejected dave WOULD_CROSS: post-only order at {price} would take liquidity at {best}"]
    assert market.book() == before
    assert market(buy("erin", "1", at="1.00"))[0] == "accepted 7-3 erin BUY 1.000 @ 1.00 GTC"


def test_post_only_order_that_does_not_cross_rests(market):
    market.run(sell("alice", "1", at="100.00"), buy("bob", "1", at="99.00"))
    assert market(buy("dave", "1", at="99.99", tif="POST")) == [
        "accepted 7-3 dave BUY 1.000 @ 99.99 POST",
        "depth BUY 99.99 1.000",
        "top 1.000 @ 99.99 | 1.000 @ 100.00",
    ]
    assert market(sell("erin", "2", at="100.00", tif="POST"))[0] == "accepted 7-4 erin SELL 2.000 @ 100.00 POST"
    assert market.book() == drawn("""
                      | 100.00 | 1.000 alice
                      | 100.00 | 2.000 erin
          1.000 dave  |  99.99 |
          1.000 bob   |  99.00 |
    """)


# -- market orders -------------------------------------------------------------------------------

def test_market_order_sweeps_and_its_remainder_expires_with_reason_market(market):
    market.run(buy("alice", "1", at="99.00"), buy("bob", "1", at="98.00"))
    assert market(sell("carol", "3", tif="IOC")) == [
        "accepted 7-3 carol SELL 3.000 @ MARKET IOC",
        "fill 7-1 alice maker 1.000 @ 99.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 99.00 leaves 2.000",
        "trade 7-1 1.000 @ 99.00 SELL",
        "fill 7-2 bob maker 1.000 @ 98.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 98.00 leaves 1.000",
        "trade 7-2 1.000 @ 98.00 SELL",
        "expired 7-3 carol 1.000 MARKET",
        "depth BUY 99.00 0.000",
        "depth BUY 98.00 0.000",
        "top - | -",
    ]
    assert market.book() == ""


def test_market_order_that_fills_does_not_expire(market):
    market.run(sell("alice", "2", at="100.00"))
    assert orders_story(market.handle(buy("bob", "1.5", tif="IOC"))) == [
        "accepted 7-2 bob BUY 1.500 @ MARKET IOC",
        "fill 7-1 alice maker 1.500 @ 100.00 leaves 0.500",
        "fill 7-2 bob taker 1.500 @ 100.00 leaves 0.000",
    ]


def test_market_fok_fills_when_the_opposite_side_is_deep_enough(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="500.00"))
    assert orders_story(market.handle(buy("carol", "2", tif="FOK")))[-1] == \
        "fill 7-3 carol taker 1.000 @ 500.00 leaves 0.000"
    assert market.book() == ""


@pytest.mark.parametrize("side, empty", [(Side.BUY, "asks"), (Side.SELL, "bids")])
def test_market_order_on_an_empty_opposite_side_is_rejected_no_liquidity(market, side, empty):
    market.run(buy("alice", "1", at="99.00") if side is Side.BUY else sell("alice", "1", at="101.00"))
    before = market.book()
    assert market(PlaceOrder("bob", "BTC-USD", side, 1000, None, TimeInForce.IOC)) == [
        f"rejected bob NO_LIQUIDITY: no {empty} on BTC-USD for a market order"]
    assert market.book() == before


@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.POST])
def test_market_order_that_could_rest_is_rejected_bad_tif(market, tif):
    market.run(sell("alice", "1", at="100.00"))
    assert market(PlaceOrder("bob", "BTC-USD", Side.BUY, 1000, None, tif)) == [
        f"rejected bob BAD_TIF: a market order cannot be {tif.value}; it is IOC or FOK"]
    assert market.book() == drawn("| 100.00 | 1.000 alice")
