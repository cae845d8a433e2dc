"""An engine rebuilt from the journal (checkpoint + the events after it) equals the live engine."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from exchange import journal
from exchange.config import load_config
from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, PlaceOrder
from exchange.core.orders import Side
from exchange.engine import Engine, recover
from exchange.wire import Decoder, EventBatch, Request, Requests, encode

CONFIG = load_config(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")
INSTRUMENTS = [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")]


def commands(n: int, seed: int = 7):
    rng = random.Random(seed)
    placed = 0
    for i in range(n):
        if placed and rng.random() < 0.3:
            yield CancelOrder(rng.choice("abc"), "", f"1-{rng.randint(1, placed)}", "", i)
        else:
            placed += 1
            yield PlaceOrder(rng.choice("abc"), rng.choice(["BTC-USD", "ETH-USD"]), rng.choice(list(Side)),
                             rng.randint(1, 20), 100_000 + rng.randint(-8, 8),
                             client_order_id=f"c{i}" if i % 4 == 0 else "", ts_received=i)


def journaled_engine(path: Path, n: int, checkpoint_every: int, per_batch: int = 50) -> Engine:
    """An engine that handled ``n`` commands, every batch of which the journal at ``path`` holds."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, journal.EnginePosition(), checkpoint_every)
    writer = journal.Writer(journal.open_db(path), CONFIG.instrument_map())
    decoder, batches = Decoder(Requests), Decoder(EventBatch)
    pending = []
    for i, command in enumerate(commands(n)):
        pending.append([encode([Request("gw", 1, i, command)])])
        if len(pending) == per_batch:
            writer.append([batches.decode(engine.handle_requests(pending, decoder))])
            pending = []
    if pending:
        writer.append([batches.decode(engine.handle_requests(pending, decoder))])
    writer.conn.close()
    return engine


@pytest.mark.parametrize("checkpoint_every", [1000, 10**9])
def test_recovery_from_the_journal_gives_the_live_state(tmp_path, checkpoint_every):
    path = tmp_path / "journal.db"
    live = journaled_engine(path, 3000, checkpoint_every)
    conn = journal.open_readonly(path)
    stored = conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    conn.close()
    assert (stored > 0) == (checkpoint_every == 1000)
    rebuilt, position = recover(str(path), "e1", 1, INSTRUMENTS)
    assert rebuilt.digest() == live.matcher.digest()
    assert (position.batch, position.seq) == (live.batch, live.matcher.seq)
    more = PlaceOrder("b", "BTC-USD", Side.SELL, 500, 99_990, ts_received=10**6)
    assert msgspec.msgpack.encode(rebuilt.handle(more)) == msgspec.msgpack.encode(live.matcher.handle(more))


def test_a_checkpoint_restores_every_order_in_priority_with_its_client_ids():
    matcher = Matcher(1, INSTRUMENTS)
    for command in commands(2000, seed=3):
        matcher.handle(command)
    copy = checkpoint.restore(INSTRUMENTS, checkpoint.take(matcher))
    assert copy.state() == matcher.state()
    assert checkpoint.read(checkpoint.take(matcher)).digest == matcher.digest()


def test_a_checkpoint_that_does_not_match_its_digest_is_refused():
    matcher = Matcher(1, INSTRUMENTS)
    for command in commands(200):
        matcher.handle(command)
    state = checkpoint.read(checkpoint.take(matcher))
    forged = encode(msgspec.structs.replace(state, last_trade_number=state.last_trade_number + 1))
    with pytest.raises(ValueError, match="does not restore to its digest"):
        checkpoint.restore(INSTRUMENTS, forged)


def test_an_engine_still_takes_one_request_per_message_from_an_older_gateway():
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, journal.EnginePosition(), 10**9)
    place = PlaceOrder("a", "BTC-USD", Side.BUY, 1, 100_000, ts_received=1)
    frames = [[encode(Request("old-gw", 1, 1, place))], [encode([Request("gw", 1, 2, place)])], [b"junk"]]
    frame = engine.handle_requests(frames, Decoder(Requests))
    entries = Decoder(EventBatch).decode(frame).entries
    assert [(e.gateway, e.request_id) for e in entries] == [("old-gw", 1), ("gw", 2)]


def test_a_batch_committed_while_an_engine_recovers_is_in_none_of_its_reads(tmp_path, monkeypatch):
    """Position, checkpoint and events come from one read transaction: a commit landing between two
    of the reads must not give an engine events beyond its position (it would reuse batch numbers)."""
    path = tmp_path / "journal.db"
    live = journaled_engine(path, 300, 10**9)
    writer = journal.Writer(journal.open_db(path), CONFIG.instrument_map())
    later = PlaceOrder("b", "ETH-USD", Side.SELL, 5, 100_000, ts_received=10**6)
    frame = live.handle_requests([[encode([Request("gw", 1, 10**6, later)])]], Decoder(Requests))
    read_checkpoint = journal.latest_checkpoint

    def commit_then_read(conn, engine):
        writer.append([Decoder(EventBatch).decode(frame)])  # the writer commits mid-recovery
        return read_checkpoint(conn, engine)

    monkeypatch.setattr(journal, "latest_checkpoint", commit_then_read)
    rebuilt, position = recover(str(path), "e1", 1, INSTRUMENTS)
    writer.conn.close()
    assert (position.batch, position.seq) == (live.batch - 1, rebuilt.seq)
    assert rebuilt.seq < live.matcher.seq
