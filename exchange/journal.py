"""The SQLite journal: every command an engine received and every event it produced.

Tables (one row per thing; ``body`` is the exact message as JSON, the other columns are for people):

    batches   engine, batch, epoch, first_seq, last_seq,       one row per EventBatch written, with
              ts_matched, ts_written                           when it was matched and written (wall ns)
    commands  engine, batch, position, kind, user, symbol, ...  every command, accepted or rejected
    events    engine, seq, epoch, batch, kind, symbol, user, order_id, trade_id, side, price, qty, ...

``price`` and ``qty`` columns are decimal text on the instrument's grid; the bodies keep ticks and
lots. Writers append one transaction per drained set of batches (group commit); readers (the CLI,
a restarting engine) open the same file read-only. WAL mode lets both run at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import sqlite_utils

from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.messages import AnyCommand, AnyEvent, OrderFilled, OrderReduced
from exchange.core.orders import Side
from exchange.errors import JournalError
from exchange.wire import EventBatch

_json_encode = msgspec.json.Encoder().encode
_event_decoder = msgspec.json.Decoder(AnyEvent)
_command_decoder = msgspec.json.Decoder(AnyCommand)

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


def open_db(path: str | Path, synchronous: str = "NORMAL") -> sqlite_utils.Database:
    """Open (creating if needed) the journal for writing, in WAL mode, with its schema."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    if "batches" not in db.table_names():
        db["batches"].create({"engine": str, "batch": int, "epoch": int, "first_seq": int,
                              "last_seq": int, "ts_matched": int, "ts_written": int}, pk=("engine", "batch"))
        db["commands"].create({"engine": str, "batch": int, "position": int, "seq": int, "kind": str,
                               "user": str, "symbol": str, "order_id": str, "client_order_id": str,
                               "ts_received": int, "gateway": str, "session": int, "request_id": int,
                               "body": str}, pk=("engine", "batch", "position"))
        db["events"].create({"engine": str, "seq": int, "epoch": int, "batch": int, "kind": str,
                             "symbol": str, "user": str, "order_id": str, "trade_id": str, "side": str,
                             "price": str, "qty": str, "ts_event": int, "body": str},
                            pk=("engine", "seq"))
        db.execute("CREATE INDEX events_order_id ON events(order_id) WHERE order_id IS NOT NULL")
        db.execute("CREATE INDEX events_user ON events(user) WHERE user IS NOT NULL")
    # partial indexes: market data events (most rows) have no order, user or trade, and only trades
    # and accepted orders are listed by time; every index row is paid for on the write path
    for name, on in (("events_trade_id", "events(trade_id) WHERE trade_id IS NOT NULL"),
                     ("events_trades_by_time", "events(ts_event) WHERE kind = 'Trade'"),
                     ("events_orders_by_time", "events(ts_event) WHERE kind = 'OrderAccepted'")):
        db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")
    db.execute("DROP INDEX IF EXISTS commands_client_order_id")  # nothing read by it; every write paid for it
    for column in ("ts_matched", "ts_written"):  # a journal from before these columns gets them
        if column not in db["batches"].columns_dict:
            db["batches"].add_column(column, int)
    if "checkpoints" in db.table_names() and "part" not in db["checkpoints"].columns_dict:
        # whole checkpoints of an older version, which this one cannot restore: a restart replays
        # the events instead (they hold everything a checkpoint does)
        db["checkpoints"].drop()
    if "checkpoints" not in db.table_names():
        # one row per part (exchange.core.checkpoint): a checkpoint is usable once all its parts are in
        db["checkpoints"].create({"engine": str, "seq": int, "part": int, "parts": int, "epoch": int,
                                  "batch": int, "digest": str, "state": bytes}, pk=("engine", "seq", "part"))
    if "epochs" not in db.table_names():
        db["epochs"].create({"engine": str, "epoch": int, "batch": int, "seq": int, "ts_opened": int},
                            pk=("engine", "epoch"))
    return db


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing journal; JournalError if there is none."""
    if not Path(path).exists():
        raise JournalError(f"{path}: no journal here")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return conn


@contextmanager
def read_snapshot(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction: every SELECT on it sees the journal as
    it was at the first one, whatever the writer commits meanwhile (WAL snapshot isolation)."""
    conn = open_readonly(path)
    conn.isolation_level = None  # we say BEGIN ourselves: Python's sqlite3 would not for SELECTs
    try:
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()  # ends the read transaction; it changed nothing


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
        batch_rows, command_rows, event_rows, checkpoint_rows = [], [], [], []
        event_row = self._event_row
        ts_written = time.time_ns()
        for b in batches:
            batch_rows.append((b.engine, b.batch, b.epoch, b.first_seq, b.last_seq, b.ts_matched or None, ts_written))
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


