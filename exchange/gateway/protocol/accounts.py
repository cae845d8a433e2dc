"""Between the client protocol and the ledger shards: FUNDS and transfer amounts in, balances and
transfer outcomes out. Pure, like exchange.gateway.protocol.translate.

Amounts are decimal text at the edge and whole units inside: an amount that is not a whole
number of its unit is refused (MALFORMED), never rounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext

from exchange.core.assets import Asset, Terms
from exchange.core.instruments import GridError, Instrument, parse_decimal
from exchange.core.ledger_messages import (
    EntryKind, FundsDeposited, FundsWithdrawn, HoldRejected, TransferRejected, TransferRepeated,
)
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.messages import AccountBalances, ClientReply, Rej, TransferOk
from exchange.gateway.protocol.translate import shown

MAX_BUDGET = 2**63 - 1  # lots × ticks: the most a PlaceOrder's funds carries (msgpack, a signed 64-bit integer)
# FUNDS with accounts off, exactly: tick and lot have at most 12 + 12 digits each, so tick × lot at most
# 48, and an amount below 10**12 is below 10**36 steps of at least 10**-24. Decimal's default 28 digits
# fail on a fine grid (tick 0.00000001 × lot 0.000000001); Inexact would be our bug, not the client's.
_EXACT = Context(prec=48, traps=[InvalidOperation, Inexact])


def units(asset: Asset, text: str) -> int:
    """``text`` (decimal) of ``asset`` in its smallest units; ProtocolError MALFORMED if off its unit."""
    try:
        return asset.to_units(text)
    except GridError as e:
        raise ProtocolError(e.code, e.reason) from None


def funds(text: str, instrument: Instrument, terms: Terms | None) -> int:
    """A FUNDS budget: with accounts on (``terms``), units of the instrument's quote asset, which its
    ledger shard holds; with accounts off, the engine's lots × ticks (price × quantity), the budget
    a matcher spends. ProtocolError MALFORMED if the amount is not a whole number of those, or with
    accounts off more than MAX_BUDGET of them."""
    if terms is not None:
        return units(terms.quote, text)
    try:
        amount = parse_decimal(text, "FUNDS", RejectCode.MALFORMED)
    except GridError as e:
        raise ProtocolError(e.code, e.reason) from None
    with localcontext(_EXACT):
        step = Decimal(instrument.tick_size) * Decimal(instrument.lot_size)
        budget, rest = divmod(amount, step)
        step_text = f"{step.normalize():f}"
    if rest:
        raise ProtocolError(RejectCode.MALFORMED, f"FUNDS {text} is not a multiple of {instrument.symbol}'s"
                            f" tick × lot, {step_text}")
    if budget > MAX_BUDGET:
        raise ProtocolError(RejectCode.MALFORMED, f"FUNDS {text} is more than {instrument.symbol}'s largest"
                            f" budget, {MAX_BUDGET} × its tick × lot, {step_text}")
    return int(budget)


def balances_reply(balances: Iterable, assets: dict[str, Asset]) -> AccountBalances:
    """The answer to BALANCE from a shard's Balances: each asset's available and held, as decimal text."""
    return AccountBalances([(b.asset, assets[b.asset].format(b.available), assets[b.asset].format(b.held))
                            for b in balances])


def ledger_reply(event, assets: dict[str, Asset], client_order_id: str = "") -> ClientReply:
    """What a client is told of a ledger shard's answer to its order (a refused hold) or transfer.

    ``client_order_id`` is the one the client's request named (a refused hold echoes it). A transfer
    sent again (TransferRepeated) is answered exactly as the first one was, so a retry reads the same."""
    match event:
        case HoldRejected():
            return Rej(event.code, event.reason, client_order_id or shown(event.client_order_id))
        case TransferRejected():
            return Rej(event.code, event.reason)
        case FundsDeposited() | FundsWithdrawn():
            verb = "DEPOSIT" if isinstance(event, FundsDeposited) else "WITHDRAW"
            return TransferOk(verb, event.user, event.asset, assets[event.asset].format(event.amount), event.ref,
                              event.entry.entry_id)
        case TransferRepeated():
            verb = "DEPOSIT" if event.kind is EntryKind.DEPOSIT else "WITHDRAW"
            return TransferOk(verb, event.user, event.asset, assets[event.asset].format(event.amount), event.ref,
                              event.entry_id)
    raise TypeError(f"not a ledger answer: {event!r}")
