"""A ledger shard's turns in memory: nothing leaves before its batch is durable, and in order."""

from __future__ import annotations

import time

import msgspec

from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_messages import (
    DepositFunds, FundsDeposited, HoldOrder, HoldRejected, OrderHeld, ReleaseHold, TransferRejected, TransferRepeated,
    WithdrawFunds,
)
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, OrderAccepted, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from exchange.errors import RejectCode
from exchange.journal.readers import EnginePosition
from exchange.ledger.shard import Shard
from exchange.testing.mesh import toy_config
from exchange.wire.messages import (
    Balance, Balances, Decoder, Durable, Entry, EventBatch, GetBalances, Request, encode, private_topic,
)

CONFIG = toy_config(accounts=True)
TERMS = CONFIG.terms()
OWNER = {symbol: e.name for e in CONFIG.engines for symbol in e.instruments}
USERS = ("alice", "bob", "carol")


def shard_for(user: str, shards: int = 2, followed: tuple[str, ...] = USERS) -> Shard:
    """The shard of ``user``, with a notifier asking for the balances of the ``followed`` users."""
    ledger = Ledger(shard_of(user, shards), shards, TERMS.values(), CONFIG.asset_map().values())
    shard = Shard(ledger, 1, EnginePosition(), OWNER)
    shard.followed.update(private_topic(u) for u in followed)
    return shard


def usd(text: str) -> int:
    return CONFIG.asset_map()["USD"].to_units(text)


def frame(*requests: Request) -> list[bytes]:
    return [encode(list(requests))]


def buy(user: str, qty: int, price: int, cid: str = "", symbol: str = "BTC-USD", **kw) -> PlaceOrder:
    kw.setdefault("ts_received", time.time_ns())
    return PlaceOrder(user, symbol, Side.BUY, qty, price, client_order_id=cid, **kw)


def durable(shard: Shard) -> Durable:
    return Durable(shard.name, shard.epoch, shard.batch, shard.ledger.seq)


def funded(user: str, usd_text: str = "1000") -> Shard:
    shard = shard_for(user)
    shard.handle_own(DepositFunds(user, "USD", usd(usd_text), "d1"))
    shard.seal()
    shard.on_durable(durable(shard))
    return shard


