"""Are the ledger shards' streams whole and true? ``verify_ledgers`` returns (faults, notes).

Per ledger stream (``ledger-<shard>``), reading its entries and its events once each, in order:

1. batches: numbered 1..M, each starting where the one before ended, epochs never going back;
2. entries (the ``entries`` table): numbered 1..N; each entry's rows sum to zero per asset; each
   row's balance is the account's balance before it plus its delta; no user's account is ever
   below zero; the rows are exactly those the events' bodies carry;
3. replay: ``Ledger.apply`` accepts every event from scratch; each event row's columns say what
   its body says; at every checkpoint the replayed ledger has the recorded digest and the
   checkpoint restores to it (a checkpoint that knows some transfer references by ref alone, as
   an older version kept them, is compared with the replayed ledger knowing those the same way);
   at the end ``Ledger.problems()`` finds nothing (no negative balance, every shard's accounts
   sum to zero per asset, held == the holds of open orders).

Across the shards:

4. per asset, all accounts of all shards (users, ``*fee``, ``*external``, ``*clearing``) sum to
   zero; ``*clearing`` alone sums to zero when every shard has settled every engine to the same
   seq (otherwise a note says how far apart they are);
5. holds: for each shard and engine, the engine's books are rebuilt at the seq the shard settled
   it to; every hold bound to an order id is an open order with the same ``leaves_qty``, and every
   open order of a user of the shard, accepted since the shard began settling that engine, has a hold.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator

import msgspec

from exchange.config import Config
from exchange.core import ledger_checkpoint
from exchange.core.assets import Asset, Terms
from exchange.core.ledger import Ledger
from exchange.core.ledger_messages import CLEARING_ACCOUNT, SettleEvents
from exchange.core.matching import Matcher
from exchange.core.messages import OrderAccepted
from exchange.journal.ledger_readers import decode_ledger_event
from exchange.journal.ledger_rows import entries_of, event_columns, is_ledger_stream
from exchange.journal.readers import checkpoint_parts, engine_events
from exchange.journal.verify import (
    MAX_FAULTS_PER_ENGINE, batch_faults, streams, table_batches, table_checkpoints,
)
from exchange.journal.schema import has_table

_ENGINE_AT = f"$[{SettleEvents.__struct_fields__.index('engine') + 1}]"
_FIRST_SEQ_AT = f"$[{SettleEvents.__struct_fields__.index('first_seq') + 1}]"
_LAST_SEQ_AT = f"$[{SettleEvents.__struct_fields__.index('last_seq') + 1}]"
_COLUMNS = ("kind", "symbol", "user", "order_id", "side")


def verify_ledgers(conn: sqlite3.Connection, config: Config) -> tuple[list[str], list[str]]:
    """(faults, notes) of the ledger streams in the journal on ``conn``, checked against ``config``.

    Notes say what could not be checked and why; they are not faults.
    """
    found = [name for name in streams(conn) if is_ledger_stream(name)]
    if not config.accounts:
        return [f"{name}: in the journal, but accounts are off in the config; not checked" for name in found], []
    if not has_table(conn, "entries"):  # a journal from before accounts, that no writer with them has opened yet
        return [], ["no ledger entries: this journal is from before accounts (the journal writer adds them)"]
    shards = {s.name: s.shard for s in config.ledgers}
    terms, assets = list(config.terms().values()), config.asset_map()
    faults = [f"{name}: in the journal but not in the config (shards {', '.join(shards)}); not checked"
              for name in found if name not in shards]
    ledgers: dict[str, Ledger] = {}
    broken = []
    for name, shard in shards.items():
        check = _LedgerCheck(conn, name, Ledger(shard, len(shards), terms, assets.values()), assets)
        faults += check.run()
        if check.replaying:
            ledgers[name] = check.ledger
        else:
            broken.append(name)
    if broken:
        return faults, [f"balances across shards and holds against the engines not checked: {', '.join(broken)}"
                        " did not replay"]
    found_faults, notes = _across(ledgers, config, assets, _late_starts(conn, ledgers))
    hold_faults, hold_notes = _holds(conn, ledgers, config)
    return faults + found_faults + hold_faults, notes + hold_notes


def _amount(assets: dict[str, Asset], asset: str, units: int) -> str:
    known = assets.get(asset)
    return f"{known.format(units) if known else units} {asset}"


class _LedgerCheck:
    """The checks of one ledger stream (1 to 3 of the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, stream: str, ledger: Ledger, assets: dict[str, Asset]):
        self.conn, self.stream, self.ledger, self.assets = conn, stream, ledger, assets
        self.terms: list[Terms] = list(ledger.terms.values())
        self.faults: list[str] = []
        self.dropped = 0
        self.replaying = True
        # the batches the tables hold (the log may hold more, not indexed yet), and their checkpoints
        self.batches = table_batches(conn, stream)
        self.checkpoints = table_checkpoints(conn, stream, self.batches)
        self.table = self._table_entries()
        self.ahead = None  # a table entry read and not yet matched with a body's

    def fault(self, text: str) -> None:
        if len(self.faults) < MAX_FAULTS_PER_ENGINE:
            self.faults.append(f"{self.stream}: {text}")
        else:
            self.dropped += 1

    def amount(self, asset: str, units: int) -> str:
        return _amount(self.assets, asset, units)

    def run(self) -> list[str]:
        batches = self.batches
        for fault in batch_faults(batches):
            self.fault(fault)
        if 0 in self.checkpoints:
            self.check_checkpoint(0)
        last = 0
        for seq, *columns, body in self.conn.execute(
                f"SELECT seq, {', '.join(_COLUMNS)}, body FROM events WHERE engine=? ORDER BY seq", (self.stream,)):
            last = seq
            try:
                event = decode_ledger_event(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self.fault(f"event {seq}: the body does not decode ({e})")
                self.stop_replay(seq)
                continue
            expected = event_columns(event)
            if tuple(columns) != expected or event.seq != seq:
                self.fault(f"event {seq}: the row's columns {dict(zip(_COLUMNS, columns))} disagree with its body"
                           f" (event {event.seq}: {dict(zip(_COLUMNS, expected))})")
            self.check_entries(event)
            self.replay(event)
        if batches and max(b[2] for b in batches.values()) != last:
            self.fault(f"the batches end at event {max(b[2] for b in batches.values())} but the events at {last}")
        while (extra := self.next_table()) is not None:
            self.fault(f"entry {extra[0]} is in the entries table (event {extra[1]}) but in no event")
        for seq in self.checkpoints:
            if seq > last:
                self.fault(f"the checkpoint at event {seq} is after the last event ({last})")
        if self.replaying:
            for problem in self.ledger.problems():
                self.fault(f"after event {last}: {problem}")
        if self.dropped:
            self.faults.append(f"{self.stream}: … and {self.dropped} more faults")
        return self.faults

    # -- 2 entries -----------------------------------------------------------------------------

    def _table_entries(self) -> Iterator[tuple]:
        """The stream's entries in the table, each checked on its own: (entry_id, seq, kind, rows)."""
        balances: dict[tuple[str, str], int] = {}
        expected = 1
        rows = self.conn.execute("SELECT entry_id, row, seq, kind, account, asset, delta, balance FROM entries"
                                 " WHERE stream=? ORDER BY entry_id, row", (self.stream,))
        for entry_id, group in itertools.groupby(rows, key=lambda r: r[0]):
            group = list(group)
            if entry_id != expected:
                self.fault(f"entries {expected}..{entry_id - 1} have no rows in the entries table"
                           if entry_id > expected + 1 else f"entry {expected} has no rows in the entries table")
            expected = entry_id + 1
            sums: dict[str, int] = {}
            for n, (_, row, _, _, account, asset, delta, balance) in enumerate(group):
                if row != n:
                    self.fault(f"entry {entry_id}: row {n} is missing")
                before = balances.get((account, asset), 0)
                if balance != before + delta:
                    self.fault(f"entry {entry_id} row {row}: {account} goes from {self.amount(asset, before)} by"
                               f" {delta:+} units to {self.amount(asset, balance)}")
                if balance < 0 and not account.startswith("*"):
                    self.fault(f"entry {entry_id} row {row}: {account} is {self.amount(asset, balance)}")
                balances[(account, asset)] = balance
                sums[asset] = sums.get(asset, 0) + delta
            for asset, total in sorted(sums.items()):
                if total:
                    self.fault(f"entry {entry_id} ({group[0][3]}) does not balance: its {asset} rows sum to"
                               f" {self.amount(asset, total)}")
            yield entry_id, group[0][2], group[0][3], tuple(r[4:] for r in group)

    def next_table(self):
        ahead, self.ahead = self.ahead, None
        return ahead if ahead is not None else next(self.table, None)

    def check_entries(self, event) -> None:
        """The entries ``event``'s body carries are in the table, row for row."""
        for entry in entries_of(event):
            table = self.next_table()
            while table is not None and table[0] < entry.entry_id:
                self.fault(f"entry {table[0]} is in the entries table (event {table[1]}) but in no event")
                table = self.next_table()
            if table is None or table[0] > entry.entry_id:
                self.ahead = table
                self.fault(f"event {event.seq}: entry {entry.entry_id} has no rows in the entries table")
                continue
            body = (event.seq, entry.kind.value, tuple((r.account, r.asset, r.delta, r.balance) for r in entry.rows))
            if table[1:] != body:
                self.fault(f"entry {entry.entry_id}: the entries table has {_rows(table[1:])}; event"
                           f" {event.seq} says {_rows(body)}")

    # -- 3 replay ------------------------------------------------------------------------------

    def replay(self, event) -> None:
        if not self.replaying:
            return
        try:
            self.ledger.apply(event)
        except (ValueError, KeyError) as e:  # the events disagree with each other
            self.fault(f"event {event.seq}: replay of {type(event).__name__} fails: {e}")
            self.stop_replay(event.seq)
            return
        if event.seq in self.checkpoints:
            self.check_checkpoint(event.seq)

    def stop_replay(self, seq: int) -> None:
        if self.replaying:
            self.replaying = False
            self.fault(f"replay stopped at event {seq}; the balances after it are not checked")

    def check_checkpoint(self, seq: int) -> None:
        _, digest = self.checkpoints[seq]
        try:
            restored = ledger_checkpoint.restore(self.terms, checkpoint_parts(self.conn, self.stream, seq),
                                                 self.assets.values())
        except (ValueError, KeyError, msgspec.DecodeError, msgspec.ValidationError) as e:
            # (before the replay is compared: which references it knows by ref alone is in the checkpoint)
            self.fault(f"the checkpoint at event {seq} does not restore: {e}")
            return
        # the replayed ledger knows every transfer by (user, ref); a checkpoint that goes back to an
        # older version's knows some by ref alone: it is compared with the replayed ledger seen that way
        replayed = ledger_checkpoint.digest_of(self.ledger, restored.legacy_refs)
        if digest != replayed:
            self.fault(f"the checkpoint at event {seq} has digest {digest}; the replayed ledger has {replayed}")
            return
        if ledger_checkpoint.digest_of(restored) != replayed:
            self.fault(f"the checkpoint at event {seq} restores to another ledger than the replayed one")


def _rows(entry: tuple) -> str:
    seq, kind, rows = entry
    return f"{kind} at event {seq}: " + ", ".join(f"{a} {asset} {d:+} → {b}" for a, asset, d, b in rows)


# -- 4 and 5: across the shards ----------------------------------------------------------------

def _late_starts(conn: sqlite3.Connection, ledgers: dict[str, Ledger]) -> list[str]:
    """The shards that began over an existing history (docs/accounts.md, "Turning accounts on over an
    existing journal"): an engine had journaled events before the first ledger shard's first epoch
    opened, so orders that hold nothing may settle on one side only. Then every shard began over it.

    Not "a shard whose first event is a settlement": on a venue funded by deposits, a shard whose users
    have no money yet settles the other shard's trades first, though it started with the mesh. (A
    journal whose ledger epochs have no opening time falls back to that, for want of better.)"""
    (opened,) = conn.execute("SELECT MIN(ts_opened) FROM epochs WHERE engine IN (%s)"
                             % ",".join("?" * len(ledgers)), list(ledgers)).fetchone()
    if opened is None:
        return [name for name in ledgers if conn.execute(
            "SELECT kind FROM events WHERE engine=? ORDER BY seq LIMIT 1", (name,)).fetchone()
            == ("SettlementAdvanced",)]
    # (a batch without ts_written was written by a version older than any ledger shard)
    before = conn.execute("SELECT 1 FROM batches WHERE engine NOT IN (%s) AND last_seq >= first_seq"
                          " AND (ts_written IS NULL OR ts_written < ?) LIMIT 1" % ",".join("?" * len(ledgers)),
                          [*ledgers, opened]).fetchone()
    return list(ledgers) if before else []


def _across(ledgers: dict[str, Ledger], config: Config, assets: dict[str, Asset], late: list[str]
            ) -> tuple[list[str], list[str]]:
    totals: dict[str, int] = {}
    clearing: dict[str, int] = {}
    for ledger in ledgers.values():
        for (account, asset), balance in ledger.balances.items():
            totals[asset] = totals.get(asset, 0) + balance
            if account == CLEARING_ACCOUNT:
                clearing[asset] = clearing.get(asset, 0) + balance
    faults = [f"ledgers: the {asset} accounts of all shards sum to {_amount(assets, asset, total)}"
              for asset, total in sorted(totals.items()) if total]
    notes = [f"{CLEARING_ACCOUNT} across shards not checked: {', '.join(late)} began over an existing history,"
             " whose orders settle on one side only"] if late else []
    for engine in config.engines:
        settled = {name: ledger.positions.get(engine.name, (0, 0))[1] for name, ledger in ledgers.items()}
        if len(set(settled.values())) > 1:
            notes.append(f"{CLEARING_ACCOUNT} across shards not checked: the shards settled {engine.name} to"
                         f" different seqs ({', '.join(f'{name} to {seq}' for name, seq in settled.items())})")
    if not notes:
        faults += [f"ledgers: {CLEARING_ACCOUNT} {asset} sums to {_amount(assets, asset, total)} across shards,"
                   " which all settled every engine to the same seq" for asset, total in sorted(clearing.items())
                   if total]
    return faults, notes


def _holds(conn: sqlite3.Connection, ledgers: dict[str, Ledger], config: Config) -> tuple[list[str], list[str]]:
    """Check 5 of the module docstring, one engine replay each."""
    instruments = config.instrument_map()
    engine_of = {symbol: e.name for e in config.engines for symbol in e.instruments}
    faults, notes = [], []
    for engine in config.engines:
        matcher = Matcher(engine.id, [instruments[s] for s in engine.instruments])
        accepted_at: dict[str, int] = {}
        events = engine_events(conn, engine.name)
        targets = sorted((ledger.positions.get(engine.name, (0, 0))[1], name) for name, ledger in ledgers.items())
        for seq, name in targets:
            try:
                while matcher.seq < seq:
                    event = next(events, None)
                    if event is None:
                        faults.append(f"{name}: settled {engine.name} to seq {seq}, but its journaled events end at"
                                      f" {matcher.seq}")
                        break
                    matcher.apply(event)
                    if type(event) is OrderAccepted:
                        accepted_at[event.order_id] = event.seq
            except (ValueError, KeyError, IndexError) as e:
                notes.append(f"holds not checked against {engine.name}: its replay fails ({e})")
                break
            if matcher.seq == seq:
                faults += _check_holds(name, ledgers[name], engine.name, matcher, accepted_at,
                                       _first_settled(conn, name, engine.name), engine_of)
    return faults, notes


def _check_holds(stream: str, ledger: Ledger, engine: str, matcher: Matcher, accepted_at: dict[str, int],
                 start: int | None, engine_of: dict[str, str]) -> list[str]:
    faults = []
    at = f"on {engine} at seq {matcher.seq}, where {stream} settled it to"
    open_orders = {order_id: (book, order) for book in matcher.books.values() for order_id, order in book.orders.items()}
    for hold in ledger.holds.values():
        if not hold.order_id or engine_of.get(hold.symbol) != engine:
            continue
        found = open_orders.get(hold.order_id)
        if found is None:
            faults.append(f"{stream}: {hold.user} holds funds for order {hold.order_id}, which is not open {at}")
        elif found[1].leaves_qty != hold.leaves_qty:
            fmt = found[0].instrument.format_qty
            faults.append(f"{stream}: order {hold.order_id} of {hold.user} leaves {fmt(found[1].leaves_qty)} {at};"
                          f" its hold is for {fmt(hold.leaves_qty)}")
    if start is None:
        return faults
    for order_id, (_, order) in open_orders.items():
        if ledger.owns(order.user) and accepted_at.get(order_id, 0) >= start and order_id not in ledger.orders:
            faults.append(f"{stream}: order {order_id} of {order.user} is open {at}, but holds nothing")
    return faults


def _first_settled(conn: sqlite3.Connection, stream: str, engine: str) -> int | None:
    """The first seq of ``engine`` whose orders of shard ``stream``'s users must hold funds: its
    first settled batch's first_seq; or, if the shard had held nothing before it (it began over an
    existing history, or settled other shards' trades first), the seq after that batch."""
    row = conn.execute(
        f"SELECT json_extract(c.body, '{_FIRST_SEQ_AT}'), json_extract(c.body, '{_LAST_SEQ_AT}'), v.seq"
        " FROM commands c JOIN events v ON v.engine = c.engine"
        f" AND v.seq = c.seq WHERE c.engine = ? AND c.kind = 'SettleEvents' AND json_extract(c.body, '{_ENGINE_AT}') = ?"
        " AND v.kind = 'SettlementAdvanced' ORDER BY c.batch, c.position LIMIT 1", (stream, engine)).fetchone()
    if row is None:
        return None
    first, last, at = row
    held = conn.execute("SELECT 1 FROM events WHERE engine=? AND kind='OrderHeld' AND seq < ? LIMIT 1",
                        (stream, at)).fetchone()
    return first if held else last + 1
