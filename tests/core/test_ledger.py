"""The ledger core: holds at the edge of what is available, settlement to the unit, every release.

Amounts are in cents for USD (``usd("6.16")`` is 616) and in units of 0.00001 for BTC. BTC-USD
has tick 1 USD and lot 0.01 BTC, so a notional in cents is qty × price (lots × ticks).
"""

from __future__ import annotations

import msgspec
import pytest
from ledger_journal import previous_version_checkpoint
from ledger_scenario import ENGINE, Venue, usd

from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_checkpoint import digest_of, restore, take
from exchange.core.ledger_messages import (
    AnyLedgerEvent, DepositFunds, EntryKind, FundsDeposited, FundsWithdrawn, HoldOrder, HoldRejected, OrderHeld,
    HoldReplace, OrderSettled, ReleaseHold, ReplaceHeld, SettleEvents, SettlementAdvanced, SettlementGap,
    TransferRepeated, WithdrawFunds,
)
from exchange.core.messages import (
    CancelOrder, OrderAccepted, OrderExpired, OrderFilled, OrderRejected, PlaceOrder, ReplaceOrder,
)
from exchange.core.orders import ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.errors import RejectCode

BUY, SELL = Side.BUY, Side.SELL


def kinds(events) -> list[str]:
    """The entry kinds of ledger events, in order."""
    found = []
    for event in events:
        entries = getattr(event, "entries", None) or [getattr(event, "entry", None)]
        found += [entry.kind.value for entry in entries if entry is not None]
    return found


def funded(maker_bps="0", taker_bps="0", shards=1, **balances) -> Venue:
    """A venue where each ``user=(usd cents, btc units)`` has those balances."""
    venue = Venue(maker_bps, taker_bps, shards)
    for user, (cents, btc) in balances.items():
        if cents:
            venue.deposit(user, "USD", cents)
        if btc:
            venue.deposit(user, "BTC", btc)
    return venue


# -- R1: holds at the edge ------------------------------------------------------------------------

@pytest.mark.parametrize("taker_bps, qty, price, exact", [
    ("0", 3, 205, 615),  # 3 lots at 205: 615 cents
    ("10", 3, 205, 616),  # + 0.615 cents of fee, rounded up to 1
    ("10", 100, 1000, 100_100),  # + exactly 100 cents
    ("10", 101, 1001, 101_101 + 102),  # + 101.101 cents, rounded up to 102
])
def test_a_buy_holds_value_plus_taker_fee_exactly_one_cent_short_is_refused(taker_bps, qty, price, exact):
    short = funded(taker_bps=taker_bps, alice=(exact - 1, 0))
    refused, sent = short.buy("alice", qty, price)
    assert sent == [] and isinstance(refused[0], HoldRejected)
    assert refused[0].code is RejectCode.INSUFFICIENT_FUNDS
    assert refused[0].reason == f"needs {exact // 100}.{exact % 100:02d} USD, " \
                                f"{(exact - 1) // 100}.{(exact - 1) % 100:02d} available"
    assert short.balance("alice") == (exact - 1, 0)
    enough = funded(taker_bps=taker_bps, alice=(exact, 0))
    held, sent = enough.buy("alice", qty, price)
    assert isinstance(held[0], OrderHeld) and isinstance(sent[0], OrderAccepted)
    assert enough.balance("alice") == (0, exact)
    assert enough.problems() == []


def test_a_sell_holds_its_quantity_in_the_base_exactly():
    venue = funded(alice=(0, 2999))
    refused, _ = venue.sell("alice", 3, 200)  # 3 lots = 3000 units of 0.00001 BTC
    assert refused[0].reason == "needs 0.03000 BTC, 0.02999 available"
    venue.deposit("alice", "BTC", 1)
    held, _ = venue.sell("alice", 3, 200)
    assert isinstance(held[0], OrderHeld)
    assert venue.balance("alice", "BTC") == (0, 3000)