def test_a_held_order_goes_to_its_engine_at_once_naming_the_batch_that_holds_its_hold():
    shard = funded("alice")
    # 1 lot of 0.0001 BTC at 100.00 (10000 ticks): 0.01 USD plus the taker fee, rounded up
    shard.handle_requests([frame(Request("gw/1", 7, 41, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"))])
    batch_frame, now = shard.seal()
    batch = Decoder(EventBatch).decode(batch_frame)
    assert batch.engine == "ledger-" + str(shard.ledger.shard) and batch.batch == 2
    assert [type(e) for e in batch.entries[0].events] == [OrderHeld]
    [request] = now.forwards["e1"]
    assert (request.gateway, request.session, request.request_id) == ("gw/1", 7, 41)
    assert request.command == buy("alice", 1, 10000, "a1", ts_received=request.command.ts_received)
    assert request.after == (shard.name, shard.epoch, 2)  # the journal writes the engine's batch after it
    assert now.replies == [] and now.balances == {}  # what users are told waits for the watermark
    released = shard.on_durable(durable(shard))
    assert released.forwards == {} and released.balances["alice"].balances[-1].asset == "USD"
    assert shard.ledger.balance("alice", "USD")[1] == 10000 + 3  # 0.01 USD + 2.5 bps, rounded up to 3 units


def test_balances_of_a_user_nobody_follows_are_neither_built_nor_held_back():
    shard = shard_for("alice", followed=())
    shard.handle_own(DepositFunds("alice", "USD", usd("1000"), "d1"))
    shard.handle_requests([frame(Request("gw/1", 7, 41, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"))])
    _, now = shard.seal()
    assert list(now.forwards) == ["e1"] and not now.balances
    assert shard.unreleased[-1][1] == []  # nothing waits for the watermark
    assert shard.on_durable(durable(shard)).balances == {}
    shard.handle_requests([frame(Request("gw/1", 7, 42, HoldOrder(buy("alice", 1, 10000, "a2")), "e1"))])
    shard.seal()
    assert shard.on_durable(durable(shard)).balances == {}


def test_a_notifier_that_asks_for_a_users_balances_gets_them_as_they_are_then_after_each_change():
    """Also what a notifier asks again once this shard has restarted: the balances changed while the
    shard started (opening balances, the settlement it caught up on) reach the user that way."""
    shard = shard_for("alice", followed=())
    shard.handle_own(DepositFunds("alice", "USD", usd("1000"), "opening"))  # at the start: nobody asks yet
    shard.seal()
    assert shard.on_durable(durable(shard)).balances == {}
    shard.follow(private_topic("alice"))
    _, now = shard.seal()  # nothing waits for a watermark: the balances go at once
    assert now.balances["alice"] == shard.balances("alice")
    assert dict((b.asset, b.available) for b in now.balances["alice"].balances)["USD"] == usd("1000")
    shard.handle_requests([frame(Request("gw/1", 7, 41, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"))])
    shard.seal()
    assert shard.on_durable(durable(shard)).balances["alice"].user == "alice"
    shard.unfollow(private_topic("alice"))
    shard.handle_own(DepositFunds("alice", "USD", usd("1"), "d2"))
    shard.seal()
    assert shard.on_durable(durable(shard)).balances == {}


def test_a_subscription_to_a_user_of_another_shard_or_no_user_publishes_nothing():
    shard = shard_for("alice", followed=())
    other = next(u for u in ("bob", "carol", "dave", "erin") if shard_of(u, 2) != shard.ledger.shard)
    for topic in (private_topic(other), b"md.BTC-USD.trade|", b"priv.alice"):
        shard.follow(topic)
    assert shard.followed == set()
    assert shard.seal()[1] is None
    shard.follow(b"")  # everything, as a notifier of an older version asks
    shard.handle_own(DepositFunds("alice", "USD", usd("1"), "d2"))
    shard.seal()
    assert "alice" in shard.on_durable(durable(shard)).balances


def test_short_of_funds_is_answered_once_durable_and_nothing_goes_to_the_engine():
    shard = funded("alice", "1")
    shard.handle_requests([frame(Request("gw/1", 7, 42, HoldOrder(buy("alice", 1, 4_300_000, "big")), "e1"))])
    assert shard.seal()[1] is None  # nothing at once
    released = shard.on_durable(durable(shard))
    assert released.forwards == {}
    [reply] = released.replies
    [event] = reply.events
    assert isinstance(event, HoldRejected) and event.code is RejectCode.INSUFFICIENT_FUNDS
    assert event.reason == "needs 4.301075 USD, 1.000000 available" and event.client_order_id == "big"


def test_a_deposit_too_big_for_the_journal_is_refused_and_the_shard_goes_on():
    """10**19 units fit the wire's unsigned 64 bits, but *external would go below the journal's
    signed 64: the shard used to apply it and then die sealing its batch, on every start."""
    shard = funded("alice", "1")
    shard.handle_requests([frame(Request("gw/1", 7, 43, DepositFunds("alice", "USD", 10**19, "big"), ""))])
    shard.seal()
    [reply] = shard.on_durable(durable(shard)).replies
    [event] = reply.events
    assert type(event).__name__ == "TransferRejected" and event.code is RejectCode.MALFORMED
    assert shard.ledger.balance("alice", "USD") == (usd("1"), 0)


def test_a_market_buy_with_funds_goes_on_with_its_budget_in_lots_times_ticks():
    shard = funded("alice")
    order = PlaceOrder("alice", "BTC-USD", Side.BUY, 10, None, TimeInForce.IOC, client_order_id="m1",
                       ts_received=time.time_ns())
    shard.handle_requests([frame(Request("gw/1", 7, 43, HoldOrder(order, usd("100")), "e1"))])
    [request] = shard.seal()[1].forwards["e1"]
    assert request.command.funds == TERMS["BTC-USD"].budget(usd("100")) > 0


def test_a_market_fill_or_kill_buy_goes_on_without_a_budget_holding_the_most_it_can_cost():
    """A budget would make the engine refuse it (a fill or kill cannot be held to one): it holds what
    its quantity costs at the instrument's max_price, with the taker fee, and goes on as it came."""
    terms = TERMS["BTC-USD"]
    most = terms.with_taker_fee(terms.notional(10, terms.instrument.max_price))
    rich, poor = funded("alice", "2000000"), funded("alice", "1000000")  # it needs 1,000,250.00
    order = PlaceOrder("alice", "BTC-USD", Side.BUY, 10, None, TimeInForce.FOK, client_order_id="f1",
                       ts_received=time.time_ns())
    rich.handle_requests([frame(Request("gw/1", 7, 44, HoldOrder(order), "e1"))])
    [request] = rich.seal()[1].forwards["e1"]
    assert request.command.funds == 0 and rich.ledger.balance("alice", "USD")[1] == most
    accepted = Matcher(1, [terms.instrument]).handle(request.command)[0]
    assert accepted.code is RejectCode.NO_LIQUIDITY  # the engine's own answer, not BAD_TIF for a budget
    poor.handle_requests([frame(Request("gw/1", 7, 45, HoldOrder(order), "e1"))])
    poor.seal()
    [reply] = poor.on_durable(durable(poor)).replies
    assert reply.events[0].code is RejectCode.INSUFFICIENT_FUNDS


def test_a_cancel_passes_on_right_behind_the_order_before_it():
    shard = funded("alice")
    cancel = CancelOrder("alice", "BTC-USD", client_order_id="a1", ts_received=time.time_ns())
    shard.handle_requests([frame(Request("gw/1", 7, 44, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"),
                                 Request("gw/1", 7, 45, cancel, "e1"))])
    _, now = shard.seal()
    assert [(r.request_id, r.after is not None) for r in now.forwards["e1"]] == [(44, True), (45, False)]
    shard.handle_requests([frame(Request("gw/1", 7, 46, cancel, "e1"))])
    batch_frame, now = shard.seal()
    assert batch_frame is None and [r.request_id for r in now.forwards["e1"]] == [46]


def test_balances_are_answered_from_the_ledger():
    shard = funded("alice", "12.5")
    shard.handle_requests([frame(Request("gw/1", 7, 47, GetBalances("alice", "USD"), ""))])
    _, now = shard.seal()
    [reply] = now.replies
    assert reply.events == [Balances("alice", [Balance("USD", usd("12.5"), 0)])]


def engine_batch(matcher: Matcher, commands: list, ts_matched: int = 0) -> EventBatch:
    first = matcher.seq + 1
    events = [e for c in commands for e in matcher.handle(c)]
    return EventBatch("e1", 1, 1, first, matcher.seq, [Entry("gw", 0, 0, commands[0], events)], b"", ts_matched)


def test_settlement_follows_the_engine_and_asks_for_missing_batches():
    shard = funded("alice")
    shard.handle_requests([frame(Request("gw/1", 7, 48, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"))])
    [request] = shard.seal()[1].forwards["e1"]
    matcher = Matcher(1, [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")])
    skipped = engine_batch(matcher, [PlaceOrder("zed", "ETH-USD", Side.SELL, 1, 1)])
    accepted = engine_batch(matcher, [request.command])
    assert not shard.settle(accepted)  # a gap: batch 1's events never came
    assert shard.settle(skipped) and shard.settle(accepted)
    assert shard.ledger.holds[("alice", "a1")].order_id == ""  # taken in, settled a moment later
    shard.settle_pending()
    hold = shard.ledger.holds[("alice", "a1")]
    assert hold.order_id and isinstance(accepted.entries[0].events[0], OrderAccepted)
    assert ("alice", "a1") not in shard.awaiting


def test_a_hold_whose_order_never_reached_the_engine_is_released_once_the_engine_is_past_its_age():
    shard = funded("alice")
    order = buy("alice", 1, 10000, "lost")
    shard.handle_requests([frame(Request("gw/1", 7, 49, HoldOrder(order), "e1"))])
    shard.seal()
    shard.on_durable(durable(shard))
    age = 5 * 10**9
    assert shard.lost_holds(age) == ([], set())  # young: it may still come
    old = order.ts_received - 2 * age
    shard.awaiting[("alice", "lost")] = ("e1", old)
    assert shard.lost_holds(age) == ([], {"e1"})  # the engine has matched nothing since: nudge it
    shard.engine_clock["e1"] = old + age + 1
    shard.awaiting[("alice", "lost")] = ("e1", old)
    assert shard.lost_holds(age) == ([("alice", "lost")], set())
    shard.handle_own(ReleaseHold("alice", "lost", 0))
    assert shard.ledger.balance("alice", "USD") == (usd("1000"), 0)


def test_a_batch_with_nothing_of_the_shards_users_is_not_journaled_until_everything_is_settled():
    shard = funded("alice")
    other = next(u for u in ("bob", "carol", "dave", "erin") if not shard.ledger.owns(u))
    matcher = Matcher(1, [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")])
    theirs = engine_batch(matcher, [PlaceOrder(other, "ETH-USD", Side.SELL, 1, 1)])
    assert shard.settle(theirs)
    shard.settle_pending()
    assert shard.seal() == (None, None) and shard.settled_to("e1") == matcher.seq
    assert shard.ledger.positions == {}  # nothing journaled for it yet
    shard.settle_pending(everything=True)
    batch_frame, _ = shard.seal()
    [entry] = Decoder(EventBatch).decode(batch_frame).entries
    assert entry.command.first_seq == 1 and entry.command.last_seq == matcher.seq
    assert shard.ledger.positions["e1"][1] == matcher.seq


def test_consecutive_engine_batches_settle_as_one_journaled_command():
    shard = funded("alice")
    shard.handle_requests([frame(Request("gw/1", 7, 50, HoldOrder(buy("alice", 1, 10000, "a1")), "e1"),
                                 Request("gw/1", 7, 51, HoldOrder(buy("alice", 1, 10000, "a2")), "e1"))])
    first, second = shard.seal()[1].forwards["e1"]
    shard.seal()
    matcher = Matcher(1, [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")])
    one, two = engine_batch(matcher, [first.command]), engine_batch(matcher, [second.command])
    assert shard.settle(one) and shard.settle(two) and shard.settle(one)  # the third: taken in already
    shard.settle_pending()
    [entry] = Decoder(EventBatch).decode(shard.seal()[0]).entries
    assert (entry.command.first_seq, entry.command.last_seq) == (one.first_seq, two.last_seq)
    assert all(shard.ledger.holds[("alice", cid)].order_id for cid in ("a1", "a2"))


def test_a_replace_right_after_the_ack_holds_before_the_shard_has_settled_the_acceptance():
    from exchange.core.ledger_messages import HoldReplace
    from exchange.core.messages import ReplaceOrder

    shard = funded("alice")
    shard.handle_requests([frame(Request("gw/1", 7, 60, HoldOrder(buy("alice", 1, 10000, "r1")), "e1"))])
    [order] = shard.seal()[1].forwards["e1"]
    matcher = Matcher(1, [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")])
    accepted = engine_batch(matcher, [order.command])  # the engine has accepted it: the ACK is out
    order_id = accepted.entries[0].events[0].order_id
    # the client replaces it by its order id before this shard has settled the acceptance
    replace = ReplaceOrder("alice", "BTC-USD", 3, 10000, order_id, ts_received=time.time_ns())
    shard.handle_requests([frame(Request("gw/1", 7, 61, HoldReplace(replace, "r1"), "e1"))])
    _, now = shard.seal()
    [forwarded] = now.forwards["e1"]
    assert forwarded.command == replace
    assert shard.ledger.balance("alice", "USD")[1] == 3 * 10000 + 8  # 0.03 USD + its taker fee, rounded up
    assert shard.settle(accepted) and shard.settle(engine_batch(matcher, [replace]))
    shard.settle_pending()
    hold = shard.ledger.holds[("alice", "r1")]
    assert (hold.order_id, hold.qty, hold.pending) == (order_id, 3, ())
    assert shard.ledger.problems() == []
    # naming an order id that is not the one the client order id holds is refused
    other = ReplaceOrder("alice", "BTC-USD", 2, 10000, "1-999", ts_received=time.time_ns())
    shard.handle_requests([frame(Request("gw/1", 7, 62, HoldReplace(other, "r1"), "e1"))])
    shard.seal()
    [reply] = shard.on_durable(durable(shard)).replies
    assert reply.events[0].code is RejectCode.NOT_YOUR_ORDER


def test_an_opening_balance_the_shard_refuses_is_logged_as_an_error(caplog):
    """Opening balances are deposits the shard makes at its start; one it refuses (here: the shard
    already holds the most USD it may take in) is said in the log, not passed over."""
    from exchange.core.ledger import MAX_DEPOSITED
    from exchange.ledger.role import LedgerProcess

    process = object.__new__(LedgerProcess)
    process.shard, process.config = shard_for("bob"), CONFIG
    whale = next(f"whale{n}" for n in range(100) if process.shard.ledger.owns(f"whale{n}"))
    process.shard.handle_own(DepositFunds(whale, "USD", MAX_DEPOSITED, "whale-1", 1))
    with caplog.at_level("ERROR", logger="exchange.ledger.role"):
        process.opening_balances()
    assert process.shard.ledger.balance("bob", "USD") == (0, 0)
    assert any(r.levelname == "ERROR" and "the opening balance of bob 10000000 USD was refused" in r.getMessage()
               for r in caplog.records), caplog.text


# -- balances: once settled as far as the gateway has seen; pushed only when funds moved ----------------

def filled_buy(shard: Shard) -> tuple[EventBatch, list]:
    """alice's order of 1 lot at 100.00, held and passed on, and the engine batch that fills it (not
    given to the shard yet: the one before it, with a sell of another shard's user, neither); and
    alice's balances before it."""
    shard.handle_requests([frame(Request("gw/1", 7, 70, HoldOrder(buy("alice", 1, 10000, "f1")), "e1"))])
    [request] = shard.seal()[1].forwards["e1"]
    shard.on_durable(durable(shard))
    matcher = Matcher(1, [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")])
    seller = next(u for u in ("bob", "carol", "dave", "erin") if not shard.ledger.owns(u))
    matcher.handle(PlaceOrder(seller, "BTC-USD", Side.SELL, 1, 10000, ts_received=time.time_ns()))
    return engine_batch(matcher, [request.command]), shard.balances("alice").balances


def test_a_balance_waits_until_the_engines_are_settled_as_far_as_its_gateway_had_seen_them():
    shard = funded("alice")
    filled, before = filled_buy(shard)
    asked = GetBalances("alice", None, {"e1": filled.last_seq, "e9": 5})  # an engine it does not settle: no wait
    shard.handle_requests([frame(Request("gw/1", 7, 71, asked, ""))])
    assert shard.seal() == (None, None) and shard.asking  # not before the fill is settled
    assert shard.settle(EventBatch("e1", 1, 1, 1, filled.first_seq - 1, []))  # the engine's batch before it
    assert shard.seal() == (None, None)
    assert shard.settle(filled)
    batch_frame, now = shard.seal()  # settled, then answered behind that batch
    assert now is None and batch_frame is not None and not shard.asking
    [reply] = shard.on_durable(durable(shard)).replies
    [balances] = reply.events
    assert reply.request_id == 71 and balances == shard.balances("alice") and balances.balances != before
    assert dict((b.asset, b.available) for b in balances.balances)["BTC"] == 10_000  # 0.0001 BTC
    assert shard.seal() == (None, None)  # answered once


def test_a_balance_asked_by_an_older_gateway_or_of_engines_already_settled_is_answered_at_once():
    shard = funded("alice")
    filled, _ = filled_buy(shard)
    assert shard.settle(EventBatch("e1", 1, 1, 1, filled.first_seq - 1, [])) and shard.settle(filled)
    shard.handle_requests([frame(Request("gw/1", 7, 72, GetBalances("alice", "BTC"), ""),
                                 Request("gw/1", 7, 73, GetBalances("alice", "BTC", {"e1": filled.last_seq}), ""))])
    shard.seal()  # the fill taken in is settled before the answers
    replies = shard.on_durable(durable(shard)).replies
    assert [(r.request_id, r.events) for r in replies] == [
        (72, [Balances("alice", [Balance("BTC", 10_000, 0)])]), (73, [Balances("alice", [Balance("BTC", 10_000, 0)])])]
    # as an older gateway sends it (no ``seen``), and as an older shard reads a newer gateway's
    old = msgspec.msgpack.encode(["GetBalances", "alice", None])
    assert msgspec.msgpack.decode(old, type=GetBalances) == GetBalances("alice", None, {})

    class OldGetBalances(msgspec.Struct, frozen=True, array_like=True, tag="GetBalances"):
        user: str
        asset: str | None = None

    new = encode(GetBalances("alice", "BTC", {"e1": 9}))
    assert msgspec.msgpack.decode(new, type=OldGetBalances) == OldGetBalances("alice", "BTC")


def test_a_balance_whose_settlement_never_comes_is_given_up_after_the_wait_and_never_answered(caplog):
    """Its gateway has answered it UNAVAILABLE by then (the wait is the gateway's request_timeout):
    answering it later with balances that may lack the fill would tell the user something false."""
    shard = funded("alice")
    shard.max_balance_wait_s = 0.0
    filled, _ = filled_buy(shard)
    shard.handle_requests([frame(Request("gw/1", 7, 74, GetBalances("alice", None, {"e1": filled.last_seq}), ""))])
    with caplog.at_level("WARNING", logger="exchange.ledger.shard"):
        assert shard.seal() == (None, None)
    assert not shard.asking
    assert "gave up on a balance question of alice" in caplog.text
    assert shard.settle(EventBatch("e1", 1, 1, 1, filled.first_seq - 1, [])) and shard.settle(filled)
    shard.settle_pending()
    shard.seal()
    assert shard.on_durable(durable(shard)).replies == []


def test_a_refused_or_repeated_transfer_pushes_no_balances():
    """Only what moved funds changes balances (docs/market-data.md): a refused withdrawal, a transfer
    sent again and a refused deposit of the shard's own push nothing to the user's private feed."""
    shard = funded("alice", "100")
    for request_id, transfer in enumerate([WithdrawFunds("alice", "USD", usd("500"), "w1"),
                                           DepositFunds("alice", "USD", usd("5"), "d2"),
                                           DepositFunds("alice", "USD", usd("5"), "d2")], 80):
        shard.handle_requests([frame(Request("gw/1", 7, request_id, transfer, ""))])
        shard.seal()
        released = shard.on_durable(durable(shard))
        [reply] = released.replies
        moved = isinstance(reply.events[0], FundsDeposited)
        assert isinstance(reply.events[0], (TransferRejected, FundsDeposited, TransferRepeated))
        assert list(released.balances) == (["alice"] if moved else [])
    shard.handle_own(DepositFunds("alice", "USD", 0, "opening:alice:USD"))  # refused: not positive
    shard.seal()
    assert shard.on_durable(durable(shard)).balances == {}
