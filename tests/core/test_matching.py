"""Matching as a trading session: priority, prices, fills, validation, ids, seq, market data, replay."""

import msgspec
import pytest

from exchange.core.matching import Matcher
from exchange.core.messages import Match, OrderAccepted, OrderFilled, PlaceOrder, Trade
from exchange.core.orders import Side, TimeInForce
from exchange.errors import RejectCode
from scenario import (
    BTC, ETH, Market, buy, cancel, cancel_all, drawn, orders_story, replace, sell, story,
)

# -- priority and prices -------------------------------------------------------------------------


def test_resting_order_is_accepted_and_published(market):
    assert market(sell("alice", "1", at="100.00")) == [
        "accepted 7-1 alice SELL 1.000 @ 100.00 GTC",
        "depth SELL 100.00 1.000",
        "top - | 1.000 @ 100.00",
    ]
    assert market.book() == drawn("| 100.00 | 1.000 alice")


def test_oldest_order_at_a_price_trades_first(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"))
    assert market(buy("carol", "1.5", at="100.00")) == [
        "accepted 7-3 carol BUY 1.500 @ 100.00 GTC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 100.00 leaves 0.500",
        "trade 7-1 1.000 @ 100.00 BUY",
        "fill 7-2 bob maker 0.500 @ 100.00 leaves 0.500",
        "fill 7-3 carol taker 0.500 @ 100.00 leaves 0.000",
        "trade 7-2 0.500 @ 100.00 BUY",
        "depth SELL 100.00 0.500",
        "top - | 0.500 @ 100.00",
    ]
    assert market.book() == drawn("| 100.00 | 0.500 bob")


def test_better_price_trades_first_even_if_it_came_later(market):
    market.run(sell("alice", "1", at="101.00"), sell("bob", "1", at="100.00"))
    assert orders_story(market.handle(buy("carol", "1", at="101.00")))[1:] == [
        "fill 7-2 bob maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-3 carol taker 1.000 @ 100.00 leaves 0.000",
    ]
    assert market.book() == drawn("| 101.00 | 1.000 alice")


def test_sell_order_takes_the_highest_bid_first(market):
    market.run(buy("alice", "1", at="99.00"), buy("bob", "1", at="99.50"), buy("carol", "1", at="99.50"))
    assert orders_story(market.handle(sell("dave", "1.5", at="99.00")))[1:] == [
        "fill 7-2 bob maker 1.000 @ 99.50 leaves 0.000",
        "fill 7-4 dave taker 1.000 @ 99.50 leaves 0.500",
        "fill 7-3 carol maker 0.500 @ 99.50 leaves 0.500",
        "fill 7-4 dave taker 0.500 @ 99.50 leaves 0.000",
    ]
    assert market.book() == drawn("""
        0.500 carol | 99.50 |
        1.000 alice | 99.00 |
    """)


@pytest.mark.parametrize("maker, taker, price", [
    (sell("alice", "1", at="100.00"), buy("bob", "1", at="105.00"), 10000),
    (buy("alice", "1", at="100.00"), sell("bob", "1", at="95.00"), 10000),
])
def test_trade_happens_at_the_makers_price(market, maker, taker, price):
    market.run(maker)
    events = market.handle(taker)
    assert [e.last_price for e in events if isinstance(e, OrderFilled)] == [price, price]
    trade, = [e for e in events if isinstance(e, Trade)]
    assert (trade.price, trade.qty, trade.taker_side) == (price, 1000, taker.side)


def test_partially_filled_maker_keeps_its_place_and_counts_what_is_filled(market):
    market.run(sell("alice", "3", at="100.00"), sell("bob", "1", at="100.00"))
    market.run(buy("carol", "1", at="100.00"))
    events = market.handle(buy("dave", "1.5", at="100.00"))
    maker = [e for e in events if isinstance(e, OrderFilled) and e.maker]
    assert [(e.order_id, e.last_qty, e.filled_qty, e.leaves_qty) for e in maker] == [("7-1", 1500, 2500, 500)]
    assert market.book() == drawn("""
        | 100.00 | 0.500 alice
        | 100.00 | 1.000 bob
    """)


def test_partially_filled_taker_rests_the_remainder_at_its_limit(market):
    market.run(sell("alice", "1", at="100.00"))
    assert market(buy("bob", "2.5", at="100.00")) == [
        "accepted 7-2 bob BUY 2.500 @ 100.00 GTC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-2 bob taker 1.000 @ 100.00 leaves 1.500",
        "trade 7-1 1.000 @ 100.00 BUY",
        "depth SELL 100.00 0.000",
        "depth BUY 100.00 1.500",
        "top 1.500 @ 100.00 | -",
    ]
    assert market.book() == drawn("1.500 bob | 100.00 |")


def test_sweep_takes_levels_in_order_up_to_the_limit_and_rests_the_rest(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "2", at="100.50"), sell("carol", "1", at="101.00"),
               sell("dave", "1", at="102.00"))
    assert market(buy("erin", "5", at="101.00")) == [
        "accepted 7-5 erin BUY 5.000 @ 101.00 GTC",
        "fill 7-1 alice maker 1.000 @ 100.00 leaves 0.000",
        "fill 7-5 erin taker 1.000 @ 100.00 leaves 4.000",
        "trade 7-1 1.000 @ 100.00 BUY",
        "fill 7-2 bob maker 2.000 @ 100.50 leaves 0.000",
        "fill 7-5 erin taker 2.000 @ 100.50 leaves 2.000",
        "trade 7-2 2.000 @ 100.50 BUY",
        "fill 7-3 carol maker 1.000 @ 101.00 leaves 0.000",
        "fill 7-5 erin taker 1.000 @ 101.00 leaves 1.000",
        "trade 7-3 1.000 @ 101.00 BUY",
        "depth SELL 100.00 0.000",
        "depth SELL 100.50 0.000",
        "depth SELL 101.00 0.000",
        "depth BUY 101.00 1.000",
        "top 1.000 @ 101.00 | 1.000 @ 102.00",
    ]
    assert market.book() == drawn("""
                  | 102.00 | 1.000 dave
        1.000 erin | 101.00 |
    """)


