"""Orders as big as a shard takes: every event and checkpoint fits the journal's 64-bit integers,
and every amount is what the exact fee so far, unbounded, gives.

A hold keeps its exact fee so far (millionths of a quote unit) modulo PPM only (``HoldState.fee_exact``):
only differences of ``fee_due`` are ever used, and ``fee_due(q × PPM + x) = q + fee_due(x)``. The
whole sum would pass 2^64 on an order of a fifth of what a shard takes in (10^18 units), and the
shard could then journal neither its settlement nor a checkpoint. ``ReferenceAccounts`` keeps the
whole exact fee (a Fraction) per order: every fee, hold and balance here is compared with it.

Grids are docs/accounts.md's: USD unit 0.000001, BTC unit 0.00000001, BTC-USD tick 0.01, lot 0.0001
(one lot at one tick is one USD unit).
"""

from __future__ import annotations

import random
import time

import msgspec
import pytest
from ledger_reference import Money, ReferenceAccounts
from ledger_scenario import Venue

from exchange.core.assets import PPM, Asset, FeeRates, Terms
from exchange.core.instruments import Instrument
from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_checkpoint import digest_of, restore, take
from exchange.core.ledger_messages import (
    AnyLedgerEvent, DepositFunds, EntryKind, HoldOrder, OrderHeld, OrderSettled, ReplaceHeld,
)
from exchange.core.matching import Matcher
from exchange.core.messages import OrderAccepted, OrderFilled, PlaceOrder, expand
from exchange.core.orders import Side
from exchange.journal.readers import EnginePosition
from exchange.ledger.shard import Shard
from exchange.wire.messages import Decoder, EventBatch

BUY, SELL = Side.BUY, Side.SELL
USD = Asset("USD", "0.000001")
BTC = Asset("BTC", "0.00000001")
USERS = ("alice", "bob", "carol", "dave")
assert (shard_of("alice", 2), shard_of("bob", 2), shard_of("carol", 2)) == (1, 0, 0)
ENCODE = msgspec.msgpack.encode
EVENTS = msgspec.msgpack.Decoder(AnyLedgerEvent)


def btc_usd(maker_bps: str, taker_bps: str) -> Terms:
    return Terms(Instrument("BTC-USD", tick_size="0.01", lot_size="0.0001"), BTC, USD, FeeRates(maker_bps, taker_bps))


