"""Self-trade prevention: an order never trades with a resting order of the same user.

The incoming order's mode decides (its own ``stp``, else the instrument's default). Market data of
these sessions is checked where it is unambiguous; see test_matching for the depth of untouched levels.
"""

import pytest

from exchange.core.messages import OrderAccepted
from exchange.core.orders import SelfTradePrevention
from scenario import buy, drawn, orders_story, replace, sell


def test_cancel_newest_is_the_default_and_cancels_the_incoming_remainder(market):
    market.run(sell("bob", "1", at="100.00"), sell("alice", "1", at="101.00"), sell("carol", "1", at="102.00"))
    events = market.handle(buy("alice", "3", at="102.00"))
    assert events[0].stp is SelfTradePrevention.CANCEL_NEWEST
    assert orders_story(events) == [
        "accepted 7-4 alice BUY 3.000 @ 102.00 GTC",
        "fill 7-1 bob maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-4 alice taker 1.000 @ 100.00 leaves 2.000",
        "canceled 7-4 alice 2.000 SELF_TRADE",
    ]
    assert market.book() == drawn("""
        | 102.00 | 1.000 carol
        | 101.00 | 1.000 alice
    """)


def test_cancel_newest_cancels_an_ioc_order_rather_than_expiring_it(market):
    market.run(sell("alice", "1", at="100.00"))
    assert orders_story(market.handle(buy("alice", "1", at="100.00", tif="IOC"))) == [
        "accepted 7-2 alice BUY 1.000 @ 100.00 IOC",
        "canceled 7-2 alice 1.000 SELF_TRADE",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 alice")


def test_cancel_oldest_cancels_the_resting_order_and_keeps_matching(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"), sell("alice", "1", at="101.00"),
               sell("carol", "1", at="101.00"))
    assert market(buy("alice", "1.5", at="101.00", stp="CANCEL_OLDEST")) == [
        "accepted 7-5 alice BUY 1.500 @ 101.00 GTC",
        "canceled 7-1 alice 1.000 SELF_TRADE",
        "fill 7-2 bob maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-5 alice taker 1.000 @ 100.00 leaves 0.500",
        "trade 7-1 1.000 @ 100.00 BUY",
        "canceled 7-3 alice 1.000 SELF_TRADE",
        "fill 7-4 carol maker 0.500 @ 101.00 leaves 0.500",
        "fill 7-5 alice taker 0.500 @ 101.00 leaves 0.000",
        "trade 7-2 0.500 @ 101.00 BUY",
        "depth SELL 100.00 0.000",
        "depth SELL 101.00 0.500",
        "top - | 0.500 @ 101.00",
    ]
    assert market.book() == drawn("| 101.00 | 0.500 carol")


def test_cancel_both_cancels_the_resting_order_and_the_incoming_remainder(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="101.00"))
    assert market(buy("alice", "2", at="101.00", stp="CANCEL_BOTH")) == [
        "accepted 7-3 alice BUY 2.000 @ 101.00 GTC",
        "canceled 7-1 alice 1.000 SELF_TRADE",
        "canceled 7-3 alice 2.000 SELF_TRADE",
        "depth SELL 100.00 0.000",
        "top - | 1.000 @ 101.00",
    ]
    assert market.book() == drawn("| 101.00 | 1.000 bob")


def test_decrement_with_a_smaller_resting_order_cancels_it_and_reduces_the_incoming(market):
    market.run(sell("alice", "0.4", at="100.00"), sell("bob", "1", at="100.00"))
    events = market.handle(buy("alice", "1", at="100.00", stp="DECREMENT"))
    assert orders_story(events) == [
        "accepted 7-3 alice BUY 1.000 @ 100.00 GTC",
        "canceled 7-1 alice 0.400 SELF_TRADE",
        "reduced 7-3 alice by 0.400 leaves 0.600",
        "fill 7-2 bob maker 0.600 @ 100.00 leaves 0.400",
        "fill 7-3 alice taker 0.600 @ 100.00 leaves 0.000",
    ]
    assert events[4].filled_qty == 600  # of a total reduced to 0.600
    assert market.book() == drawn("| 100.00 | 0.400 bob")


