"""An engine rebuilt from the journal (checkpoint + the events after it) equals the live engine."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from exchange.testing.mesh import toy_config
from exchange.config import load_config
from exchange.core import checkpoint
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from exchange.engine.batches import Engine
from exchange.engine.recovery import recover
from exchange.wire.messages import Decoder, EventBatch, Request, Requests, encode
import exchange.engine.recovery
from exchange.journal.readers import EnginePosition, latest_checkpoint, whole_checkpoints
from exchange.journal.schema import open_db, open_readonly
from exchange.journal.writer import Writer

CONFIG = toy_config()  # configs/local.yaml without the demo's price bands
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


def journaled_engine(path: Path, n: int, checkpoint_every: int, per_batch: int = 50,
                     engine: Engine | None = None, stream=None, max_frame: int | None = None) -> Engine:
    """An engine that handled ``n`` commands (of ``stream``, by default ``commands``), every batch of
    which the journal at ``path`` holds; with ``max_frame``, each batch's frame must fit in it."""
    engine = engine or Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition(), checkpoint_every)
    writer = Writer(open_db(path), CONFIG.instrument_map())
    decoder, batches = Decoder(Requests), Decoder(EventBatch)
    pending = []
    for i, command in enumerate(stream if stream is not None else commands(n)):
        pending.append([encode([Request("gw", 1, i, command)])])
        if len(pending) == per_batch or i == n - 1:
            frame = engine.handle_requests(pending, decoder)
            assert max_frame is None or len(frame) <= max_frame, f"a batch of {len(frame):,} bytes"
            writer.append([batches.decode(frame)])
            pending = []
    writer.conn.close()
    return engine


@pytest.mark.parametrize("checkpoint_every", [1000, 10**9])
def test_recovery_from_the_journal_gives_the_live_state(tmp_path, checkpoint_every):
    path = tmp_path / "journal.db"
    live = journaled_engine(path, 3000, checkpoint_every)
    conn = open_readonly(path)
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
    assert copy.state() == matcher.state() and copy.digest() == matcher.digest()
    assert checkpoint.read(checkpoint.take(matcher)[0]).digest == checkpoint.digest_of(matcher)


@pytest.mark.parametrize("part_size", [1024, 5000, 10**6])
def test_a_checkpoint_in_parts_restores_whole_and_each_part_holds_at_most_its_size(part_size):
    matcher = Matcher(1, INSTRUMENTS)
    for command in commands(2000, seed=3):
        matcher.handle(command)
    parts = checkpoint.take(matcher, part_size)
    assert all(len(checkpoint.read(part).data) <= part_size for part in parts)
    assert (len(parts) > 1) == (part_size < 10**6)
    assert checkpoint.restore(INSTRUMENTS, reversed(parts)).digest() == matcher.digest()


def test_a_checkpoint_that_does_not_match_its_digest_or_misses_a_part_is_refused():
    matcher = Matcher(1, INSTRUMENTS)
    for command in commands(200):
        matcher.handle(command)
    parts = checkpoint.take(matcher, 1024)
    first = checkpoint.read(parts[0])
    forged = encode(msgspec.structs.replace(first, data=first.data[:-1] + bytes([first.data[-1] ^ 1])))
    with pytest.raises(ValueError, match="does not match its digest"):
        checkpoint.restore(INSTRUMENTS, [forged, *parts[1:]])
    with pytest.raises(ValueError, match="not one whole checkpoint"):
        checkpoint.restore(INSTRUMENTS, parts[:-1])


def many_client_order_ids(n: int):
    """Orders with a new client order id each, one µs apart: a third rest (their ids stay reserved
    while open), the rest are IOC orders that close at once (their ids leave after the window)."""
    for i in range(n):
        resting = i % 3 == 0
        yield PlaceOrder(f"u{i % 5}", "BTC-USD", Side.BUY if resting else Side.SELL, 1,
                         99_000 + i % 50 if resting else 101_000, TimeInForce.GTC if resting else TimeInForce.IOC,
                         client_order_id=f"id-{i:06d}", ts_received=i * 1000)


