#!/usr/bin/env python3
"""What building the journal's tables from its log costs, per engine command and per part.

The journal writer commits each batch as one row of its log and builds the tables people query
(``commands``, ``events``, ``entries``) later, from the log (docs/journal.md). This takes a
journal (say, one ``exchange bench --keep DIR`` left), copies it, empties the copy's tables, and
builds them again with the writer's own ``Indexer``, in transactions of ``--chunk`` events as the
writer does, timing each part in CPU seconds: each table's inserts and the commits (SQLite), and
the rest (reading and decoding the logged batches, making the rows: mostly Python). The rebuilt
tables must equal the original ones, or the run fails: the figure is of the real work.

    exchange bench --max --duration 10 --warmup 2 --accounts on --keep /tmp/run
    .venv/bin/python scripts/bench_indexer.py /tmp/run/journal.db --config /tmp/run/bench.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from exchange.config import load_config
from exchange.core.instruments import Instrument
from exchange.journal.indexer import Indexer
from exchange.journal.schema import readonly_uri

TABLES = ("commands", "events", "entries")
CHUNK = 100  # events per transaction: the journal writer's slices (exchange.journal.role.INDEX_CHUNK)


class TimedConnection:
    """A connection that adds the CPU seconds of each table's inserts and of the commits to ``seconds``."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.seconds: Counter[str] = Counter()

    def execute(self, *args):
        return self.conn.execute(*args)

    def executemany(self, sql: str, rows):
        start = time.process_time()
        try:
            return self.conn.executemany(sql, rows)
        finally:
            words = sql.split()
            self.seconds[words[words.index("INTO") + 1]] += time.process_time() - start

    def __enter__(self):
        return self.conn.__enter__()

    def __exit__(self, *exc):
        start = time.process_time()
        try:
            return self.conn.__exit__(*exc)
        finally:
            self.seconds["commit"] += time.process_time() - start


def tables_digest(conn: sqlite3.Connection) -> dict[str, str]:
    """A sha256 of each table's rows in a fixed order (their primary keys)."""
    order = {"commands": "engine, batch, position", "events": "engine, seq", "entries": "stream, entry_id, row"}
    digests = {}
    for table in TABLES:
        h = hashlib.sha256()
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order[table]}"):
            h.update(repr(row).encode())
        digests[table] = h.hexdigest()
    return digests


def rebuild(journal: Path, instruments: dict[str, Instrument], chunk: int = CHUNK) -> dict:
    """Rebuild a copy of ``journal``'s tables from its log; CPU seconds per part, counts, and whether
    the rebuilt tables equal the original ones."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "journal.db"
        source = sqlite3.connect(readonly_uri(journal), uri=True)
        target = sqlite3.connect(copy)
        source.backup(target)
        source.close()
        original = tables_digest(target)
        counts = {table: target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}
        engine_commands = target.execute("SELECT COUNT(*) FROM commands WHERE engine NOT LIKE 'ledger-%'").fetchone()[0]
        logged = dict(target.execute("SELECT engine, MAX(batch) FROM batches GROUP BY engine"))
        for table in (*TABLES, "indexed"):
            target.execute(f"DELETE FROM {table}")
        target.commit()
        target.execute("VACUUM")
        target.execute("PRAGMA journal_mode=WAL")
        target.execute("PRAGMA synchronous=NORMAL")
        timed = TimedConnection(target)
        indexer = Indexer(timed, instruments)  # type: ignore[arg-type]  (it only executes and commits)
        start = time.process_time()
        batches = 0
        while n := indexer.index(logged, chunk):
            batches += n
        total = time.process_time() - start
        same = tables_digest(target) == original
        target.close()
    parts = dict(timed.seconds)
    parts["the rest"] = total - sum(parts.values())  # reading and decoding the log, making the rows (Python)
    return {"seconds": total, "parts": parts, "batches": batches, "rows": counts,
            "engine_commands": engine_commands, "same_tables": same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("journal", type=Path, help="the journal to rebuild the tables of (left as it is)")
    parser.add_argument("--config", type=Path, required=True, help="the config it was written with (its instruments)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"events per transaction (default {CHUNK})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not args.journal.exists():
        parser.error(f"no journal at {args.journal}")
    if args.chunk < 1:
        parser.error("--chunk must be at least 1")
    instruments = load_config(args.config, mesh_keys=False).instrument_map()
    print(f"load average {os.getloadavg()[0]:.2f}; rebuilding the tables of {args.journal}")
    result = rebuild(args.journal, instruments, args.chunk)
    commands = max(1, result["engine_commands"])
    print(f"{result['batches']:,} batches, {result['engine_commands']:,} engine commands; rows: "
          + ", ".join(f"{table} {n:,}" for table, n in result["rows"].items()))
    print(f"CPU {result['seconds']:.2f} s: {result['seconds'] / commands * 1e6:.1f} µs per engine command, of which")
    for part, seconds in sorted(result["parts"].items(), key=lambda item: -item[1]):
        print(f"  {part:<18} {seconds / commands * 1e6:6.1f} µs  ({seconds / result['seconds'] * 100:4.1f} %)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not result["same_tables"]:
        print("the rebuilt tables differ from the journal's: the figure is not of the real work")
        return 1
    print("the rebuilt tables equal the journal's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
