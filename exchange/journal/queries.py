"""Questions people ask the journal (orders, trades, events, stats), answered as lists of dicts.

Plain functions on a read-only connection from ``open_journal(path)``; each ``exchange journal``
command is one call here. Rows hold prices and quantities as decimal text on the instrument's grid
(plain integers for a symbol the given instruments do not know), times as int ns in ``ts_*`` keys,
and None where a value does not apply. Filters combine with AND; ``since_ns`` is inclusive,
``until_ns`` exclusive; rows come newest first unless ``oldest_first``; a ``limit`` of 0 or None
means all rows.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec

from exchange.core.instruments import Instrument
from exchange.core.messages import (
    OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderRejected, OrderReplaced,
    TopOfBook,
)
from exchange.core.orders import OrderStatus
from exchange.errors import JournalError
from exchange.core.ledger_messages import FundsMoved, HoldRejected, OrderSettled, TransferRejected, TransferRepeated
from exchange.journal.ledger_readers import decode_any_event
from exchange.journal.readers import decode_event
from exchange.journal.schema import has_table, open_readonly

ORDER_COLUMNS = ("order_id", "symbol", "user", "side", "price", "qty", "filled_qty", "leaves_qty", "status", "tif",
                 "client_order_id", "ts_accepted", "ts_last")
TRADE_COLUMNS = ("trade_id", "symbol", "price", "qty", "taker_side", "maker_user", "maker_order_id",
                 "taker_user", "taker_order_id", "ts_event")
EVENT_COLUMNS = ("engine", "seq", "ts_event", "kind", "symbol", "user", "order_id", "trade_id", "side", "price",
                 "qty", "detail")
COUNT_COLUMNS = ("symbol", "kind", "count")
_LATER_ORDER_KINDS = ("OrderFilled", "OrderCanceled", "OrderReplaced", "OrderReduced", "OrderExpired")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FRACTION = re.compile(r"^(.*\d\d:?\d\d:?\d\d)[.,](\d+)(.*)$")  # extended (03:04:05.5) or basic (030405,5)
_CHUNK = 500  # ids per IN (...) query, well below SQLite's limit on parameters
TIME_MIN_NS, TIME_MAX_NS = -2**63, 2**63 - 1  # the journal's times are int64 ns, SQLite's integers
Instruments = Mapping[str, Instrument]


def open_journal(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path``; JournalError if it is not one."""
    conn = open_readonly(path)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        conn.close()
        raise JournalError(f"{path}: not an SQLite journal ({e})") from None
    if not {"batches", "commands", "events"} <= tables:
        conn.close()
        raise JournalError(f"{path}: has no journal tables (the journal writer creates them when it starts)")
    return conn


def to_ns(text: str) -> int:
    """ISO-8601 text (UTC unless it names an offset) → int ns since the UNIX epoch; ValueError if it is
    not one, or not within TIME_MIN_NS..TIME_MAX_NS (about 1677..2262)."""
    iso, fraction = text.strip(), "0"
    match = _FRACTION.match(iso)
    if match:  # datetime keeps microseconds only; the journal counts nanoseconds
        iso, fraction = match.group(1) + match.group(3), match.group(2)
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time such as 2026-11-25T13:52:10Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    ns = (moment - _EPOCH) // timedelta(seconds=1) * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))
    if not TIME_MIN_NS <= ns <= TIME_MAX_NS:  # SQLite cannot take it as a bound (and holds no time there)
        raise ValueError(f"{text!r} is outside the journal's time range"
                         f" ({to_iso(TIME_MIN_NS)} .. {to_iso(TIME_MAX_NS)})")
    return ns


