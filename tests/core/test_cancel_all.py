"""Cancel-all and the book's per-user order index it reads.

``OrderBook`` keeps each user's open orders on the book in a queue, in the order they entered
it (``orders_of``); a cancel-all cancels exactly those, oldest first, whatever else rests on the book. The tables
below run sessions that reach every path by which an order enters or leaves a book (rest, fill as
maker, fill as taker, cancel, replace with and without priority, expiry, every self-trade
prevention mode) and require, after every command, that the index is a scan of the book.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, OrderCanceled
from exchange.core.orders import CancelReason
from scenario import BTC, ETH, Market, buy, cancel, cancel_all, replace, sell


def scanned(book) -> dict[str, list[str]]:
    """Each user's open orders on ``book``, found by walking every order, in the order they entered it."""
    users: dict[str, list[str]] = {}
    for order in book.orders.values():
        users.setdefault(order.user, []).append(order.order_id)
    return users


def indexed(book) -> dict[str, list[str]]:
    return {user: [order.order_id for order in book.orders_of(user)] for user in book.user_last}


def assert_index_is_the_book(matcher: Matcher) -> None:
    for book in matcher.books.values():
        assert indexed(book) == scanned(book), book.symbol
        for user in book.user_last:
            assert all(book.orders[order.order_id] is order for order in book.orders_of(user))


# Each row: a session, then whose cancel-all (user, symbol), and the order ids it cancels, in order.
SESSIONS = {
    "no orders at all": ([], ("alice", None), []),
    "a user with no orders on a full book": (
        [buy("bob", "1", at="100.00"), sell("carol", "1", at="101.00"), buy("dave", "2", at="99.00")],
        ("alice", None), []),
    "only the user's own, oldest first": (
        [buy("alice", "1", at="100.00"), buy("bob", "1", at="100.00"), sell("alice", "1", at="105.00"),
         buy("alice", "1", at="101.00")],
        ("alice", None), ["7-1", "7-3", "7-4"]),
    "one symbol only": (
        [buy("alice", "1", at="100.00"), buy("alice", "1", at="10.00", symbol="ETH-USD")],
        ("alice", "ETH-USD"), ["7-2"]),
    "every book, in instrument order": (
        [buy("alice", "1", at="10.00", symbol="ETH-USD"), buy("alice", "1", at="100.00")],
        ("alice", None), ["7-2", "7-1"]),
    "filled makers are gone, partly filled ones stay": (
        [sell("alice", "1", at="100.00"), sell("alice", "2", at="100.00"), sell("alice", "1", at="101.00"),
         buy("bob", "2", at="100.00")],
        ("alice", None), ["7-2", "7-3"]),
    "a resting taker remainder is the user's": (
        [sell("bob", "1", at="100.00"), buy("alice", "3", at="100.00")],
        ("alice", None), ["7-2"]),
    "canceled orders are gone": (
        [buy("alice", "1", at="100.00"), buy("alice", "1", at="100.00"), cancel("alice", "7-1")],
        ("alice", None), ["7-2"]),
    "a replace that loses priority moves to the back": (
        [buy("alice", "1", at="100.00"), buy("alice", "1", at="99.00"), replace("alice", "7-1", "1", at="98.00")],
        ("alice", None), ["7-2", "7-1"]),
    "a replace that keeps priority keeps its place": (
        [buy("alice", "2", at="100.00"), buy("alice", "1", at="99.00"), replace("alice", "7-1", "1")],
        ("alice", None), ["7-1", "7-2"]),
    "IOC and FOK never rest": (
        [sell("bob", "1", at="100.00"), buy("alice", "2", at="100.00", tif="IOC"),
         buy("alice", "5", at="100.00", tif="FOK"), buy("alice", "1", at="90.00")],
        ("alice", None), ["7-4"]),
    "self-trade CANCEL_OLDEST takes the maker out": (
        [sell("alice", "1", at="100.00"), sell("bob", "1", at="100.00"),
         buy("alice", "1", at="100.00", stp="CANCEL_OLDEST")],
        ("alice", None), []),
    "self-trade CANCEL_BOTH takes both out": (
        [sell("alice", "1", at="100.00"), sell("alice", "1", at="101.00"),
         buy("alice", "1", at="100.00", stp="CANCEL_BOTH")],
        ("alice", None), ["7-2"]),
    "self-trade DECREMENT reduces the larger, which stays": (
        [sell("alice", "3", at="10.00", symbol="ETH-USD"), buy("alice", "1", at="10.00", symbol="ETH-USD")],
        ("alice", None), ["7-1"]),
    "self-trade DECREMENT cancels the smaller maker": (
        [sell("alice", "1", at="10.00", symbol="ETH-USD"), buy("alice", "3", at="10.00", symbol="ETH-USD")],
        ("alice", None), ["7-2"]),
    "another user's cancel-all leaves the user's": (
        [buy("alice", "1", at="100.00"), buy("bob", "1", at="100.00")],
        ("bob", None), ["7-2"]),
}


