"""Is the journal whole and true? ``verify`` returns one line per fault found; none means all is well.

Ledger shards' streams are checked by exchange.journal.verify_ledger. Checks, per engine, reading
its events once in ``seq`` order:

1. sequence: events are numbered 1..N with no gap; batches are numbered 1..M, each starts where
   the previous one ended, holds exactly the events first_seq..last_seq, and epochs never go back;
2. rows: each event row's columns (seq, kind, symbol, user, order id, price, qty, …) say what its
   ``body`` says, since people and the ``exchange journal`` queries filter on the columns;
3. orders: every OrderFilled, OrderCanceled, OrderExpired, OrderReplaced and OrderReduced names an
   order the engine accepted earlier, for the same user, symbol and side;
4. trades: every Trade has exactly two fills with its trade id (one maker, one taker) at its price
   and quantity, and every fill has its Trade;
5. replay: ``Matcher.apply`` accepts every event (it checks each fill's leaves and, in journals
   from before the core stopped deriving market data, each DepthUpdate's level, and each
   TopOfBook equals the replayed book where it stands); at every checkpoint the replayed state
   has the recorded digest, and the checkpoint restores to it.

A fault stops the replay of its engine (the state after it is unknown); the other checks go on.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import (
    OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderRejected, OrderReplaced,
    TopOfBook, Trade,
)
from exchange.journal.ledger_rows import is_ledger_stream
from exchange.journal.readers import checkpoint_parts, decode_event, whole_checkpoints
from exchange.journal.schema import has_table

MAX_FAULTS_PER_ENGINE = 50
_LATER_ORDER_EVENTS = (OrderFilled, OrderCanceled, OrderExpired, OrderReplaced, OrderReduced)
_QTY_FIELDS = ("qty", "last_qty", "canceled_qty", "expired_qty", "reduced_qty")
_COLUMNS = ("kind", "symbol", "user", "order_id", "trade_id", "side", "price", "qty", "ts_event")


def verify(conn: sqlite3.Connection, instruments: Mapping[str, Sequence[Instrument]],
           engine_ids: Mapping[str, int]) -> list[str]:
    """Every fault in the journal on ``conn``; ``instruments`` and ``engine_ids`` are by engine name,
    each engine's instruments in the order of its config (a matcher's digest depends on it)."""
    faults = []
    by_symbol = {i.symbol: i for engine_instruments in instruments.values() for i in engine_instruments}
    for engine in _engines(conn):
        if engine not in engine_ids:
            faults.append(f"{engine}: in the journal but not in the config; its events are not replayed")
        check = _EngineCheck(conn, engine, engine_ids.get(engine), instruments.get(engine), by_symbol)
        faults += check.run()
    return faults


def streams(conn: sqlite3.Connection) -> list[str]:
    """Every stream the journal holds: engines, and ledger shards (``ledger-<shard>``)."""
    tables = ["batches", "events", *(["checkpoints"] if has_table(conn, "checkpoints") else [])]
    query = " UNION ".join(f"SELECT DISTINCT engine FROM {table}" for table in tables)
    return sorted(name for (name,) in conn.execute(query))


def indexed_batch(conn: sqlite3.Connection, stream: str) -> float:
    """The last batch of ``stream`` the tables hold (every batch, in a journal from before the log)."""
    if not has_table(conn, "indexed"):
        return float("inf")
    row = conn.execute("SELECT batch FROM indexed WHERE stream=?", (stream,)).fetchone()
    return row[0] if row else 0


def table_batches(conn: sqlite3.Connection, stream: str) -> dict[int, tuple[int, int, int]]:
    """batch → (epoch, first_seq, last_seq) of the batches of ``stream`` the tables hold, in order: those
    the checks of the tables take. The log may hold more, which the indexer has not reached yet
    (exchange.journal.verify_log checks the log, and notes how far the tables lag it)."""
    return {batch: (epoch, first, last) for batch, epoch, first, last in conn.execute(
        "SELECT batch, epoch, first_seq, last_seq FROM batches WHERE engine=? AND batch<=? ORDER BY batch",
        (stream, indexed_batch(conn, stream)))}


def table_checkpoints(conn: sqlite3.Connection, stream: str, batches: Mapping[int, tuple[int, int, int]]
                      ) -> dict[int, tuple[int, str]]:
    """seq → (batch, digest) of the whole checkpoints of ``stream`` within ``batches``: those a replay of
    the tables reaches."""
    last = max((last for _, _, last in batches.values()), default=0)
    return {seq: at for seq, at in whole_checkpoints(conn, stream).items() if seq <= last}


def coverage(conn: sqlite3.Connection) -> list[dict]:
    """What the checks of the tables cover, per stream (engines and ledger shards): the events they read
    (``first_seq``..``last_seq``, None if none), the ``batches`` the tables hold, and the ``checkpoints``
    within them. When ``verify`` and ``verify_ledger.verify_ledgers`` find no fault they have checked all
    of it: a replay stops short of a checkpoint only at a fault (``verify_ledger`` takes a shard's
    batches and checkpoints with table_batches and table_checkpoints too)."""
    covered = []
    for stream in streams(conn):
        batches = table_batches(conn, stream)
        first, last = conn.execute("SELECT MIN(seq), MAX(seq) FROM events WHERE engine=?", (stream,)).fetchone()
        covered.append({"stream": stream, "first_seq": first, "last_seq": last, "batches": len(batches),
                        "checkpoints": len(table_checkpoints(conn, stream, batches))})
    return covered


def _engines(conn: sqlite3.Connection) -> list[str]:
    return [name for name in streams(conn) if not is_ledger_stream(name)]


class _EngineCheck:
    """All checks of one engine's history (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, engine: str, engine_id: int | None,
                 instruments: Sequence[Instrument] | None, by_symbol: Mapping[str, Instrument]):
        self.conn, self.engine = conn, engine
        self.faults: list[str] = []
        self.dropped = 0
        self.instruments = list(instruments or [])
        self.by_symbol = by_symbol  # every configured instrument, to format columns and amounts
        self.matcher = Matcher(engine_id, self.instruments) if engine_id is not None else None
        self.replayed_to = 0  # the last event the replay applied
        self.accepted: dict[str, OrderAccepted] = {}
        self.fills: dict[str, list[OrderFilled]] = {}  # trade id → fills before its Trade
        self.trades: set[str] = set()
        self.column_faults: dict[str, list] = {}  # column → [count, first seq, column value, body value]
        self.batches = table_batches(conn, engine)
        self.checkpoints = self._checkpoints()

    def fault(self, text: str) -> None:
        if len(self.faults) < MAX_FAULTS_PER_ENGINE:
            self.faults.append(f"{self.engine}: {text}")
        else:
            self.dropped += 1

    def run(self) -> list[str]:
        self.check_batches()
        expected, per_batch, strays = 1, Counter(), {}
        if 0 in self.checkpoints:
            self.check_checkpoint(0)
        for seq, epoch, batch, *columns, body in self.conn.execute(
                f"SELECT seq, epoch, batch, {', '.join(_COLUMNS)}, body FROM events WHERE engine=?"
                " ORDER BY seq", (self.engine,)):
            if seq < 1:
                self.fault(f"event {seq} is out of range: events count from 1")
            elif seq != expected:
                self.fault(f"{_missing('event', expected, seq - 1)} (after {expected - 1} comes {seq})")
                self.stop_replay(expected - 1, "the gap")
            expected = max(expected, seq + 1)
            if batch in self.batches:
                per_batch[batch] += 1
                batch_epoch, first, last = self.batches[batch]
                if not first <= seq <= last:
                    self.fault(f"event {seq} says batch {batch}, which holds events {_span(first, last)}")
                if epoch != batch_epoch:
                    self.fault(f"event {seq} says epoch {epoch} but its batch {batch} is in epoch {batch_epoch}")
            else:
                strays.setdefault(batch, []).append(seq)
            try:
                event = decode_event(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self.fault(f"event {seq}: the body does not decode ({e})")
                self.stop_replay(seq - 1, f"event {seq}")
                continue
            self.check_columns(seq, columns, event)
            self.check_order(event)
            self.check_trade(event)
            self.replay(event)
        self.finish(expected - 1, per_batch, strays)
        if self.dropped:
            self.faults.append(f"{self.engine}: … and {self.dropped} more faults")
        return self.faults

    # -- 1 sequence ----------------------------------------------------------------------------

    def check_batches(self) -> None:
        for fault in batch_faults(self.batches):
            self.fault(fault)

    def finish(self, last_seq: int, per_batch: Counter, strays: dict[int, list[int]]) -> None:
        for batch, seqs in strays.items():
            self.fault(f"events {_span(seqs[0], seqs[-1])} ({len(seqs)}) say batch {batch}, which is not in"
                       " the batches table")
        for batch, (_, first, last) in self.batches.items():
            if per_batch[batch] != max(0, last - first + 1):
                self.fault(f"batch {batch} should hold events {_span(first, last)} but holds"
                           f" {per_batch[batch]} events")
        if self.batches:
            batches_end = max(last for _, _, last in self.batches.values())
            if batches_end != last_seq:
                self.fault(f"the batches end at event {batches_end} but the events at {last_seq}")
        for column, (count, seq, value, expected) in self.column_faults.items():
            rows = "1 event row has" if count == 1 else f"{count} event rows have"
            self.fault(f"{rows} a {column} column that disagrees with the body (first: event {seq},"
                       f" {value!r} instead of {expected!r})")
        for trade_id, fills in self.fills.items():
            self.fault(f"event {fills[0].seq}: fill of trade {trade_id}, which has no Trade event")
        for seq in self.checkpoints:
            if seq > last_seq:
                self.fault(f"the checkpoint at event {seq} is after the last event ({last_seq})")

    # -- 2 rows --------------------------------------------------------------------------------

    def check_columns(self, seq: int, columns: list, event) -> None:
        if event.seq != seq:
            self.fault(f"the row of event {seq} holds the body of event {event.seq}")
        for column, value, expected in zip(_COLUMNS, columns, self.columns_of(event)):
            if value != expected:
                found = self.column_faults.setdefault(column, [0, seq, value, expected])
                found[0] += 1

    def columns_of(self, event) -> tuple:
        """The columns of ``event`` as the journal writer fills them in."""
        instrument = self.by_symbol.get(event.symbol)
        price = getattr(event, "price", None)
        if price is None:
            price = getattr(event, "last_price", None)
        qty = next((getattr(event, f) for f in _QTY_FIELDS if hasattr(event, f)), None)
        side = getattr(event, "side", None) or getattr(event, "taker_side", None)
        if instrument is None:  # the writer cannot format either: compare what it can
            return (type(event).__name__, event.symbol, getattr(event, "user", None),
                    getattr(event, "order_id", None) or None, getattr(event, "trade_id", None),
                    side.value if side else None, None, None, event.ts_event)
        return (type(event).__name__, event.symbol, getattr(event, "user", None),
                getattr(event, "order_id", None) or None, getattr(event, "trade_id", None),
                side.value if side else None,
                None if price is None else instrument.format_price(price),
                None if qty is None else instrument.format_qty(qty), event.ts_event)

    # -- 3 orders and 4 trades -----------------------------------------------------------------

    def check_order(self, event) -> None:
        if isinstance(event, OrderAccepted):
            if self.matcher is not None and not event.order_id.startswith(f"{self.matcher.engine_id}-"):
                self.fault(f"event {event.seq}: order id {event.order_id} is not of the engine id the config"
                           f" gives {self.engine} ({self.matcher.engine_id})")
            if event.order_id in self.accepted:
                self.fault(f"event {event.seq}: order {event.order_id} is accepted again (first at event"
                           f" {self.accepted[event.order_id].seq})")
            self.accepted[event.order_id] = event
        elif isinstance(event, _LATER_ORDER_EVENTS):
            accepted = self.accepted.get(event.order_id)
            name = type(event).__name__
            if accepted is None:
                self.fault(f"event {event.seq}: {name} names order {event.order_id}, which this engine"
                           " never accepted")
            elif (accepted.user, accepted.symbol, accepted.side) != (event.user, event.symbol, event.side):
                self.fault(f"event {event.seq}: {name} of order {event.order_id} says {event.user}"
                           f" {event.symbol} {event.side.value}; it was accepted as {accepted.user}"
                           f" {accepted.symbol} {accepted.side.value}")

    def check_trade(self, event) -> None:
        if isinstance(event, OrderFilled):
            self.fills.setdefault(event.trade_id, []).append(event)
        elif isinstance(event, Trade):
            fills = self.fills.pop(event.trade_id, [])
            where = f"event {event.seq}: trade {event.trade_id}"
            if event.trade_id in self.trades:
                self.fault(f"{where} is traded again")
            self.trades.add(event.trade_id)
            if len(fills) != 2 or {f.maker for f in fills} != {True, False}:
                roles = ", ".join(f"{'maker' if f.maker else 'taker'} at event {f.seq}" for f in fills)
                self.fault(f"{where} has {len(fills)} fill{'' if len(fills) == 1 else 's'}"
                           f"{f' ({roles})' if roles else ''}; a trade has two: one maker, one taker")
            for fill in fills:
                if (fill.symbol, fill.last_qty, fill.last_price) != (event.symbol, event.qty, event.price):
                    self.fault(f"{where} is {self.amount(event.symbol, event.qty, event.price)} but fill"
                               f" {fill.seq} ({fill.order_id}) is"
                               f" {self.amount(fill.symbol, fill.last_qty, fill.last_price)}")
                if not fill.maker and fill.side is not event.taker_side:
                    self.fault(f"{where} says the taker {event.taker_side.value}s but taker fill {fill.seq}"
                               f" is a {fill.side.value}")

    # -- 5 replay ------------------------------------------------------------------------------

    def replay(self, event) -> None:
        matcher = self.matcher
        if matcher is None or self.replayed_to != event.seq - 1:
            return
        if event.symbol not in matcher.books and not isinstance(event, OrderRejected):
            self.fault(f"event {event.seq}: {type(event).__name__} on {event.symbol!r}, which is not this"
                       f" engine's (it has {', '.join(matcher.books) or 'no instruments'})")
            self.stop_replay(event.seq - 1, f"event {event.seq}")
            return
        try:
            matcher.apply(event)
        except (ValueError, KeyError, IndexError) as e:  # the events disagree with each other
            self.fault(f"event {event.seq}: replay of {type(event).__name__} fails: {e}")
            self.stop_replay(event.seq - 1, f"event {event.seq}")
            return
        self.replayed_to = event.seq
        if isinstance(event, TopOfBook):
            book = matcher.books[event.symbol]
            if book.top() != book.last_top:
                self.fault(f"event {event.seq}: TopOfBook {event.symbol} says {_top(book, book.last_top)};"
                           f" the replayed book has {_top(book, book.top())}")
        if event.seq in self.checkpoints:
            self.check_checkpoint(event.seq)

    def stop_replay(self, last_good: int, cause: str) -> None:
        if self.matcher is not None and self.replayed_to == last_good:
            self.replayed_to = -1
            later = sum(seq > last_good for seq in self.checkpoints)
            unchecked = f", nor {later} later checkpoint{'s' if later > 1 else ''}" if later else ""
            self.fault(f"replay stopped after event {last_good} at {cause}; the books after it are not"
                       f" checked{unchecked}")

    def _checkpoints(self) -> dict[int, tuple]:
        found = table_checkpoints(self.conn, self.engine, self.batches)
        if found and self.matcher is not None:  # replay with the client order id window they were taken with
            first = checkpoint_parts(self.conn, self.engine, min(found))[0]
            self.matcher.client_order_ids.window = checkpoint.read(first).client_order_id_window
        return found

    def check_checkpoint(self, seq: int) -> None:
        if self.matcher is None:
            return
        batch, digest = self.checkpoints[seq]
        if batch in self.batches and self.batches[batch][2] != seq:
            self.fault(f"the checkpoint at event {seq} says batch {batch}, which ends at event"
                       f" {self.batches[batch][2]}")
        replayed = checkpoint.digest_of(self.matcher)
        try:  # its parts are checked against its digest, and what they hold is restored
            pieces = checkpoint_parts(self.conn, self.engine, seq)
            said = sorted({checkpoint.read(piece).digest for piece in pieces})
            if said != [digest]:
                self.fault(f"the checkpoint at event {seq} has digest {digest}; its parts say {', '.join(said)}")
                return
            restored = checkpoint.digest_of(checkpoint.restore(self.instruments, pieces))
        except (ValueError, KeyError, msgspec.DecodeError, msgspec.ValidationError) as e:
            self.fault(f"the checkpoint at event {seq} does not restore: {e}")
            return
        if restored != replayed:
            # (a checkpoint from before the canonical encoding has a digest of other bytes: what it
            # holds is compared, through the restored matcher)
            self.fault(f"the checkpoint at event {seq} has digest {digest} and restores to {restored};"
                       f" the replayed state has {replayed}")

    def amount(self, symbol: str, qty: int, price: int) -> str:
        instrument = self.by_symbol.get(symbol)
        if instrument is None:
            return f"{qty} lots @ {price} ticks"
        return f"{instrument.format_qty(qty)} @ {instrument.format_price(price)}"


def batch_faults(batches: Mapping[int, tuple[int, int, int]],
                 after: tuple[int, int, int] = (0, 0, 0)) -> list[str]:
    """What is wrong with a stream's batches (batch → (epoch, first_seq, last_seq), in batch order):
    numbered on from ``after`` (the batch before them as (batch, epoch, last_seq); none by default, so
    1..M), each starting where the one before ended, epochs never going back."""
    faults, previous = [], after
    for batch, (epoch, first, last) in batches.items():
        if batch != previous[0] + 1:
            faults.append(_missing("batch", previous[0] + 1, batch - 1, "batches"))
        if first != previous[2] + 1:
            faults.append(f"batch {batch} starts at event {first}; the batch before ended at {previous[2]}")
        if last < first - 1:
            faults.append(f"batch {batch} ends at event {last}, before it starts ({first})")
        if epoch < previous[1]:
            faults.append(f"batch {batch} is in epoch {epoch}, after epoch {previous[1]}")
        previous = (batch, epoch, max(last, first - 1))
    return faults


def _top(book, top: tuple) -> str:
    bid_price, bid_qty, ask_price, ask_qty = top
    fmt_p, fmt_q = book.instrument.format_price, book.instrument.format_qty
    bid = "-" if bid_price is None else f"{fmt_q(bid_qty)} @ {fmt_p(bid_price)}"
    ask = "-" if ask_price is None else f"{fmt_q(ask_qty)} @ {fmt_p(ask_price)}"
    return f"bid {bid} / ask {ask}"


def _missing(noun: str, first: int, last: int, nouns: str = "") -> str:
    if first == last:
        return f"{noun} {first} is missing"
    return f"{nouns or noun + 's'} {first}..{last} are missing"


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"