def test_taker_fill_reports_its_running_filled_qty(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "2", at="101.00"))
    events = market.handle(buy("carol", "2.5", at="101.00"))
    taker = [e for e in events if isinstance(e, OrderFilled) and not e.maker]
    assert [(e.last_qty, e.filled_qty, e.leaves_qty) for e in taker] == [(1000, 1000, 1500), (1500, 2500, 0)]


def test_fill_and_trade_events_carry_every_field(market):
    market.run(sell("alice", "1", at="100.00", cid="a1", ts=5))
    assert market.handle(buy("bob", "0.4", at="100.00", cid="b1", ts=9))[1:4] == [
        OrderFilled(3, 9, "BTC-USD", "7-1", "alice", Side.SELL, "7-1", 400, 10000, 600, 400, True, "a1"),
        OrderFilled(4, 9, "BTC-USD", "7-2", "bob", Side.BUY, "7-1", 400, 10000, 0, 400, False, "b1"),
        Trade(5, 9, "BTC-USD", "7-1", 10000, 400, Side.BUY),
    ]


# -- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command, code, reason", [
    (PlaceOrder("bob", "DOGE-USD", Side.BUY, 1000, 10000), RejectCode.UNKNOWN_SYMBOL, "no instrument 'DOGE-USD'"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, 0, 10000), RejectCode.BAD_QTY,
     "quantity 0.000 is below the minimum 0.001"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, -5, 10000), RejectCode.BAD_QTY,
     "quantity -0.005 is below the minimum 0.001"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, 100001, 10000), RejectCode.BAD_QTY,
     "quantity 100.001 is above the maximum 100.000"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, 1000, 0), RejectCode.BAD_PRICE,
     "price must be at least one tick (0.01)"),
    (PlaceOrder("bob", "BTC-USD", Side.SELL, 1000, -100), RejectCode.BAD_PRICE,
     "price must be at least one tick (0.01)"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, 1000, 100000001), RejectCode.BAD_PRICE,
     "price 1000000.01 is above the maximum 1000000.00"),
    (PlaceOrder("bob", "BTC-USD", Side.BUY, 0, None, TimeInForce.GTC), RejectCode.BAD_QTY,
     "quantity 0.000 is below the minimum 0.001"),
])
def test_invalid_order_is_rejected_and_changes_nothing(market, command, code, reason):
    market.run(sell("alice", "1", at="100.00", cid="a1"))
    before = market.book()
    rejected, = market.handle(command)
    assert (rejected.symbol, rejected.user, rejected.code) == (command.symbol, "bob", code)
    assert rejected.reason == reason
    assert market.book() == before
    assert market(buy("bob", "1", at="99.00"))[0] == "accepted 7-2 bob BUY 1.000 @ 99.00 GTC"