def test_the_reason_names_the_users_units_as_in_the_issue():
    venue = funded(alice=(usd("1200.00"), 0))
    refused, _ = venue.buy("alice", 1000, 215043 // 100 + 1)  # 1000 lots at 2151: 21510.00 USD
    assert refused[0].reason == "needs 21510.00 USD, 1200.00 available"


@pytest.mark.parametrize("command, code, reason", [
    (PlaceOrder("alice", "DOGE-USD", BUY, 1, 1), RejectCode.UNKNOWN_SYMBOL, "no instrument 'DOGE-USD'"),
    (PlaceOrder("alice", "BTC-USD", BUY, 0, 1), RejectCode.BAD_QTY, "quantity 0.00 is below the minimum 0.01"),
    (PlaceOrder("alice", "BTC-USD", BUY, 1, -5), RejectCode.BAD_PRICE, "price must be at least one tick (1)"),
])
def test_orders_that_could_hold_a_negative_amount_are_refused(command, code, reason):
    ledger = funded(alice=(usd(100), 0)).shard("alice")
    [refused] = ledger.handle(HoldOrder(command))
    assert (refused.code, refused.reason) == (code, reason)
    assert ledger.balance("alice", "USD") == (usd(100), 0)


def test_a_client_order_id_on_hold_is_refused_and_a_missing_one_is_assigned():
    venue = funded(alice=(usd(100), 0))
    first, _ = venue.buy("alice", 1, 10, cid="a1")
    assert first[0].command.client_order_id == "a1"
    again, _ = venue.buy("alice", 1, 10, cid="a1")
    assert (again[0].code, again[0].order_id) == (RejectCode.DUPLICATE_ID, "7-1")
    anonymous, _ = venue.buy("alice", 1, 10)
    assert anonymous[0].command.client_order_id == "~0-2"


# -- R2: settlement ---------------------------------------------------------------------------------

def test_a_fill_moves_both_legs_and_refunds_price_improvement_exactly():
    venue = funded(alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 5, 200)
    held, _ = venue.buy("alice", 3, 205)  # holds 615, trades at 200: 600
    assert held[0].entry.rows[1].delta == 615
    assert venue.balance("alice") == (usd(1000) - 600, 0)
    assert venue.balance("alice", "BTC") == (3000, 0)
    assert venue.balance("bob") == (600, 0)
    assert venue.balance("bob", "BTC") == (0, 2000)
    assert venue.problems() == []


@pytest.mark.parametrize("maker_bps, taker_bps, maker_fee, taker_fee", [
    ("0", "0", 0, 0),
    ("10", "30", 1, 2),  # value 600: maker 0.6 → 1, taker 1.8 → 2
    ("-10", "30", 0, 2),  # a rebate of 0.6 rounds down to 0
    ("-20", "30", -1, 2),  # a rebate of 1.2 rounds down to 1
    ("-30", "30", -1, 2),  # the largest rebate allowed: 1.8 → 1
])
def test_maker_and_taker_pay_their_own_rate_rounded_for_the_venue(maker_bps, taker_bps, maker_fee, taker_fee):
    venue = funded(maker_bps, taker_bps, alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 3, 200)  # maker
    venue.buy("alice", 3, 200)  # taker
    assert venue.balance("bob") == (600 - maker_fee, 0)
    assert venue.balance("alice") == (usd(1000) - 600 - taker_fee, 0)
    assert venue.fees() == maker_fee + taker_fee
    assert venue.problems() == []


def test_a_buy_makers_rebate_goes_to_its_hold_and_then_is_released():
    venue = funded("-20", "30", alice=(usd(1000), 0), bob=(0, 5000))
    venue.buy("alice", 3, 200)  # maker: holds 600 + 1.8 → 602
    assert venue.balance("alice") == (usd(1000) - 602, 602)
    _, sent = venue.sell("bob", 3, 200)
    settled = [e for e in venue.ledger_events[0] if isinstance(e, OrderSettled) and e.user == "alice"][-1]
    assert kinds([settled]) == ["TRADE", "FEE", "RELEASE"]
    fee_rows = settled.entries[1].rows
    assert [(r.account, r.delta) for r in fee_rows] == [("alice:held", 1), ("*fee", -1)]
    assert venue.balance("alice") == (usd(1000) - 600 + 1, 0)


def test_partial_fills_pay_the_rounded_cumulative_fee_never_more():
    # 30 bps on 100 cents is 0.3 cents a fill: one order pays 1, 0, 0 (0.3, 0.6, 0.9 rounded up), not 1 + 1 + 1
    venue = funded("0", "30", alice=(usd(1000), 0), bob=(0, 5000))
    for _ in range(3):
        venue.sell("bob", 1, 100)
    venue.buy("alice", 3, 100)  # holds 300 + 0.9 → 301; takes the three asks
    fills = [e for e in venue.ledger_events[0] if isinstance(e, OrderSettled) and e.user == "alice"][1:]
    fee_rows = [[entry.rows[0].delta for entry in fill.entries if entry.kind is EntryKind.FEE] for fill in fills]
    assert fee_rows == [[-1], [], []]
    assert venue.fees() == 1
    assert venue.balance("alice") == (usd(1000) - 300 - 1, 0)
    assert venue.problems() == []


def test_a_resting_buy_releases_the_taker_fee_it_did_not_need_when_filled_as_maker():
    venue = funded("0", "100", alice=(usd(1000), 0), bob=(0, 5000))
    venue.buy("alice", 2, 500)  # holds 1000 + 10
    _, sent = venue.sell("bob", 2, 500)
    assert venue.balance("alice") == (usd(1000) - 1000, 0)  # maker fee 0: the 10 came back
    assert venue.fees() == 10  # bob's taker fee


@pytest.mark.parametrize("how", ["cancel", "ioc", "fok", "post"])
def test_an_order_that_ends_unfilled_releases_everything(how):
    venue = funded("0", "10", alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 1, 300)
    if how == "cancel":
        held, sent = venue.buy("alice", 5, 200)
        venue.cancel("alice", sent[0].order_id)
    elif how == "ioc":
        venue.buy("alice", 5, 200, tif=TimeInForce.IOC)
    elif how == "fok":
        venue.buy("alice", 5, 400, tif=TimeInForce.FOK)
    else:
        _, sent = venue.buy("alice", 5, 300, tif=TimeInForce.POST)  # the engine refuses: it would cross
        assert sent[-1].code is RejectCode.WOULD_CROSS
    assert venue.balance("alice") == (usd(1000), 0)
    assert venue.shard("alice").holds.keys() == {("bob", "~0-1")}
    assert venue.problems() == []


def test_an_ioc_that_fills_in_part_pays_for_the_part_and_releases_the_rest():
    venue = funded("0", "10", alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 2, 300)
    venue.buy("alice", 5, 310, tif=TimeInForce.IOC)
    assert venue.balance("alice") == (usd(1000) - 600 - 1, 0)
    assert venue.balance("alice", "BTC") == (2000, 0)


def test_replace_up_holds_the_difference_first_or_is_refused():
    venue = funded("0", "0", alice=(1000, 0))
    _, sent = venue.buy("alice", 4, 200)  # 800
    order_id = sent[0].order_id
    refused, none = venue.replace("alice", order_id, 5, 250)  # 1250: 450 more, 200 available
    assert none == [] and refused[0].code is RejectCode.INSUFFICIENT_FUNDS
    assert refused[0].reason == "this replace needs 4.50 USD, 2.00 available"
    venue.deposit("alice", "USD", 250)
    held, sent = venue.replace("alice", order_id, 5, 250)
    assert isinstance(held[0], ReplaceHeld) and held[0].entry.rows[1].delta == 450
    assert venue.balance("alice") == (0, 1250)
    assert venue.problems() == []


def test_replace_down_releases_the_excess_when_the_engine_confirms():
    venue = funded("0", "0", alice=(1000, 0))
    _, sent = venue.buy("alice", 4, 200)
    venue.replace("alice", sent[0].order_id, 2, 150)
    assert venue.balance("alice") == (700, 300)
    assert venue.problems() == []


def test_a_replace_the_engine_refuses_gives_its_extra_back():
    venue = funded("0", "0", alice=(2000, 0))
    _, sent = venue.buy("alice", 4, 200, tif=TimeInForce.POST)
    venue.deposit("bob", "BTC", 1000)
    venue.sell("bob", 1, 250)
    held, refused = venue.replace("alice", sent[0].order_id, 4, 260)  # post-only would cross at 250
    assert held[0].entry.rows[1].delta == 240 and refused[0].code is RejectCode.WOULD_CROSS
    assert venue.balance("alice") == (1200, 800)
    assert venue.problems() == []


def test_a_replace_holds_for_the_worst_of_the_states_its_order_may_be_in():
    # a replace back to 200 sent while one to 150 is still pending: when it lands the order may be at
    # 200 (the first was refused) or at 150 (it succeeded), so it holds for the worse, from 150
    venue = funded("0", "0", alice=(2000, 0))
    _, sent = venue.buy("alice", 4, 200)
    ledger = venue.shard("alice")
    first = ledger.handle(HoldReplace(ReplaceOrder("alice", "BTC-USD", 4, 150, sent[0].order_id)))[0]
    second = ledger.handle(HoldReplace(ReplaceOrder("alice", "BTC-USD", 4, 200, sent[0].order_id)))[0]
    assert first.entry is None  # cheaper: nothing more now
    assert second.entry.rows[1].delta == 4 * (200 - 150)  # back up from 150
    for replace in (first.command, second.command):
        venue.engine(replace)
    assert venue.balance("alice") == (1200, 800)
    assert ledger.problems() == []


def test_self_trade_decrement_releases_what_the_reduced_order_no_longer_needs():
    venue = funded("0", "0", alice=(usd(100), 5000))
    venue.buy("alice", 5, 100)
    order = PlaceOrder("alice", "BTC-USD", SELL, 2, 100, stp=SelfTradePrevention.DECREMENT)
    [held] = venue.shard("alice").handle(HoldOrder(order))
    sent = venue.engine(held.command)
    assert [type(e).__name__ for e in sent][:3] == ["OrderAccepted", "OrderReduced", "OrderCanceled"]
    assert venue.balance("alice") == (usd(100) - 300, 300)  # 3 lots left at 100
    assert venue.balance("alice", "BTC") == (5000, 0)
    assert venue.problems() == []


def test_a_market_buy_with_funds_holds_them_and_its_engine_budget_fits_value_and_fee():
    venue = funded("0", "10", alice=(usd(10), 0))
    held, _ = venue.buy("alice", 100, None, tif=TimeInForce.IOC, funds=1000)
    assert held[0].entry.rows[1].delta == 1000
    assert held[0].budget == 999  # 999 cents + 0.999 → 1: 1000
    refused, _ = Venue("0", "10").buy("alice", 1, None, tif=TimeInForce.IOC, funds=1000)
    assert refused[0].code is RejectCode.INSUFFICIENT_FUNDS


def test_a_size_only_market_buy_holds_what_it_can_spend_up_to_its_cost_at_max_price():
    venue = funded("0", "0", alice=(usd(10), 0))
    held, _ = venue.buy("alice", 1, None, tif=TimeInForce.IOC)
    assert held[0].entry.rows[1].delta == usd(10)  # everything: less than 1 lot at max_price
    rich = funded("0", "0", alice=(usd(200_000), 0))
    held, _ = rich.buy("alice", 1, None, tif=TimeInForce.IOC)
    assert held[0].entry.rows[1].delta == 100_000  # 1 lot at max_price 100000
    assert funded().buy("alice", 1, None, tif=TimeInForce.IOC)[0][0].code is RejectCode.INSUFFICIENT_FUNDS


def test_a_market_buy_pays_its_fills_from_the_budget_and_releases_the_rest_at_expiry():
    # synthetic engine events, as an engine that enforces the budget sends them
    venue = funded("0", "10", alice=(usd(10), 0))
    ledger = venue.shard("alice")
    [held] = ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, 100, None, TimeInForce.IOC), 1000))
    cid = held.command.client_order_id
    events = [OrderAccepted(1, 0, "BTC-USD", "7-1", "alice", BUY, 100, None, TimeInForce.IOC,
                            SelfTradePrevention.CANCEL_NEWEST, cid),
              OrderFilled(2, 0, "BTC-USD", "7-1", "alice", BUY, "7-1", 3, 300, 97, 3, False, cid),
              OrderExpired(3, 0, "BTC-USD", "7-1", "alice", BUY, 97, ExpireReason.MARKET, cid)]
    ledger.handle(SettleEvents(ENGINE, 1, 1, 3, events))
    assert ledger.balance("alice", "USD") == (usd(10) - 900 - 1, 0)
    assert ledger.balances[("*clearing", "USD")] == 900  # the sellers are on no shard here
    assert [p for p in ledger.problems() if "clearing" not in p and "sum" not in p] == []


