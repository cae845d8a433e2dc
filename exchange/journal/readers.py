"""Reading the journal: where each engine's history ends, its events and checkpoints for a
restarting engine, and order events for a starting gateway.

What must be exact reads the log (``log_events``), or the tables and then the part of the log they
do not hold yet (``unindexed_events``): the tables lag the log a little (exchange.journal.indexer).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
import msgspec
from exchange.core.messages import AnyCommand, AnyEvent, Match, OrderFilled, OrderReduced, OrderRejected, Trade, expand
from exchange.wire.messages import EventBatch
from exchange.errors import JournalError
from exchange.journal.ledger_rows import is_ledger_stream
from exchange.journal.schema import has_table, open_readonly, read_snapshot


_event_decoder = msgspec.json.Decoder(AnyEvent)


_command_decoder = msgspec.json.Decoder(AnyCommand)


_batch_decoder = msgspec.msgpack.Decoder(EventBatch)


class EnginePosition(msgspec.Struct, frozen=True):
    """Where an engine's journaled history ends."""

    epoch: int = 0
    batch: int = 0
    seq: int = 0


def positions(conn: sqlite3.Connection, engines: Iterable[str] | None = None) -> dict[str, EnginePosition]:
    """Where each engine's journaled history ends: its last batch and seq, and its current epoch
    (the last one the writer opened for it, else its last batch's); none before the schema exists.

    With ``engines`` (the names a config gives), each is looked up by its primary key, whatever
    the journal's size; without, every engine the journal names is found by one scan.
    """
    if not has_table(conn, "batches"):
        return {}
    if engines is None:
        engines = log_streams(conn)
        if has_table(conn, "epochs"):
            engines += [engine for (engine,) in conn.execute("SELECT DISTINCT engine FROM epochs")]
    rows = []
    for engine in dict.fromkeys(engines):
        row = conn.execute("SELECT epoch, batch, last_seq FROM batches WHERE engine=? ORDER BY batch DESC"
                           " LIMIT 1", (engine,)).fetchone()
        if row is not None:
            rows.append((engine, *row))
    result = {engine: EnginePosition(epoch, batch, last_seq) for engine, epoch, batch, last_seq in rows}
    if has_table(conn, "epochs"):
        for engine in dict.fromkeys(engines):
            (epoch,) = conn.execute("SELECT COALESCE(MAX(epoch), 0) FROM epochs WHERE engine=?", (engine,)).fetchone()
            pos = result.get(engine, EnginePosition())
            if epoch > pos.epoch:
                result[engine] = EnginePosition(epoch, pos.batch, pos.seq)
    return result


def log_streams(conn: sqlite3.Connection) -> list[str]:
    """Every stream (engine or ledger shard) the log holds batches of: one primary key seek each."""
    streams: list[str] = []
    while (stream := conn.execute("SELECT MIN(engine) FROM batches WHERE engine > ?",
                                  (streams[-1] if streams else "",)).fetchone()[0]) is not None:
        streams.append(stream)
    return streams


def log_batches(conn: sqlite3.Connection, stream: str, after_seq: int = 0) -> Iterator[EventBatch]:
    """The logged batches of ``stream`` that hold events after ``after_seq`` (whole), in order (none
    before the journal has its schema)."""
    if not has_table(conn, "batches"):
        return
    decode = _batch_decoder.decode
    for (body,) in conn.execute("SELECT body FROM batches WHERE engine=? AND last_seq>? AND last_seq>=first_seq"
                                " ORDER BY last_seq", (stream, after_seq)):
        yield decode(body)


def logged_batch_bodies(conn: sqlite3.Connection, stream: str, after_batch: int, before_batch: int,
                        max_events: int) -> list[bytes]:
    """The bodies of ``stream``'s logged batches numbered after ``after_batch`` and before
    ``before_batch``, in order, until they hold ``max_events`` events or more (at least one batch)."""
    if not has_table(conn, "batches"):
        return []
    bodies, count = [], 0
    for body, events in conn.execute("SELECT body, last_seq - first_seq + 1 FROM batches WHERE engine=? AND batch>?"
                                     " AND batch<? ORDER BY batch", (stream, after_batch, before_batch)):
        if bodies and count >= max_events:
            break
        bodies.append(body)
        count += max(events, 0)
    return bodies


