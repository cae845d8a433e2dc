"""Commands into a ledger shard and events out of it: frozen, tagged msgspec structs.

The same rules as ``messages.py``: a struct's class name is its tag, structs are ``array_like``,
new fields get defaults and go last. Amounts are ints in their asset's smallest unit.

Accounts are named by text: a user's ``"<user>:available"`` and ``"<user>:held"``, and the venue's
``*fee`` (fees in, rebates out), ``*external`` (the other side of deposits and withdrawals) and
``*clearing`` (the other side of each fill's legs; it nets to zero per asset once every shard
has settled the same engine events). User names cannot contain ``:`` or ``*``.

Every change of a balance is an ``Entry``: rows (account, asset, delta, balance after) that sum
to zero per asset, numbered by ``entry_id`` (+1 per entry, per shard).
"""

from __future__ import annotations

import enum
from typing import Union

import msgspec

from exchange.core.messages import AnyEvent, PlaceOrder, ReplaceOrder
from exchange.core.orders import Side
from exchange.errors import RejectCode

FEE_ACCOUNT = "*fee"
EXTERNAL_ACCOUNT = "*external"
CLEARING_ACCOUNT = "*clearing"


def available_account(user: str) -> str:
    return f"{user}:available"


def held_account(user: str) -> str:
    return f"{user}:held"


class EntryKind(enum.Enum):
    """What an entry records."""

    DEPOSIT = "DEPOSIT"  # external → the user's available
    WITHDRAWAL = "WITHDRAWAL"  # the user's available → external
    HOLD = "HOLD"  # available → held, before an order (or a replace) goes to its engine
    RELEASE = "RELEASE"  # held → available: what an order no longer needs
    TRADE = "TRADE"  # one fill's legs: what the user gives (from held) and gets (to available)
    FEE = "FEE"  # a fill's fee to the fee account, or a rebate from it


class Row(msgspec.Struct, frozen=True, array_like=True, gc=False):
    account: str
    asset: str
    delta: int
    balance: int  # the account's balance in ``asset`` after this row


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    entry_id: int
    kind: EntryKind
    rows: tuple[Row, ...]


class Pending(msgspec.Struct, frozen=True, array_like=True, gc=False, omit_defaults=True):
    """A replace sent to the engine and not answered yet: its extra hold and its target.

    ``ts`` is the replace's ``ts_received``, which the engine's answer to it (``OrderReplaced``,
    or ``OrderRejected``) carries as its ``ts_event``: settlement takes each answer for the
    replace it is for, not for whichever was sent first (the engine answers none of those it drops
    as too late). 0 in a hold journaled before it (encoded as before, so its digest is unchanged).
    """

    amount: int
    qty: int
    price: int | None  # None: the replace keeps the price
    ts: int = 0


class HoldState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One order's hold: what it still holds and what the ledger knows of the order.

    ``held`` is in the quote for a buy, the base for a sell; ``pending`` replaces hold more on
    top of it. ``fee_exact`` is the order's fee so far in millionths of a quote unit (before
    rounding: the sum of value × rate over its fills) modulo PPM, in [0, PPM) even for rebates:
    settlement only ever uses ``fee_due(fee_exact + d) - fee_due(fee_exact)``, which is the same
    for every value congruent modulo PPM (``fee_due(q × PPM + x) = q + fee_due(x)``), and the whole
    sum would not fit the journal's 64-bit integers on a big order. A hold journaled before this
    (the whole sum, any int) settles the same. ``order_id`` is "" until the engine accepts the order.
    """

    user: str
    client_order_id: str
    symbol: str
    side: Side
    price: int | None  # None: a market order
    qty: int
    leaves_qty: int
    held: int
    order_id: str = ""
    fee_exact: int = 0
    pending: tuple[Pending, ...] = ()

    @property
    def all_held(self) -> int:
        """Everything held for the order: ``held`` and the extras of its pending replaces."""
        return self.held + sum(p.amount for p in self.pending)


class AppliedTransfer(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a ledger remembers of an applied deposit or withdrawal, by (user, ref): enough to tell a
    retry of it (the same terms) from another transfer that reuses its reference."""

    kind: EntryKind  # DEPOSIT or WITHDRAWAL
    asset: str
    amount: int
    entry_id: int


# -- commands -----------------------------------------------------------------------------------