def test_decrement_with_an_equal_resting_order_cancels_both(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"))
    assert market(buy("alice", "1", at="100.00", stp="DECREMENT")) == [
        "accepted 7-3 alice BUY 1.000 @ 100.00 GTC",
        "canceled 7-1 alice 1.000 SELF_TRADE",
        "canceled 7-3 alice 1.000 SELF_TRADE",
        "depth SELL 100.00 1.000",
        "top - | 1.000 @ 100.00",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 bob")


def test_decrement_with_a_larger_resting_order_reduces_it_and_cancels_the_incoming(market):
    market.run(sell("alice", "2", at="100.00"), sell("bob", "1", at="100.00"))
    assert market(buy("alice", "0.5", at="100.00", stp="DECREMENT")) == [
        "accepted 7-3 alice BUY 0.500 @ 100.00 GTC",
        "reduced 7-1 alice by 0.500 leaves 1.500",
        "canceled 7-3 alice 0.500 SELF_TRADE",
        "depth SELL 100.00 2.500",
        "top - | 2.500 @ 100.00",
    ]
    assert market.book() == drawn("""
        | 100.00 | 1.500 alice
        | 100.00 | 1.000 bob
    """)


def test_decrement_reduces_the_resting_orders_total_so_replace_limits_follow(market):
    market.run(sell("alice", "2", at="100.00"), buy("alice", "0.5", at="100.00", stp="DECREMENT"),
               buy("bob", "1", at="100.00"))
    # alice's order is now 1.500 in total with 1.000 filled (not 2.000 with 1.500 open)
    assert market(replace("alice", "7-1", "1")) == [
        "rejected alice BAD_QTY 7-1: quantity 1.000 must be more than the 1.000 already filled"]
    assert market(replace("alice", "7-1", "1.2"))[0] == \
        "replaced 7-1 alice 1.200 @ 100.00 leaves 0.200 priority kept"


@pytest.mark.parametrize("stp, mode, fate", [
    (None, SelfTradePrevention.DECREMENT, ["ETH-USD: reduced 7-1 alice by 1.00 leaves 2.00",
                                           "ETH-USD: canceled 7-2 alice 1.00 SELF_TRADE"]),
    ("CANCEL_OLDEST", SelfTradePrevention.CANCEL_OLDEST, ["ETH-USD: canceled 7-1 alice 3.00 SELF_TRADE"]),
    ("CANCEL_NEWEST", SelfTradePrevention.CANCEL_NEWEST, ["ETH-USD: canceled 7-2 alice 1.00 SELF_TRADE"]),
])
def test_order_stp_overrides_the_instrument_default(market, stp, mode, fate):
    """ETH-USD's default is DECREMENT (BTC-USD's is CANCEL_NEWEST)."""
    market.run(sell("alice", "3", at="2000.00", symbol="ETH-USD"))
    events = market.handle(buy("alice", "1", at="2000.00", symbol="ETH-USD", stp=stp))
    assert isinstance(events[0], OrderAccepted) and events[0].stp is mode
    assert orders_story(events)[1:] == fate


def test_the_incoming_orders_mode_decides_not_the_resting_orders(market):
    market.run(sell("alice", "1", at="100.00", stp="CANCEL_OLDEST"))
    assert orders_story(market.handle(buy("alice", "1", at="100.00"))) == [
        "accepted 7-2 alice BUY 1.000 @ 100.00 GTC",
        "canceled 7-2 alice 1.000 SELF_TRADE",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 alice")


def test_market_order_with_decrement_trades_past_a_smaller_own_order(market):
    market.run(buy("alice", "0.5", at="99.00"), buy("bob", "2", at="98.00"))
    assert orders_story(market.handle(sell("alice", "2", tif="IOC", stp="DECREMENT"))) == [
        "accepted 7-3 alice SELL 2.000 @ MARKET IOC",
        "canceled 7-1 alice 0.500 SELF_TRADE",
        "reduced 7-3 alice by 0.500 leaves 1.500",
        "fill 7-2 bob maker 1.500 @ 98.00 leaves 0.500",
        "fill 7-3 alice taker 1.500 @ 98.00 leaves 0.000",
    ]


def test_orders_of_different_users_trade_normally_whatever_the_mode(market):
    market.run(sell("alice", "1", at="100.00", stp="CANCEL_BOTH"))
    assert orders_story(market.handle(buy("bob", "1", at="100.00", stp="CANCEL_BOTH")))[1:] == [
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-2 bob taker 1.000 @ 100.00 leaves 0.000",
    ]
