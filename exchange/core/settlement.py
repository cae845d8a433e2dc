"""Settlement (R2): what each engine event of a shard's users does to their accounts.

For each event that names a user of the shard, ``settle`` emits one ``OrderSettled`` with the
order's entries and its hold afterwards:

    OrderAccepted   the hold is bound to the engine's order id
    OrderRejected   the order itself refused: its whole hold is released; a replace refused: that
                    replace's extra hold is released (replaces are answered in the order sent)
    Match           settled as the fill of each side that is ours (``maker_fill``, ``taker_fill``)
    OrderFilled     TRADE: a buy pays the value from its hold and gets the base; a sell gives
                    the base from its hold and gets the value. FEE: the fill's share of the
                    order's fee (below). RELEASE: what the order no longer needs (holds.py)
    OrderReplaced   the replace's extra hold joins the order's; the surplus is released
    OrderReduced    the surplus is released
    OrderCanceled, OrderExpired, and the last fill: everything still held is released

Fees: each order's fee so far before rounding is the sum over its fills of value × rate (the
maker rate on its maker fills, the taker rate on its taker fills), in millionths of a quote unit;
a fill is charged the rounded total after it minus the rounded total before it, so rounding never
adds up across partial fills, and the total never exceeds the rounded taker fee on what was held.
Only such differences are ever used, and ``fee_due(q × PPM + x) = q + fee_due(x)`` for every
integer q, so the hold keeps that sum modulo PPM only (``HoldState.fee_exact``, in [0, PPM)):
what each fill is charged is the same as with the whole sum, which on a big order would not fit
the journal's 64-bit integers. A buy's fee (or rebate) is settled against its hold; a sell's
against what the fill paid it.

Each fill's legs go through ``*clearing``, so a shard settles its own user's side alone; the
other side's shard books the opposite legs, and ``*clearing`` nets to zero across shards.

An event of an order the ledger never held is not settled: that order was accepted before the
shard began settling its engine (accounts turned on over an existing journal; docs/accounts.md).
An order accepted without its hold, once the shard settles the engine, is a bug and raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from exchange.core.assets import PPM, Terms, fee_due
from exchange.core.holds import EntryWriter, hold_asset, need
from exchange.core.ledger_messages import (
    CLEARING_ACCOUNT, FEE_ACCOUNT, Entry, EntryKind, HoldState, LedgerEvent, OrderSettled, Pending, SettleEvents,
    SettlementAdvanced, SettlementGap, available_account, held_account,
)
from exchange.core.messages import (
    Match, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderRejected, OrderReplaced,
)
from exchange.core.orders import Side

if TYPE_CHECKING:
    from exchange.core.ledger import Ledger

BUY = Side.BUY
_SETTLED = {OrderAccepted, OrderRejected, OrderFilled, OrderCanceled, OrderExpired, OrderReduced, OrderReplaced}
_replace = msgspec.structs.replace


def settle(ledger: Ledger, cmd: SettleEvents) -> list[LedgerEvent]:
    """Settle a batch of one engine's events (see ``SettleEvents``); a gap settles nothing."""
    _, last = ledger.positions.get(cmd.engine, (0, 0))
    if cmd.first_seq > last + 1:
        gap = SettlementGap(ledger.seq + 1, cmd.ts_received, cmd.engine, cmd.epoch, last + 1, cmd.first_seq)
        ledger.apply(gap)
        return [gap]
    events: list[LedgerEvent] = []
    previous = cmd.first_seq - 1
    for event in cmd.events:
        if not previous < event.seq <= cmd.last_seq:
            raise ValueError(f"engine {cmd.engine}: event {event.seq} is out of order in batch"
                             f" {cmd.first_seq}..{cmd.last_seq}")
        previous = event.seq
        if event.seq <= last:
            continue
        if type(event) is Match:  # each side of a user of ours, as the fill it stands for
            ours = [fill() for user, fill in ((event.maker_user, event.maker_fill),
                                              (event.taker_user, event.taker_fill)) if ledger.owns(user)]
        elif type(event) in _SETTLED and ledger.owns(event.user):
            ours = (event,)
        else:
            continue
        for one in ours:
            settled = _settle_one(ledger, cmd.engine, one)
            if settled is not None:
                ledger.apply(settled)
                events.append(settled)
    if cmd.last_seq > last:
        advanced = SettlementAdvanced(ledger.seq + 1, cmd.ts_received, cmd.engine, cmd.epoch, cmd.last_seq)
        ledger.apply(advanced)
        events.append(advanced)
    return events