class EnginePosition(msgspec.Struct, frozen=True):
    """Where an engine's journaled history ends."""

    epoch: int = 0
    batch: int = 0
    seq: int = 0


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the journal has table ``name`` yet (readers may start before the writer made it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None


def positions(conn: sqlite3.Connection) -> dict[str, EnginePosition]:
    """Where every engine's journaled history ends: its last batch and seq, and its current epoch
    (the last one the writer opened for it, else its last batch's); none before the schema exists."""
    if not has_table(conn, "batches"):
        return {}
    rows = conn.execute(
        "SELECT engine, epoch, batch, last_seq FROM batches b WHERE batch ="
        " (SELECT MAX(batch) FROM batches WHERE engine = b.engine)").fetchall()
    result = {}
    for engine, epoch, batch, last_seq in rows:
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE engine=?",
                           (engine,)).fetchone()[0]
        result[engine] = EnginePosition(epoch, batch, max(seq, last_seq))
    if has_table(conn, "epochs"):
        for engine, epoch in conn.execute("SELECT engine, MAX(epoch) FROM epochs GROUP BY engine"):
            pos = result.get(engine, EnginePosition())
            if epoch > pos.epoch:
                result[engine] = EnginePosition(epoch, pos.batch, pos.seq)
    return result


def read_positions(path: str | Path) -> dict[str, EnginePosition]:
    """``positions`` of the journal at ``path`` as this process sees it (none if it sees no file)."""
    if not Path(path).exists():
        return {}
    conn = open_readonly(path)
    try:
        return positions(conn)
    finally:
        conn.close()


def engine_symbols(conn: sqlite3.Connection, engine: str) -> dict[str, tuple[int, int, int]]:
    """symbol → (events, first seq, last seq) of the instruments that ``engine``'s journaled events
    changed (rejects change nothing, and may name an instrument the engine never had)."""
    if not has_table(conn, "events"):
        return {}
    rows = conn.execute("SELECT symbol, COUNT(*), MIN(seq), MAX(seq) FROM events WHERE engine=?"
                        " AND symbol IS NOT NULL AND kind != 'OrderRejected' GROUP BY symbol", (engine,))
    return {symbol: (count, first, last) for symbol, count, first, last in rows}


def engine_events(conn: sqlite3.Connection, engine: str, after_seq: int = 0) -> Iterator:
    """Every journaled event of ``engine`` after ``after_seq``, in sequence order."""
    if not has_table(conn, "events"):
        return
    decode = _event_decoder.decode
    for (body,) in conn.execute("SELECT body FROM events WHERE engine=? AND seq>? ORDER BY seq",
                                (engine, after_seq)):
        yield decode(body)


def last_trades(conn: sqlite3.Connection, engine: str) -> dict:
    """The last journaled Trade of each symbol of ``engine``."""
    if not has_table(conn, "events"):
        return {}
    rows = conn.execute("SELECT body FROM events WHERE seq IN (SELECT MAX(seq) FROM events"
                        " WHERE engine=? AND kind='Trade' GROUP BY symbol) AND engine=?", (engine, engine))
    trades = [_event_decoder.decode(body) for (body,) in rows]
    return {trade.symbol: trade for trade in trades}