class BigVenue:
    """Two ledger shards and a matcher (``ledger_scenario.Venue``) beside ``ReferenceAccounts``.

    ``check()`` encodes every ledger event since the last check (as the shard's batch does), takes
    and restores each shard's checkpoint, and compares each fill's fee, every user's available and
    held balance and the venue's fees with the reference's."""

    def __init__(self, maker_bps: str, taker_bps: str):
        self.terms = btc_usd(maker_bps, taker_bps)
        self.venue = Venue(shards=2, all_terms=[self.terms])
        self.reference = ReferenceAccounts({"BTC-USD": Money.of(self.terms)})
        self.fill_fees: dict[tuple[str, int], int] = {}  # (order id, engine seq) → the fee the reference charged
        self.checked = [0, 0]  # events of each shard checked so far
        self.charged: dict[tuple[str, int], int] = {}  # (order id, engine seq) → the fee the ledger charged
        self.residues: list[int] = []  # fee_exact of every hold seen

    def deposit(self, user: str, asset: str, text: str) -> None:
        amount = {"USD": USD, "BTC": BTC}[asset].to_units(text)
        self.venue.deposit(user, asset, amount)
        self.reference.deposit(user, asset, amount)

    def place(self, user: str, side: Side, qty: str, price: str) -> str:
        """Place an order (quantity in BTC, price in USD); its order id."""
        instrument = self.terms.instrument
        lots, ticks = instrument.to_lots(qty), instrument.to_ticks(price)
        assert self.reference.available(user, "USD" if side is BUY else "BTC") >= \
            self.reference.order_needs(user, "BTC-USD", side, lots, ticks)
        held, sent = self.venue.place(user, side, lots, ticks)
        assert isinstance(held[0], OrderHeld), held
        self._reference(sent)
        [accepted] = [e for e in sent if isinstance(e, OrderAccepted)]
        return accepted.order_id

    def replace(self, user: str, order_id: str, qty: str) -> None:
        held, sent = self.venue.replace(user, order_id, self.terms.instrument.to_lots(qty))
        assert isinstance(held[0], ReplaceHeld), held
        self._reference(sent)

    def cancel(self, user: str, order_id: str) -> None:
        self._reference(self.venue.cancel(user, order_id))

    def _reference(self, engine_events: list) -> None:
        for event in expand(engine_events):
            before = self.reference.fees.get("USD", 0)
            self.reference.on_event(event)
            if isinstance(event, OrderFilled):
                self.fill_fees[(event.order_id, event.seq)] = self.reference.fees.get("USD", 0) - before

    def check(self) -> None:
        for ledger in self.venue.ledgers:  # first: what the shard journals encodes, and reads back
            for event in self.venue.ledger_events[ledger.shard][self.checked[ledger.shard]:]:
                assert EVENTS.decode(ENCODE(event)) == event
            parts = take(ledger)  # a checkpoint: encodes, and restores to the same ledger
            assert digest_of(restore([self.terms], parts)) == digest_of(ledger)
            assert restore([self.terms], parts).digest() == ledger.digest()
        for ledger in self.venue.ledgers:
            events = self.venue.ledger_events[ledger.shard]
            for event in events[self.checked[ledger.shard]:]:
                if type(event) is OrderSettled:
                    if event.hold is not None:
                        self.residues.append(event.hold.fee_exact)
                    key = (event.order_id, event.engine_seq)
                    if key in self.fill_fees:  # a fill: its FEE entry (none when nothing is due)
                        self.charged[key] = sum(row.delta for entry in event.entries if entry.kind is EntryKind.FEE
                                                for row in entry.rows if row.account == "*fee")
            self.checked[ledger.shard] = len(events)
            self.residues += [hold.fee_exact for hold in ledger.holds.values()]
        assert self.charged == self.fill_fees  # each fill charged what the whole exact fee gives
        for user in USERS:
            for asset in ("USD", "BTC"):
                assert self.venue.balance(user, asset) == \
                    (self.reference.available(user, asset), self.reference.held(user, asset)), (user, asset)
        assert self.venue.fees() == self.reference.fees.get("USD", 0)
        assert self.venue.problems() == []

    def fees_kept_modulo_ppm(self) -> bool:
        """Whether every hold seen kept its exact fee so far modulo PPM (the journal's 64 bits)."""
        return all(0 <= fee < PPM for fee in self.residues)


