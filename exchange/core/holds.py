"""How much an order holds: the arithmetic of R1, in one place.

A sell holds its remaining quantity in the base. A limit buy holds, in the quote, what its
remaining quantity costs at its limit price plus the most fee it can still be charged:

    need = n + fee_due(fee_exact + n × taker) − fee_due(fee_exact),   n = notional(leaves, price)

where ``fee_exact`` is the order's fee so far before rounding (millionths of a quote unit), kept
modulo PPM (``HoldState``): ``fee_due(q × PPM + x) = q + fee_due(x)`` for every integer q, so the
difference is the same as with the whole sum, or any value congruent to it (a hold journaled
before the fee was kept modulo PPM has the whole sum, and needs just the same). After every
fill, reduce or replace the ledger releases ``held − need``; that is never negative (a fill is at
the limit price or better and at a rate no higher than the taker's), so holding ``need`` is
always enough. A market buy holds its budget until it ends. ``hold_order`` and ``hold_replace`` decide
a command's hold (``Ledger.handle`` applies it); entries are built by ``EntryWriter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from exchange.core.assets import Asset, Terms, fee_due
from exchange.core.ledger_messages import (
    Entry, EntryKind, HoldOrder, HoldReplace, HoldState, LedgerEvent, OrderHeld, Pending, ReplaceHeld, Row,
    available_account, held_account,
)
from exchange.core.orders import Side, TimeInForce
from exchange.errors import RejectCode

if TYPE_CHECKING:
    from exchange.core.ledger import Ledger

BUY = Side.BUY
FOK = TimeInForce.FOK


def hold_asset(terms: Terms, side: Side) -> Asset:
    """The asset an order on ``side`` holds: the quote for a buy, the base for a sell."""
    return terms.quote if side is BUY else terms.base


def need(terms: Terms, side: Side, price: int | None, leaves_qty: int, fee_exact: int) -> int:
    """What a limit order (or any sell) with ``leaves_qty`` still open must hold (see the module).

    ``fee_exact`` is the order's fee so far before rounding, or that modulo PPM: the answer is the same."""
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


def hold_order(ledger: Ledger, cmd: HoldOrder) -> LedgerEvent:
    """R1 for a new order: ``OrderHeld`` with what it holds, or ``HoldRejected``."""
    order = cmd.order
    terms = ledger.terms.get(order.symbol)
    if terms is None:
        return ledger.rejected(order, RejectCode.UNKNOWN_SYMBOL, f"no instrument {order.symbol!r}")
    instrument = terms.instrument
    if instrument.qty_problem(order.qty):
        return ledger.rejected(order, RejectCode.BAD_QTY, instrument.qty_problem(order.qty))
    if order.price is not None and instrument.price_problem(order.price):
        return ledger.rejected(order, RejectCode.BAD_PRICE, instrument.price_problem(order.price))
    market_buy = order.price is None and order.side is BUY
    if cmd.funds < 0 or (cmd.funds and not market_buy):
        return ledger.rejected(order, RejectCode.MALFORMED, "FUNDS is for a market buy, and positive")
    cid = order.client_order_id or f"~{ledger.shard}-{ledger.last_hold + 1}"
    known = ledger.holds.get((order.user, cid))
    if known is not None:
        return ledger.rejected(order, RejectCode.DUPLICATE_ID, f"client order id #{cid} is in use",
                               known.order_id)
    asset = hold_asset(terms, order.side)
    budget = 0
    if not market_buy:
        amount = need(terms, order.side, order.price, order.qty, 0)
    elif order.tif is FOK and not cmd.funds:
        # all or nothing, so no budget (the engine holds a fill or kill to none): it holds the most
        # its quantity can cost, at max_price, and is refused if the user has less
        amount = terms.with_taker_fee(terms.notional(order.qty, instrument.max_price))
    else:  # FUNDS, or else all it has, up to the most the order can cost (at max_price)
        amount = cmd.funds or min(ledger.balance(order.user, asset.name)[0],
                                  terms.with_taker_fee(terms.notional(order.qty, instrument.max_price)))
        budget = terms.budget(amount)
        if not budget:
            return ledger.rejected(order, RejectCode.INSUFFICIENT_FUNDS,
                                   f"a market buy needs {asset.name} to spend; {asset.format(amount)} buys"
                                   f" nothing on {order.symbol}")
    short = ledger.short(order.user, asset, amount)
    if short:
        return ledger.rejected(order, RejectCode.INSUFFICIENT_FUNDS, short)
    user = order.user
    entry = ledger.writer().write(EntryKind.HOLD, (available_account(user), held_account(user), asset.name, amount))
    hold = HoldState(user, cid, order.symbol, order.side, order.price, order.qty, order.qty, amount)
    command = order if order.client_order_id else msgspec.structs.replace(order, client_order_id=cid)
    return OrderHeld(ledger.seq + 1, order.ts_received, user, hold, entry, budget, command)


