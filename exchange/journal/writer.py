"""Appending event batches to the journal's log: one transaction per call (group commit), one row
per batch holding the bytes it came in; the tables for people built from the log later (``index``);
and a thread that checkpoints the WAL off the commit path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
import msgspec
import sqlite_utils
from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.wire.messages import BatchHeader, EventBatch, encode
from exchange.journal.indexer import Indexer
from exchange.journal.ledger_rows import is_ledger_stream, read_part as read_ledger_part
from exchange.journal.readers import EnginePosition, positions


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


CATCH_UP_CHUNK = 10_000  # events per transaction when the tables catch up with the log at once


def checkpoint_part(batch: EventBatch | BatchHeader):
    """The header of the checkpoint part ``batch`` carries (an engine's or a ledger shard's)."""
    return read_ledger_part(batch.checkpoint) if is_ledger_stream(batch.engine) else checkpoint.read(batch.checkpoint)


def unreadable(batch: BatchHeader) -> str:
    """Why a batch that came (its header decoded) cannot be logged, or "": the checkpoint part it
    carries must read back, since the group commit reads it. Its entries are not decoded on this
    hot path (a whole decode cost 1.7 to 3 µs of the writer's CPU per acknowledged request): one
    that does not read back is left out of the tables by the indexer, which goes on."""
    if batch.checkpoint:
        try:
            checkpoint_part(batch)
        except (msgspec.MsgspecError, ValueError) as e:
            return str(e)
    return ""


class Writer:
    """Appends event batches to the journal's log, one transaction per call (group commit), and
    turns the log into the tables people query (``index``), later and in bigger transactions.

    A batch is logged as it came: one ``batches`` row holding its exact bytes, plus a
    ``checkpoints`` row when it carries a checkpoint part (what a restart reads first). Its
    commands, events and ledger entries become rows when ``index`` reaches it: that work (decoding
    every record, JSON bodies, decimal text, secondary indexes) is most of what a journal costs,
    and it is off the path of every acknowledgement.
    """

    def __init__(self, db: sqlite_utils.Database, instruments: dict[str, Instrument],
                 streams: Iterable[str] | None = None):
        """``streams``: the engines and ledger shards the config names (None: those the journal names)."""
        self.db = db
        self.conn = db.conn
        self._checkpointer: _Checkpointer | None = None
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        if path and db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
            self.conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._checkpointer = _Checkpointer(path)
            self._checkpointer.start()
        self.logged = {stream: p.batch for stream, p in positions(self.conn, streams).items()}
        self.indexer = Indexer(self.conn, instruments)

    def append(self, batches: Iterable[EventBatch | BatchHeader]) -> None:
        """Log ``batches`` (engines' and ledger shards', in the order to write them) in one transaction.

        Each batch's checkpoint part must read back (``unreadable`` says so before): it is read
        here, and one that fails would fail the whole transaction."""
        batch_rows, checkpoint_rows = [], []
        ts_written = time.time_ns()
        for b in batches:
            body = getattr(b, "body", None) or encode(b)
            batch_rows.append((b.engine, b.batch, b.epoch, b.first_seq, b.last_seq, b.ts_matched or None,
                               ts_written, body))
            if b.checkpoint:
                part = checkpoint_part(b)
                checkpoint_rows.append((b.engine, part.seq, part.part, part.parts, b.epoch, b.batch, part.digest,
                                        b.checkpoint))
        with self.conn:
            self.conn.executemany("INSERT INTO batches (engine, batch, epoch, first_seq, last_seq, ts_matched,"
                                  " ts_written, body) VALUES (?,?,?,?,?,?,?,?)", batch_rows)
            if checkpoint_rows:
                # a part an earlier epoch wrote at the same seq is the same bytes (same events, same state)
                self.conn.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?,?,?,?)",
                                      checkpoint_rows)
        for row in batch_rows:
            self.logged[row[0]] = row[1]
        if self._checkpointer is not None:
            self._checkpointer.wanted.set()

    def unindexed(self, streams: Iterable[str] | None = None) -> int:
        """How many logged batches (of ``streams``, default all) the tables do not hold yet."""
        return self.indexer.lag(self.logged, streams)

    def index(self, budget: int, streams: Iterable[str] | None = None) -> int:
        """Turn the oldest logged batches not in the tables (of ``streams``, default all) into
        table rows, about ``budget`` events' worth, in one transaction; return how many batches."""
        return self.indexer.index(self.logged, budget, streams)

    def catch_up(self, streams: Iterable[str] | None = None) -> int:
        """Index every logged batch (of ``streams``, default all); return how many."""
        total = 0
        while n := self.index(CATCH_UP_CHUNK, streams):
            total += n
        return total

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