def test_a_big_buy_settles_into_events_and_checkpoints_the_journal_can_encode():
    """The reviewer's case, and more of it: alice (a tenth of what a shard takes in) buys 2,000,000
    BTC at 40,000.00, taking 1,900,000.001 of them from two asks (the first at a better price), is
    replaced up, filled as a maker, and canceled. Her exact fee so far passes 2^64 at the second fill."""
    big = BigVenue("1", "2.5")
    big.deposit("alice", "USD", "100000000000")  # 10^17 units
    big.deposit("bob", "BTC", "2000000")
    big.deposit("carol", "BTC", "200000")
    big.place("bob", SELL, "1000000.0003", "39999.99")
    big.place("bob", SELL, "900000.0007", "40000.00")
    big.check()
    alice = big.place("alice", BUY, "2000000", "40000.00")
    assert 250 * (big.terms.notional(big.terms.instrument.to_lots("1000000.0003"), 3999999)
                  + big.terms.notional(big.terms.instrument.to_lots("900000.0007"), 4000000)) > 2**64 - 1
    big.check()
    hold = big.venue.shard("alice").holds[big.venue.shard("alice").orders[alice]]
    assert hold.leaves_qty == big.terms.instrument.to_lots("99999.999")
    big.replace("alice", alice, "2050000")
    big.check()
    big.place("carol", SELL, "123456.7891", "39000.00")  # alice's maker fill, at her price
    big.check()
    big.cancel("alice", alice)
    big.check()
    assert big.venue.balance("alice", "USD")[1] == 0 and big.venue.shard("alice").holds == {}
    # the fees are what the whole exact fee gives: ceil(Σ value × rate / PPM) on alice's order
    lots = big.terms.instrument.to_lots
    alice_exact = 250 * (lots("1000000.0003") * 3999999 + lots("900000.0007") * 4000000) \
        + 100 * lots("123456.7891") * 4000000
    spent = lots("1000000.0003") * 3999999 + lots("900000.0007") * 4000000 + lots("123456.7891") * 4000000
    assert big.venue.balance("alice", "USD") == (10**17 - spent - -(-alice_exact // PPM), 0)
    assert big.fees_kept_modulo_ppm()


def test_a_shard_seals_and_checkpoints_the_turn_that_settles_a_big_fill():
    """The shard role's own path: ``seal()`` encodes the EventBatch (with a checkpoint part) of the
    turn that settles a fill whose exact fee so far is past 2^64; it decodes to the same events."""
    terms = btc_usd("1", "2.5")
    lots, price = terms.instrument.to_lots, terms.instrument.to_ticks("40000")
    ledgers = {u: Ledger(shard_of(u, 2), 2, [terms], [USD, BTC]) for u in ("alice", "bob")}
    shard = Shard(ledgers["alice"], 1, EnginePosition(), {"BTC-USD": "e1"}, checkpoint_every=1)
    shard.handle_own(DepositFunds("alice", "USD", USD.to_units("100000000000"), "d1"))
    ledgers["bob"].handle(DepositFunds("bob", "BTC", BTC.to_units("2000000"), "d2"))
    [ask] = ledgers["bob"].handle(HoldOrder(PlaceOrder("bob", "BTC-USD", SELL, lots("1900000.0001"), price)))
    [bid] = shard.ledger.handle(HoldOrder(PlaceOrder("alice", "BTC-USD", BUY, lots("2000000"), price,
                                                     ts_received=time.time_ns())))
    matcher = Matcher(1, [terms.instrument])
    events = matcher.handle(ask.command) + matcher.handle(bid.command)
    shard.settle_events("e1", 1, events[0].seq, events[-1].seq, shard.ledger.own_events(events))
    frame, _ = shard.seal()
    batch = Decoder(EventBatch).decode(frame)
    settled = [e for entry in batch.entries for e in entry.events if type(e) is OrderSettled]
    fill = [e for e in settled if e.entries]
    assert fill and fill[-1].hold.leaves_qty == lots("99999.9999")
    exact = 250 * lots("1900000.0001") * price
    assert exact > 2**64 - 1 and fill[-1].hold.fee_exact == exact % PPM
    fee = -(-exact // PPM)  # rounded up, once
    assert [row.delta for entry in fill[-1].entries if entry.kind is EntryKind.FEE for row in entry.rows] == [-fee, fee]
    assert batch.checkpoint  # the checkpoint part rode along, and restores to the shard's ledger
    assert restore([terms], [batch.checkpoint], [USD, BTC]).digest() == shard.ledger.digest()
    assert shard.ledger.problems() == []


def test_at_the_taker_rate_bound_a_twenty_million_dollar_fill_is_enough():
    """taker 10,000 bps (the most allowed): 500 BTC at 40,000.00 ($20M) taken from a 1,000 BTC buy
    has an exact fee of 2 × 10^19 millionths of a unit."""
    big = BigVenue("0", "10000")
    big.deposit("alice", "USD", "80000000")
    big.deposit("bob", "BTC", "500")
    big.deposit("carol", "BTC", "1000")
    big.place("bob", SELL, "500", "40000")
    alice = big.place("alice", BUY, "1000", "40000")
    big.check()
    assert 10**6 * big.terms.notional(big.terms.instrument.to_lots("500"), 4000000) > 2**64 - 1
    big.place("carol", SELL, "333.3333", "39000")  # a maker fill at 0 bps
    big.check()
    big.place("carol", SELL, "0.0001", "40000")
    big.cancel("alice", alice)
    big.check()
    assert big.venue.balance("alice", "USD")[1] == 0
    assert big.fees_kept_modulo_ppm()


@pytest.mark.parametrize("seed", [1, 2])
def test_maker_rebates_over_many_fills_round_as_the_whole_exact_fee_does(seed):
    """A maker rebate (a negative fee) of -2.47 bps over some 200 fills of random sizes, big and tiny,
    on a buy that took a little first (a positive fee, then rebates past it: the exact fee so far
    goes below zero and on past -2^63), and on a sell: each fill is paid ``fee_due`` of the whole
    exact sum after it less that before it, rounded towards zero, as before it was kept modulo PPM."""
    rng = random.Random(seed)
    big = BigVenue("-2.47", "2.53")
    big.deposit("alice", "USD", "100000000000")
    big.deposit("bob", "BTC", "3000000")
    big.deposit("carol", "USD", "100000000000")
    big.place("bob", SELL, "0.0003", "39999.99")  # alice takes this: a positive fee first
    alice = big.place("alice", BUY, "2000000", "40000.01")
    big.check()
    left = big.terms.instrument.to_lots("2000000") - 3
    for n, lots in enumerate(schedule(rng)):
        lots = min(lots, left)
        big.place("bob", SELL, big.terms.instrument.format_qty(lots), rng.choice(["39000.00", "40000.01", "12345.67"]))
        left -= lots
        if n % 10 == 0:
            big.check()
    big.check()
    big.cancel("alice", alice)
    buy_rebates = sum(fee for (order_id, _), fee in big.fill_fees.items() if order_id == alice)
    # alice sells what she bought, resting, and carol takes it in pieces: a sell's rebates
    owned = big.venue.balance("alice", "BTC")[0] // big.terms.base_per_lot
    sell = big.place("alice", SELL, big.terms.instrument.format_qty(owned), "41234.57")
    left = owned
    for n, lots in enumerate(schedule(rng)):
        lots = min(lots, left)
        if not lots:
            break
        big.place("carol", BUY, big.terms.instrument.format_qty(lots), "41234.57")
        left -= lots
        if n % 10 == 0:
            big.check()
    if left:
        big.cancel("alice", sell)
    big.check()
    sell_rebates = sum(fee for (order_id, _), fee in big.fill_fees.items() if order_id == sell)
    assert buy_rebates < -(2**63 // PPM) and sell_rebates < -(2**63 // PPM)  # each exact sum is below -2^63
    assert len([fee for fee in big.fill_fees.values() if fee < 0]) > 150
    assert big.fees_kept_modulo_ppm()


def schedule(rng: random.Random) -> list[int]:
    """Fill sizes in lots: 25 of 40,000 BTC (a million BTC, 4 × 10^16 USD units at 40,000), and 80
    of a few lots to 100 BTC, shuffled."""
    sizes = [4 * 10**8] * 25 + [rng.randint(1, 9) for _ in range(40)] + [rng.randint(10, 10**6) for _ in range(40)]
    rng.shuffle(sizes)
    return sizes


def test_a_hold_journaled_with_the_whole_exact_fee_settles_as_one_kept_modulo_ppm():
    """A journal or checkpoint from before holds the whole exact fee so far; only its value modulo
    PPM counts, so such a hold (here: the same one, its fee_exact raised by whole units) is charged,
    holds and releases the same on every fill after it, and its next hold keeps the residue."""
    def run(lift: int) -> tuple[list, list]:
        big = BigVenue("-1.13", "3.07")
        big.deposit("alice", "USD", "1000000")
        big.deposit("bob", "BTC", "100")
        big.place("bob", SELL, "0.0007", "101.01")
        alice = big.place("alice", BUY, "5", "101.03")
        ledger = big.venue.shard("alice")
        key = ledger.orders[alice]
        old = ledger.holds[key]
        assert old.fee_exact  # a fraction of a unit
        ledger.holds[key] = msgspec.structs.replace(old, fee_exact=old.fee_exact + lift * PPM)
        for qty in ("0.0003", "0.0011", "1.2345", "0.0001"):
            big.place("bob", SELL, qty, "100.99")
        big.cancel("alice", alice)
        settled = [e for e in big.venue.ledger_events[ledger.shard] if type(e) is OrderSettled]
        return ([(e.engine_seq, e.entries) for e in settled],
                [e.hold.fee_exact for e in settled if e.hold is not None and e.hold.order_id == alice])

    today, held_today = run(0)
    for lift in (3, 10**9, -7):  # an old cumulative value, even one that was a net rebate
        before, held_before = run(lift)
        assert before == today
        assert held_before[1:] == held_today[1:] and all(0 <= fee < PPM for fee in held_before[1:])

