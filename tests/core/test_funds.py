"""A market buy with FUNDS: it trades for at most its budget, then its rest expires (reason FUNDS).

A budget is in the instrument's lots × ticks (what ``qty * price`` is), so with BTC-USD's tick 0.01
and lot 0.001 one unit of budget is 0.00001 of the quote: 100.00 buys 1.000 at 100.00 for
1000 lots × 10000 ticks = 10,000,000 units.
"""

import msgspec
import pytest

from exchange.core.matching import Matcher
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side, TimeInForce
from scenario import BTC, ENGINE_ID, buy, drawn, sell


def with_funds(order: PlaceOrder, quote: str) -> PlaceOrder:
    """``order`` with a budget of ``quote`` (decimal text in the quote currency)."""
    units = BTC.to_ticks(quote) * BTC.to_lots("1")  # price 1 unit × qty of 1 → ticks × lots
    return msgspec.structs.replace(order, funds=units)


def test_a_market_buy_stops_when_its_budget_is_spent_and_the_rest_expires_funds(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="101.00"))
    assert market(with_funds(buy("carol", "5", tif="IOC"), "150.00")) == [
        "accepted 7-3 carol BUY 5.000 @ MARKET IOC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 100.00 leaves 4.000",
        "trade 7-1 1.000 @ 100.00 BUY",
        # 50.00 left buys 0.495 at 101.00 (0.496 would cost 50.096)
        "fill 7-2 bob maker 0.495 @ 101.00 leaves 0.505",
        "fill 7-3 carol taker 0.495 @ 101.00 leaves 3.505",
        "trade 7-2 0.495 @ 101.00 BUY",
        "expired 7-3 carol 3.505 FUNDS",
        "depth SELL 100.00 0.000",
        "depth SELL 101.00 0.505",
        "top - | 0.505 @ 101.00",
    ]
    assert market.book() == drawn("| 101.00 | 0.505 bob")


def test_a_budget_that_pays_for_everything_fills_it_all(market):
    market.run(sell("alice", "1", at="100.00"))
    events = market(with_funds(buy("carol", "1", tif="IOC"), "100.00"))
    assert "fill 7-2 carol taker 1.000 @ 100.00 leaves 0.000" in events
    assert not [line for line in events if line.startswith("expired")]


def test_liquidity_running_out_before_the_budget_expires_as_a_market_order(market):
    market.run(sell("alice", "1", at="100.00"))
    events = market(with_funds(buy("carol", "3", tif="IOC"), "1000.00"))
    assert "expired 7-2 carol 2.000 MARKET" in events


def test_a_budget_below_one_lot_buys_nothing(market):
    market.run(sell("alice", "1", at="100.00"))
    assert market(with_funds(buy("carol", "1", tif="IOC"), "0.09")) == [
        "accepted 7-2 carol BUY 1.000 @ MARKET IOC",
        "expired 7-2 carol 1.000 FUNDS",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 alice")


@pytest.mark.parametrize("order, code", [
    (buy("carol", "1", at="100.00", tif="IOC"), "MALFORMED"),  # a limit order has its price
    (sell("carol", "1", tif="IOC"), "MALFORMED"),  # a sell spends no quote
    (buy("carol", "1", tif="FOK"), "BAD_TIF"),
])
def test_funds_belong_to_market_buys_that_are_ioc(market, order, code):
    market.run(sell("alice", "1", at="100.00"))
    rejected = market(with_funds(order, "100.00"))
    assert len(rejected) == 1 and rejected[0].startswith("rejected") and code in rejected[0]


def test_replaying_a_budgeted_market_buy_gives_the_live_state():
    live = Matcher(ENGINE_ID, [BTC])
    events = []
    for command in (sell("alice", "1", at="100.00"), sell("bob", "2", at="101.00"),
                    with_funds(buy("carol", "5", tif="IOC"), "150.00")):
        events += live.handle(command)
    assert Matcher.rebuild(ENGINE_ID, [BTC], events).digest() == live.digest()
    assert any(getattr(e, "reason", None) and e.reason.value == "FUNDS" for e in events)


def test_an_order_without_funds_has_no_budget():
    assert PlaceOrder("u", "BTC-USD", Side.BUY, 1, None, TimeInForce.IOC).funds == 0


@pytest.mark.parametrize("stp", ["CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT"])
def test_a_spent_budget_stops_before_the_users_own_order_whatever_its_self_trade_mode(market, stp):
    """The budget ran out before the sweep reached carol's own ask: no trade with it was possible,
    so self-trade prevention has nothing to prevent; her ask stays and the rest expires FUNDS."""
    market.run(sell("alice", "1", at="100.00"), sell("carol", "1", at="101.00"))
    assert market(with_funds(buy("carol", "5", tif="IOC", stp=stp), "100.00")) == [
        "accepted 7-3 carol BUY 5.000 @ MARKET IOC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 100.00 leaves 4.000",
        "trade 7-1 1.000 @ 100.00 BUY",
        "expired 7-3 carol 4.000 FUNDS",
        "depth SELL 100.00 0.000",
        "top - | 1.000 @ 101.00",
    ]
    assert market.book() == drawn("| 101.00 | 1.000 carol")


def test_a_budget_short_of_one_lot_at_the_users_own_best_ask_touches_nothing(market):
    market.run(sell("carol", "1", at="100.00"))
    assert market(with_funds(buy("carol", "1", tif="IOC", stp="CANCEL_OLDEST"), "0.09")) == [
        "accepted 7-2 carol BUY 1.000 @ MARKET IOC",
        "expired 7-2 carol 1.000 FUNDS",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 carol")