def to_iso(ns: int) -> str:
    """Int ns since the UNIX epoch → ISO-8601 UTC text to the microsecond (``…T13:52:10.123456Z``)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = _EPOCH + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{rest // 1000:06d}Z"


# where an OrderAccepted body (a JSON array, tag first) holds the client order id
_CLIENT_ORDER_ID_AT = f"$[{OrderAccepted.__struct_fields__.index('client_order_id') + 1}]"


def orders(conn: sqlite3.Connection, instruments: Instruments, symbol: str | None = None,
           user: str | None = None, order_id: str | None = None, since_ns: int | None = None,
           until_ns: int | None = None, limit: int | None = 50, oldest_first: bool = False,
           client_order_id: str | None = None) -> list[dict]:
    """One row per accepted order (time range: when it was accepted), built from all its events."""
    where, args = _where("OrderAccepted", symbol, since_ns, until_ns, user=user, order_id=order_id)
    if client_order_id is not None:
        where += f" AND json_extract(body, '{_CLIENT_ORDER_ID_AT}')=?"
        args.append(client_order_id.removeprefix("#"))
    accepted = [decode_event(body) for (body,) in conn.execute(
        f"SELECT body FROM events WHERE {where} {_order_by(oldest_first)} {_limit(limit, args)}", args)]
    later: dict[str, list] = {a.order_id: [] for a in accepted}
    kinds = ",".join("?" * len(_LATER_ORDER_KINDS))
    for chunk in _chunks(list(later)):
        marks = ",".join("?" * len(chunk))
        for (body,) in conn.execute(f"SELECT body FROM events WHERE order_id IN ({marks}) AND kind IN"
                                    f" ({kinds}) ORDER BY engine, seq", (*chunk, *_LATER_ORDER_KINDS)):
            event = decode_event(body)
            later[event.order_id].append(event)
    return [_order_row(a, later[a.order_id], instruments.get(a.symbol)) for a in accepted]


def _order_row(accepted: OrderAccepted, later: list, instrument: Instrument | None) -> dict:
    qty, price, filled, leaves = accepted.qty, accepted.price, 0, accepted.qty
    status, ts_last = OrderStatus.NEW, accepted.ts_event
    for event in later:
        ts_last = event.ts_event
        match event:
            case OrderFilled():
                filled, leaves = event.filled_qty, event.leaves_qty
                status = OrderStatus.FILLED if leaves == 0 else OrderStatus.PARTIALLY_FILLED
            case OrderCanceled():
                leaves, status = 0, OrderStatus.CANCELED
            case OrderExpired():
                leaves, status = 0, OrderStatus.EXPIRED
            case OrderReplaced():
                qty, price, leaves = event.qty, event.price, event.leaves_qty
            case OrderReduced():
                qty, leaves = qty - event.reduced_qty, event.leaves_qty
    price_text, qty_text = _formats(instrument)
    return {"order_id": accepted.order_id, "symbol": accepted.symbol, "user": accepted.user,
            "side": accepted.side.value, "price": None if price is None else price_text(price),
            "qty": qty_text(qty), "filled_qty": qty_text(filled), "leaves_qty": qty_text(leaves),
            "status": status.value, "tif": accepted.tif.value, "client_order_id": accepted.client_order_id,
            "ts_accepted": accepted.ts_event, "ts_last": ts_last}


def trades(conn: sqlite3.Connection, instruments: Instruments, symbol: str | None = None,
           user: str | None = None, order_id: str | None = None, since_ns: int | None = None,
           until_ns: int | None = None, limit: int | None = 50, oldest_first: bool = False) -> list[dict]:
    """One row per trade with its maker and taker; ``user``/``order_id`` match either side."""
    where, args = _where("Trade", symbol, since_ns, until_ns)
    for column, value in (("user", user), ("order_id", order_id)):
        if value is not None:
            where += f" AND trade_id IN (SELECT trade_id FROM events WHERE kind='OrderFilled' AND {column}=?)"
            args.append(value)
    found = [decode_event(body) for (body,) in conn.execute(
        f"SELECT body FROM events WHERE {where} {_order_by(oldest_first)} {_limit(limit, args)}", args)]
    fills: dict[str, dict[bool, OrderFilled]] = {t.trade_id: {} for t in found}
    for symbol_, ids in _by_symbol(found).items():
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for (body,) in conn.execute(f"SELECT body FROM events WHERE kind='OrderFilled' AND symbol=? AND"
                                        f" trade_id IN ({marks})", (symbol_, *chunk)):
                fill = decode_event(body)
                fills[fill.trade_id][fill.maker] = fill
    rows = []
    for trade in found:
        price_text, qty_text = _formats(instruments.get(trade.symbol))
        maker, taker = fills[trade.trade_id].get(True), fills[trade.trade_id].get(False)
        rows.append({"trade_id": trade.trade_id, "symbol": trade.symbol, "price": price_text(trade.price),
                     "qty": qty_text(trade.qty), "taker_side": trade.taker_side.value,
                     "maker_user": maker and maker.user, "maker_order_id": maker and maker.order_id,
                     "taker_user": taker and taker.user, "taker_order_id": taker and taker.order_id,
                     "ts_event": trade.ts_event})
    return rows


def events(conn: sqlite3.Connection, instruments: Instruments, symbol: str | None = None,
           user: str | None = None, order_id: str | None = None, since_ns: int | None = None,
           until_ns: int | None = None, limit: int | None = 50, oldest_first: bool = False,
           kind: str | None = None) -> list[dict]:
    """Journaled events as their columns, plus ``detail``: what the body says beyond them, or
    ``(body not understood: …)`` for a body this version does not decode (a newer version's kind)."""
    where, args = _where(kind, symbol, since_ns, until_ns, user=user, order_id=order_id)
    rows = []
    for *columns, body in conn.execute(f"SELECT {', '.join(EVENT_COLUMNS[:-1])}, body FROM events"
                                       f" WHERE {where} {_order_by(oldest_first)} {_limit(limit, args)}", args):
        try:
            event = decode_any_event(body)  # a ledger shard's too
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            # a kind a newer version wrote (or a damaged body): its columns still say what it is
            rows.append(dict(zip(EVENT_COLUMNS, (*columns, f"(body not understood: {e})"))))
            continue
        rows.append(dict(zip(EVENT_COLUMNS, (*columns, _detail(event, instruments.get(getattr(event, "symbol", "")))))))
    return rows


def _detail(event, instrument: Instrument | None) -> str:
    price_text, qty_text = _formats(instrument)
    cid = f" #{event.client_order_id}" if getattr(event, "client_order_id", "") else ""
    match event:
        case OrderAccepted():
            return f"{event.tif.value} {event.stp.value}{cid}"
        case OrderRejected():
            return f"{event.code.value} {event.reason}{cid}"
        case OrderFilled():
            return f"{'maker' if event.maker else 'taker'}, leaves {qty_text(event.leaves_qty)}{cid}"
        case OrderCanceled() | OrderExpired():
            return f"{event.reason.value}{cid}"
        case OrderReplaced():
            kept = "kept" if event.priority_kept else "lost"
            return f"leaves {qty_text(event.leaves_qty)}, priority {kept}{cid}"
        case OrderReduced():
            return f"leaves {qty_text(event.leaves_qty)}{cid}"
        case TopOfBook():
            bid = "-" if event.bid_price is None else f"{qty_text(event.bid_qty)} @ {price_text(event.bid_price)}"
            ask = "-" if event.ask_price is None else f"{qty_text(event.ask_qty)} @ {price_text(event.ask_price)}"
            return f"bid {bid} / ask {ask}"
        case HoldRejected() | TransferRejected():
            return f"{event.code.value} {event.reason}{cid}"
        case FundsMoved():
            return f"{event.asset}, ref {event.ref}"
        case TransferRepeated():
            return f"{event.asset}, ref {event.ref}, a retry of entry {event.entry_id}"
        case OrderSettled():
            return f"{event.engine} event {event.engine_seq}{cid}"
    return ""  # Trade and DepthUpdate: the columns say it all; other ledger events: their entries do


def stats(conn: sqlite3.Connection, path: str | Path) -> dict:
    """Size, time span, per-engine sequence ranges and counts, and events per symbol and kind.

    ``batches`` counts the log; ``indexed`` is the last batch the tables hold (the counts of commands
    and events are the tables')."""
    path = Path(path)
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    engines: dict[str, dict] = {}

    def engine(name: str) -> dict:
        return engines.setdefault(name, {
            "engine": name, "epochs": 0, "batches": 0, "indexed": 0, "commands": 0, "events": 0, "first_seq": None,
            "last_seq": None, "checkpoints": 0, "ts_first": None, "ts_last": None})

    for name, epochs, count in conn.execute(
            "SELECT engine, COUNT(DISTINCT epoch), COUNT(*) FROM batches GROUP BY engine"):
        engine(name).update(epochs=epochs, batches=count)
    if has_table(conn, "indexed"):
        for name, batch in conn.execute("SELECT stream, batch FROM indexed"):
            engine(name)["indexed"] = batch
    for (name, count) in conn.execute("SELECT engine, COUNT(*) FROM commands GROUP BY engine"):
        engine(name)["commands"] = count
    for name, count, first, last, ts_first, ts_last in conn.execute(
            "SELECT engine, COUNT(*), MIN(seq), MAX(seq), MIN(ts_event), MAX(ts_event) FROM events"
            " GROUP BY engine"):
        engine(name).update(events=count, first_seq=first, last_seq=last, ts_first=ts_first, ts_last=ts_last)
    if has_table(conn, "checkpoints"):
        for (name, count) in conn.execute("SELECT engine, COUNT(DISTINCT seq) FROM checkpoints GROUP BY engine"):
            engine(name)["checkpoints"] = count
    counts = [{"symbol": symbol, "kind": kind, "count": count} for symbol, kind, count in conn.execute(
        "SELECT symbol, kind, COUNT(*) FROM events GROUP BY symbol, kind ORDER BY symbol, kind")]
    rows = sorted(engines.values(), key=lambda e: e["engine"])
    firsts = [e["ts_first"] for e in rows if e["ts_first"] is not None]
    lasts = [e["ts_last"] for e in rows if e["ts_last"] is not None]
    return {"path": str(path), "size_bytes": size,
            "events": sum(e["events"] for e in rows), "commands": sum(e["commands"] for e in rows),
            "batches": sum(e["batches"] for e in rows), "checkpoints": sum(e["checkpoints"] for e in rows),
            "ts_first": min(firsts, default=None), "ts_last": max(lasts, default=None),
            "engines": rows, "counts": counts}


# -- query parts -------------------------------------------------------------------------------

def _where(kind: str | None, symbol: str | None, since_ns: int | None, until_ns: int | None,
           **equal: str | None) -> tuple[str, list]:
    clauses, args = ["1"], []
    if kind is not None and kind.isalpha():
        clauses.append(f"kind='{kind}'")  # a literal, so the partial index of trades can serve it
        kind = None
    for column, value in (("kind", kind), ("symbol", symbol), *equal.items()):
        if value is not None:
            clauses.append(f"{column}=?")
            args.append(value)
    if since_ns is not None:
        clauses.append("ts_event>=?")
        args.append(since_ns)
    if until_ns is not None:
        clauses.append("ts_event<?")
        args.append(until_ns)
    return " AND ".join(clauses), args


def _order_by(oldest_first: bool) -> str:
    way = "ASC" if oldest_first else "DESC"
    return f"ORDER BY ts_event {way}, engine {way}, seq {way}"


def _limit(limit: int | None, args: list) -> str:
    """The LIMIT clause of ``limit`` (none for 0 or None), its value bound as the last of ``args``."""
    if not limit:
        return ""
    args.append(limit)
    return "LIMIT ?"


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def _by_symbol(found: list) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for event in found:
        ids.setdefault(event.symbol, []).append(event.trade_id)
    return ids


def _formats(instrument: Instrument | None):
    """(price text, qty text) functions of an instrument; plain integers if it is unknown."""
    if instrument is None:
        return str, str
    return instrument.format_price, instrument.format_qty