# -- idempotence, gaps, sharding -----------------------------------------------------------------------

def test_settling_the_same_events_twice_changes_nothing_and_a_gap_is_reported():
    venue = funded(alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 3, 200)
    venue.buy("alice", 3, 200)
    ledger = venue.ledgers[0]
    digest = ledger.digest()
    events = venue.engine_events
    assert ledger.handle(SettleEvents(ENGINE, 1, 1, events[-1].seq, events)) == []
    assert ledger.digest() == digest
    missed = venue.matcher.handle(PlaceOrder("bob", "BTC-USD", SELL, 1, 300, client_order_id="x"))
    skipped = venue.matcher.handle(PlaceOrder("bob", "BTC-USD", SELL, 1, 301, client_order_id="y"))
    [gap] = ledger.handle(SettleEvents(ENGINE, 1, skipped[0].seq, skipped[-1].seq, skipped))
    assert isinstance(gap, SettlementGap) and (gap.expected_seq, gap.first_seq) == (missed[0].seq, skipped[0].seq)


def test_a_batch_that_overlaps_what_was_settled_settles_only_the_new_events():
    venue = funded(alice=(usd(1000), 0), bob=(0, 5000))
    venue.sell("bob", 3, 200)
    ledger = venue.ledgers[0]
    [held] = ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, 3, 200)))
    new = venue.matcher.handle(held.command)
    everything = venue.engine_events + new
    settled = ledger.handle(SettleEvents(ENGINE, 1, 1, everything[-1].seq, everything))
    assert [type(e) for e in settled] == [OrderSettled, OrderSettled, OrderSettled, SettlementAdvanced]
    assert ledger.problems() == []


