"""The journal's SQLite schema: the tables, and opening the file to write or to read.

The journal is a log, and tables built from it for people:

    batches      engine, batch, epoch, first_seq, last_seq,     THE LOG: one row per EventBatch, as the
                 ts_matched, ts_written, body                   engine or ledger shard sent it (``body``,
                                                                msgpack), written in the group commit
    checkpoints  engine, seq, part, parts, epoch, batch, digest, state   a stream's state, in parts, logged
                                                                with the batch that carried each part
    epochs       engine, epoch, batch, seq, ts_opened           each engine start, as the writer opened it

    commands     engine, batch, position, kind, user, symbol, ...  every command, accepted or rejected
    events       engine, seq, epoch, batch, kind, symbol, user, order_id, trade_id, side, price, qty, ...
    entries      stream, entry_id, row, seq, kind, account,     a ledger shard's double-entry rows: each
                 asset, delta, balance, ts_event                entry's rows sum to zero per asset
    indexed      stream, batch, seq                             how far the three tables above hold the log
    meta         key, value                                     the journal's own facts: ``ledger_shards``

The first three are written on the commit path; the others by the indexer (exchange.journal.indexer),
from the log, a little later and many batches at a time, so they may lag the log under load (a
stream's rows are always a whole prefix of its log). ``body`` of commands and events is the exact
message as JSON. A ledger shard is a stream like an engine (``engine`` is ``ledger-<shard>``).

``price`` and ``qty`` columns are decimal text on the instrument's grid; the bodies keep ticks and
lots. Readers (the CLI, a restarting engine, a starting gateway) open the same file read-only; WAL
mode lets them run beside the writer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
import sqlite_utils
from exchange.core import checkpoint
from exchange.errors import JournalError


def open_db(path: str | Path, synchronous: str = "NORMAL") -> sqlite_utils.Database:
    """Open (creating if needed) the journal for writing, in WAL mode, with its schema."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    if "batches" not in db.table_names():
        db["batches"].create({"engine": str, "batch": int, "epoch": int, "first_seq": int,
                              "last_seq": int, "ts_matched": int, "ts_written": int, "body": bytes},
                             pk=("engine", "batch"))
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
    if "entries" not in db.table_names():
        # amounts are ints in the asset's smallest unit; ``balance`` is the account's after the row
        db["entries"].create({"stream": str, "entry_id": int, "row": int, "seq": int, "kind": str, "account": str,
                              "asset": str, "delta": int, "balance": int, "ts_event": int},
                             pk=("stream", "entry_id", "row"))
    # no index by account: it cost a third of a ledger batch's commit (most rows are fills' legs); one
    # account's history is read by a scan (`exchange accounts`), off every commit path
    db.execute("DROP INDEX IF EXISTS entries_account")
    if "indexed" not in db.table_names():
        # how far the tables above hold the log, per stream (exchange.journal.indexer)
        db["indexed"].create({"stream": str, "batch": int, "seq": int}, pk="stream")
    if "body" not in db["batches"].columns_dict:
        upgrade_to_log(db)
    # a stream's batches by where their events end: a restart or a settlement gap reads the log from a seq
    db.execute("CREATE INDEX IF NOT EXISTS batches_by_last_seq ON batches(engine, last_seq)")
    if "meta" not in db.table_names():
        # facts about the journal as a whole, such as the number of ledger shards it was started with
        db["meta"].create({"key": str, "value": str}, pk="key")
    if "epochs" not in db.table_names():
        db["epochs"].create({"engine": str, "epoch": int, "batch": int, "seq": int, "ts_opened": int},
                            pk=("engine", "epoch"))
    return db


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing journal; JournalError if there is none."""
    if not Path(path).exists():
        raise JournalError(f"{path}: no journal here")
    return sqlite3.connect(readonly_uri(path), uri=True)


def readonly_uri(path: str | Path) -> str:
    """The URI that opens the SQLite file at ``path`` read-only: the whole path, quoted (in a plain
    "file:" + path, a "#" or "?" in a folder's name ends the path there, and with it mode=ro, and
    "%25" reads as "%")."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"


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


@contextmanager
def one_reading(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction on ``conn`` (a read-only connection kept open): every SELECT inside
    sees the journal as at the first one. Inside a transaction already, it is that one."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")  # it read only


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the journal has table ``name`` yet (readers may start before the writer made it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None


def upgrade_to_log(db: sqlite_utils.Database) -> None:
    """Give a journal written before the log (tables only) its log: each batch's body rebuilt from
    its commands and events rows, exactly as the engine sent it but for ``after`` (which named
    ledger batches already written). Its tables are then whole: ``indexed`` says so."""
    from exchange.journal.upgrade import rebuild_bodies  # only old journals need it
    db["batches"].add_column("body", bytes)
    with db.conn:
        rebuild_bodies(db.conn)