@pytest.mark.parametrize("session", SESSIONS.values(), ids=SESSIONS)
def test_cancel_all_cancels_exactly_the_users_open_orders_and_the_index_follows_the_book(market, session):
    setup, (user, symbol), expected = session
    for command in setup:
        market.handle(command)
        assert_index_is_the_book(market.matcher)
    others = {symbol: scanned(book) for symbol, book in market.matcher.books.items()}
    events = market.handle(cancel_all(user, symbol))
    assert [e.order_id for e in events if isinstance(e, OrderCanceled)] == expected
    assert_index_is_the_book(market.matcher)
    for name, book in market.matcher.books.items():  # nobody else's orders moved
        left = scanned(book)
        if symbol is None or name == symbol:
            assert user not in left
        assert {u: ids for u, ids in left.items() if u != user} == \
            {u: ids for u, ids in others[name].items() if u != user}


def test_a_cancel_all_by_a_user_with_no_orders_has_no_events_on_a_big_book(market):
    for n in range(200):
        market.handle((buy if n % 2 else sell)(f"mm{n % 7}", "1", at=f"{(90 if n % 2 else 110) + n % 9}.00"))
    seq = market.matcher.seq
    assert market.handle(cancel_all("nobody")) == []
    assert market.matcher.seq == seq and "nobody" not in market.matcher.books["BTC-USD"].user_last


SETUP = [buy("alice", "1", at="100.00"), buy("bob", "1", at="100.00"), buy("alice", "1", at="101.00"),
         sell("alice", "1", at="110.00"), buy("alice", "1", at="99.00"), sell("bob", "1", at="109.00"),
         replace("alice", "7-1", "1", at="98.00"), buy("alice", "1", at="10.00", symbol="ETH-USD")]


@pytest.mark.parametrize("how", ["checkpoint", "replay"])
def test_a_restored_matcher_cancels_in_the_same_order_as_the_live_one(how):
    """Oldest first is the order each order entered its book, not price priority: a restart keeps it."""
    live = Matcher(7, [BTC, ETH])
    events = [e for command in SETUP for e in live.handle(command)]
    if how == "checkpoint":
        restored = checkpoint.restore([BTC, ETH], checkpoint.take(live))
    else:
        restored = Matcher.rebuild(7, [BTC, ETH], events)
    assert_index_is_the_book(restored)
    assert restored.handle(cancel_all("alice")) == live.handle(cancel_all("alice"))


def test_a_cancel_all_narrowed_to_some_orders_cancels_them_oldest_first_too(market):
    """The gateway's cancel on disconnect names the session's orders in the order they were placed; a
    replace that lost priority entered the book again, so the book's order is another."""
    market.run(buy("alice", "1", at="90.00"), buy("alice", "1", at="91.00"), buy("alice", "1", at="92.00"),
               replace("alice", "7-1", "2", at="90.00"))  # 7-1 loses its priority: now the newest
    narrowed = CancelAll("alice", None, 0, CancelReason.DISCONNECT, ("7-1", "7-3", "7-2"))
    assert [e.order_id for e in market.handle(narrowed) if isinstance(e, OrderCanceled)] == ["7-2", "7-3", "7-1"]


def test_an_order_gone_from_the_book_links_to_no_other(market):
    """Gone orders chained to newer ones would be freed one inside the other (see the next test)."""
    market.run(sell("alice", "1", at="100.00"), sell("alice", "1", at="100.00"), sell("alice", "1", at="100.00"),
               sell("alice", "1", at="101.00"))
    book = market.matcher.books["BTC-USD"]
    first, second, third, fourth = (book.orders[f"7-{n}"] for n in range(1, 5))
    market.run(buy("bob", "1", at="100.00"), cancel("alice", "7-2"), cancel_all("alice"))
    for gone in (first, second, third, fourth):
        assert gone.next is None and gone.user_next is None and not gone.live


def test_a_cancel_all_of_a_quarter_million_orders_does_not_crash_the_engine():
    """The canceled orders, freed together at the end of the command, were still chained to each
    other: freeing the chain recursed once per order and overflowed the C stack (SIGSEGV)."""
    script = (
        "from exchange.core.instruments import Instrument\n"
        "from exchange.core.matching import Matcher\n"
        "from exchange.core.messages import CancelAll, PlaceOrder\n"
        "from exchange.core.orders import Side\n"
        "m = Matcher(7, [Instrument('X', tick_size='1', lot_size='1')])\n"
        "for _ in range(250_000):\n"
        "    m.handle(PlaceOrder('alice', 'X', Side.SELL, 1, 100))\n"
        "print(len(m.handle(CancelAll('alice', 'X'))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.strip() == "250000", (done.returncode, done.stderr[-500:])
