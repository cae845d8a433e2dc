"""The journal's rows of a ledger shard's batch: its commands, events and entries.

A ledger shard is the journal stream ``ledger-<shard>`` (engine names cannot start with
``ledger-``), written to the same ``batches``, ``commands``, ``events`` and ``checkpoints`` tables
as an engine's, plus one ``entries`` row per row of each double-entry ``Entry`` its events carry.
Columns that do not apply to a ledger message (``trade_id``, ``price``, ``qty``) are NULL.
"""

from __future__ import annotations

import msgspec

from exchange.core.ledger_checkpoint import LedgerCheckpointPart
from exchange.core.ledger_messages import Entry, OrderHeld, ReplaceHeld
from exchange.wire.messages import EventBatch

LEDGER_STREAM_PREFIX = "ledger-"

_json_encode = msgspec.json.Encoder().encode
_part_decoder = msgspec.msgpack.Decoder(LedgerCheckpointPart)


def is_ledger_stream(name: str) -> bool:
    """Whether the journal stream ``name`` is a ledger shard's (else it is an engine's)."""
    return name.startswith(LEDGER_STREAM_PREFIX)


def read_part(state: bytes) -> LedgerCheckpointPart:
    """A stored ledger checkpoint part's header and data."""
    return _part_decoder.decode(state)


def entries_of(event) -> tuple[Entry, ...]:
    """The double-entry entries a ledger event carries, in entry id order (maybe none)."""
    entries = getattr(event, "entries", None)
    if entries is not None:
        return entries
    entry = getattr(event, "entry", None)
    return () if entry is None else (entry,)


def event_columns(event) -> tuple:
    """(kind, symbol, user, order_id, side) of a ledger event, as its ``events`` row has them."""
    symbol = getattr(event, "symbol", None) or None
    order_id = getattr(event, "order_id", None) or None
    side = None
    if isinstance(event, (OrderHeld, ReplaceHeld)):
        symbol, side = event.hold.symbol, event.hold.side.value
        order_id = event.hold.order_id or getattr(event.command, "order_id", None) or None
    return type(event).__name__, symbol, getattr(event, "user", None), order_id, side


def command_columns(cmd) -> tuple:
    """(user, symbol, order_id, client_order_id, ts_received) of a ledger command: those of the
    order or replace it carries, else its own (NULL where it has none)."""
    inner = getattr(cmd, "order", None) or getattr(cmd, "replace", None) or cmd
    return (getattr(inner, "user", None), getattr(inner, "symbol", None) or None,
            getattr(inner, "order_id", None) or None, getattr(inner, "client_order_id", None),
            getattr(inner, "ts_received", None))


def ledger_rows(b: EventBatch, command_rows: list, event_rows: list, entry_rows: list) -> None:
    """Append the rows of ledger batch ``b``'s commands, events and entries to the lists of rows to
    insert (its checkpoint part, if any, is logged with the batch: exchange.journal.writer)."""
    stream = b.engine
    for position, item in enumerate(b.entries):
        cmd, events = item.command, item.events
        command_rows.append((stream, b.batch, position, events[-1].seq if events else None, type(cmd).__name__,
                             *command_columns(cmd), item.gateway, item.session, item.request_id,
                             _json_encode(cmd).decode()))
        for event in events:
            kind, symbol, user, order_id, side = event_columns(event)
            event_rows.append((stream, event.seq, b.epoch, b.batch, kind, symbol, user, order_id, None, side,
                               None, None, event.ts_event, _json_encode(event).decode()))
            for entry in entries_of(event):
                kind_text = entry.kind.value
                for n, row in enumerate(entry.rows):
                    entry_rows.append((stream, entry.entry_id, n, event.seq, kind_text, row.account, row.asset,
                                       row.delta, row.balance, event.ts_event))