class LedgerCommand(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """A request into a ledger shard."""


class HoldOrder(LedgerCommand):
    """Hold what ``order`` may need, then pass it on; ``funds`` (quote units) caps a market buy."""

    order: PlaceOrder
    funds: int = 0  # 0: none given


class HoldReplace(LedgerCommand):
    """Hold what ``replace`` may need on top of its order's hold, then pass it on.

    ``client_order_id`` is the order's (the replace may name it by order id only), by which the
    ledger knows an order whose acceptance it has not settled yet."""

    replace: ReplaceOrder
    client_order_id: str = ""


class DepositFunds(LedgerCommand):
    user: str
    asset: str
    amount: int
    ref: str  # the transfer's reference, one per transfer of the user: a second one with it is not applied
    ts_received: int = 0


class WithdrawFunds(LedgerCommand):
    user: str
    asset: str
    amount: int
    ref: str
    ts_received: int = 0


class SettleEvents(LedgerCommand):
    """Engine ``engine``'s released events from ``first_seq`` to ``last_seq`` (both included).

    ``events`` may leave out events that name no user of this shard, or no user at all; the
    ledger settles those of its users and ignores any it has settled already.
    """

    engine: str
    epoch: int
    first_seq: int
    last_seq: int
    events: list[AnyEvent]
    ts_received: int = 0


class ReleaseHold(LedgerCommand):
    """Release the hold of an order that its engine never received (the role knows that)."""

    user: str
    client_order_id: str
    ts_received: int = 0


# -- events -------------------------------------------------------------------------------------

class LedgerEvent(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """A fact out of a ledger shard; ``seq`` is the shard's sequence number (+1 per event)."""


class OrderHeld(LedgerEvent):
    """Funds held for an order: pass ``command`` on to its engine (with ``budget``, for a market buy)."""

    seq: int
    ts_event: int
    user: str
    hold: HoldState
    entry: Entry
    budget: int  # lots × ticks a market buy may trade (0: not a market buy)
    command: PlaceOrder  # the order, with a client order id assigned if it had none


class ReplaceHeld(LedgerEvent):
    """Funds held (``entry``; None if it needs no more) for a replace: pass ``command`` on."""

    seq: int
    ts_event: int
    user: str
    hold: HoldState  # the order's hold with this replace pending
    entry: Entry | None
    command: ReplaceOrder


class HoldRejected(LedgerEvent):
    """An order or replace refused before its engine: the user's reply is ``REJ code reason``."""

    seq: int
    ts_event: int
    user: str
    symbol: str
    code: RejectCode
    reason: str
    client_order_id: str = ""
    order_id: str = ""


class Transfer(LedgerEvent):
    """What every event about a deposit or a withdrawal says first."""

    seq: int
    ts_event: int
    user: str
    asset: str
    amount: int
    ref: str


class FundsMoved(Transfer):
    """A deposit or a withdrawal that was applied (the fields both have)."""

    entry: Entry


class FundsDeposited(FundsMoved):
    """``amount`` came in from outside: ``*external`` → the user's available."""


class FundsWithdrawn(FundsMoved):
    """``amount`` went out: the user's available → ``*external``."""


class TransferRejected(Transfer):
    """A deposit or withdrawal refused; DUPLICATE_ID: its user used its reference for another transfer."""

    code: RejectCode
    reason: str


class TransferRepeated(Transfer):
    """A deposit or withdrawal sent again (same user, reference, kind, asset and amount): nothing moves,
    and the requester hears the first one's outcome again (entry ``entry_id``), as if it were the first
    answer, so a transfer whose answer was lost can be retried blindly."""

    kind: EntryKind  # DEPOSIT or WITHDRAWAL
    entry_id: int


class OrderSettled(LedgerEvent):
    """What one engine event of an order did to its user's accounts; ``hold`` None: it ended."""

    seq: int
    ts_event: int
    user: str
    client_order_id: str
    order_id: str
    engine: str
    engine_seq: int
    entries: tuple[Entry, ...]
    hold: HoldState | None


class HoldReleased(LedgerEvent):
    """The hold of an order its engine never received, released (``ReleaseHold``)."""

    seq: int
    ts_event: int
    user: str
    client_order_id: str
    entry: Entry


class SettlementAdvanced(LedgerEvent):
    """Engine ``engine``'s events up to ``last_seq`` are settled."""

    seq: int
    ts_event: int
    engine: str
    epoch: int
    last_seq: int


class SettlementGap(LedgerEvent):
    """Events of ``engine`` from ``expected_seq`` are missing (a batch began at ``first_seq``): ask again."""

    seq: int
    ts_event: int
    engine: str
    epoch: int
    expected_seq: int
    first_seq: int


AnyLedgerCommand = Union[HoldOrder, HoldReplace, DepositFunds, WithdrawFunds, SettleEvents, ReleaseHold]
AnyLedgerEvent = Union[
    OrderHeld, ReplaceHeld, HoldRejected, FundsDeposited, FundsWithdrawn, TransferRejected, OrderSettled,
    HoldReleased, SettlementAdvanced, SettlementGap, TransferRepeated,
]
