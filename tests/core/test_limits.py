"""Risk limits in the matcher: max notional, the price band, open orders per user, and cancel-all
narrowed to some orders (cancel on disconnect). A refused command changes nothing; a command that
passes gives exactly the events it gave before limits existed."""

from __future__ import annotations

import msgspec
import pytest

from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, PlaceOrder
from exchange.core.orders import CancelReason, Side, TimeInForce
from scenario import BTC, ETH, Market, buy, cancel, cancel_all, drawn, replace, sell

LIMITED = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001", max_qty="100", max_price="1000000",
                     max_notional="100000", price_band="10", reference_price="40000", max_open_orders=3)


@pytest.fixture
def limited() -> Market:
    return Market(instruments=(LIMITED, ETH))


def refused(market: Market, command) -> str:
    """Run a command that must be refused and change nothing; return ``CODE: reason``."""
    before = {symbol: book.state() for symbol, book in market.matcher.books.items()}
    rejected, = market.handle(command)
    assert type(rejected).__name__ == "OrderRejected", rejected
    assert {symbol: book.state() for symbol, book in market.matcher.books.items()} == before
    return f"{rejected.code.value}: {rejected.reason}"


# -- max notional --------------------------------------------------------------------------------

def test_an_order_above_max_notional_is_refused(limited):
    assert refused(limited, buy("alice", "2.501", at="40000.00")) == (
        "MAX_NOTIONAL: notional 100040 (2.501 at 40000.00) is above the maximum 100000")
    assert limited(buy("alice", "2.5", at="40000.00"))[0].startswith("accepted 7-1")  # exactly the maximum


def test_a_replace_above_max_notional_is_refused_and_a_reduction_is_always_allowed(limited):
    limited.run(buy("alice", "2.5", at="40000.00"))
    assert refused(limited, replace("alice", "7-1", "3")).startswith("MAX_NOTIONAL: notional 120000")
    assert refused(limited, replace("alice", "7-1", "2.5", at="40000.01")).startswith("MAX_NOTIONAL")
    assert limited(replace("alice", "7-1", "1"))[0].startswith("replaced 7-1 alice 1.000")


def test_market_orders_are_not_held_to_max_notional(limited):
    limited.run(sell("bob", "2", at="40000.00"))
    assert limited(buy("alice", "2", tif="IOC"))[0] == "accepted 7-2 alice BUY 2.000 @ MARKET IOC"


# -- price band ----------------------------------------------------------------------------------

def test_before_any_trade_the_band_is_around_the_reference_price(limited):
    assert refused(limited, buy("alice", "1", at="44000.01")) == (
        "PRICE_BAND: price 44000.01 is more than 10% from the reference price 40000.00;"
        " allowed 36000.00 to 44000.00")
    assert refused(limited, sell("alice", "1", at="35999.99")).startswith("PRICE_BAND")
    limited.run(buy("alice", "0.1", at="44000.00"), sell("alice", "0.1", at="36000.00"))


def test_after_a_trade_the_band_follows_the_last_trade(limited):
    limited.run(sell("bob", "1", at="42000.00"), buy("alice", "1", at="42000.00"))
    assert limited.matcher.books["BTC-USD"].last_price == 4200000
    assert refused(limited, buy("alice", "1", at="46200.01")).startswith(
        "PRICE_BAND: price 46200.01 is more than 10% from the last trade 42000.00")
    limited.run(buy("alice", "1", at="46200.00"))


def test_a_replace_to_a_price_outside_the_band_is_refused_but_a_quantity_change_is_not(limited):
    limited.run(buy("alice", "1", at="40000.00"), sell("bob", "0.1", at="40000.00"))  # trades at 40000
    assert refused(limited, replace("alice", "7-1", "1", at="30000.00")).startswith("PRICE_BAND")
    limited.run(sell("bob", "0.1", at="43000.00"), buy("carol", "0.1", at="43000.00"))
    limited.run(sell("bob", "0.1", at="47000.00"), buy("carol", "0.1", at="47000.00"))  # band now 42300..51700
    assert limited(replace("alice", "7-1", "0.5"))[0].startswith("replaced 7-1 alice 0.500 @ 40000.00")


def test_without_a_trade_or_a_reference_there_is_no_band_yet():
    market = Market(instruments=(Instrument("BTC-USD", "0.01", "0.001", price_band="1"), ETH))
    market.run(buy("alice", "1", at="1.00"), sell("bob", "1", at="900000.00"))
    market.run(sell("bob", "1", at="1.00"))
    assert refused(market, buy("alice", "1", at="1.02")).startswith("PRICE_BAND")


def test_the_last_trade_price_survives_replay_and_checkpoints(limited):
    limited.run(sell("bob", "1", at="41000.00"), buy("alice", "0.5", at="41000.00"))
    rebuilt = Matcher.rebuild(7, (LIMITED, ETH), limited.events)
    restored = checkpoint.restore((LIMITED, ETH), checkpoint.take(limited.matcher))
    for matcher in (rebuilt, restored):
        assert matcher.books["BTC-USD"].last_price == 4100000
        assert matcher.digest() == limited.matcher.digest()


# -- open orders per user ------------------------------------------------------------------------