@pytest.mark.parametrize("user, shards, shard", [
    ("alice", 2, 1), ("bob", 2, 0), ("carol", 2, 0), ("dave", 2, 1), ("alice", 3, 2), ("alice", 1, 0),
])
def test_shard_of_a_user_is_a_stable_documented_hash(user, shards, shard):
    assert shard_of(user, shards) == shard


def test_two_shards_each_settle_their_own_users_legs_and_clearing_nets_to_zero():
    venue = funded("-10", "30", shards=2, alice=(usd(1000), 0), bob=(0, 5000))
    assert venue.shard("alice") is not venue.shard("bob")
    venue.sell("bob", 3, 200)
    venue.buy("alice", 3, 205)
    alice_shard, bob_shard = venue.shard("alice"), venue.shard("bob")
    assert ("bob:available", "USD") not in alice_shard.balances
    assert alice_shard.balances[("*clearing", "USD")] == 600 == -bob_shard.balances[("*clearing", "USD")]
    assert venue.problems() == []
    assert venue.balance("alice") == (usd(1000) - 600 - 2, 0)
    assert venue.balance("bob") == (600, 0)  # rebate 0.6 → 0


def test_a_command_for_another_shards_user_is_our_bug():
    ledger = Ledger(0, 2, Venue().terms)
    with pytest.raises(ValueError, match="user alice belongs to shard 1, not 0"):
        ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, 1, 1)))