def recent_batch_bodies(conn: sqlite3.Connection, stream: str, since_ns: int, limit: int) -> list[bytes]:
    """The bodies of ``stream``'s last logged batches (at most ``limit``) written at or after
    ``since_ns``, oldest first."""
    rows = conn.execute("SELECT body, ts_written FROM batches WHERE engine=? ORDER BY batch DESC LIMIT ?",
                        (stream, limit)).fetchall()
    return [body for body, ts_written in reversed(rows) if (ts_written or 0) >= since_ns]


def log_events(conn: sqlite3.Connection, stream: str, after_seq: int = 0) -> Iterator:
    """Every logged event of ``stream`` after ``after_seq``, in sequence order. A Match whose fills
    ``after_seq`` names (the tables list them) comes as the rest of its three events."""
    for batch in log_batches(conn, stream, after_seq):
        for entry in batch.entries:
            for event in entry.events:
                if event.seq > after_seq:
                    if type(event) is Match and event.seq - 2 <= after_seq:
                        yield from (part for part in expand([event]) if part.seq > after_seq)
                    else:
                        yield event


def unindexed_events(conn: sqlite3.Connection, stream: str) -> Iterator:
    """The logged events of ``stream`` that the tables do not hold yet, in sequence order, as the
    tables list them: each Match as the maker's fill, the taker's fill and the trade."""
    if not has_table(conn, "indexed"):
        return
    row = conn.execute("SELECT seq FROM indexed WHERE stream=?", (stream,)).fetchone()
    for event in log_events(conn, stream, row[0] if row else 0):
        yield from expand([event])