def test_a_user_may_rest_at_most_max_open_orders_on_an_instrument(limited):
    limited.run(*(buy("alice", "0.1", at=f"{39000 + n}.00") for n in range(3)))
    assert refused(limited, buy("alice", "0.1", at="39010.00")) == (
        "MAX_OPEN_ORDERS: user alice has 3 open orders on BTC-USD, the most allowed; cancel one first")
    assert refused(limited, sell("alice", "0.1", at="41000.00", tif="POST")).startswith("MAX_OPEN_ORDERS")
    limited.run(buy("bob", "0.1", at="39000.00"))  # bob has his own count
    limited.run(sell("bob", "0.1", at="41000.00"), buy("alice", "0.1", at="41000.00", tif="IOC"))  # never rests
    limited.run(sell("bob", "0.1", at="39002.00"))  # fills alice's best bid: she has 2 open orders now
    assert limited(buy("alice", "0.1", at="39010.00"))[0].startswith("accepted")


def test_the_users_own_limit_in_the_command_applies_too(market):
    limited = [PlaceOrder("alice", "BTC-USD", Side.BUY, 100, 100 + n, TimeInForce.GTC, max_open_orders=2)
               for n in range(3)]
    market.run(*limited[:2])
    assert refused(market, limited[2]).startswith("MAX_OPEN_ORDERS: user alice has 2 open orders on BTC-USD")
    market.run(buy("alice", "0.1", at="1.00"))  # without the field: no limit from the user


def test_a_users_own_limit_out_of_range_is_refused_or_read_as_it_says_never_raised(market):
    """Defect: a negative or huge limit (which no gateway sends, but a direct sender to an engine may)
    raised inside the matcher, and the engine died with the other commands of its batch unjournaled."""
    negative = PlaceOrder("mallory", "BTC-USD", Side.BUY, 100, 100, TimeInForce.GTC, max_open_orders=-1)
    assert refused(market, negative) == "MALFORMED: max_open_orders -1 is negative; 0 means no limit of the user's"
    huge = PlaceOrder("mallory", "BTC-USD", Side.BUY, 100, 100, TimeInForce.GTC, max_open_orders=2**64 - 1)
    assert market(huge)[0].startswith("accepted")  # a limit no user can reach


def test_a_users_limit_counts_the_orders_that_rested_before_any_limit_was_asked_for(market):
    # The book indexes every user's open orders (cancel-all reads it too), limit or not: the first
    # limited command counts what is already resting, and every later add, fill and cancel keeps it.
    market.run(*(buy("alice", "0.1", at=f"{100 + n}.00") for n in range(3)), sell("bob", "0.1", at="200.00"))
    limited = PlaceOrder("alice", "BTC-USD", Side.BUY, 100, 9000, TimeInForce.GTC, max_open_orders=3)
    assert refused(market, limited).startswith("MAX_OPEN_ORDERS: user alice has 3 open orders")
    market.run(sell("carol", "0.1", at="102.00"))  # fills alice's best bid: 2 left
    market.run(limited)
    assert refused(market, limited).startswith("MAX_OPEN_ORDERS")
    market.run(cancel("alice", "7-1"))
    market.run(limited)
    book = market.matcher.books["BTC-USD"]
    assert (book.open_orders_of("alice"), book.open_orders_of("bob"), book.open_orders_of("carol")) == (3, 1, 0)


# -- events unchanged for commands within the limits ---------------------------------------------

def test_commands_within_the_limits_give_byte_identical_events():
    wide = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001", max_qty="100", max_price="1000000",
                      max_notional="1000000000", price_band="50", reference_price="40000",
                      max_open_orders=1000)
    commands = [sell("bob", "1", at="40000.00"), buy("alice", "0.4", at="40000.00"),
                buy("alice", "2", at="39990.00"), replace("alice", "7-3", "1", at="39995.00"),
                sell("carol", "3", at="39000.00"), cancel_all("alice"), buy("dave", "0.1", tif="IOC")]
    plain, limited = Market(instruments=(BTC, ETH)), Market(instruments=(wide, ETH))
    encode = msgspec.msgpack.encode
    for command in commands:
        assert encode(plain.handle(command)) == encode(limited.handle(command))


# -- cancel-all narrowed to some orders ----------------------------------------------------------

def test_cancel_all_with_order_ids_cancels_only_those_of_the_users_open_orders(market):
    market.run(buy("alice", "1", at="99.00"), buy("alice", "1", at="98.00"), buy("bob", "1", at="97.00"),
               sell("alice", "1", at="2000.00", symbol="ETH-USD"))
    command = CancelAll("alice", None, 0, CancelReason.DISCONNECT, ("7-2", "7-3", "7-4", "7-2", "7-99"))
    assert market(command)[:2] == ["canceled 7-2 alice 1.000 DISCONNECT",
                                   "depth BUY 98.00 0.000"]
    assert [e for e in market.events[-4:] if "DISCONNECT" in repr(e)][-1].order_id == "7-4"
    assert market.book() == drawn("""
        1.000 alice | 99.00 |
          1.000 bob | 97.00 |
    """)


def test_cancel_all_keeps_its_old_events_without_the_new_fields(market):
    market.run(buy("alice", "1", at="99.00"))
    assert market(cancel_all("alice"))[0] == "canceled 7-1 alice 1.000 CANCEL_ALL"
