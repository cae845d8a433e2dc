#!/usr/bin/env python3
"""Group-commit throughput of the journal writer under synchronous=NORMAL and FULL.

    .venv/bin/python scripts/bench_journal.py --seconds 3 --runs 3

Appends EventBatches made by a real matcher (about 3 events per command) with
exchange.journal.writer.Writer, one transaction per append, for several batch sizes, and reports
commits/s and events/s (median of the runs, with min-max). The file lives in --dir (default: a
temporary directory on the disk that holds /tmp); measure on the disk the journal will use.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from exchange.config import load_config
from exchange.core.matching import Matcher
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side
from exchange.wire.messages import Entry, EventBatch
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer

ROOT = Path(__file__).resolve().parents[1]


def batches(size: int, count: int, seed: int = 1) -> list[EventBatch]:
    config = load_config(ROOT / "configs" / "local.yaml")
    matcher = Matcher(1, [config.instrument_map()["BTC-USD"]])
    rng = random.Random(seed)
    out = []
    for b in range(1, count + 1):
        first = matcher.seq + 1
        entries = []
        for i in range(size):
            command = PlaceOrder("u", "BTC-USD", rng.choice(list(Side)), rng.randint(1, 9),
                                 4_300_000 + rng.randint(-5, 5), ts_received=i)
            entries.append(Entry("gw", 1, i, command, matcher.handle(command)))
        out.append(EventBatch("e1", 1, b, first, matcher.seq, entries))
    return out


def run(directory: Path, synchronous: str, size: int, seconds: float) -> tuple[float, float]:
    path = directory / f"j-{synchronous}-{size}-{time.monotonic_ns()}.db"
    db = open_db(path, synchronous)
    writer = Writer(db, load_config(ROOT / "configs" / "local.yaml").instrument_map())
    todo = batches(size, max(50, int(20_000 / size)))
    commits = events = 0
    started = time.perf_counter()
    for batch in todo:
        writer.append([batch])
        commits += 1
        events += batch.last_seq - batch.first_seq + 1
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    db.conn.close()
    return commits / elapsed, events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1,10,100,1000", help="commands per batch (per transaction)")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{'synchronous':>11} {'commands/commit':>15} {'commits/s':>22} {'events/s':>26}")
        for synchronous in ("NORMAL", "FULL"):
            for size in map(int, args.sizes.split(",")):
                results = [run(Path(tmp), synchronous, size, args.seconds) for _ in range(args.runs)]
                c = [r[0] for r in results]
                e = [r[1] for r in results]
                print(f"{synchronous:>11} {size:>15} {statistics.median(c):>10,.0f} ({min(c):,.0f}-{max(c):,.0f})"
                      f" {statistics.median(e):>12,.0f} ({min(e):,.0f}-{max(e):,.0f})", flush=True)


if __name__ == "__main__":
    main()
