"""A venue in memory for ledger tests: ledger shards in front of a real matcher, wired as the mesh will.

An order goes to its user's shard (``HoldOrder``); what the shard holds goes on to the matcher;
the matcher's events go back to every shard (``SettleEvents``), which settles its own users' side.
Cancels go straight to the matcher. Amounts in the tests are written in units: USD has unit
0.01 and BTC 0.00001, so ``usd(12.34)`` is 1234.
"""

from __future__ import annotations

from decimal import Decimal

from exchange.core.assets import Asset, FeeRates, Terms
from exchange.core.instruments import Instrument
from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_messages import (
    CLEARING_ACCOUNT, DepositFunds, HoldOrder, HoldReplace, OrderHeld, ReplaceHeld, SettleEvents,
    WithdrawFunds,
)
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, PlaceOrder, ReplaceOrder
from exchange.core.orders import Side, TimeInForce

USD = Asset("USD", "0.01")
BTC = Asset("BTC", "0.00001")
ETH = Asset("ETH", "0.001")
# one lot at one tick is one cent, so a notional in cents is qty × price
BTC_USD = Instrument("BTC-USD", tick_size="1", lot_size="0.01", max_price="100000")
ETH_USD = Instrument("ETH-USD", tick_size="0.1", lot_size="0.1", max_price="10000")
ENGINE = "e1"


def usd(amount: str | float) -> int:
    return int(Decimal(str(amount)) * 100)


def terms(maker_bps: str = "0", taker_bps: str = "0") -> list[Terms]:
    rates = FeeRates(maker_bps, taker_bps)
    return [Terms(BTC_USD, BTC, USD, rates), Terms(ETH_USD, ETH, USD, rates)]


class Venue:
    """``shards`` ledger shards and one matcher (engine ``e1``) with BTC-USD and ETH-USD."""

    def __init__(self, maker_bps: str = "0", taker_bps: str = "0", shards: int = 1,
                 all_terms: list[Terms] | None = None):
        self.terms = all_terms or terms(maker_bps, taker_bps)
        self.ledgers = [Ledger(n, shards, self.terms) for n in range(shards)]
        self.matcher = Matcher(7, [t.instrument for t in self.terms])
        self.ledger_events: list[list] = [[] for _ in range(shards)]
        self.engine_events: list = []
        self.replaces = 0  # replaces sent: each gets its own ts_received, as the gateway stamps it

    def shard(self, user: str) -> Ledger:
        return self.ledgers[shard_of(user, len(self.ledgers))]

    def ledger_of(self, user: str) -> Ledger:
        return self.shard(user)

    def _ledger(self, user: str, command) -> list:
        ledger = self.shard(user)
        events = ledger.handle(command)
        self.ledger_events[ledger.shard] += events
        return events

    def deposit(self, user: str, asset: str, amount: int, ref: str | None = None) -> list:
        return self._ledger(user, DepositFunds(user, asset, amount, ref or f"d-{user}-{asset}-{amount}"))

    def withdraw(self, user: str, asset: str, amount: int, ref: str) -> list:
        return self._ledger(user, WithdrawFunds(user, asset, amount, ref))

    def engine(self, command) -> list:
        """Send ``command`` to the matcher and settle its events on every shard."""
        events = self.matcher.handle(command)
        self.engine_events += events
        if events:
            for ledger in self.ledgers:
                self.ledger_events[ledger.shard] += ledger.handle(
                    SettleEvents(ENGINE, 1, events[0].seq, events[-1].seq, events))
        return events

    def place(self, user: str, side: Side, qty: int, price: int | None, symbol: str = "BTC-USD",
              tif: TimeInForce = TimeInForce.GTC, funds: int = 0, cid: str = "") -> tuple[list, list]:
        """(ledger events, engine events) of an order."""
        held = self._ledger(user, HoldOrder(PlaceOrder(user, symbol, side, qty, price, tif, client_order_id=cid),
                                            funds))
        if not isinstance(held[0], OrderHeld):
            return held, []
        return held, self.engine(held[0].command)

    def buy(self, user: str, qty: int, price: int | None, **kw) -> tuple[list, list]:
        return self.place(user, Side.BUY, qty, price, **kw)

    def sell(self, user: str, qty: int, price: int | None, **kw) -> tuple[list, list]:
        return self.place(user, Side.SELL, qty, price, **kw)

    def replace(self, user: str, order_id: str, qty: int, price: int | None = None,
                symbol: str = "BTC-USD") -> tuple[list, list]:
        held = self._ledger(user, HoldReplace(self.replace_command(user, order_id, qty, price, symbol)))
        if not isinstance(held[0], ReplaceHeld):
            return held, []
        return held, self.engine(held[0].command)

    def replace_command(self, user: str, order_id: str, qty: int, price: int | None = None,
                        symbol: str = "BTC-USD") -> ReplaceOrder:
        self.replaces += 1
        return ReplaceOrder(user, symbol, qty, price, order_id, ts_received=self.replaces)

    def cancel(self, user: str, order_id: str) -> list:
        return self.engine(CancelOrder(user, "", order_id))

    def balance(self, user: str, asset: str = "USD") -> tuple[int, int]:
        return self.shard(user).balance(user, asset)

    def fees(self, asset: str = "USD") -> int:
        return sum(ledger.balances.get(("*fee", asset), 0) for ledger in self.ledgers)

    def problems(self) -> list[str]:
        """Every shard's broken invariants, and clearing that does not net to zero across shards."""
        found = [f"shard {ledger.shard}: {problem}" for ledger in self.ledgers for problem in ledger.problems()]
        assets = {asset for ledger in self.ledgers for (_, asset) in ledger.balances}
        for asset in sorted(assets):
            total = sum(ledger.balances.get((CLEARING_ACCOUNT, asset), 0) for ledger in self.ledgers)
            if total:
                found.append(f"{CLEARING_ACCOUNT} {asset} nets to {total} across shards")
        return found