def index_lag(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """stream → (batches logged, batches in the tables) of every stream whose tables lag its log."""
    if not has_table(conn, "indexed"):
        return {}
    indexed = dict(conn.execute("SELECT stream, batch FROM indexed"))
    lag = {}
    for stream in log_streams(conn):
        (logged,) = conn.execute("SELECT MAX(batch) FROM batches WHERE engine=?", (stream,)).fetchone()
        if logged > indexed.get(stream, 0):
            lag[stream] = (logged, indexed.get(stream, 0))
    return lag


def wait_for_tables(path: str | Path, timeout_s: float = 60.0, poll_s: float = 0.02) -> float:
    """Wait until the journal's tables hold all of its log, as it is when called (a running journal
    writer indexes it); return the seconds waited. For tools and tests that query the tables after
    a load; raises JournalError if they are still behind after ``timeout_s``."""
    started = time.monotonic()
    if not Path(path).exists():
        return 0.0
    conn = open_readonly(path)
    try:
        target = {stream: logged for stream, (logged, _) in index_lag(conn).items()}
        while True:
            indexed = dict(conn.execute("SELECT stream, batch FROM indexed")) if target else {}
            if all(indexed.get(stream, 0) >= logged for stream, logged in target.items()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                behind = ", ".join(f"{s} at {indexed.get(s, 0)} of {n}" for s, n in sorted(target.items()))
                raise JournalError(f"{path}: the tables are still behind the log after {timeout_s:g} s ({behind});"
                                   " is the journal writer running?")
            time.sleep(poll_s)
    finally:
        conn.close()


def read_positions(path: str | Path, engines: Iterable[str] | None = None) -> dict[str, EnginePosition]:
    """``positions`` of the journal at ``path`` as this process sees it (none if it sees no file)."""
    if not Path(path).exists():
        return {}
    conn = open_readonly(path)
    try:
        return positions(conn, engines)
    finally:
        conn.close()


def engine_symbols(conn: sqlite3.Connection, engine: str) -> dict[str, tuple[int, int, int]]:
    """symbol → (events, first seq, last seq) of the instruments that ``engine``'s journaled events
    changed (rejects change nothing, and may name an instrument the engine never had)."""
    if not has_table(conn, "events"):
        return {}
    rows = conn.execute("SELECT symbol, COUNT(*), MIN(seq), MAX(seq) FROM events WHERE engine=?"
                        " AND symbol IS NOT NULL AND kind != 'OrderRejected' GROUP BY symbol", (engine,))
    result = {symbol: (count, first, last) for symbol, count, first, last in rows}
    for event in unindexed_events(conn, engine):
        if event.symbol and not isinstance(event, OrderRejected):
            count, first, _ = result.get(event.symbol, (0, event.seq, 0))
            result[event.symbol] = (count + 1, first, event.seq)
    return result


engine_events = log_events  # every journaled event of an engine after a seq, in order, from the log


def last_trades(conn: sqlite3.Connection, engine: str) -> dict:
    """The last journaled Trade of each symbol of ``engine``."""
    if not has_table(conn, "events"):
        return {}
    rows = conn.execute("SELECT body FROM events WHERE seq IN (SELECT MAX(seq) FROM events"
                        " WHERE engine=? AND kind='Trade' GROUP BY symbol) AND engine=?", (engine, engine))
    trades = [_event_decoder.decode(body) for (body,) in rows]
    trades += [event for event in unindexed_events(conn, engine) if isinstance(event, Trade)]
    return {trade.symbol: trade for trade in trades}


def recent_trades(conn: sqlite3.Connection, engine: str, symbol: str, since_ns: int, limit: int) -> list[Trade]:
    """The last ``limit`` journaled trades of ``symbol`` (an instrument of ``engine``) at or after
    ``since_ns``, oldest first."""
    trades = []
    if has_table(conn, "events"):
        rows = conn.execute("SELECT body FROM events WHERE kind='Trade' AND symbol=? AND ts_event>=?"
                            " ORDER BY seq DESC LIMIT ?", (symbol, since_ns, limit))
        trades = [_event_decoder.decode(body) for (body,) in rows][::-1]
    trades += [event for event in unindexed_events(conn, engine)
               if type(event) is Trade and event.symbol == symbol and event.ts_event >= since_ns]
    return trades[-limit:] if limit > 0 else []


_WHOLE_CHECKPOINTS = ("SELECT seq, MIN(batch), MIN(digest) FROM checkpoints WHERE engine=? GROUP BY seq"
                      " HAVING COUNT(*) = MIN(parts) AND MIN(parts) = MAX(parts)"
                      " AND COUNT(DISTINCT digest) = 1 ORDER BY seq")


def latest_checkpoint(conn: sqlite3.Connection, engine: str) -> list[bytes] | None:
    """The parts of the newest whole checkpoint of ``engine`` (one with every part), or None."""
    seq = latest_checkpoint_seq(conn, engine)
    return checkpoint_parts(conn, engine, seq) if seq else None


def latest_checkpoint_seq(conn: sqlite3.Connection, engine: str) -> int:
    """The seq of the newest whole checkpoint of ``engine`` (0: none)."""
    if not has_table(conn, "checkpoints"):
        return 0
    row = conn.execute(f"SELECT seq FROM ({_WHOLE_CHECKPOINTS}) ORDER BY seq DESC LIMIT 1", (engine,)).fetchone()
    return row[0] if row else 0


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
    engine in order; none if there is no journal yet. SQLite chooses from the tables; the log
    they do not hold yet comes after, whole (its orders are recent)."""
    return _order_events(path, f"order_id IN (SELECT order_id FROM events WHERE kind = 'OrderAccepted' AND"
                               f" (ts_event >= ? OR order_id NOT IN ({_ENDED})))", (since_ns,), "engine, seq")


def order_history(path: str | Path, order_id: str, after_seq: int = 0, most: int | None = None) -> list:
    """The journaled order events of one order after ``after_seq``, in sequence order, at most ``most``
    of them (empty if none or no journal). An order's events are all of one engine: their seqs rise."""
    events = _order_events(path, "order_id=? AND seq>?", (order_id, after_seq), "seq", order_id)
    try:  # the log past the tables is filtered by order only: the seq here
        return list(islice((event for event in events if event.seq > after_seq), most))
    finally:
        events.close()  # ends its read transaction


def _order_events(path: str | Path, where: str, params: tuple, order: str, order_id: str | None = None) -> Iterator:
    """Order events from the tables (``where``), then those of the log the tables do not hold yet
    (of ``order_id`` only, if given), all in one read transaction."""
    if not Path(path).exists():
        return
    with read_snapshot(path) as conn:
        if not has_table(conn, "events"):
            return
        marks = ",".join("?" * len(ORDER_EVENT_KINDS))
        for (body,) in conn.execute(f"SELECT body FROM events WHERE {where} AND kind IN ({marks}) ORDER BY {order}",
                                    (*params, *ORDER_EVENT_KINDS)):
            yield _event_decoder.decode(body)
        for stream in log_streams(conn):
            if is_ledger_stream(stream):
                continue
            for event in unindexed_events(conn, stream):
                if type(event).__name__ in ORDER_EVENT_KINDS and (order_id is None or event.order_id == order_id):
                    yield event


def decode_event(body: str | bytes):
    return _event_decoder.decode(body)


def decode_command(body: str | bytes):
    return _command_decoder.decode(body)