def _settle_one(ledger: Ledger, engine: str, event) -> OrderSettled | None:
    if type(event) is OrderAccepted:
        hold = ledger.holds.get((event.user, event.client_order_id))
        if hold is None or hold.order_id or \
                (hold.symbol, hold.side, hold.qty, hold.price) != (event.symbol, event.side, event.qty, event.price):
            raise ValueError(f"engine {engine} event {event.seq}: order {event.order_id} of {event.user}"
                             f" (#{event.client_order_id}) was accepted without its hold")
        return _settled(ledger, engine, event, hold, (), _replace(hold, order_id=event.order_id))
    if type(event) is OrderRejected:
        return _rejected(ledger, engine, event)
    key = ledger.orders.get(event.order_id)
    if key is None:
        return None  # an order accepted before this shard settled its engine (accounts turned on later)
    if key[0] != event.user:
        raise ValueError(f"engine {engine} event {event.seq}: order {event.order_id} is {key[0]}'s, not {event.user}'s")
    hold = ledger.holds[key]
    terms = ledger.terms[hold.symbol]
    writer = ledger.writer()
    match event:
        case OrderFilled():
            return _filled(ledger, engine, event, hold, terms, writer)
        case OrderCanceled() | OrderExpired():
            return _settled(ledger, engine, event, hold, _release(writer, terms, hold, hold.all_held), None)
        case OrderReduced():
            qty, leaves = hold.qty - event.reduced_qty, hold.leaves_qty - event.reduced_qty
            return _resized(ledger, engine, event, hold, terms, writer, hold.held, qty, hold.price, leaves)
        case OrderReplaced():
            answered = _answered(hold.pending, event.ts_event)
            if answered is None:
                raise ValueError(f"engine {engine} event {event.seq}: order {event.order_id} was replaced"
                                 " without a hold for it")
            lost, extra = hold.pending[:answered], hold.pending[answered].amount
            hold = _replace(hold, pending=hold.pending[answered + 1:])
            return _resized(ledger, engine, event, hold, terms, writer, hold.held + extra, event.qty,
                            event.price, event.leaves_qty, _release(writer, terms, hold, _sum(lost)))
    raise AssertionError(f"unexpected {event!r}")


def _rejected(ledger: Ledger, engine: str, event: OrderRejected) -> OrderSettled | None:
    """The order refused (its hold is not bound yet), or one of its replaces, or nothing of ours.

    A refused cancel frees nothing, though it may name an order on hold by its client order id,
    or an order with a replace on its way. (``command`` is "" in journals from before it: then
    the id alone decides, as it did when they were written.)
    """
    kind = event.command
    if kind == "CancelOrder" or kind == "CancelAll":
        return None
    hold = ledger.holds.get((event.user, event.client_order_id)) if event.client_order_id else None
    terms = ledger.terms.get(hold.symbol) if hold is not None else None
    if hold is not None and not hold.order_id and kind != "ReplaceOrder":
        return _settled(ledger, engine, event, hold, _release(ledger.writer(), terms, hold, hold.all_held), None)
    if kind == "PlaceOrder":
        return None  # a refused order whose hold is bound to another (DUPLICATE_ID): nothing of it held
    key = ledger.orders.get(event.order_id)
    if key is not None:
        hold = ledger.holds[key]
    elif event.order_id and hold is not None and hold.order_id != event.order_id:
        return None  # a replace of an order that has ended, whose client order id now names another
    if hold is None or hold.user != event.user:
        return None  # a refused cancel, or a replace of an order that has ended (and released it all)
    refused = _answered(hold.pending, event.ts_event)
    if refused is None:
        return None  # not a replace this order waits for (one of an order that ended, say)
    terms = ledger.terms[hold.symbol]
    writer = ledger.writer()
    entries = _release(writer, terms, hold, _sum(hold.pending[:refused + 1]))
    hold = _replace(hold, pending=hold.pending[refused + 1:])
    return _resized(ledger, engine, event, hold, terms, writer, hold.held, hold.qty, hold.price, hold.leaves_qty,
                    entries)


def _answered(pending: tuple[Pending, ...], ts: int) -> int | None:
    """Which of an order's ``pending`` replaces the engine's answer with ``ts_event`` ``ts`` is for,
    or None. Replaces reach the engine in the order sent, and it answers each but those it drops
    as too late (or that are lost with it), so the pending replaces before the answered one will
    never be answered: the caller releases their extras. A hold journaled before replaces had a
    ``ts`` has its answers taken in the order sent."""
    for n, replace in enumerate(pending):
        if replace.ts == ts:
            return n
    return 0 if pending and not pending[0].ts else None