def test_client_order_id_cannot_be_used_twice_by_one_user_and_the_reject_names_the_first_order(market):
    market.run(sell("alice", "1", at="100.00", cid="a1"), cancel("alice", "7-1"))
    assert market(sell("alice", "1", at="101.00", cid="a1")) == [
        "rejected alice DUPLICATE_ID 7-1 #a1: client order id #a1 was already used",
    ]
    assert market(sell("bob", "1", at="101.00", cid="a1"))[0] == "accepted 7-2 bob SELL 1.000 @ 101.00 GTC #a1"


def test_client_order_id_is_echoed_on_every_event_of_the_order(market):
    market.run(sell("alice", "1", at="100.00", cid="a1"))
    events = market.handle(buy("bob", "2", at="100.00", tif="IOC", cid="b1"))
    assert [(type(e).__name__, e.client_order_id) for e in events if hasattr(e, "client_order_id")] == [
        ("OrderAccepted", "b1"), ("OrderFilled", "a1"), ("OrderFilled", "b1"), ("OrderExpired", "b1")]


# -- ids and sequence numbers --------------------------------------------------------------------

def test_order_ids_and_trade_ids_carry_the_engine_id_and_count_separately():
    market = Market(engine_id=12)
    market.run(sell("alice", "1", at="100.00"), sell("bob", "1", at="101.00"))
    events = market.handle(buy("carol", "2", at="101.00"))
    assert [e.order_id for e in events if isinstance(e, OrderAccepted)] == ["12-3"]
    assert [e.trade_id for e in events if isinstance(e, Trade)] == ["12-1", "12-2"]


@pytest.mark.parametrize("last", [0, 998, 999, 1_000, 1_998, 123_455, 999_999])
def test_ids_count_on_across_each_thousand_and_after_a_restored_counter(last):
    """Ids from 1000 on are built from a cached head per thousand; the counter alone decides."""
    matcher = Matcher(12, [BTC])
    for restored in (last, last + 1_000, last):  # a head cached for one thousand must not leak into another
        matcher.last_order_number = matcher.last_trade_number = restored
        ids = []
        for n in range(3):
            events = matcher.handle(PlaceOrder("alice", "BTC-USD", Side.SELL, 1000, 10_000 + n))
            events += matcher.handle(PlaceOrder("bob", "BTC-USD", Side.BUY, 1000, 10_000 + n))
            ids += [e.order_id for e in events if isinstance(e, OrderAccepted)]
            ids += [e.trade_id for e in events if isinstance(e, Match)]
        expected = [f"12-{restored + 1}", f"12-{restored + 2}", f"12-{restored + 1}",
                    f"12-{restored + 3}", f"12-{restored + 4}", f"12-{restored + 2}",
                    f"12-{restored + 5}", f"12-{restored + 6}", f"12-{restored + 3}"]
        assert ids == expected


def test_rejected_commands_take_a_seq_but_no_order_id(market):
    market.run(PlaceOrder("bob", "NOPE", Side.BUY, 1, 1), PlaceOrder("bob", "BTC-USD", Side.BUY, 0, 100))
    assert market(sell("alice", "1", at="100.00"))[0] == "accepted 7-1 alice SELL 1.000 @ 100.00 GTC"
    assert [e.seq for e in market.events] == [1, 2, 3]


