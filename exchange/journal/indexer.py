"""Turning the journal's log into the tables people query: each logged batch's commands, events and
ledger entries as rows (JSON bodies, decimal text, secondary indexes), many batches per transaction.
An engine's Match is listed as the three events it stands for (the maker's fill, the taker's fill
and the trade, with their own numbers), so the tables read as they did before Match.

The ``indexed`` table says, per stream, up to which batch the tables hold the log; it moves in the
same transaction as the rows, so the tables are always a prefix of the log, per stream. Readers
that must see everything (a restart, a settlement gap) read the log itself; a query of the tables
can say how far they are up to date (``exchange.journal.readers.index_lag``). A logged batch that
does not decode (the writer reads only headers on its hot path) is left out of the tables with an
error in the log, and the indexing goes on.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping

import msgspec
from exchange.core.instruments import Instrument
from exchange.core.messages import expand
from exchange.core.orders import Side
from exchange.wire.messages import EventBatch
from exchange.journal.ledger_rows import is_ledger_stream, ledger_rows


log = logging.getLogger(__name__)

_batches = msgspec.msgpack.Decoder(EventBatch)


_json_encode = msgspec.json.Encoder().encode


_QTY_FIELDS = ("qty", "last_qty", "canceled_qty", "expired_qty", "reduced_qty")


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


INDEX_READ_AHEAD = 256  # batches of one stream read per transaction, at most


class Indexer:
    """Builds the journal's tables from its log, a stream's batches in order, with ``indexed``."""

    def __init__(self, conn: sqlite3.Connection, instruments: dict[str, Instrument]):
        self.conn = conn
        self.instruments = instruments
        self.indexed = dict(conn.execute("SELECT stream, batch FROM indexed"))

    def lag(self, logged: Mapping[str, int], streams: Iterable[str] | None = None) -> int:
        """How many of the ``logged`` batches (stream → last batch in the log) are not in the tables."""
        return sum(logged[s] - self.indexed.get(s, 0) for s in (logged if streams is None else streams)
                   if s in logged)

    def index(self, logged: Mapping[str, int], budget: int, streams: Iterable[str] | None = None) -> int:
        """Index the oldest of the ``logged`` batches not in the tables yet (of ``streams``, default
        all), each stream's in order, until about ``budget`` events (at least one batch), in one
        transaction; return how many batches."""
        behind = [s for s in (logged if streams is None else streams)
                  if logged.get(s, 0) > self.indexed.get(s, 0)]
        if not behind:
            return 0
        command_rows, event_rows, entry_rows, upto = [], [], [], []
        share = max(1, budget // len(behind))
        count = 0
        for stream in behind:
            last, last_seq, events = self.indexed.get(stream, 0), None, 0
            rows = self.conn.execute("SELECT batch, first_seq, last_seq, body FROM batches WHERE engine=? AND batch>?"
                                     " AND batch<=? ORDER BY batch LIMIT ?",
                                     (stream, last, logged[stream], INDEX_READ_AHEAD))
            for batch, first_seq, last_seq, body in rows:
                try:
                    b = _batches.decode(body)
                except msgspec.MsgspecError as e:  # a sender's bug, or a newer sender than this writer
                    log.error("%s batch %d is in the log but does not read back, so the tables leave it out:"
                              " %s", stream, batch, str(e)[:200])
                else:
                    if is_ledger_stream(stream):
                        ledger_rows(b, command_rows, event_rows, entry_rows)
                    else:
                        self._engine_rows(b, command_rows, event_rows)
                last = batch
                count += 1
                events += max(1, last_seq - first_seq + 1)
                if events >= share:
                    break
            if last_seq is not None:
                upto.append((stream, last, last_seq))
        with self.conn:
            self.conn.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", command_rows)
            self.conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", event_rows)
            if entry_rows:
                self.conn.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", entry_rows)
            self.conn.executemany("INSERT OR REPLACE INTO indexed VALUES (?,?,?)", upto)
        for stream, batch, _ in upto:
            self.indexed[stream] = batch
        return count

    def _engine_rows(self, b: EventBatch, command_rows: list, event_rows: list) -> None:
        event_row = self._event_row
        for position, entry in enumerate(b.entries):
            cmd = entry.command
            events = entry.events
            command_rows.append((
                b.engine, b.batch, position, events[-1].seq if events else None, type(cmd).__name__,
                cmd.user, cmd.symbol, getattr(cmd, "order_id", None), getattr(cmd, "client_order_id", None),
                cmd.ts_received, entry.gateway, entry.session, entry.request_id,
                _json_encode(cmd).decode()))
            for event in expand(events):  # a Match is listed as its three events, one row each
                event_rows.append(event_row(b, event))

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
        instrument = self.instruments.get(symbol)  # it remembers the texts it formatted lately
        price_text = qty_text = None
        if instrument is not None:
            if price is not None:
                price_text = instrument.format_price(price)
            if qty is not None:
                qty_text = instrument.format_qty(qty)
        return (b.engine, event.seq, b.epoch, b.batch, kind, symbol,
                event.user if has_user else None, (event.order_id or None) if has_order else None,
                event.trade_id if has_trade else None, _SIDE_TEXT[side] if side else None,
                price_text, qty_text, event.ts_event, _json_encode(event).decode())