def test_an_accepted_order_without_a_hold_is_our_bug():
    ledger = Ledger(0, 1, Venue().terms)
    accepted = OrderAccepted(1, 0, "BTC-USD", "7-1", "alice", BUY, 1, 1, TimeInForce.GTC,
                             SelfTradePrevention.CANCEL_NEWEST, "x")
    with pytest.raises(ValueError, match="accepted without its hold"):
        ledger.handle(SettleEvents(ENGINE, 1, 1, 1, [accepted]))


# -- deposits, withdrawals, release ------------------------------------------------------------------

def test_deposits_and_withdrawals_apply_once_per_reference_and_never_overdraw():
    venue = Venue()
    [deposited] = venue.deposit("alice", "USD", 500, "r1")
    assert isinstance(deposited, FundsDeposited)
    [again] = venue.deposit("alice", "USD", 500, "r1")
    assert isinstance(again, TransferRepeated) and again.entry_id == deposited.entry.entry_id
    [refused] = venue.withdraw("alice", "USD", 501, "w1")
    assert (refused.code, refused.reason) == (RejectCode.INSUFFICIENT_FUNDS,
                                              "withdrawal needs 5.01 USD, 5.00 available")
    [withdrawn] = venue.withdraw("alice", "USD", 500, "w1")
    assert isinstance(withdrawn, FundsWithdrawn)
    assert venue.balance("alice") == (0, 0)
    assert venue.ledgers[0].balances[("*external", "USD")] == 0
    assert kinds(venue.ledger_events[0]) == ["DEPOSIT", "WITHDRAWAL"]


def without_seq(ledger: Ledger) -> tuple:
    """The ledger's state but its event count."""
    shard, shards, _, *rest = ledger.state()
    return (shard, shards, *rest)


@pytest.mark.parametrize("command", [DepositFunds("alice", "USD", 500, "r1"), WithdrawFunds("alice", "USD", 200, "r1")])
def test_a_transfer_sent_again_is_answered_its_first_outcome_and_moves_nothing(command):
    venue = funded(alice=(usd(10), 0))
    ledger = venue.shard("alice")
    [first] = ledger.handle(command)
    before, seq = without_seq(ledger), ledger.seq
    [again] = ledger.handle(command)
    assert again == TransferRepeated(seq + 1, 0, "alice", "USD", command.amount, "r1", first.entry.kind,
                                     first.entry.entry_id)
    assert without_seq(ledger) == before and ledger.seq == seq + 1  # no balance, entry or reference changed
    assert ledger.problems() == []


@pytest.mark.parametrize("command, first_use", [
    (DepositFunds("alice", "USD", 501, "r1"), "a deposit of 5.00 USD (entry 1)"),  # another amount
    (DepositFunds("alice", "BTC", 500, "r1"), "a deposit of 5.00 USD (entry 1)"),  # another asset
    (WithdrawFunds("alice", "USD", 500, "r1"), "a deposit of 5.00 USD (entry 1)"),  # another kind
    (DepositFunds("alice", "USD", 100, "w1"), "a withdrawal of 1.00 USD (entry 2)"),
])
def test_a_reference_reused_for_another_transfer_of_its_user_is_refused_naming_its_first_use(command, first_use):
    venue = Venue()
    venue.deposit("alice", "USD", 500, "r1")
    venue.withdraw("alice", "USD", 100, "w1")
    [refused] = venue.shard("alice").handle(command)
    assert (refused.code, refused.reason) == (
        RejectCode.DUPLICATE_ID, f"reference {command.ref} was already used for {first_use}; nothing was done now")
    assert venue.balance("alice") == (400, 0) and venue.shard("alice").last_entry == 2


def test_one_reference_is_one_transfer_of_each_user_even_on_one_shard():
    venue = Venue()  # one shard: alice and bob on it
    [alices] = venue.deposit("alice", "USD", 500, "wire-1")
    [bobs] = venue.deposit("bob", "USD", 700, "wire-1")
    assert isinstance(alices, FundsDeposited) and isinstance(bobs, FundsDeposited)
    assert (venue.balance("alice"), venue.balance("bob")) == ((500, 0), (700, 0))
    [again] = venue.deposit("bob", "USD", 700, "wire-1")
    assert isinstance(again, TransferRepeated) and again.entry_id == bobs.entry.entry_id


