#!/usr/bin/env python3
"""How long an engine takes to rebuild its books from a journal of N events.

    .venv/bin/python scripts/bench_restart.py --events 1000000 --runs 5

Builds a journal the way a running engine does (commands through exchange.engine.batches.Engine, batches
through exchange.journal.writer.Writer, a checkpoint every --checkpoint-every events), then times
exchange.engine.recovery.recover() — restore the newest checkpoint, replay the events after it — several
times, and checks the rebuilt digest against the live one.
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
from exchange.core.messages import CancelOrder, PlaceOrder
from exchange.core.orders import Side
from exchange.engine.batches import Engine
from exchange.engine.recovery import recover
from exchange.wire.messages import Decoder, EventBatch, Request, Requests, encode
from exchange.journal.readers import EnginePosition
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer

ROOT = Path(__file__).resolve().parents[1]


def build(path: Path, events: int, checkpoint_every: int, seed: int) -> Engine:
    config = load_config(ROOT / "configs" / "local.yaml")
    instruments = [config.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")]
    engine = Engine("e1", Matcher(1, instruments), 1, EnginePosition(), checkpoint_every)
    writer = Writer(open_db(path), config.instrument_map())
    requests, batches = Decoder(Requests), Decoder(EventBatch)
    rng = random.Random(seed)
    resting: list[str] = []
    i = 0
    while engine.matcher.seq < events:
        frames = []
        for _ in range(200):
            i += 1
            if resting and rng.random() < 0.3:
                command = CancelOrder("u", "", resting.pop(rng.randrange(len(resting))), "", i)
            else:
                command = PlaceOrder(rng.choice("uvw"), rng.choice(("BTC-USD", "ETH-USD")), rng.choice(list(Side)),
                                     rng.randint(1, 20), 4_300_000 + rng.randint(-20, 20),
                                     client_order_id=f"c{i}", ts_received=i)
                resting.append(f"1-{engine.matcher.last_order_number + 1}")
            frames.append([encode([Request("bench", 1, i, command)])])
        writer.append([batches.decode(engine.handle_requests(frames, requests))])
    writer.conn.close()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.db"
        started = time.perf_counter()
        live = build(path, args.events, args.checkpoint_every, args.seed)
        print(f"built {live.matcher.seq:,} events ({path.stat().st_size / 1e6:.0f} MB,"
              f" checkpoint every {args.checkpoint_every:,}) in {time.perf_counter() - started:.1f} s")
        instruments = list(live.matcher.books[s].instrument for s in live.matcher.books)
        times = []
        for run in range(args.runs):
            started = time.perf_counter()
            matcher, _ = recover(str(path), "e1", 1, instruments)
            times.append(time.perf_counter() - started)
            assert matcher.digest() == live.matcher.digest(), "rebuilt state differs from the live one"
            print(f"run {run + 1}: recovered seq {matcher.seq:,} in {times[-1]:.2f} s")
        print(f"restart with {live.matcher.seq:,} journaled events: median {statistics.median(times):.2f} s"
              f" (min {min(times):.2f}, max {max(times):.2f}) over {args.runs} runs; digests equal")


if __name__ == "__main__":
    main()