def _sum(pending: tuple[Pending, ...]) -> int:
    return sum(p.amount for p in pending)


def _filled(ledger: Ledger, engine: str, event: OrderFilled, hold: HoldState, terms: Terms,
            writer: EntryWriter) -> OrderSettled:
    user, quote, base = hold.user, terms.quote.name, terms.base.name
    value = terms.notional(event.last_qty, event.last_price)
    amount = terms.base_amount(event.last_qty)
    fee_exact = hold.fee_exact + value * (terms.rates.maker if event.maker else terms.rates.taker)
    fee = fee_due(fee_exact) - fee_due(hold.fee_exact)
    fee_exact %= PPM  # the fee so far, modulo PPM (floor: in [0, PPM), rebates too): see Fees above
    held_in, free = held_account(user), available_account(user)
    if hold.side is BUY:
        entries = [writer.write(EntryKind.TRADE, (held_in, CLEARING_ACCOUNT, quote, value),
                                (CLEARING_ACCOUNT, free, base, amount))]
        held = hold.held - value - fee
        payer = held_in
    else:
        entries = [writer.write(EntryKind.TRADE, (held_in, CLEARING_ACCOUNT, base, amount),
                                (CLEARING_ACCOUNT, free, quote, value))]
        held = hold.held - amount
        payer = free
    if fee:
        entries.append(writer.write(EntryKind.FEE, (payer, FEE_ACCOUNT, quote, fee)))
    if held < 0:
        raise ValueError(f"engine {engine} event {event.seq}: order {event.order_id} spent more than it held")
    leaves = hold.leaves_qty - event.last_qty
    if leaves != event.leaves_qty:
        raise ValueError(f"engine {engine} event {event.seq}: order {event.order_id} leaves {leaves},"
                         f" not {event.leaves_qty}")
    hold = _replace(hold, held=held, leaves_qty=leaves, fee_exact=fee_exact)
    return _resized(ledger, engine, event, hold, terms, writer, held, hold.qty, hold.price, leaves, entries)


def _resized(ledger: Ledger, engine: str, event, hold: HoldState, terms: Terms, writer: EntryWriter,
             held: int, qty: int, price: int | None, leaves: int, entries: list[Entry] | None = None
             ) -> OrderSettled:
    """The order now holds ``held`` for ``leaves`` of ``qty`` at ``price``: release what it no longer needs.

    Not while a replace of it is on its way: that replace's extra was held for the order as it was
    then, so what a fill or a self-trade reduce frees meanwhile stays held until the last such
    replace has landed (or been refused). Otherwise a reduce (which lowers the order's quantity,
    and so raises what a replace to a given total adds) would release funds the replace needs.
    """
    entries = entries or []
    if not leaves:  # it is done: everything goes back
        entries += _release(writer, terms, hold, held + sum(p.amount for p in hold.pending))
        return _settled(ledger, engine, event, hold, tuple(entries), None)
    if hold.pending:
        after = _replace(hold, qty=qty, price=price, leaves_qty=leaves, held=held)
        return _settled(ledger, engine, event, hold, tuple(entries), after)
    if hold.side is BUY and price is None:
        needed = held  # a market buy keeps its budget until it ends
    else:
        needed = need(terms, hold.side, price, leaves, hold.fee_exact)
    if needed > held:
        raise ValueError(f"engine {engine} event {event.seq}: order {hold.order_id} needs {needed}, holds {held}")
    entries += _release(writer, terms, hold, held - needed)
    after = _replace(hold, qty=qty, price=price, leaves_qty=leaves, held=needed)
    return _settled(ledger, engine, event, hold, tuple(entries), after)


def _release(writer: EntryWriter, terms: Terms, hold: HoldState, amount: int) -> list[Entry]:
    if not amount:
        return []
    asset = hold_asset(terms, hold.side).name
    return [writer.write(EntryKind.RELEASE, (held_account(hold.user), available_account(hold.user), asset, amount))]


def _settled(ledger: Ledger, engine: str, event, hold: HoldState, entries, after: HoldState | None) -> OrderSettled:
    return OrderSettled(ledger.seq + 1, event.ts_event, hold.user, hold.client_order_id, (after or hold).order_id,
                        engine, event.seq, tuple(entries), after)