def test_a_refused_transfer_is_not_remembered_so_sending_it_again_decides_it_again():
    venue = funded(alice=(500, 0))
    [short] = venue.withdraw("alice", "USD", 800, "w1")
    assert short.code is RejectCode.INSUFFICIENT_FUNDS
    venue.deposit("alice", "USD", 300, "top-up")
    [withdrawn] = venue.withdraw("alice", "USD", 800, "w1")
    assert isinstance(withdrawn, FundsWithdrawn) and venue.balance("alice") == (0, 0)
    [again] = venue.withdraw("alice", "USD", 800, "w1")
    assert isinstance(again, TransferRepeated) and again.entry_id == withdrawn.entry.entry_id
    assert venue.balance("alice") == (0, 0)


@pytest.mark.parametrize("asset, amount, ref, reason", [
    ("DOGE", 1, "r", "no asset 'DOGE'; there are BTC, ETH, USD"),
    ("USD", 0, "r", "the amount must be positive, not 0.00"),
    ("USD", 1, "", "a transfer needs a reference"),
])
def test_a_malformed_transfer_is_refused(asset, amount, ref, reason):
    [refused] = Venue().shard("alice").handle(DepositFunds("alice", asset, amount, ref))
    assert (refused.code, refused.reason) == (RejectCode.MALFORMED, reason)


def test_a_market_fill_or_kill_buy_holds_its_worst_cost_pays_what_it_traded_and_gets_the_rest_back():
    venue = funded(alice=(usd(10_000), 0), bob=(0, 50_000))
    terms = venue.terms[0]
    venue.sell("bob", 2, 100)
    venue.sell("bob", 3, 110)
    held, events = venue.buy("alice", 5, None, tif=TimeInForce.FOK)
    assert held[0].entry.rows[-1].delta == terms.notional(5, terms.instrument.max_price)  # no fee here
    assert [type(e).__name__ for e in events].count("Match") == 2
    paid = terms.notional(2, 100) + terms.notional(3, 110)
    assert venue.balance("alice") == (usd(10_000) - paid, 0)
    held, events = venue.buy("alice", 1, None, tif=TimeInForce.FOK)  # nothing left to buy: refused
    assert venue.balance("alice") == (usd(10_000) - paid, 0) and venue.problems() == []


def test_deposits_stop_where_balances_would_outgrow_the_journals_integers():
    from exchange.core.ledger import MAX_DEPOSITED

    ledger = Venue().shard("alice")
    [first] = ledger.handle(DepositFunds("alice", "USD", MAX_DEPOSITED - 1, "r1"))
    [refused] = ledger.handle(DepositFunds("alice", "USD", 2, "r2"))  # one unit past the most
    assert type(first).__name__ == "FundsDeposited" and refused.code is RejectCode.MALFORMED
    assert "the most a ledger shard holds of an asset" in refused.reason
    [last] = ledger.handle(DepositFunds("bob", "USD", 1, "r3"))  # exactly the most, over all users
    assert type(last).__name__ == "FundsDeposited"
    assert msgspec.msgpack.encode([first, refused, last])  # every figure fits the journal's encoding


def test_a_hold_whose_order_never_reached_its_engine_can_be_released():
    venue = funded(alice=(usd(10), 0))
    ledger = venue.shard("alice")
    [held] = ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, 1, 5, client_order_id="lost")))
    [released] = ledger.handle(ReleaseHold("alice", "lost"))
    assert kinds([released]) == ["RELEASE"] and ledger.balance("alice", "USD") == (usd(10), 0)
    [refused] = ledger.handle(ReleaseHold("alice", "lost"))
    assert refused.code is RejectCode.NOT_YOUR_ORDER


def test_releasing_a_lost_order_also_releases_what_its_replaces_held_meanwhile():
    """A client may replace right after its ACK, before the acceptance is settled: the replace's
    extra is held as pending. If the order then turns out never to have reached its engine, its
    release gives back the extra too, or it would stay held with no order behind it."""
    venue = funded(alice=(usd(20), 0))
    ledger = venue.shard("alice")
    ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, 4, 200, client_order_id="lost")))  # 8.00
    [grown] = ledger.handle(HoldReplace(ReplaceOrder("alice", "BTC-USD", 5, 250, client_order_id="lost"), "lost"))
    assert type(grown).__name__ == "ReplaceHeld" and ledger.balance("alice", "USD") == (usd(20) - 1250, 1250)
    [released] = ledger.handle(ReleaseHold("alice", "lost"))
    assert kinds([released]) == ["RELEASE"] and released.entry.rows[-1].delta == 1250
    assert ledger.balance("alice", "USD") == (usd(20), 0) and ledger.holds == {}
    assert ledger.problems() == []



def hold_in_flight(venue: Venue, command):
    """Hold ``command`` at its user's shard; what the engine is to get (it is not sent yet)."""
    hold = HoldOrder(command) if isinstance(command, PlaceOrder) else HoldReplace(command)
    [held] = venue.shard(command.user).handle(hold)
    assert type(held).__name__ in ("OrderHeld", "ReplaceHeld"), held
    return held.command