_WHOLE_CHECKPOINTS = ("SELECT seq, MIN(batch), MIN(digest) FROM checkpoints WHERE engine=? GROUP BY seq"
                      " HAVING COUNT(*) = MIN(parts) AND MIN(parts) = MAX(parts)"
                      " AND COUNT(DISTINCT digest) = 1 ORDER BY seq")


def latest_checkpoint(conn: sqlite3.Connection, engine: str) -> list[bytes] | None:
    """The parts of the newest whole checkpoint of ``engine`` (one with every part), or None."""
    if not has_table(conn, "checkpoints"):
        return None
    row = conn.execute(f"SELECT seq FROM ({_WHOLE_CHECKPOINTS}) ORDER BY seq DESC LIMIT 1", (engine,)).fetchone()
    return checkpoint_parts(conn, engine, row[0]) if row else None


def whole_checkpoints(conn: sqlite3.Connection, engine: str) -> dict[int, tuple[int, str]]:
    """seq → (batch of its first part, digest) of every checkpoint of ``engine`` with all its parts."""
    if not has_table(conn, "checkpoints"):
        return {}
    return {seq: (batch, digest) for seq, batch, digest in conn.execute(_WHOLE_CHECKPOINTS, (engine,))}


def checkpoint_parts(conn: sqlite3.Connection, engine: str, seq: int) -> list[bytes]:
    """The stored parts of the checkpoint of ``engine`` at ``seq``, in order."""
    return [state for (state,) in conn.execute(
        "SELECT state FROM checkpoints WHERE engine=? AND seq=? ORDER BY part", (engine, seq))]


ORDER_EVENT_KINDS = ("OrderAccepted", "OrderFilled", "OrderCanceled", "OrderReplaced", "OrderReduced",
                     "OrderExpired")


def _leaves_at(kind: type) -> str:
    """The JSON path of ``leaves_qty`` in a journaled body of ``kind`` (an array, its tag first)."""
    return f"$[{kind.__struct_fields__.index('leaves_qty') + 1}]"


# the order ids of orders that have ended: canceled, expired, or nothing left after a fill or a reduction
_ENDED = (f"SELECT order_id FROM events WHERE order_id IS NOT NULL AND (kind IN ('OrderCanceled', 'OrderExpired')"
          f" OR (kind = 'OrderFilled' AND json_extract(body, '{_leaves_at(OrderFilled)}') = 0)"
          f" OR (kind = 'OrderReduced' AND json_extract(body, '{_leaves_at(OrderReduced)}') = 0))")


def open_and_recent_order_events(path: str | Path, since_ns: int) -> Iterator:
    """The order events of the orders still open, and of those accepted at or after ``since_ns``
    (what a starting gateway needs: the rest can be named by no client order id any more), per
    engine in order; none if there is no journal yet. The choosing is done by SQLite."""
    return _order_events(path, f"order_id IN (SELECT order_id FROM events WHERE kind = 'OrderAccepted' AND"
                               f" (ts_event >= ? OR order_id NOT IN ({_ENDED})))", (since_ns,), "engine, seq")


def order_history(path: str | Path, order_id: str) -> list:
    """The journaled order events of one order, in sequence order (empty if none or no journal)."""
    return list(_order_events(path, "order_id=?", (order_id,), "seq"))


def _order_events(path: str | Path, where: str, params: tuple, order: str) -> Iterator:
    if not Path(path).exists():
        return
    conn = open_readonly(path)
    try:
        if not has_table(conn, "events"):
            return
        marks = ",".join("?" * len(ORDER_EVENT_KINDS))
        for (body,) in conn.execute(f"SELECT body FROM events WHERE {where} AND kind IN ({marks}) ORDER BY {order}",
                                    (*params, *ORDER_EVENT_KINDS)):
            yield _event_decoder.decode(body)
    finally:
        conn.close()


def decode_event(body: str | bytes):
    return _event_decoder.decode(body)


def decode_command(body: str | bytes):
    return _command_decoder.decode(body)
