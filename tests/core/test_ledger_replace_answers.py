"""Each answer of the engine to a replace settles the replace it is for.

The engine answers a replace with ``OrderReplaced`` or ``OrderRejected``, whose ``ts_event`` is the
replace's ``ts_received``; it answers none of those it drops as too late (and none lost with it).
Settlement used to take every answer for the oldest replace still on its way: after a replace that
was never answered, each later one was settled with the extra of the one before, and the order's
next fill stopped the shard ("spent more than it held"), on every restart again."""

from ledger_scenario import Venue

from exchange.core.ledger_messages import HoldOrder, HoldReplace, OrderHeld, ReplaceHeld
from exchange.core.messages import OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder
from exchange.core.orders import Side

S = 10**9  # ns


def test_a_replace_after_one_the_engine_never_answered_is_settled_with_its_own_extra():
    venue = Venue()
    venue.deposit("alice", "USD", 10_000)
    venue.deposit("bob", "BTC", 10_000)
    _, events = venue.buy("alice", 1, 100)  # holds 100 cents
    order_id = events[0].order_id
    ledger = venue.shard("alice")
    [lost] = ledger.handle(HoldReplace(venue.replace_command("alice", order_id, 2)))
    assert isinstance(lost, ReplaceHeld) and lost.entry.rows[1].delta == 100  # never reaches the engine
    [landed] = ledger.handle(HoldReplace(venue.replace_command("alice", order_id, 10)))
    assert isinstance(landed, ReplaceHeld) and landed.entry.rows[1].delta == 900
    assert [type(e) for e in venue.engine(landed.command)] == [OrderReplaced]
    # 10 lots at 100 hold 1000; the lost replace's 100 comes back, as it will never be answered
    assert venue.balance("alice") == (10_000 - 1000, 1000)
    assert ledger.holds[("alice", ledger.holds[ledger.orders[order_id]].client_order_id)].pending == ()
    assert venue.problems() == []
    venue.sell("bob", 10, 100)
    assert venue.balance("alice") == (10_000 - 1000, 0)
    assert venue.balance("alice", "BTC") == (10 * 1000, 0)
    assert venue.problems() == []


def test_a_refused_replace_after_one_the_engine_never_answered_gives_back_both_extras():
    venue = Venue()
    venue.deposit("alice", "USD", 10_000)
    venue.deposit("bob", "BTC", 10_000)
    _, events = venue.buy("alice", 3, 100)
    order_id = events[0].order_id
    venue.sell("bob", 2, 100)  # 2 of alice's 3 lots fill: 1 left, 100 held for it
    assert venue.balance("alice") == (10_000 - 300, 100)
    ledger = venue.shard("alice")
    [lost] = ledger.handle(HoldReplace(venue.replace_command("alice", order_id, 5)))  # never answered
    assert lost.entry.rows[1].delta == 200  # 2 lots more at 100
    assert venue.balance("alice") == (10_000 - 500, 300)
    # a replace to 2 lots, what is filled already: the engine refuses it, which gives back its
    # extra (none) and the lost replace's
    [too_small] = ledger.handle(HoldReplace(venue.replace_command("alice", order_id, 2)))
    assert [type(e) for e in venue.engine(too_small.command)] == [OrderRejected]
    assert venue.balance("alice") == (10_000 - 300, 100)
    assert venue.problems() == []


def test_a_refused_replace_of_an_ended_order_leaves_a_new_order_with_its_client_order_id_alone():
    """The refusal names the ended order (its order id and client order id). The user has meanwhile
    reused the client order id for a new order B (the engine allows it once the id's window has
    passed, the ledger once the first order's hold is gone) and replaced B: B's replace is still on
    its way, and its extra stays held until it lands."""
    venue = Venue()
    venue.deposit("alice", "USD", 10_000)
    venue.deposit("bob", "BTC", 10_000)
    ledger = venue.shard("alice")
    [a] = ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100, client_order_id="x",
                                             ts_received=1 * S)))
    a_id = venue.engine(a.command)[0].order_id
    # six minutes later, REPLACE #x of A, as the gateway sends it (with A's order id)
    [ra] = ledger.handle(HoldReplace(ReplaceOrder("alice", "BTC-USD", 2, None, a_id, "x", 360 * S), "x"))
    assert isinstance(ra, ReplaceHeld)
    [sell] = venue.shard("bob").handle(HoldOrder(PlaceOrder("bob", "BTC-USD", Side.SELL, 1, 100,
                                                            ts_received=360 * S)))
    venue.engine(sell.command)  # A fills in full before its replace lands: all of A comes back
    assert ledger.holds == {}
    [b] = ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100, client_order_id="x",
                                             ts_received=361 * S)))
    assert isinstance(b, OrderHeld)
    [rb] = ledger.handle(HoldReplace(ReplaceOrder("alice", "BTC-USD", 3, None, "", "x", 361 * S + 1), "x"))
    assert isinstance(rb, ReplaceHeld) and rb.entry.rows[1].delta == 200
    assert venue.balance("alice") == (10_000 - 100 - 300, 300)
    refused = venue.engine(ra.command)  # A is not open
    assert [type(e) for e in refused] == [OrderRejected] and refused[0].order_id == a_id
    assert venue.balance("alice") == (10_000 - 100 - 300, 300)  # nothing of B moved
    venue.engine(b.command)
    assert [type(e) for e in venue.engine(rb.command)] == [OrderReplaced]
    assert venue.balance("alice") == (10_000 - 100 - 300, 300)  # A's lot paid, B's 3 lots held
    assert venue.problems() == []