@pytest.mark.parametrize("new_qty, held_after", [(6, 600), (4, 400)])
def test_a_replace_sent_behind_a_self_trade_reduce_of_its_order_is_still_covered(new_qty, held_after):
    """The user's own DECREMENT sell reduces their resting bid at the engine (5 lots to 2), and a
    replace of the bid to a new total, sent right after the sell, lands behind it: the bid is then
    ``new_qty`` lots again. The replace's extra was held for the bid as it was (5 lots), so what
    the reduce frees is kept until the replace lands; nothing is short, and then only the surplus
    goes back."""
    venue = funded(alice=(usd(100), 50_000))
    _, events = venue.buy("alice", 5, 100)
    bid = events[0].order_id
    sell = hold_in_flight(venue, PlaceOrder("alice", "BTC-USD", SELL, 3, 100, stp=SelfTradePrevention.DECREMENT))
    replace = hold_in_flight(venue, ReplaceOrder("alice", "BTC-USD", new_qty, None, bid))
    reduced = venue.engine(sell)
    assert [(type(e).__name__, e.order_id) for e in reduced if type(e).__name__ == "OrderReduced"] == [
        ("OrderReduced", bid)]  # the bid: 5 lots to 2 (the sell, used up, is canceled)
    assert venue.problems() == []
    replaced = venue.engine(replace)
    assert type(replaced[0]).__name__ == "OrderReplaced" and replaced[0].leaves_qty == new_qty
    assert venue.problems() == []
    assert venue.balance("alice") == (usd(100) - held_after, held_after)



def test_a_refused_cancel_naming_a_client_order_id_leaves_a_new_order_with_that_id_on_hold():
    """A cancel of an old #a1 (closed long ago) is refused by the engine; the user's new order #a1,
    held meanwhile, keeps its hold, and its acceptance settles (the refusal used to release it)."""
    venue = funded(alice=(usd(20), 0))
    ledger = venue.shard("alice")
    order = hold_in_flight(venue, PlaceOrder("alice", "BTC-USD", BUY, 4, 200, client_order_id="a1"))
    [refused] = venue.engine(CancelOrder("alice", "BTC-USD", "", "a1"))
    assert (type(refused).__name__, refused.client_order_id, refused.command) == ("OrderRejected", "a1", "CancelOrder")
    assert ledger.balance("alice", "USD") == (usd(20) - 800, 800)
    [accepted] = venue.engine(order)
    assert type(accepted).__name__ == "OrderAccepted" and venue.problems() == []


def test_a_refused_cancel_of_an_order_leaves_its_replace_on_its_way_held():
    venue = funded(alice=(usd(20), 0))
    _, events = venue.buy("alice", 4, 200)  # holds 8.00
    order_id = events[0].order_id
    replace = hold_in_flight(venue, ReplaceOrder("alice", "BTC-USD", 5, 250, order_id))  # 4.50 more
    [refused] = venue.engine(CancelOrder("alice", "ETH-USD", order_id))  # the wrong book: refused
    assert refused.command == "CancelOrder"
    assert venue.balance("alice") == (usd(20) - 1250, 1250)
    assert type(venue.engine(replace)[0]).__name__ == "OrderReplaced"
    assert venue.problems() == [] and venue.balance("alice") == (usd(20) - 1250, 1250)


def test_a_refusal_from_a_journal_older_than_its_command_kind_releases_the_order_on_hold():
    """Journals from before ``OrderRejected.command`` are settled as they were: a refusal naming
    an order on hold by its client order id releases that order's hold."""
    venue = funded(alice=(usd(20), 0))
    ledger = venue.shard("alice")
    hold_in_flight(venue, PlaceOrder("alice", "BTC-USD", BUY, 4, 200, client_order_id="a1"))
    old = OrderRejected(1, 0, "BTC-USD", "alice", RejectCode.UNKNOWN_SYMBOL, "", "a1")
    settled, _advanced = ledger.handle(SettleEvents(ENGINE, 1, 1, 1, [old]))
    assert kinds([settled]) == ["RELEASE"] and ledger.balance("alice", "USD") == (usd(20), 0)


# -- replay, digest, checkpoint ------------------------------------------------------------------------

def busy_venue() -> Venue:
    venue = funded("-10", "30", shards=2, alice=(usd(1000), 0), bob=(0, 50_000), carol=(usd(500), 20_000))
    venue.sell("bob", 5, 200)
    venue.buy("alice", 3, 205)
    _, resting = venue.buy("carol", 4, 190)
    venue.replace("carol", resting[0].order_id, 6, 195)
    venue.sell("bob", 2, 190)
    venue.withdraw("carol", "BTC", 1000, "w1")
    return venue