def test_seq_grows_by_one_per_event_across_commands_and_instruments(market):
    market.run(
        sell("alice", "1", at="100.00"),
        sell("alice", "1", at="2000.00", symbol="ETH-USD"),
        buy("bob", "2", at="2000.00", symbol="ETH-USD", tif="IOC"),
        PlaceOrder("bob", "NOPE", Side.BUY, 1, 1),
        cancel("bob", "7-1"),
        buy("bob", "0.5", at="100.00"),
        cancel_all("alice"),
    )
    assert [e.seq for e in market.events] == list(range(1, len(market.events) + 1))
    # 1 + 1 + 5 (accepted, two fills, trade, expired) + 1 + 1 + 4 + 1: what matching decided, no more
    assert market.matcher.seq == len(market.events) == 14


def test_empty_cancel_all_has_no_events_and_takes_no_seq(market):
    market.run(sell("alice", "1", at="100.00"))
    assert market.handle(cancel_all("bob")) == []
    assert market.matcher.seq == 1


def test_every_event_carries_the_commands_ts_received(market):
    market.run(sell("alice", "1", at="100.00", ts=111))
    events = market.handle(buy("bob", "2", at="100.00", ts=222))
    assert {e.ts_event for e in events} == {222}


# -- market data ---------------------------------------------------------------------------------

def test_order_behind_the_best_publishes_depth_but_no_top(market):
    market.run(sell("alice", "1", at="100.00"))
    assert market(sell("bob", "2", at="101.00")) == [
        "accepted 7-2 bob SELL 2.000 @ 101.00 GTC",
        "depth SELL 101.00 2.000",
    ]


def test_more_quantity_at_the_best_price_changes_the_top(market):
    market.run(sell("alice", "1", at="100.00"), buy("carol", "1", at="99.00"))
    assert market(sell("bob", "2", at="100.00")) == [
        "accepted 7-3 bob SELL 2.000 @ 100.00 GTC",
        "depth SELL 100.00 3.000",
        "top 1.000 @ 99.00 | 3.000 @ 100.00",
    ]


def test_emptied_level_is_published_with_zero_and_the_next_level_becomes_top(market):
    market.run(sell("alice", "1", at="100.00"), sell("bob", "2", at="101.00"))
    assert market(cancel("alice", "7-1")) == [
        "canceled 7-1 alice 1.000 USER",
        "depth SELL 100.00 0.000",
        "top - | 2.000 @ 101.00",
    ]


def test_order_that_expires_without_touching_the_book_publishes_no_market_data(market):
    market.run(sell("alice", "1", at="100.00"))
    assert market(buy("bob", "1", at="99.00", tif="IOC")) == [
        "accepted 7-2 bob BUY 1.000 @ 99.00 IOC",
        "expired 7-2 bob 1.000 IOC",
    ]


@pytest.mark.parametrize("command", [
    pytest.param(buy("alice", "1", at="100.00"), id="self-trade-cancel-newest"),
    pytest.param(replace("alice", "7-1", "1"), id="replace-to-same-qty-and-price"),
])
def test_a_level_the_command_did_not_change_gets_no_depth_update(market, command):
    """Core bug: the matcher publishes a DepthUpdate for a level whose quantity did not change.

    matching.py promises "one DepthUpdate per price level the command changed". Here alice's ask at
    100.00 stays 1.000 (her buy is canceled by self-trade prevention before trading; her replace
    changes nothing), yet both commands publish "depth SELL 100.00 1.000". _match marks a level
    touched before the self-trade check, and _replace always marks the order's level.
    """
    market.run(sell("alice", "1", at="100.00"))
    events = market.handle(command)
    assert [line for line in story(events) if line.startswith("depth")] == []
    assert market.book() == drawn("| 100.00 | 1.000 alice")


# -- determinism and replay ----------------------------------------------------------------------

