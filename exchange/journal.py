"""The SQLite journal: every command an engine received and every event it produced.

Tables (one row per thing; ``body`` is the exact message as JSON, the other columns are for people):

    batches   engine, batch, epoch, first_seq, last_seq        one row per EventBatch written
    commands  engine, batch, position, kind, user, symbol, ...  every command, accepted or rejected
    events    engine, seq, epoch, batch, kind, symbol, user, order_id, trade_id, side, price, qty, ...

``price`` and ``qty`` columns are decimal text on the instrument's grid; the bodies keep ticks and
lots. Writers append one transaction per drained set of batches (group commit); readers (the CLI,
a restarting engine) open the same file read-only. WAL mode lets both run at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import sqlite_utils

from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.messages import AnyCommand, AnyEvent
from exchange.errors import JournalError
from exchange.wire import EventBatch

_json_encode = msgspec.json.Encoder().encode
_event_decoder = msgspec.json.Decoder(AnyEvent)
_command_decoder = msgspec.json.Decoder(AnyCommand)

_QTY_FIELDS = ("qty", "last_qty", "canceled_qty", "expired_qty", "reduced_qty")


def open_db(path: str | Path, synchronous: str = "NORMAL") -> sqlite_utils.Database:
    """Open (creating if needed) the journal for writing, in WAL mode, with its schema."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    if "batches" not in db.table_names():
        db["batches"].create({"engine": str, "batch": int, "epoch": int, "first_seq": int,
                              "last_seq": int}, pk=("engine", "batch"))
        db["commands"].create({"engine": str, "batch": int, "position": int, "seq": int, "kind": str,
                               "user": str, "symbol": str, "order_id": str, "client_order_id": str,
                               "ts_received": int, "gateway": str, "session": int, "request_id": int,
                               "body": str}, pk=("engine", "batch", "position"))
        db["events"].create({"engine": str, "seq": int, "epoch": int, "batch": int, "kind": str,
                             "symbol": str, "user": str, "order_id": str, "trade_id": str, "side": str,
                             "price": str, "qty": str, "ts_event": int, "body": str},
                            pk=("engine", "seq"))
        db["events"].create_index(["kind", "symbol"])
        db["events"].create_index(["order_id"])
        db["events"].create_index(["user"])
        db["commands"].create_index(["user", "client_order_id"])
    if "checkpoints" not in db.table_names():
        db["checkpoints"].create({"engine": str, "seq": int, "epoch": int, "batch": int, "digest": str,
                                  "state": bytes}, pk=("engine", "seq"))
    return db


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing journal; JournalError if there is none."""
    if not Path(path).exists():
        raise JournalError(f"{path}: no journal here")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return conn


class Writer:
    """Appends event batches to the journal, one transaction per call (group commit)."""

    def __init__(self, db: sqlite_utils.Database, instruments: dict[str, Instrument]):
        self.db = db
        self.conn = db.conn
        self.instruments = instruments

    def append(self, batches: Iterable[EventBatch]) -> None:
        batch_rows, command_rows, event_rows, checkpoint_rows = [], [], [], []
        for b in batches:
            batch_rows.append((b.engine, b.batch, b.epoch, b.first_seq, b.last_seq))
            if b.checkpoint:
                state = checkpoint.read(b.checkpoint)
                checkpoint_rows.append((b.engine, state.seq, b.epoch, b.batch, state.digest, b.checkpoint))
            for position, entry in enumerate(b.entries):
                cmd = entry.command
                last = entry.events[-1].seq if entry.events else None
                command_rows.append((
                    b.engine, b.batch, position, last, type(cmd).__name__, cmd.user, cmd.symbol,
                    getattr(cmd, "order_id", None), getattr(cmd, "client_order_id", None),
                    cmd.ts_received, entry.gateway, entry.session, entry.request_id,
                    _json_encode(cmd).decode()))
                for event in entry.events:
                    event_rows.append(self._event_row(b, event))
        with self.conn:
            self.conn.executemany("INSERT INTO batches VALUES (?,?,?,?,?)", batch_rows)
            self.conn.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  command_rows)
            self.conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", event_rows)
            self.conn.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?,?)", checkpoint_rows)

    def _event_row(self, b: EventBatch, event) -> tuple:
        instrument = self.instruments.get(event.symbol)
        price = getattr(event, "price", None)
        if price is None:
            price = getattr(event, "last_price", None)
        qty = next((getattr(event, f) for f in _QTY_FIELDS if hasattr(event, f)), None)
        side = getattr(event, "side", None) or getattr(event, "taker_side", None)
        return (b.engine, event.seq, b.epoch, b.batch, type(event).__name__, event.symbol,
                getattr(event, "user", None), getattr(event, "order_id", None) or None,
                getattr(event, "trade_id", None), side.value if side else None,
                instrument.format_price(price) if instrument and price is not None else None,
                instrument.format_qty(qty) if instrument and qty is not None else None,
                event.ts_event, _json_encode(event).decode())

    def truncate(self, engine: str, from_batch: int, from_seq: int) -> int:
        """Remove what an earlier epoch wrote at or after these positions; return events removed."""
        with self.conn:
            self.conn.execute("DELETE FROM batches WHERE engine=? AND batch>=?", (engine, from_batch))
            self.conn.execute("DELETE FROM commands WHERE engine=? AND batch>=?", (engine, from_batch))
            self.conn.execute("DELETE FROM checkpoints WHERE engine=? AND seq>=?", (engine, from_seq))
            return self.conn.execute("DELETE FROM events WHERE engine=? AND seq>=?",
                                     (engine, from_seq)).rowcount


class EnginePosition(msgspec.Struct, frozen=True):
    """Where an engine's journaled history ends."""

    epoch: int = 0
    batch: int = 0
    seq: int = 0


