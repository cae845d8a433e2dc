"""Do the journal's log and its tables agree? ``verify_log`` returns (faults, notes).

Per stream (engine or ledger shard), reading the log once in batch order:

1. every batch's body decodes, and says what its row's columns say (stream, batch, epoch, first and
   last seq); its entries' events are numbered first_seq..last_seq, one by one (a Match as the three
   events it stands for, as the tables list it);
2. every batch the tables hold (``indexed``) has exactly its commands and events there: each
   ``commands`` and ``events`` row's body is its log record as JSON, none missing, none extra;
3. the batches past those the tables hold go on from them: numbered on, each starting where the one
   before ended, epochs never going back (the checks of the tables check the batches they hold);
4. ``indexed`` never claims more of a stream than its log holds.

The other checks (exchange.journal.verify, exchange.journal.verify_ledger) read the tables: a note
says how much of the log they did not reach when the tables lag it.
"""

from __future__ import annotations

import sqlite3

import msgspec

from exchange.core.messages import expand
from exchange.journal.readers import log_streams
from exchange.journal.schema import has_table
from exchange.journal.verify import batch_faults
from exchange.wire.messages import EventBatch

MAX_FAULTS_PER_STREAM = 20

_batch = msgspec.msgpack.Decoder(EventBatch)
_json = msgspec.json.Encoder().encode


def verify_log(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """(faults, notes) of the log against its tables, every stream."""
    if not has_table(conn, "indexed"):
        return [], []
    faults, notes = [], []
    indexed = dict(conn.execute("SELECT stream, batch FROM indexed"))
    for stream in log_streams(conn):
        found, logged = _stream(conn, stream, indexed.get(stream, 0))
        if len(found) > MAX_FAULTS_PER_STREAM:
            found = found[:MAX_FAULTS_PER_STREAM] + [f"… and {len(found) - MAX_FAULTS_PER_STREAM} more faults"]
        faults += [f"{stream}: {fault}" for fault in found]
        if indexed.get(stream, 0) < logged:
            notes.append(f"{stream}: the tables hold batches 1..{indexed.get(stream, 0)} of its log's 1..{logged};"
                         " the checks of the tables did not reach the rest (the journal writer indexes it)")
    for stream in sorted(set(indexed) - set(log_streams(conn))):
        faults.append(f"{stream}: the tables claim batches up to {indexed[stream]}, but the log has none")
    return faults, notes


def _stream(conn: sqlite3.Connection, stream: str, indexed: int) -> tuple[list[str], int]:
    """(faults, last logged batch) of one stream's log."""
    faults, last = [], 0
    # the checks of the tables check the numbering of the batches the tables hold; the rest of the log
    # must go on from the last of them, or what a restarting engine reads from the log has a hole
    last_held = (0, 0, 0)  # (batch, epoch, last_seq) of the last batch the tables hold
    beyond: dict[int, tuple[int, int, int]] = {}  # batch → (epoch, first_seq, last_seq) of the rest
    rows = conn.execute("SELECT batch, epoch, first_seq, last_seq, body FROM batches WHERE engine=? ORDER BY batch",
                        (stream,))
    for batch, epoch, first_seq, last_seq, body in rows:
        last = batch
        if batch <= indexed:
            last_held = (batch, epoch, max(last_seq, first_seq - 1))
        else:
            beyond[batch] = (epoch, first_seq, last_seq)
        try:
            logged = _batch.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as e:
            faults.append(f"batch {batch}: its body does not decode ({e})")
            continue
        header = (logged.engine, logged.batch, logged.epoch, logged.first_seq, logged.last_seq)
        if header != (stream, batch, epoch, first_seq, last_seq):
            faults.append(f"batch {batch}: its body says {header}, its row {(stream, batch, epoch, first_seq, last_seq)}")
            continue
        seqs = [event.seq for entry in logged.entries for event in expand(entry.events)]
        if seqs != list(range(first_seq, last_seq + 1)):
            faults.append(f"batch {batch}: its events are numbered {_span(seqs)}, not {first_seq}..{last_seq}")
        if batch <= indexed:
            faults += [f"batch {batch}: {fault}" for fault in _tables_agree(conn, stream, logged)]
    faults += batch_faults(beyond, after=last_held)
    if indexed > last:
        faults.append(f"the tables claim batches up to {indexed}, but the log ends at {last}")
    return faults, last


def _tables_agree(conn: sqlite3.Connection, stream: str, logged: EventBatch) -> list[str]:
    faults = []
    commands = [body for (body,) in conn.execute(
        "SELECT body FROM commands WHERE engine=? AND batch=? ORDER BY position", (stream, logged.batch))]
    wanted = [_json(entry.command).decode() for entry in logged.entries]
    if commands != wanted:
        faults.append(f"its commands rows ({len(commands)}) are not its {len(wanted)} logged commands")
    events = dict(conn.execute("SELECT seq, body FROM events WHERE engine=? AND seq BETWEEN ? AND ?",
                               (stream, logged.first_seq, logged.last_seq)))
    for entry in logged.entries:
        for event in expand(entry.events):
            if events.pop(event.seq, None) != _json(event).decode():
                faults.append(f"event {event.seq}: its events row is missing or not its logged event")
    return faults


def _span(seqs: list[int]) -> str:
    return f"{seqs[0]}..{seqs[-1]} ({len(seqs)} events)" if seqs else "nothing"
