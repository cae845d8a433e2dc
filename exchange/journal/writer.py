"""Appending event batches to the journal: one transaction per call (group commit), rows for people
derived from each command and event, and a thread that checkpoints the WAL off the commit path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
import msgspec
import sqlite_utils
from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.orders import Side
from exchange.wire.messages import EventBatch
from exchange.journal.ledger_rows import is_ledger_stream, ledger_rows
from exchange.journal.readers import EnginePosition


_json_encode = msgspec.json.Encoder().encode


_QTY_FIELDS = ("qty", "last_qty", "canceled_qty", "expired_qty", "reduced_qty")


_FORMAT_CACHE_SIZE = 100_000


_SIDE_TEXT = {side: side.value for side in Side}


_ROW_PLANS: dict[type, tuple] = {}


def _row_plan(kind: type) -> tuple:
    """Which fields of an event type fill the events table's columns for people, worked out once:
    price is ``price``, else ``last_price``; qty the first of _QTY_FIELDS it has; side ``side``,
    else ``taker_side``."""
    names = kind.__struct_fields__
    plan = (kind.__name__, tuple(f for f in ("price", "last_price") if f in names),
            next((f for f in _QTY_FIELDS if f in names), None),
            tuple(f for f in ("side", "taker_side") if f in names),
            "user" in names, "order_id" in names, "trade_id" in names)
    _ROW_PLANS[kind] = plan
    return plan


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database file from its own connection, off the writer's commit path.

    SQLite would otherwise run that checkpoint (and, with synchronous=NORMAL, its fsync) inside
    the commit that crosses ``wal_autocheckpoint`` pages; here it runs beside the writer (PASSIVE:
    it never blocks it), at most every CHECKPOINT_EVERY_S. Under a steady stream of commits it
    never quite catches up, and SQLite rewinds the WAL only after a checkpoint that did: so the
    writer's own autocheckpoint stays on at WAL_SAFETY_PAGES, which bounds the WAL (and the file is
    truncated back to WAL_SIZE_LIMIT after each rewind).
    """

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True, name="journal-checkpoint")
        self.path = path
        self.wanted = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path)
        try:
            while True:
                self.wanted.wait()
                self.wanted.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                time.sleep(CHECKPOINT_EVERY_S)
        finally:
            conn.close()


CHECKPOINT_EVERY_S = 0.25


WAL_SAFETY_PAGES = 8_192  # 32 MiB of 4 KiB pages


WAL_SIZE_LIMIT = 64 * 1024 * 1024


class Writer:
    """Appends event batches to the journal, one transaction per call (group commit)."""

    def __init__(self, db: sqlite_utils.Database, instruments: dict[str, Instrument]):
        self.db = db
        self.conn = db.conn
        self.instruments = instruments
        self._checkpointer: _Checkpointer | None = None
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        if path and db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
            self.conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._checkpointer = _Checkpointer(path)
            self._checkpointer.start()
        # decimal text of the prices and quantities seen lately, per instrument (formatting is slow)
        self._prices: dict[str, dict[int, str]] = {symbol: {} for symbol in instruments}
        self._qtys: dict[str, dict[int, str]] = {symbol: {} for symbol in instruments}

    def append(self, batches: Iterable[EventBatch]) -> None:
        """Write ``batches`` (engines' and ledger shards') in one transaction."""
        batch_rows, command_rows, event_rows, checkpoint_rows, entry_rows = [], [], [], [], []
        event_row = self._event_row
        ts_written = time.time_ns()
        for b in batches:
            batch_rows.append((b.engine, b.batch, b.epoch, b.first_seq, b.last_seq, b.ts_matched or None, ts_written))
            if is_ledger_stream(b.engine):
                ledger_rows(b, command_rows, event_rows, entry_rows, checkpoint_rows)
                continue
            if b.checkpoint:
                part = checkpoint.read(b.checkpoint)
                checkpoint_rows.append((b.engine, part.seq, part.part, part.parts, b.epoch, b.batch, part.digest,
                                        b.checkpoint))
            for position, entry in enumerate(b.entries):
                cmd = entry.command
                events = entry.events
                command_rows.append((
                    b.engine, b.batch, position, events[-1].seq if events else None, type(cmd).__name__,
                    cmd.user, cmd.symbol, getattr(cmd, "order_id", None), getattr(cmd, "client_order_id", None),
                    cmd.ts_received, entry.gateway, entry.session, entry.request_id,
                    _json_encode(cmd).decode()))
                for event in events:
                    event_rows.append(event_row(b, event))
        with self.conn:
            self.conn.executemany("INSERT INTO batches (engine, batch, epoch, first_seq, last_seq, ts_matched,"
                                  " ts_written) VALUES (?,?,?,?,?,?,?)", batch_rows)
            self.conn.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  command_rows)
            self.conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", event_rows)
            if entry_rows:
                self.conn.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", entry_rows)
            if checkpoint_rows:
                # a part an earlier epoch wrote at the same seq is the same bytes (same events, same state)
                self.conn.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?,?,?,?)",
                                      checkpoint_rows)
        if self._checkpointer is not None:
            self._checkpointer.wanted.set()

    def _event_row(self, b: EventBatch, event) -> tuple:
        kind, price_fields, qty_field, side_fields, has_user, has_order, has_trade = (
            _ROW_PLANS.get(type(event)) or _row_plan(type(event)))
        symbol = event.symbol
        price = qty = side = None
        for name in price_fields:
            price = getattr(event, name)
            if price is not None:
                break
        for name in side_fields:
            side = getattr(event, name)
            if side:
                break
        if qty_field is not None:
            qty = getattr(event, qty_field)
        instrument = self.instruments.get(symbol)
        price_text = qty_text = None
        if instrument is not None:
            if price is not None:
                price_text = _cached_text(self._prices[symbol], price, instrument.format_price)
            if qty is not None:
                qty_text = _cached_text(self._qtys[symbol], qty, instrument.format_qty)
        return (b.engine, event.seq, b.epoch, b.batch, kind, symbol,
                event.user if has_user else None, (event.order_id or None) if has_order else None,
                event.trade_id if has_trade else None, _SIDE_TEXT[side] if side else None,
                price_text, qty_text, event.ts_event, _json_encode(event).decode())

    def open_epoch(self, engine: str, at: EnginePosition) -> int:
        """Record a new epoch of ``engine``, whose history ends at ``at``, durably; return it.

        Epochs only grow: the new one is above every epoch the engine ever had or was given, so an
        epoch names one process start, and nothing an older start sent can pass for the new one's.
        """
        with self.conn:
            (given,) = self.conn.execute("SELECT COALESCE(MAX(epoch), 0) FROM epochs WHERE engine=?",
                                         (engine,)).fetchone()
            epoch = max(given, at.epoch) + 1
            self.conn.execute("INSERT INTO epochs VALUES (?,?,?,?,?)",
                              (engine, epoch, at.batch, at.seq, time.time_ns()))
        return epoch


def _cached_text(cache: dict[int, str], value: int, format_: Callable[[int], str]) -> str:
    """``format_(value)``, remembered: formatting decimals is slow and the same values recur."""
    text = cache.get(value)
    if text is None:
        if len(cache) > _FORMAT_CACHE_SIZE:
            cache.clear()
        text = cache[value] = format_(value)
    return text
