"""How much an order holds: the arithmetic of R1, in one place.

A sell holds its remaining quantity in the base. A limit buy holds, in the quote, what its
remaining quantity costs at its limit price plus the most fee it can still be charged:

    need = n + fee_due(fee_exact + n × taker) − fee_due(fee_exact),   n = notional(leaves, price)

where ``fee_exact`` is the fee charged so far before rounding. After every fill, reduce or
replace the ledger releases ``held − need``; that is never negative (a fill is at the limit
price or better and at a rate no higher than the taker's), so holding ``need`` is always
enough. A market buy holds its budget until it ends. Entries are built by ``EntryWriter``.
"""

from __future__ import annotations

from collections.abc import Mapping

from exchange.core.assets import Asset, Terms, fee_due
from exchange.core.ledger_messages import Entry, EntryKind, HoldState, Row
from exchange.core.orders import Side

BUY = Side.BUY


def hold_asset(terms: Terms, side: Side) -> Asset:
    """The asset an order on ``side`` holds: the quote for a buy, the base for a sell."""
    return terms.quote if side is BUY else terms.base


def need(terms: Terms, side: Side, price: int | None, leaves_qty: int, fee_exact: int) -> int:
    """What a limit order (or any sell) with ``leaves_qty`` still open must hold (see the module)."""
    if side is not BUY:
        return terms.base_amount(leaves_qty)
    value = terms.notional(leaves_qty, price)
    return value + fee_due(fee_exact + value * terms.rates.taker) - fee_due(fee_exact)


def replace_extra(terms: Terms, hold: HoldState, qty: int, price: int | None) -> int:
    """What a replace to total ``qty`` at ``price`` (None: same price) must hold on top of ``hold``.

    The engine may fill more of the order before the replace reaches it, and earlier replaces
    still pending may or may not succeed: the extra covers the worst of all those cases, taking
    every quantity and price the order may have when the replace lands (see docs/accounts.md).
    """
    filled = hold.qty - hold.leaves_qty
    qtys = {hold.qty, *(p.qty for p in hold.pending)}
    if hold.side is not BUY:
        return max(terms.base_amount(max(0, qty - before)) for before in qtys)
    if hold.price is None:
        return 0  # a market order is never replaced (the engine refuses)
    prices = {hold.price, *(p.price for p in hold.pending if p.price is not None)}
    extra = 0
    for before_qty in qtys:
        added = max(0, qty - before_qty)
        kept = max(0, min(before_qty, qty) - filled)
        for before_price in prices:
            after = before_price if price is None else price
            value = terms.notional(added, after) + terms.notional(kept, max(0, after - before_price))
            extra = max(extra, terms.with_taker_fee(value))
    return extra


class EntryWriter:
    """Builds numbered entries against the ledger's balances, without changing them.

    Balances after each row count the rows written before it, so one event can carry several
    entries; ``apply`` then changes the ledger's balances exactly as the rows say.
    """

    def __init__(self, balances: Mapping[tuple[str, str], int], last_entry: int):
        self._balances = balances
        self._changed: dict[tuple[str, str], int] = {}
        self.last_entry = last_entry

    def balance(self, account: str, asset: str) -> int:
        key = (account, asset)
        return self._changed.get(key, self._balances.get(key, 0))

    def write(self, kind: EntryKind, *moves: tuple[str, str, int]) -> Entry:
        """An entry of ``moves`` (account, asset, delta), which must sum to zero per asset."""
        sums: dict[str, int] = {}
        rows = []
        for account, asset, delta in moves:
            balance = self.balance(account, asset) + delta
            self._changed[(account, asset)] = balance
            rows.append(Row(account, asset, delta, balance))
            sums[asset] = sums.get(asset, 0) + delta
        if any(sums.values()):
            raise ValueError(f"entry {kind.value} does not balance: {sums}")
        self.last_entry += 1
        return Entry(self.last_entry, kind, tuple(rows))
