"""Cancel, replace and cancel-all: only the user's own open orders, and the priority rules of replace."""

import pytest

from exchange.core.messages import CancelOrder, OrderCanceled, OrderFilled, ReplaceOrder
from scenario import buy, cancel, cancel_all, drawn, orders_story, replace, sell, story

# -- cancel --------------------------------------------------------------------------------------


def test_user_cancels_own_order(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="101.00"))
    assert market(cancel("alice", "7-1")) == [
        "canceled 7-1 alice 1.000 USER",
        "depth SELL 100.00 0.000",
        "top - | 1.000 @ 101.00",
    ]
    assert market.book() == drawn("| 101.00 | 1.000 bob")


def test_cancel_of_a_partially_filled_order_cancels_what_is_left(market):
    market.run(sell("alice", "2", at="100.00"), buy("bob", "0.5", at="100.00"))
    assert market(cancel("alice", "7-1"))[0] == "canceled 7-1 alice 1.500 USER"


def test_cancel_in_the_middle_of_a_level_keeps_the_others_priority(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"), sell("carol", "1", at="100.00"))
    market.run(cancel("bob", "7-2"))
    assert orders_story(market.handle(buy("dave", "1.5", at="100.00")))[1::2] == [
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol maker 0.500 @ 100.00 leaves 0.500",
    ]


@pytest.mark.parametrize("command, reason", [
    (cancel("bob", "7-1"), "no open order 7-1 of user bob"),  # alice's order
    (cancel("alice", "7-99"), "no open order 7-99 of user alice"),
    (cancel("alice", "7-2"), "no open order 7-2 of user alice"),  # filled
    (cancel("alice", "7-1", symbol="ETH-USD"), "no open order 7-1 of user alice"),  # another book
    (cancel("alice", "7-1", symbol="DOGE-USD"), "no open order 7-1 of user alice"),
    (cancel("bob", cid="a1"), "no open order #a1 of user bob"),  # alice's client order id
    (cancel("alice", cid="zz"), "no open order #zz of user alice"),
    (replace("bob", "7-1", "0.5"), "no open order 7-1 of user bob"),
    (replace("alice", "7-2", "0.5"), "no open order 7-2 of user alice"),
])
def test_cancel_or_replace_of_an_order_that_is_not_the_users_open_order_changes_nothing(market, command, reason):
    market.run(sell("alice", "1", at="100.00", cid="a1"), sell("alice", "1", at="99.00"),
               buy("bob", "1", at="99.00"))
    before, state = market.book(), market.matcher.books["BTC-USD"].state()
    rejected, = market.handle(command)
    assert (rejected.code.value, rejected.reason, rejected.user) == ("NOT_YOUR_ORDER", reason, command.user)
    assert (rejected.order_id, rejected.client_order_id) == (command.order_id, command.client_order_id)
    assert market.book() == before == drawn("| 100.00 | 1.000 alice")
    assert market.matcher.books["BTC-USD"].state() == state


@pytest.mark.parametrize("command", [CancelOrder("alice", "BTC-USD"), ReplaceOrder("alice", "BTC-USD", 1000)])
def test_cancel_or_replace_that_names_no_order_is_malformed(market, command):
    market.run(sell("alice", "1", at="100.00"))
    assert market(command) == ["rejected alice MALFORMED: name an order id or a client order id"]


def test_cancel_by_client_order_id_without_a_symbol(market):
    market.run(sell("alice", "1", at="2000.00", symbol="ETH-USD", cid="e1"))
    assert market(cancel("alice", cid="e1", symbol="")) == [
        "ETH-USD: canceled 7-1 alice 1.00 USER #e1",
        "ETH-USD: depth SELL 2000.00 0.00",
        "ETH-USD: top - | -",
    ]


def test_cancel_by_order_id_without_a_symbol_finds_the_book(market):
    market.run(sell("alice", "1", at="100.00"), sell("alice", "1", at="2000.00", symbol="ETH-USD"))
    assert market(cancel("alice", "7-2", symbol=""))[0] == "ETH-USD: canceled 7-2 alice 1.00 USER"
    assert market.book() == drawn("| 100.00 | 1.000 alice")


def test_a_canceled_order_cannot_be_canceled_again(market):
    market.run(sell("alice", "1", at="100.00"), cancel("alice", "7-1"))
    assert market(cancel("alice", "7-1")) == ["rejected alice NOT_YOUR_ORDER 7-1: no open order 7-1 of user alice"]


# -- replace -------------------------------------------------------------------------------------

def test_replace_that_reduces_qty_keeps_priority(market):
    market.run(sell("alice", "2", at="100.00"), sell("bob", "1", at="100.00"))
    assert market(replace("alice", "7-1", "1")) == [
        "replaced 7-1 alice 1.000 @ 100.00 leaves 1.000 priority kept",
        "depth SELL 100.00 2.000",
        "top - | 2.000 @ 100.00",
    ]
    assert market.book() == drawn("""
        | 100.00 | 1.000 alice
        | 100.00 | 1.000 bob
    """)
    assert orders_story(market.handle(buy("carol", "1", at="100.00")))[1] == \
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000"


def test_replace_that_raises_qty_loses_priority(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"))
    assert market(replace("alice", "7-1", "2")) == [
        "replaced 7-1 alice 2.000 @ 100.00 leaves 2.000 priority lost",
        "depth SELL 100.00 3.000",
        "top - | 3.000 @ 100.00",
    ]
    assert market.book() == drawn("""
        | 100.00 | 1.000 bob
        | 100.00 | 2.000 alice
    """)


def test_replace_that_changes_price_loses_priority_and_moves_level(market):
    market.run(sell("alice", "1", at="101.00"), sell("bob", "1", at="100.00"), sell("carol", "1", at="101.00"))
    assert market(replace("bob", "7-2", "1", at="101.00")) == [
        "replaced 7-2 bob 1.000 @ 101.00 leaves 1.000 priority lost",
        "depth SELL 100.00 0.000",
        "depth SELL 101.00 3.000",
        "top - | 3.000 @ 101.00",
    ]
    assert market.book() == drawn("""
        | 101.00 | 1.000 alice
        | 101.00 | 1.000 carol
        | 101.00 | 1.000 bob
    """)


def test_replace_of_a_partially_filled_order_sets_the_total_and_leaves_the_rest(market):
    market.run(sell("alice", "2", at="100.00"), buy("bob", "1.5", at="100.00"))
    assert market(replace("alice", "7-1", "1.6"))[0] == \
        "replaced 7-1 alice 1.600 @ 100.00 leaves 0.100 priority kept"
    assert market(replace("alice", "7-1", "3", at="100.50"))[0] == \
        "replaced 7-1 alice 3.000 @ 100.50 leaves 1.500 priority lost"
    assert market.book() == drawn("| 100.50 | 1.500 alice")


@pytest.mark.parametrize("qty", ["1.5", "1"])
def test_replace_to_a_qty_at_or_below_the_filled_qty_is_rejected(market, qty):
    market.run(sell("alice", "2", at="100.00"), buy("bob", "1.5", at="100.00"))
    assert market(replace("alice", "7-1", qty)) == [
        f"rejected alice BAD_QTY 7-1: quantity {float(qty):.3f} must be more than the 1.500 already filled"]
    assert market.book() == drawn("| 100.00 | 0.500 alice")


@pytest.mark.parametrize("qty, price, code, reason", [
    (0, None, "BAD_QTY", "quantity 0.000 is below the minimum 0.001"),
    (100001, None, "BAD_QTY", "quantity 100.001 is above the maximum 100.000"),
    (1000, 0, "BAD_PRICE", "price must be at least one tick (0.01)"),
    (1000, 100000001, "BAD_PRICE", "price 1000000.01 is above the maximum 1000000.00"),
])
def test_replace_with_bad_qty_or_price_is_rejected(market, qty, price, code, reason):
    market.run(sell("alice", "1", at="100.00"))
    assert market(ReplaceOrder("alice", "BTC-USD", qty, price, "7-1")) == [f"rejected alice {code} 7-1: {reason}"]
    assert market.book() == drawn("| 100.00 | 1.000 alice")


def test_replace_that_crosses_trades_as_a_taker(market):
    market.run(buy("alice", "2", at="99.00"), sell("carol", "0.5", at="98.00"), sell("bob", "1", at="100.00"))
    events = market.handle(replace("alice", "7-1", "2", at="100.00"))
    assert story(events) == [
        "replaced 7-1 alice 2.000 @ 100.00 leaves 1.500 priority lost",
        "fill 7-3 bob maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-1 alice taker 1.000 @ 100.00 leaves 0.500",
        "trade 7-2 1.000 @ 100.00 BUY",
        "depth BUY 99.00 0.000",
        "depth SELL 100.00 0.000",
        "depth BUY 100.00 0.500",
        "top 0.500 @ 100.00 | -",
    ]
    taker = [e for e in events if isinstance(e, OrderFilled) and not e.maker]
    assert [(e.filled_qty, e.leaves_qty) for e in taker] == [(1500, 500)]
    assert market.book() == drawn("0.500 alice | 100.00 |")


def test_post_only_replace_that_would_cross_is_rejected(market):
    market.run(buy("alice", "1", at="99.00", tif="POST"), sell("bob", "1", at="100.00"))
    assert market(replace("alice", "7-1", "1", at="100.00")) == [
        "rejected alice WOULD_CROSS 7-1: post-only order at 100.00 would take liquidity at 100.00"]
    assert market.book() == drawn("""
                    | 100.00 | 1.000 bob
        1.000 alice |  99.00 |
    """)
    assert market(replace("alice", "7-1", "1", at="99.99"))[0] == \
        "replaced 7-1 alice 1.000 @ 99.99 leaves 1.000 priority lost"


def test_replace_by_client_order_id_without_a_symbol(market):
    market.run(sell("alice", "2", at="2000.00", symbol="ETH-USD", cid="e1"))
    command = ReplaceOrder("alice", "", 150, None, "", "e1")
    assert market(command)[0] == "ETH-USD: replaced 7-1 alice 1.50 @ 2000.00 leaves 1.50 priority kept #e1"


# -- cancel-all ----------------------------------------------------------------------------------

def alice_and_bob(market):
    market.run(
        sell("alice", "1", at="100.00"),
        buy("alice", "1", at="99.00"),
        sell("bob", "1", at="100.00"),
        sell("alice", "1", at="2000.00", symbol="ETH-USD"),
        buy("bob", "1", at="1900.00", symbol="ETH-USD"),
    )


def test_cancel_all_cancels_every_order_of_the_user_on_every_instrument(market):
    alice_and_bob(market)
    events = market.handle(cancel_all("alice"))
    assert story(events) == [
        "canceled 7-1 alice 1.000 CANCEL_ALL",
        "canceled 7-2 alice 1.000 CANCEL_ALL",
        "depth SELL 100.00 1.000",
        "depth BUY 99.00 0.000",
        "top - | 1.000 @ 100.00",
        "ETH-USD: canceled 7-4 alice 1.00 CANCEL_ALL",
        "ETH-USD: depth SELL 2000.00 0.00",
        "ETH-USD: top 1.00 @ 1900.00 | -",
    ]
    assert sum(isinstance(e, OrderCanceled) for e in events) == 3
    assert market.book() == drawn("| 100.00 | 1.000 bob")
    assert market.book("ETH-USD") == drawn("1.00 bob | 1900.00 |")


def test_cancel_all_on_one_instrument_leaves_the_others(market):
    alice_and_bob(market)
    assert market(cancel_all("alice", symbol="ETH-USD")) == [
        "ETH-USD: canceled 7-4 alice 1.00 CANCEL_ALL",
        "ETH-USD: depth SELL 2000.00 0.00",
        "ETH-USD: top 1.00 @ 1900.00 | -",
    ]
    assert market.book() == drawn("""
                    | 100.00 | 1.000 alice
                    | 100.00 | 1.000 bob
        1.000 alice |  99.00 |
    """)


def test_cancel_all_on_an_unknown_instrument_is_rejected(market):
    alice_and_bob(market)
    assert market(cancel_all("alice", symbol="DOGE-USD")) == [
        "DOGE-USD: rejected alice UNKNOWN_SYMBOL: no instrument 'DOGE-USD'"]
