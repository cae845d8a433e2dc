"""The ledger core of one shard: balances, holds before matching (R1), settlement after (R2).

Rule 1: all state changes happen in ``apply``; ``handle`` decides and builds events, then applies
        them, so a ledger fed only its events (``rebuild``) is in the same state, digest for digest.
Rule 2: no I/O, no clock, no randomness. Same commands in, same events out, byte for byte.
Rule 3: a client mistake is an event (``HoldRejected``, ``TransferRejected``); an exception is a
        bug (an engine event the ledger cannot account for, an entry that does not balance).

Invariants (``problems`` lists any that fail):
- no available or held balance of a user is negative;
- per asset, all accounts of the shard (users, ``*fee``, ``*external``, ``*clearing``) sum to zero;
- a user's held balance of an asset is the sum of the holds of their open orders in that asset.

Theory of operation
- Each user belongs to one shard: ``shard_of(user, shards)``. A shard takes commands only for
  its users and settles only their side of each engine event.
- ``HoldOrder`` holds what the order may need (holds.py) and answers ``OrderHeld``, whose
  ``command`` goes on to the engine; short of funds it answers ``HoldRejected`` INSUFFICIENT_FUNDS.
  An order is known by (user, client order id): the ledger assigns ``~<shard>-<n>`` to an order
  that has none, and refuses one that reuses an id its user has on hold (DUPLICATE_ID).
- ``SettleEvents`` settles engine events (settlement.py), once each: a shard remembers, per
  engine, the last ``seq`` it settled (the engine's sequence continues across its epochs).
- A deposit or withdrawal is applied once per (user, reference): a reference names one transfer of
  one user, whichever shard the user is on. The same transfer sent again (same kind, asset and
  amount) is answered ``TransferRepeated``, the first one's outcome, and moves nothing; another
  transfer of the user with that reference is refused DUPLICATE_ID. A refused transfer is not
  remembered: sent again, it is decided again. References restored from a checkpoint of before
  they were per user (``legacy_refs``: ref → entry id, no user or terms) refuse any reuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from exchange.core.assets import Asset, Terms
from exchange.core.holds import EntryWriter, hold_asset, hold_order, hold_replace
from exchange.core.ledger_messages import (
    EXTERNAL_ACCOUNT, AppliedTransfer, DepositFunds, Entry, EntryKind, FundsDeposited, FundsWithdrawn, HoldOrder,
    HoldRejected, HoldReleased, HoldReplace, HoldState, LedgerEvent, OrderHeld, OrderSettled,
    ReleaseHold, ReplaceHeld, SettleEvents, SettlementAdvanced, SettlementGap, TransferRejected,
    TransferRepeated, WithdrawFunds, available_account, held_account,
)
from exchange.core.messages import Match
from exchange.core.settlement import settle
from exchange.errors import RejectCode


# The most of an asset a shard may have taken in from outside (its ``*external`` account, negated):
# every balance is then far inside the journal's 64-bit integers (msgpack), whatever the trades
# between users and shards move, for up to nine shards (MAX_DEPOSITED × shards < 2^63; the config
# refuses more: MAX_LEDGER_SHARDS in exchange/config.py). A hold's exact fee so far is kept modulo
# PPM (settlement.py), so it too fits whatever the order's size.
MAX_DEPOSITED = 10**18


def _first(item: tuple) -> object:
    return item[0]


def shard_of(user: str, shards: int) -> int:
    """The ledger shard of ``user``: the first 8 bytes of SHA-256 of the name (UTF-8), big-endian,
    modulo the number of shards. Stable across processes, hosts and languages."""
    return int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big") % shards


class Ledger:
    """The accounts of one shard's users, their orders' holds and the engines' settled positions."""

    def __init__(self, shard: int, shards: int, terms: Iterable[Terms], assets: Iterable[Asset] = ()):
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not one of 0..{shards - 1}")
        self.shard = shard
        self.shards = shards
        self.terms = {t.symbol: t for t in terms}
        self.assets = {a.name: a for a in assets}
        for t in self.terms.values():
            self.assets.setdefault(t.base.name, t.base)
            self.assets.setdefault(t.quote.name, t.quote)
        self.seq = 0
        self.last_entry = 0
        self.last_hold = 0  # OrderHeld events so far: numbers the client order ids the ledger assigns
        self.balances: dict[tuple[str, str], int] = {}  # (account, asset) → balance
        self.holds: dict[tuple[str, str], HoldState] = {}  # (user, client_order_id) → open order's hold
        self.orders: dict[str, tuple[str, str]] = {}  # order_id → (user, client_order_id), once accepted
        self.positions: dict[str, tuple[int, int]] = {}  # engine → (epoch, last settled seq)
        self.transfers: dict[tuple[str, str], AppliedTransfer] = {}  # (user, ref) → the transfer applied with it
        self.legacy_refs: dict[str, int] = {}  # ref → entry id, from a checkpoint of before refs were per user
        self._mine: dict[str, bool] = {}  # a cache of shard_of

    def owns(self, user: str) -> bool:
        mine = self._mine.get(user)
        if mine is None:
            mine = self._mine[user] = shard_of(user, self.shards) == self.shard
        return mine

    def own_events(self, events: list) -> list:
        """The engine events that name a user of this shard (what it settles of them): a Match if
        either of its users is ours."""
        owns = self.owns
        mine = []
        for e in events:
            if type(e) is Match:
                if owns(e.maker_user) or owns(e.taker_user):
                    mine.append(e)
            elif (user := getattr(e, "user", None)) is not None and owns(user):
                mine.append(e)
        return mine

    def balance(self, user: str, asset: str) -> tuple[int, int]:
        """(available, held) of ``user`` in ``asset``."""
        return (self.balances.get((available_account(user), asset), 0),
                self.balances.get((held_account(user), asset), 0))

    def knows_transfer(self, user: str, ref: str) -> bool:
        """Whether ``ref`` is taken for ``user``: by a transfer of theirs, or as a reference of old."""
        return (user, ref) in self.transfers or ref in self.legacy_refs

    def writer(self) -> EntryWriter:
        return EntryWriter(self.balances, self.last_entry)

    # -- commands ----------------------------------------------------------------------------

    def handle(self, cmd) -> list[LedgerEvent]:
        """Apply one command; return its events."""
        match cmd:
            case SettleEvents():
                return settle(self, cmd)
            case HoldOrder():  # each decider takes (ledger, command)
                user, decide = cmd.order.user, hold_order
            case HoldReplace():
                user, decide = cmd.replace.user, hold_replace
            case DepositFunds() | WithdrawFunds():
                user, decide = cmd.user, Ledger._transfer
            case ReleaseHold():
                user, decide = cmd.user, Ledger._release_hold
        if not self.owns(user):
            raise ValueError(f"user {user} belongs to shard {shard_of(user, self.shards)}, not {self.shard}")
        event = decide(self, cmd)
        self.apply(event)
        return [event]

    def rejected(self, order, code: RejectCode, reason: str, order_id: str = "") -> HoldRejected:
        return HoldRejected(self.seq + 1, order.ts_received, order.user, order.symbol, code, reason,
                            order.client_order_id, order_id)

    def short(self, user: str, asset: Asset, amount: int, what: str = "") -> str:
        """Why ``user`` cannot hold ``amount`` of ``asset``, or "" if they can."""
        available = self.balance(user, asset.name)[0]
        if amount <= available:
            return ""
        return f"{what}needs {asset.format(amount)} {asset.name}, {asset.format(available)} available"

    def _transfer(self, cmd: DepositFunds | WithdrawFunds) -> LedgerEvent:
        asset = self.assets.get(cmd.asset)
        deposit = isinstance(cmd, DepositFunds)
        code, reason = RejectCode.MALFORMED, ""
        if asset is None:
            reason = f"no asset {cmd.asset!r}; there are {', '.join(sorted(self.assets))}"
        elif cmd.amount <= 0:
            reason = f"the amount must be positive, not {asset.format(cmd.amount)}"
        elif not cmd.ref:
            reason = "a transfer needs a reference"
        elif self.knows_transfer(cmd.user, cmd.ref):
            return self._reused(cmd, EntryKind.DEPOSIT if deposit else EntryKind.WITHDRAWAL)
        elif not deposit:
            code, reason = RejectCode.INSUFFICIENT_FUNDS, self.short(cmd.user, asset, cmd.amount, "withdrawal ")
        elif cmd.amount - self.balances.get((EXTERNAL_ACCOUNT, cmd.asset), 0) > MAX_DEPOSITED:
            reason = (f"deposits of {cmd.asset} here would pass {asset.format(MAX_DEPOSITED)}, the most a ledger"
                      " shard holds of an asset")
        if reason:
            return TransferRejected(self.seq + 1, cmd.ts_received, cmd.user, cmd.asset, cmd.amount, cmd.ref,
                                    code, reason)
        available = available_account(cmd.user)
        if deposit:
            entry = self.writer().write(EntryKind.DEPOSIT, (EXTERNAL_ACCOUNT, available, cmd.asset, cmd.amount))
            return FundsDeposited(self.seq + 1, cmd.ts_received, cmd.user, cmd.asset, cmd.amount, cmd.ref, entry)
        entry = self.writer().write(EntryKind.WITHDRAWAL, (available, EXTERNAL_ACCOUNT, cmd.asset, cmd.amount))
        return FundsWithdrawn(self.seq + 1, cmd.ts_received, cmd.user, cmd.asset, cmd.amount, cmd.ref, entry)

    def _reused(self, cmd: DepositFunds | WithdrawFunds, kind: EntryKind) -> LedgerEvent:
        """The answer to a transfer whose reference its user has used: the first transfer's outcome
        again if this one is that transfer sent again (a retry), else a refusal naming what the
        reference was used for. A reference of old (``legacy_refs``) has no terms to compare: refused."""
        first = self.transfers.get((cmd.user, cmd.ref))
        if first is None:
            used = f"(entry {self.legacy_refs[cmd.ref]})"
        elif (first.kind, first.asset, first.amount) == (kind, cmd.asset, cmd.amount):
            return TransferRepeated(self.seq + 1, cmd.ts_received, cmd.user, cmd.asset, cmd.amount, cmd.ref,
                                    kind, first.entry_id)
        else:
            what = "deposit" if first.kind is EntryKind.DEPOSIT else "withdrawal"
            used = f"for a {what} of {self._amount_text(first.asset, first.amount)} (entry {first.entry_id})"
        return TransferRejected(self.seq + 1, cmd.ts_received, cmd.user, cmd.asset, cmd.amount, cmd.ref,
                                RejectCode.DUPLICATE_ID, f"reference {cmd.ref} was already used {used};"
                                " nothing was done now")

    def _amount_text(self, asset: str, units: int) -> str:
        """``units`` of ``asset`` as people read them ("100.00 USD"); plain units for an asset no longer known."""
        known = self.assets.get(asset)
        return f"{known.format(units) if known else units} {asset}"

    def _release_hold(self, cmd: ReleaseHold) -> LedgerEvent:
        hold = self.holds.get((cmd.user, cmd.client_order_id))
        if hold is None or hold.order_id:
            return HoldRejected(self.seq + 1, cmd.ts_received, cmd.user, "", RejectCode.NOT_YOUR_ORDER,
                                f"no order #{cmd.client_order_id} of user {cmd.user} is on hold before"
                                " its engine", cmd.client_order_id)
        asset = hold_asset(self.terms[hold.symbol], hold.side).name  # all of it: replaces sent meanwhile too
        entry = self.writer().write(EntryKind.RELEASE,
                                    (held_account(cmd.user), available_account(cmd.user), asset, hold.all_held))
        return HoldReleased(self.seq + 1, cmd.ts_received, cmd.user, cmd.client_order_id, entry)

    # -- events: the only place state changes -------------------------------------------------

    def apply(self, event: LedgerEvent) -> None:
        """Change state as the event says; raise ValueError if it does not follow or disagrees."""
        if event.seq != self.seq + 1:
            raise ValueError(f"ledger event {event.seq} does not follow {self.seq}")
        self.seq = event.seq
        match event:  # the commonest first: a settled event, then a hold
            case OrderSettled():
                for entry in event.entries:
                    self._post(entry)
                self._set_hold((event.user, event.client_order_id), event.hold)
            case OrderHeld():
                self.last_hold += 1
                self._post(event.entry)
                self._set_hold((event.user, event.hold.client_order_id), event.hold)
            case ReplaceHeld():
                self._post(event.entry)
                self._set_hold((event.user, event.hold.client_order_id), event.hold)
            case HoldReleased():
                self._post(event.entry)
                self._set_hold((event.user, event.client_order_id), None)
            case FundsDeposited() | FundsWithdrawn():
                self._post(event.entry)
                self.transfers[(event.user, event.ref)] = AppliedTransfer(event.entry.kind, event.asset, event.amount,
                                                                          event.entry.entry_id)
            case SettlementAdvanced():
                self.positions[event.engine] = (event.epoch, event.last_seq)
            case TransferRepeated():
                self._check_repeated(event)
            case HoldRejected() | TransferRejected() | SettlementGap():
                pass

    def _check_repeated(self, event: TransferRepeated) -> None:
        """A retry changes nothing, but what it told the requester must be the transfer it repeats
        (so a replay of the journal checks it): the user's transfer with that ref, the same terms."""
        first = self.transfers.get((event.user, event.ref))
        told = AppliedTransfer(event.kind, event.asset, event.amount, event.entry_id)
        if first != told:
            raise ValueError(f"ledger event {event.seq}: a retry of {event.user}'s transfer {event.ref} says"
                             f" {told}, but that transfer is {first}")

    def _post(self, entry: Entry | None) -> None:
        if entry is None:
            return
        if entry.entry_id != self.last_entry + 1:
            raise ValueError(f"entry {entry.entry_id} does not follow {self.last_entry}")
        self.last_entry = entry.entry_id
        balances = self.balances
        for row in entry.rows:
            key = (row.account, row.asset)
            balance = balances.get(key, 0) + row.delta
            if balance != row.balance:
                raise ValueError(f"entry {entry.entry_id}: {row.account} {row.asset} is {balance}, not {row.balance}")
            balances[key] = balance

    def _set_hold(self, key: tuple[str, str], hold: HoldState | None) -> None:
        old = self.holds.pop(key, None)
        if old is not None and old.order_id:
            del self.orders[old.order_id]
        if hold is not None:
            self.holds[key] = hold
            if hold.order_id:
                self.orders[hold.order_id] = key

    @classmethod
    def rebuild(cls, shard: int, shards: int, terms: Iterable[Terms], events: Iterable[LedgerEvent],
                assets: Iterable[Asset] = ()) -> Ledger:
        """A ledger in the state that produced ``events`` (as read back from a journal)."""
        ledger = cls(shard, shards, terms, assets)
        for event in events:
            ledger.apply(event)
        return ledger

    # -- invariants and digest ----------------------------------------------------------------

    def held_by_orders(self) -> dict[tuple[str, str], int]:
        """(user, asset) → what the user's open orders hold, pending replaces included."""
        totals: dict[tuple[str, str], int] = {}
        for (user, _), hold in self.holds.items():
            key = (user, hold_asset(self.terms[hold.symbol], hold.side).name)
            totals[key] = totals.get(key, 0) + hold.held + sum(p.amount for p in hold.pending)
        return totals

    def problems(self) -> list[str]:
        """Every broken invariant (see the module docstring), in words; empty when all hold."""
        found = [f"{account} {asset} is {balance}" for (account, asset), balance in sorted(self.balances.items())
                 if balance < 0 and not account.startswith("*")]
        sums: dict[str, int] = {}
        for (_, asset), balance in self.balances.items():
            sums[asset] = sums.get(asset, 0) + balance
        found += [f"{asset} accounts sum to {total}" for asset, total in sorted(sums.items()) if total]
        by_orders = self.held_by_orders()
        held = {(account[:-5], asset): balance for (account, asset), balance in self.balances.items()
                if account.endswith(":held") and balance}
        found += [f"{user} holds {held.get((user, asset), 0)} {asset}, its orders {by_orders.get((user, asset), 0)}"
                  for user, asset in sorted(held.keys() | by_orders.keys())
                  if held.get((user, asset), 0) != by_orders.get((user, asset), 0)]
        return found

    def state(self) -> tuple:
        """Everything that defines this ledger's future behaviour, in a canonical order."""
        return (self.shard, self.shards, self.seq, self.last_entry, self.last_hold,
                sorted(self.balances.items()), sorted(self.holds.items(), key=_first), sorted(self.positions.items()),
                sorted(self.transfers.items(), key=_first), sorted(self.legacy_refs.items()))

    def digest(self) -> str:
        """A short hex digest of ``state()``: equal digests mean equal ledgers."""
        return hashlib.sha256(msgspec.msgpack.encode(self.state())).hexdigest()[:32]