def rich_session():
    """A session that uses every command, time in force, STP mode and both instruments."""
    return [
        sell("alice", "1", at="100.00", cid="a1", ts=1),
        sell("bob", "2", at="100.50", ts=2),
        sell("carol", "1.5", at="101.00", tif="POST", ts=3),
        buy("dave", "1", at="99.00", ts=4),
        buy("erin", "0.5", at="99.50", cid="e1", ts=5),
        buy("dave", "2", at="100.50", ts=6),  # sweeps two levels
        buy("frank", "5", tif="IOC", ts=7),  # market: remainder expires
        sell("alice", "3", at="2000.00", symbol="ETH-USD", ts=8),
        buy("alice", "1", at="2000.00", symbol="ETH-USD", ts=9),  # DECREMENT, the ETH default
        buy("bob", "1", at="2000.00", symbol="ETH-USD", tif="FOK", ts=10),
        buy("bob", "9", at="2000.00", symbol="ETH-USD", tif="FOK", ts=11),  # expires, nothing touched
        sell("bob", "1", at="105.00", ts=12),
        sell("carol", "1", at="104.00", stp="CANCEL_OLDEST", ts=13),
        buy("carol", "1.5", at="105.00", stp="CANCEL_OLDEST", ts=14),
        sell("dave", "1", at="99.00", tif="POST", ts=15),  # would cross
        replace("dave", "7-4", "0.5", ts=16),  # keeps priority
        replace("erin", "7-5", "1", at="99.40", ts=17),  # loses priority
        replace("erin", "7-5", "1", at="99.00", ts=18),
        sell("dave", "1", at="99.00", stp="CANCEL_BOTH", ts=19),
        cancel("erin", cid="e1", symbol="", ts=20),
        cancel("bob", "7-1", ts=21),  # alice's, and filled
        sell("frank", "2", at="110.00", cid="f1", ts=22),
        buy("frank", "1", at="90.00", ts=23),
        cancel_all("frank", ts=24),
        buy("alice", "4", at="2100.00", symbol="ETH-USD", ts=25),
        sell("bob", "2", tif="FOK", symbol="ETH-USD", ts=26),
        cancel_all("bob", symbol="ETH-USD", ts=27),
    ]


def test_same_commands_give_the_same_event_bytes():
    first, second = Market(), Market()
    for command in rich_session():
        assert msgspec.msgpack.encode(first.handle(command)) == msgspec.msgpack.encode(second.handle(command))
    assert msgspec.msgpack.encode(first.events) == msgspec.msgpack.encode(second.events)
    assert first.matcher.digest() == second.matcher.digest()


def test_rich_session_touches_every_kind_of_event():
    market = Market()
    market.run(*rich_session())
    kinds = {type(e).__name__ for e in market.events}  # the core's: what matching decided, no more
    assert kinds == {"OrderAccepted", "OrderRejected", "OrderFilled", "Trade", "OrderCanceled", "OrderReplaced",
                     "OrderReduced", "OrderExpired"}


def test_rebuild_from_events_reaches_the_live_digest_after_every_command():
    market = Market()
    for command in rich_session():
        market.handle(command)
        rebuilt = Matcher.rebuild(7, [BTC, ETH], market.events)
        assert rebuilt.digest() == market.matcher.digest(), f"after {command!r}"


def test_rebuilt_matcher_goes_on_exactly_like_the_live_one():
    live = Market()
    live.run(*rich_session())
    rebuilt = Matcher.rebuild(7, [BTC, ETH], live.events)
    more = [buy("zed", "10", at="200.00", ts=30), sell("alice", "5", at="2100.00", symbol="ETH-USD", ts=31),
            sell("zed", "2", tif="IOC", ts=32), cancel_all("alice", ts=33)]
    for command in more:
        assert msgspec.msgpack.encode(rebuilt.handle(command)) == msgspec.msgpack.encode(live.matcher.handle(command))


def test_rebuild_refuses_events_with_a_gap_in_seq():
    market = Market()
    market.run(*rich_session()[:3])
    with pytest.raises(ValueError, match="does not follow"):
        Matcher.rebuild(7, [BTC, ETH], market.events[:1] + market.events[2:])