def test_a_checkpoint_bigger_than_the_message_cap_goes_out_in_parts_and_recovery_uses_it(tmp_path):
    """The old breaking point at small scale: with a 16 KiB cap on a message (64 MiB in the mesh)
    and 4 KiB checkpoint parts, 6,000 client order ids and 2,000 resting orders make a state many
    times the cap. Every batch still fits, the journal holds whole checkpoints, a restart restores
    the newest and replays the rest to the live state, and the window keeps the ids bounded."""
    path, cap, window = tmp_path / "journal.db", 16 * 1024, 200_000  # window: 200 commands
    engine = Engine("e1", Matcher(1, INSTRUMENTS, window), 1, EnginePosition(), checkpoint_every=2000,
                    checkpoint_part_size=4096)
    live = journaled_engine(path, 6000, 0, per_batch=20, engine=engine, stream=many_client_order_ids(6000),
                            max_frame=cap)
    assert len(checkpoint.encoded(live.matcher)) > 4 * cap
    ids = live.matcher.client_order_ids
    assert 2000 <= len(ids) <= 2000 + 2 * 200  # the resting orders' and the last two windows' at most
    conn = open_readonly(path)
    whole = whole_checkpoints(conn, "e1")
    newest = latest_checkpoint(conn, "e1")
    conn.close()
    assert len(whole) >= 2 and len(newest) > 4
    rebuilt, position = recover(str(path), "e1", 1, INSTRUMENTS, window)
    assert rebuilt.digest() == live.matcher.digest() and position.seq == live.matcher.seq
    again = PlaceOrder("u0", "BTC-USD", Side.BUY, 1, 99_000, client_order_id="id-000000", ts_received=10**9)
    old = PlaceOrder("u1", "BTC-USD", Side.SELL, 1, 101_000, TimeInForce.IOC, client_order_id="id-000001",
                     ts_received=10**9)
    for command in (again, old):  # open: still reserved; closed long ago: free again
        assert msgspec.msgpack.encode(rebuilt.handle(command)) == msgspec.msgpack.encode(live.matcher.handle(command))
    assert [type(e).__name__ for e in rebuilt.handle(again)][:1] == ["OrderRejected"]


def test_an_engine_still_takes_one_request_per_message_from_an_older_gateway():
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition(), 10**9)
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
    writer = Writer(open_db(path), CONFIG.instrument_map())
    later = PlaceOrder("b", "ETH-USD", Side.SELL, 5, 100_000, ts_received=10**6)
    frame = live.handle_requests([[encode([Request("gw", 1, 10**6, later)])]], Decoder(Requests))
    read_checkpoint = latest_checkpoint

    def commit_then_read(conn, engine):
        writer.append([Decoder(EventBatch).decode(frame)])  # the writer commits mid-recovery
        return read_checkpoint(conn, engine)

    monkeypatch.setattr(exchange.engine.recovery, "latest_checkpoint", commit_then_read)  # where recovery reads it
    rebuilt, position = recover(str(path), "e1", 1, INSTRUMENTS)
    writer.conn.close()
    assert (position.batch, position.seq) == (live.batch - 1, rebuilt.seq)
    assert rebuilt.seq < live.matcher.seq


# -- a checkpoint over a changed list of the engine's instruments ------------------------------------

_BTC = Instrument("BTC-USD", tick_size="1", lot_size="1")
_ETH = Instrument("ETH-USD", tick_size="1", lot_size="1")
_SOL = Instrument("SOL-USD", tick_size="1", lot_size="1")


def _journal_of_bids(path: Path, checkpoint_every: int) -> Engine:
    """Ten bids on BTC-USD of an engine trading BTC-USD and ETH-USD (ETH-USD untouched), journaled."""
    engine = Engine("e1", Matcher(1, [_BTC, _ETH]), 1, EnginePosition(), checkpoint_every)
    writer = Writer(open_db(path), {i.symbol: i for i in (_BTC, _ETH, _SOL)})
    for n in range(10):
        command = PlaceOrder("alice", "BTC-USD", Side.BUY, 1, 100 + n, ts_received=n)
        frame = engine.handle_requests([[encode([Request("gw", 1, n, command)])]], Decoder(Requests))
        writer.append([Decoder(EventBatch).decode(frame)])
    writer.conn.close()
    return engine


@pytest.mark.parametrize("instruments", [[_BTC, _ETH, _SOL], [_SOL, _ETH, _BTC], [_BTC]],
                         ids=["one added", "reordered", "an untouched one removed"])
def test_an_engine_restarts_from_its_checkpoint_after_its_instruments_changed(tmp_path, instruments):
    """The checkpoint's digest names the state, not the config: books by symbol, untouched ones left
    out. (It used to list every configured book in config order, and an engine given one more
    instrument could not start again.)"""
    from exchange.engine.recovery import recover

    live = _journal_of_bids(tmp_path / "journal.db", checkpoint_every=3)
    rebuilt, _ = recover(str(tmp_path / "journal.db"), "e1", 1, instruments)
    assert rebuilt.seq == live.matcher.seq
    assert rebuilt.books["BTC-USD"].state() == live.matcher.books["BTC-USD"].state()
    assert checkpoint.digest_of(rebuilt) == checkpoint.digest_of(live.matcher)


def test_a_checkpoint_holding_orders_of_an_instrument_the_engine_no_longer_has_is_refused(tmp_path):
    _journal_of_bids(tmp_path / "journal.db", checkpoint_every=3)
    parts = checkpoint.take(Engine("e1", Matcher(1, [_BTC, _ETH]), 1, EnginePosition()).matcher)  # a new one
    assert checkpoint.restore([_ETH], parts).seq == 0  # nothing of BTC-USD in it
    live = _journal_of_bids(tmp_path / "again.db", checkpoint_every=10**9)
    with pytest.raises(ValueError, match="holds orders or trades of BTC-USD, which the config no longer gives"):
        checkpoint.restore([_ETH], checkpoint.take(live.matcher))
