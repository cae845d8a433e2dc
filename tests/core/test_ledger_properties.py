"""Property tests: two ledger shards and a real matcher against ``ledger_reference.ReferenceAccounts``.

``LedgerVersusReference`` sends random deposits, withdrawals (some beyond what is available),
transfers sent again and references reused (by their user or another), limit and market orders
of every time in force, replaces up and down, cancels and cancel-alls of four users on two shards
and two instruments that share USD, with fee rates that round on nearly every fill (one with a
maker rebate). After every step it requires:
- each refusal (INSUFFICIENT_FUNDS) exactly when the reference says the user is short;
- a transfer sent again answered with its first outcome (``TransferRepeated``, its entry) if it
  was applied, decided again if it was refused; a user's reference reused for another transfer
  refused DUPLICATE_ID; the same reference of another user a transfer of its own;
- every user's available and held balance, and the fees, equal to the reference's;
- the invariants of every shard (``Ledger.problems``) and ``*clearing`` netting to zero across
  the shards.
At the end each shard's events, through msgpack, rebuild a ledger with its live digest, and a
checkpoint of it restores to that digest.
"""

from __future__ import annotations

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ledger_reference import Money, ReferenceAccounts
from ledger_scenario import BTC, ETH, USD, Venue

from exchange.core.assets import FeeRates, Terms
from exchange.core.instruments import Instrument
from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_checkpoint import restore, take
from exchange.core.ledger_messages import (
    AnyLedgerEvent, DepositFunds, FundsMoved, HoldOrder, HoldRejected, HoldReplace, OrderHeld, ReplaceHeld,
    TransferRejected, TransferRepeated, WithdrawFunds,
)
from exchange.core.messages import CancelAll, CancelOrder, OrderAccepted, PlaceOrder, ReplaceOrder, expand
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.errors import RejectCode

USERS = ("alice", "bob", "carol", "dave")
assert {shard_of(user, 2) for user in USERS} == {0, 1}  # both shards have users
TERMS = [
    Terms(Instrument("BTC-USD", tick_size="1", lot_size="0.01", max_qty="0.08", max_price="112"), BTC, USD,
          FeeRates("-10", "30")),
    Terms(Instrument("ETH-USD", tick_size="0.1", lot_size="0.1", max_qty="0.8", max_price="101.2",
                     stp_default=SelfTradePrevention.DECREMENT), ETH, USD, FeeRates("20", "25")),
]
LOWEST = {"BTC-USD": 100, "ETH-USD": 1000}  # prices: 12 ticks up from here
ASSETS = ("USD", "BTC", "ETH")
GRANT = {"USD": 4000, "BTC": 8000, "ETH": 800}  # about what 8 lots cost: a deposit is up to this


