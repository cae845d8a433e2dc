"""Giving a journal written before the log its log: every batch's bytes rebuilt from its table rows.

Before the log, the journal writer kept a batch as rows only (its commands and events, JSON
bodies). Those rows hold everything of the batch that matters after it was written: each entry's
command, events and where it came from, the checkpoint part it carried, and when it was matched.
Only ``after`` is gone (it named ledger batches that were already written, and nothing reads it
afterwards), so the rebuilt body is the batch as sent, with ``after`` empty.
"""

from __future__ import annotations

import sqlite3

import msgspec

from exchange.core.ledger_messages import AnyLedgerCommand, AnyLedgerEvent
from exchange.core.messages import AnyCommand, AnyEvent
from exchange.wire.messages import Entry, EventBatch, encode

_command = msgspec.json.Decoder(AnyCommand | AnyLedgerCommand)
_event = msgspec.json.Decoder(AnyEvent | AnyLedgerEvent)


def rebuild_bodies(conn: sqlite3.Connection) -> int:
    """Fill ``batches.body`` of every row that has none from its commands and events rows, and
    record the tables as whole in ``indexed``; return how many bodies were rebuilt. Run inside
    the caller's transaction."""
    parts = {(engine, batch): state for engine, batch, state in
             conn.execute("SELECT engine, batch, state FROM checkpoints")}
    rebuilt = 0
    rows = conn.execute("SELECT engine, batch, epoch, first_seq, last_seq, ts_matched FROM batches"
                        " WHERE body IS NULL ORDER BY engine, batch").fetchall()
    for engine, batch, epoch, first_seq, last_seq, ts_matched in rows:
        events = {seq: _event.decode(body) for seq, body in conn.execute(
            "SELECT seq, body FROM events WHERE engine=? AND seq BETWEEN ? AND ?", (engine, first_seq, last_seq))}
        entries, next_seq = [], first_seq
        for seq, gateway, session, request_id, body in conn.execute(
                "SELECT seq, gateway, session, request_id, body FROM commands WHERE engine=? AND batch=?"
                " ORDER BY position", (engine, batch)):
            if seq is None:
                mine = []
            else:
                mine = [events[s] for s in range(next_seq, seq + 1) if s in events]
                next_seq = seq + 1
            entries.append(Entry(gateway, session, request_id, _command.decode(body), mine))
        body = encode(EventBatch(engine, epoch, batch, first_seq, last_seq, entries,
                                 parts.get((engine, batch), b""), ts_matched or 0))
        conn.execute("UPDATE batches SET body=? WHERE engine=? AND batch=?", (body, engine, batch))
        rebuilt += 1
    conn.execute("INSERT OR REPLACE INTO indexed SELECT engine, MAX(batch), MAX(last_seq) FROM batches"
                 " GROUP BY engine")
    return rebuilt