def positions(conn: sqlite3.Connection) -> dict[str, EnginePosition]:
    """The last journaled batch of every engine (none while the writer has not made the schema)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='batches'").fetchone():
        return {}
    rows = conn.execute(
        "SELECT engine, epoch, batch, last_seq FROM batches b WHERE batch ="
        " (SELECT MAX(batch) FROM batches WHERE engine = b.engine)").fetchall()
    result = {}
    for engine, epoch, batch, last_seq in rows:
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE engine=?",
                           (engine,)).fetchone()[0]
        result[engine] = EnginePosition(epoch, batch, max(seq, last_seq))
    return result


def engine_events(conn: sqlite3.Connection, engine: str, after_seq: int = 0) -> Iterator:
    """Every journaled event of ``engine`` after ``after_seq``, in sequence order."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='events'").fetchone():
        return
    decode = _event_decoder.decode
    for (body,) in conn.execute("SELECT body FROM events WHERE engine=? AND seq>? ORDER BY seq",
                                (engine, after_seq)):
        yield decode(body)


def latest_checkpoint(conn: sqlite3.Connection, engine: str) -> bytes | None:
    """The newest checkpoint of ``engine`` (its state bytes), or None."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='checkpoints'").fetchone():
        return None
    row = conn.execute("SELECT state FROM checkpoints WHERE engine=? ORDER BY seq DESC LIMIT 1",
                       (engine,)).fetchone()
    return row[0] if row else None


ORDER_EVENT_KINDS = ("OrderAccepted", "OrderFilled", "OrderCanceled", "OrderReplaced", "OrderReduced",
                     "OrderExpired")


def journal_order_events(path: str | Path) -> Iterator:
    """Every order event in the journal at ``path`` (none if there is no journal yet), per engine in order."""
    if not Path(path).exists():
        return
    conn = open_readonly(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='events'").fetchone():
            return
        marks = ",".join("?" * len(ORDER_EVENT_KINDS))
        for (body,) in conn.execute(f"SELECT body FROM events WHERE kind IN ({marks}) ORDER BY engine, seq",
                                    ORDER_EVENT_KINDS):
            yield _event_decoder.decode(body)
    finally:
        conn.close()


def order_history(path: str | Path, order_id: str) -> list:
    """The journaled order events of one order, in sequence order (empty if none or no journal)."""
    if not Path(path).exists():
        return []
    conn = open_readonly(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='events'").fetchone():
            return []
        marks = ",".join("?" * len(ORDER_EVENT_KINDS))
        return [_event_decoder.decode(body) for (body,) in conn.execute(
            f"SELECT body FROM events WHERE order_id=? AND kind IN ({marks}) ORDER BY seq",
            (order_id, *ORDER_EVENT_KINDS))]
    finally:
        conn.close()


def decode_event(body: str | bytes):
    return _event_decoder.decode(body)


def decode_command(body: str | bytes):
    return _command_decoder.decode(body)