def hold_replace(ledger: Ledger, cmd: HoldReplace) -> LedgerEvent:
    """R1 for a replace: ``ReplaceHeld`` with its extra hold (if any), or ``HoldRejected``."""
    replace = cmd.replace
    key = ledger.orders.get(replace.order_id) or (replace.user, cmd.client_order_id or replace.client_order_id)
    hold = ledger.holds.get(key)
    name = replace.order_id or f"#{replace.client_order_id}"
    if hold is None or hold.user != replace.user or (replace.order_id and hold.order_id not in ("", replace.order_id)):
        return ledger.rejected(replace, RejectCode.NOT_YOUR_ORDER, f"no open order {name} of user {replace.user}")
    # an order its engine has not accepted yet (or whose acceptance is not settled yet) is replaced
    # all the same: the replace reaches the engine after the order, and if the order is refused,
    # its whole hold, this replace's extra included, comes back
    terms = ledger.terms[hold.symbol]
    instrument = terms.instrument
    if instrument.qty_problem(replace.qty):
        return ledger.rejected(replace, RejectCode.BAD_QTY, instrument.qty_problem(replace.qty), hold.order_id)
    if replace.price is not None and instrument.price_problem(replace.price):
        return ledger.rejected(replace, RejectCode.BAD_PRICE, instrument.price_problem(replace.price),
                               hold.order_id)
    extra = replace_extra(terms, hold, replace.qty, replace.price)
    asset = hold_asset(terms, hold.side)
    short = ledger.short(hold.user, asset, extra, "this replace ")
    if short:
        return ledger.rejected(replace, RejectCode.INSUFFICIENT_FUNDS, short, hold.order_id)
    entry = None
    if extra:
        entry = ledger.writer().write(EntryKind.HOLD,
                                      (available_account(hold.user), held_account(hold.user), asset.name, extra))
    pending = hold.pending + (Pending(extra, replace.qty, replace.price, replace.ts_received),)
    return ReplaceHeld(ledger.seq + 1, replace.ts_received, hold.user,
                       msgspec.structs.replace(hold, pending=pending), entry, replace)


class EntryWriter:
    """Builds numbered entries against the ledger's balances, without changing them.

    An entry is made of moves: ``amount`` of an asset leaves one account and reaches another, two
    rows (the source's ``-amount``, the target's ``+amount``), so every entry sums to zero per asset
    by construction. Balances after each row count the rows written before it, so one event can
    carry several entries; ``apply`` then changes the ledger's balances exactly as the rows say.
    """

    __slots__ = ("_balances", "_changed", "last_entry")

    def __init__(self, balances: Mapping[tuple[str, str], int], last_entry: int):
        self._balances = balances
        self._changed: dict[tuple[str, str], int] = {}
        self.last_entry = last_entry

    def write(self, kind: EntryKind, *moves: tuple[str, str, str, int]) -> Entry:
        """An entry of ``moves``, each (source, target, asset, amount), in order: two rows each."""
        rows = []
        for source, target, asset, amount in moves:
            rows.append(self._row(source, asset, -amount))
            rows.append(self._row(target, asset, amount))
        self.last_entry += 1
        return Entry(self.last_entry, kind, tuple(rows))

    def _row(self, account: str, asset: str, delta: int) -> Row:
        key = (account, asset)
        balance = self._changed.get(key)
        balance = (self._balances.get(key, 0) if balance is None else balance) + delta
        self._changed[key] = balance
        return Row(account, asset, delta, balance)