class LedgerVersusReference(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.venue = Venue(shards=2, all_terms=TERMS)
        self.reference = ReferenceAccounts({t.symbol: Money.of(t) for t in TERMS})
        self.refs = 0
        self.sent: dict[tuple[str, str], tuple] = {}  # (user, ref) → (command, entry id; None: refused)

    def _engine(self, command, market_budget: int = 0) -> None:
        for event in expand(self.venue.engine(command)):  # the reference model knows fills and trades
            self.reference.on_event(event, market_budget if isinstance(event, OrderAccepted) else 0)

    def _open_orders(self, user: str) -> list:
        return [o for book in self.venue.matcher.books.values() for o in book.orders.values() if o.user == user]

    @initialize()
    def fund_everyone(self):
        for user in USERS:
            for asset in ASSETS:
                self.deposit(user, asset, 2000)

    def _send(self, command: DepositFunds | WithdrawFunds):
        """The ledger's answer to a transfer."""
        send = self.venue.deposit if isinstance(command, DepositFunds) else self.venue.withdraw
        [event] = send(command.user, command.asset, command.amount, command.ref)
        return event

    def _transfer(self, command: DepositFunds | WithdrawFunds) -> None:
        """Send a transfer its user has not applied with its reference; check it against the reference."""
        event = self._send(command)
        if isinstance(command, DepositFunds):
            self.reference.deposit(command.user, command.asset, command.amount)
        else:
            assert isinstance(event, TransferRejected) != self.reference.withdraw(command.user, command.asset,
                                                                                  command.amount)
        entry_id = event.entry.entry_id if isinstance(event, FundsMoved) else None
        self.sent[(command.user, command.ref)] = (command, entry_id)

    @rule(user=st.sampled_from(USERS), asset=st.sampled_from(ASSETS), n=st.integers(1, 1000))
    def deposit(self, user, asset, n):
        self.refs += 1
        self._transfer(DepositFunds(user, asset, max(1, GRANT[asset] * n // 1000), f"r{self.refs}"))

    @rule(user=st.sampled_from(USERS), asset=st.sampled_from(ASSETS), extra=st.integers(-50, 3))
    def withdraw(self, user, asset, extra):
        self.refs += 1
        self._transfer(WithdrawFunds(user, asset, max(1, self.reference.available(user, asset) + extra),
                                     f"r{self.refs}"))

    @rule(pick=st.integers(0, 10**6))
    def send_again(self, pick):
        if not self.sent:
            return
        command, entry_id = list(self.sent.values())[pick % len(self.sent)]
        if entry_id is None:  # refused: not remembered, so decided again
            return self._transfer(command)
        event = self._send(command)
        assert isinstance(event, TransferRepeated) and event.entry_id == entry_id, event

    @rule(pick=st.integers(0, 10**6), user=st.sampled_from(USERS), extra=st.integers(1, 3))
    def reuse_reference(self, pick, user, extra):
        """A deposit with a reference already sent (by ``user`` or another): refused DUPLICATE_ID if
        ``user`` applied another transfer with it, a transfer of its own if ``user`` applied none."""
        if not self.sent:
            return
        first, _ = list(self.sent.values())[pick % len(self.sent)]
        command = DepositFunds(user, first.asset, first.amount + extra, first.ref)
        users_own, applied = self.sent.get((user, first.ref), (None, None))
        if applied is None:
            return self._transfer(command)
        event = self._send(command)
        if users_own == command:  # this very deposit was made before: a retry
            assert isinstance(event, TransferRepeated) and event.entry_id == applied, event
        else:
            assert isinstance(event, TransferRejected) and event.code is RejectCode.DUPLICATE_ID, event

    @rule(user=st.sampled_from(USERS), terms=st.sampled_from(TERMS), side=st.sampled_from(Side),
          qty=st.integers(1, 8), offset=st.integers(0, 11),
          tif=st.sampled_from(TimeInForce))
    def place(self, user, terms, side, qty, offset, tif):
        price = LOWEST[terms.symbol] + offset
        needs = self.reference.order_needs(user, terms.symbol, side, qty, price)
        self._hold(PlaceOrder(user, terms.symbol, side, qty, price, tif), needs, terms, side)

    @rule(user=st.sampled_from(USERS), terms=st.sampled_from(TERMS), side=st.sampled_from(Side),
          qty=st.integers(1, 8))
    def market(self, user, terms, side, qty):
        needs = self.reference.order_needs(user, terms.symbol, side, qty, None)
        money = self.reference.money[terms.symbol]
        if side is Side.BUY and needs < money.with_taker_fee(money.value(qty, money.max_price)):
            return  # its budget binds, and the matcher cannot stop at a budget yet
        self._hold(PlaceOrder(user, terms.symbol, side, qty, None, TimeInForce.IOC), needs, terms, side)

    def _hold(self, order: PlaceOrder, needs: int, terms: Terms, side: Side) -> None:
        asset = terms.quote.name if side is Side.BUY else terms.base.name
        short = needs > self.reference.available(order.user, asset) or needs == 0
        [event] = self.venue.shard(order.user).handle(HoldOrder(order))
        self.venue.ledger_events[self.venue.shard(order.user).shard].append(event)
        if short:
            assert isinstance(event, HoldRejected) and event.code is RejectCode.INSUFFICIENT_FUNDS, event
            return
        assert isinstance(event, OrderHeld), event
        assert event.entry.rows[1].delta == needs
        self._engine(event.command, needs if order.price is None and side is Side.BUY else 0)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 20), qty=st.integers(1, 8),
          offset=st.none() | st.integers(0, 11))
    def replace(self, user, pick, qty, offset):
        mine = self._open_orders(user)
        if not mine:
            return
        order = mine[pick % len(mine)]
        symbol = next(s for s, b in self.venue.matcher.books.items() if order.order_id in b.orders)
        price = None if offset is None else LOWEST[symbol] + offset
        ledger = self.venue.shard(user)
        terms = ledger.terms[symbol]
        problem = terms.instrument.qty_problem(qty)
        needs = self.reference.replace_needs(order.order_id, qty, price)
        asset = terms.quote.name if order.side is Side.BUY else terms.base.name
        [event] = ledger.handle(HoldReplace(ReplaceOrder(user, symbol, qty, price, order.order_id)))
        self.venue.ledger_events[ledger.shard].append(event)
        if problem:
            assert event.code is RejectCode.BAD_QTY
        elif needs > self.reference.available(user, asset):
            assert isinstance(event, HoldRejected) and event.code is RejectCode.INSUFFICIENT_FUNDS, event
        else:
            assert isinstance(event, ReplaceHeld), event
            assert (event.entry.rows[1].delta if event.entry else 0) == needs
            self._engine(event.command)

    @rule(user=st.sampled_from(USERS), pick=st.integers(0, 20))
    def cancel(self, user, pick):
        mine = self._open_orders(user)
        if mine:
            self._engine(CancelOrder(user, "", mine[pick % len(mine)].order_id))

    @rule(user=st.sampled_from(USERS))
    def cancel_all(self, user):
        self._engine(CancelAll(user))

    @invariant()
    def balances_and_invariants_match_the_reference(self):
        assert self.venue.problems() == []
        for user in USERS:
            for asset in ASSETS:
                expected = (self.reference.available(user, asset), self.reference.held(user, asset))
                assert self.venue.balance(user, asset) == expected, (user, asset)
        for asset in ASSETS:
            assert self.venue.fees(asset) == self.reference.fees.get(asset, 0), asset

    def teardown(self):
        for ledger, events in zip(self.venue.ledgers, self.venue.ledger_events):
            decoded = [msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=AnyLedgerEvent) for e in events]
            assert Ledger.rebuild(ledger.shard, ledger.shards, TERMS, decoded).digest() == ledger.digest()
            assert restore(TERMS, take(ledger, 256)).digest() == ledger.digest()


LedgerVersusReference.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_ledger_versus_reference = LedgerVersusReference.TestCase