def test_replaying_a_shards_events_gives_its_live_digest_through_the_wire():
    venue = busy_venue()
    for ledger, events in zip(venue.ledgers, venue.ledger_events):
        wire = [msgspec.msgpack.encode(e) for e in events]
        decoded = [msgspec.msgpack.decode(frame, type=AnyLedgerEvent) for frame in wire]
        replayed = Ledger.rebuild(ledger.shard, ledger.shards, venue.terms, decoded)
        assert replayed.digest() == ledger.digest()
        assert replayed.problems() == []


def test_a_checkpoint_restores_the_same_ledger_in_parts_of_any_size():
    venue = busy_venue()
    for ledger in venue.ledgers:
        for part_size in (64, 10_000):
            restored = restore(venue.terms, take(ledger, part_size))
            assert restored.digest() == ledger.digest()
            assert digest_of(restored) == digest_of(ledger)
    parts = take(venue.ledgers[0], 64)
    with pytest.raises(ValueError, match="not one whole checkpoint"):
        restore(venue.terms, parts[1:])


def test_a_checkpoint_keeps_each_users_references_and_what_they_were_for():
    venue = Venue()
    venue.deposit("alice", "USD", 500, "wire-1")
    venue.deposit("bob", "USD", 700, "wire-1")
    venue.withdraw("bob", "USD", 200, "out-1")
    ledger = venue.shard("alice")
    restored = restore(venue.terms, take(ledger, 64))
    assert restored.digest() == ledger.digest() and digest_of(restored) == digest_of(ledger)
    assert restored.transfers == ledger.transfers and len(restored.transfers) == 3
    [again] = restored.handle(WithdrawFunds("bob", "USD", 200, "out-1"))
    assert isinstance(again, TransferRepeated) and again.entry_id == 3
    [other] = restored.handle(DepositFunds("bob", "USD", 1, "wire-1"))
    assert other.reason == "reference wire-1 was already used for a deposit of 7.00 USD (entry 2); nothing was done now"


def test_a_checkpoint_of_before_references_were_per_user_still_loads_and_refuses_its_references():
    venue = Venue()
    venue.deposit("alice", "USD", 500, "wire-1")
    old = previous_version_checkpoint(venue.shard("alice"))
    restored = restore(venue.terms, old)
    assert (restored.legacy_refs, restored.transfers) == ({"wire-1": 1}, {})
    assert take(restored) == old  # written back byte for byte: the same digest as the older version's
    assert restored.balance("alice", "USD") == (500, 0)
    for user, amount in (("alice", 500), ("bob", 500), ("alice", 9)):  # its terms and user are not known
        [refused] = restored.handle(DepositFunds(user, "USD", amount, "wire-1"))
        assert (refused.code, refused.reason) == (RejectCode.DUPLICATE_ID, "reference wire-1 was already used"
                                                  " (entry 1); nothing was done now")
    assert restored.knows_transfer("bob", "wire-1") and not restored.knows_transfer("bob", "wire-2")
    [new] = restored.handle(DepositFunds("bob", "USD", 700, "wire-2"))
    assert isinstance(new, FundsDeposited)
    again = restore(venue.terms, take(restored))  # both kinds of reference kept
    assert again.digest() == restored.digest()
    assert (again.legacy_refs, list(again.transfers)) == ({"wire-1": 1}, [("bob", "wire-2")])


def test_entries_balance_and_are_numbered_one_by_one():
    venue = busy_venue()
    for events in venue.ledger_events:
        entries = [entry for event in events
                   for entry in (getattr(event, "entries", None) or [getattr(event, "entry", None)]) if entry]
        assert [e.entry_id for e in entries] == list(range(1, len(entries) + 1))
        for entry in entries:
            sums: dict[str, int] = {}
            for row in entry.rows:
                sums[row.asset] = sums.get(row.asset, 0) + row.delta
            assert set(sums.values()) == {0}, entry
        assert {e.kind for e in entries} >= {EntryKind.HOLD, EntryKind.TRADE, EntryKind.RELEASE}


def test_a_retry_that_names_another_transfer_than_the_one_it_repeats_does_not_apply():
    """What a retry told its requester (the entry, the terms) is checked when it is applied, so a
    replay of a journal whose retry disagrees with the transfer it repeats stops there."""
    for change in ({"entry_id": 2}, {"amount": 501}, {"ref": "wire-2"}, {}):
        venue = Venue()
        venue.deposit("bob", "USD", 500, "wire-1")
        ledger = venue.shard("bob")
        [repeated] = ledger.handle(DepositFunds("bob", "USD", 500, "wire-1"))
        assert isinstance(repeated, TransferRepeated) and repeated.entry_id == 1
        told = msgspec.structs.replace(repeated, seq=ledger.seq + 1, **change)
        if change:
            with pytest.raises(ValueError, match="a retry of bob's transfer"):
                ledger.apply(told)
        else:
            ledger.apply(told)  # the very retry, applied again: nothing to say
