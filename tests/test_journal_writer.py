"""The journal writer's decisions in memory: which batches it writes, holds, drops, and the epochs it opens."""

from __future__ import annotations

import msgspec

from pathlib import Path

import pytest

from exchange.testing.mesh import toy_config
from exchange.config import load_config
from exchange.journal.role import answer
from exchange.journal.sequencer import MAX_HELD_BATCHES, Sequencer
from exchange.wire.messages import (
    BatchHeader, Decoder, EpochOpened, EventBatch, GetPositions, JournalRefused, OpenEpoch, Positions,
)
from exchange.journal.readers import EnginePosition, positions, read_positions
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer

CONFIG = toy_config()  # configs/local.yaml without the demo's price bands
P = EnginePosition


def batch(number: int, epoch: int = 1, engine: str = "e1", events: int = 2) -> EventBatch:
    """Batch ``number`` of ``engine`` with ``events`` events, numbered as if every batch had that many."""
    first = (number - 1) * events + 1
    return EventBatch(engine, epoch, number, first, first + events - 1, [])


def written(batches: list[EventBatch]) -> list[tuple[int, int]]:
    return [(b.epoch, b.batch) for b in batches]


def test_batches_in_order_are_written_and_advance_the_position():
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    to_write, gaps = sequencer.accept([batch(1), batch(2)])
    assert written(to_write) == [(1, 1), (1, 2)] and gaps == set()
    assert sequencer.positions["e1"] == P(1, 2, 4)


def after(b: EventBatch, *needs: tuple[str, int, int]) -> EventBatch:
    return msgspec.structs.replace(b, after=list(needs))


def test_an_engine_batch_waits_for_the_ledger_batch_that_holds_its_holds():
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(3, 4, 8)})
    needs_5 = after(batch(1), ("ledger-0", 3, 5))
    to_write, gaps = sequencer.accept([needs_5])
    assert to_write == [] and gaps == {"ledger-0"}  # held; the missing ledger batch is asked for
    to_write, gaps = sequencer.accept([batch(2), batch(5, epoch=3, engine="ledger-0")])
    assert [(b.engine, b.batch) for b in to_write] == [("ledger-0", 5), ("e1", 1), ("e1", 2)] and gaps == set()
    # arriving together, the ledger batch is still written first
    to_write, _ = sequencer.accept([after(batch(3), ("ledger-0", 3, 6)), batch(6, epoch=3, engine="ledger-0")])
    assert [(b.engine, b.batch) for b in to_write] == [("ledger-0", 6), ("e1", 3)]


def test_a_ledger_batch_written_before_its_shard_restarted_still_counts():
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(3, 6, 12)})
    sequencer.open_epoch("ledger-0", 4)
    to_write, _ = sequencer.accept([after(batch(1), ("ledger-0", 3, 6))])
    assert written(to_write) == [(1, 1)]
    old = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(4, 7, 14)}, lambda stream, epoch: {3: 6}[epoch])
    assert written(old.accept([after(batch(1), ("ledger-0", 3, 6))])[0]) == [(1, 1)]


def test_an_engine_epoch_that_needs_a_ledger_batch_lost_in_a_restart_is_refused():
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(3, 4, 8)})
    assert sequencer.accept([after(batch(1), ("ledger-0", 3, 5))])[0] == []
    sequencer.open_epoch("ledger-0", 4)  # the shard restarted before the journal had its batch 5
    to_write, _ = sequencer.accept([batch(5, epoch=4, engine="ledger-0"), batch(2)])
    assert [(b.engine, b.batch) for b in to_write] == [("ledger-0", 5)]  # the new epoch's 5 is another batch
    assert ("e1", 1) in sequencer.refused
    assert sequencer.accept([batch(3)])[0] == []  # nothing more of that engine epoch
    sequencer.open_epoch("e1", 2)  # the engine starts again
    assert written(sequencer.accept([batch(1, epoch=2)])[0]) == [(2, 1)]


def test_a_shard_restart_that_loses_the_ledger_batch_an_engine_batch_waits_for_refuses_its_epoch_at_once():
    """Opening the shard's new epoch is what makes its batch 5 lost for good: the engine's epoch is
    refused then, not when some batch next arrives (on an idle market none may, and the engine went
    on matching in an epoch never written, refusing the next order with it)."""
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(3, 4, 8)})
    assert sequencer.accept([after(batch(1), ("ledger-0", 3, 5)), batch(2)]) == ([], {"ledger-0"})
    assert sequencer.open_epoch("ledger-0", 4) == P(4, 4, 8)  # before the journal had its batch 5
    assert ("e1", 1) in sequencer.refused and sequencer.held["e1"] == {}
    assert sequencer.gaps() == set()  # nothing waits for ledger-0 any more: no replay asked of it
    assert sequencer.accept([]) == ([], set())


def test_a_shard_restart_that_keeps_what_engine_batches_wait_for_refuses_nothing():
    sequencer = Sequencer({"e1": P(1, 0, 0), "e2": P(1, 0, 0), "ledger-0": P(3, 4, 8)})
    sequencer.accept([after(batch(1), ("ledger-0", 3, 4)), batch(3),  # e1: batch 1 written, 3 held behind a gap
                      after(batch(1, engine="e2"), ("ledger-0", 4, 5))])  # e2: needs the new epoch's batch 5
    sequencer.open_epoch("ledger-0", 4)
    assert sequencer.refused == set() and set(sequencer.held["e1"]) == {3} and set(sequencer.held["e2"]) == {1}
    assert sequencer.gaps() == {"e1", "ledger-0"}
    to_write, gaps = sequencer.accept([batch(5, epoch=4, engine="ledger-0"), batch(2)])
    assert [(b.engine, b.batch) for b in to_write] == [("e1", 2), ("e1", 3), ("ledger-0", 5), ("e2", 1)]
    assert gaps == set()


def test_an_engine_restart_drops_its_held_batches_and_stops_asking_for_the_ledger_batches_they_waited_for():
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(3, 4, 8)})
    sequencer.accept([after(batch(1), ("ledger-0", 3, 5))])
    assert sequencer.gaps() == {"ledger-0"}
    sequencer.open_epoch("e1", 2)
    assert sequencer.refused == set() and sequencer.gaps() == set()


def test_a_batch_seen_before_is_dropped():
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    sequencer.accept([batch(1), batch(2)])
    to_write, gaps = sequencer.accept([batch(2), batch(1)])
    assert to_write == [] and gaps == set()
    assert sequencer.positions["e1"] == P(1, 2, 4)


def test_a_batch_from_the_future_is_held_until_the_gap_is_filled():
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    to_write, gaps = sequencer.accept([batch(1), batch(3), batch(4)])
    assert written(to_write) == [(1, 1)] and gaps == {"e1"}
    to_write, gaps = sequencer.accept([batch(2)])
    assert written(to_write) == [(1, 2), (1, 3), (1, 4)] and gaps == set()
    assert sequencer.held["e1"] == {}


def test_held_batches_are_dropped_past_the_cap_and_written_when_replayed():
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    sequencer.accept([batch(n) for n in range(2, MAX_HELD_BATCHES + 3)])
    assert sequencer.held["e1"] == {}  # past the cap: the replay brings them again
    to_write, gaps = sequencer.accept([batch(n) for n in range(1, 4)])
    assert written(to_write) == [(1, 1), (1, 2), (1, 3)] and gaps == set()


def test_engines_are_sequenced_apart():
    sequencer = Sequencer({"e1": P(1, 0, 0), "e2": P(1, 0, 0)})
    to_write, gaps = sequencer.accept([batch(2, engine="e2"), batch(1, engine="e1")])
    assert written(to_write) == [(1, 1)] and gaps == {"e2"}


def test_after_a_new_epoch_opens_the_older_epochs_batches_are_dropped_even_held_ones():
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    sequencer.accept([batch(1), batch(3)])  # batch 3 held: the old start died before sending 2
    assert sequencer.open_epoch("e1", 2) == P(2, 1, 2)
    assert sequencer.held.get("e1") is None
    to_write, gaps = sequencer.accept([batch(2, epoch=1), batch(4, epoch=1)])
    assert to_write == [] and gaps == set()
    to_write, _ = sequencer.accept([batch(2, epoch=2)])
    assert written(to_write) == [(2, 2)]


def test_a_batch_of_an_epoch_never_opened_is_not_written(caplog):
    sequencer = Sequencer({"e1": P(1, 0, 0)})
    to_write, gaps = sequencer.accept([batch(1, epoch=7), batch(2, epoch=7)])
    assert to_write == [] and gaps == set()
    assert caplog.text.count("never opened") == 1  # said once, not per batch


@pytest.fixture
def writer(tmp_path):
    db = open_db(tmp_path / "journal.db")
    yield Writer(db, CONFIG.instrument_map())
    db.conn.close()


def test_every_open_epoch_is_new_and_durable_even_if_the_engine_never_wrote(writer, tmp_path):
    sequencer = Sequencer(positions(writer.conn))
    first = answer(OpenEpoch("e1", 11), sequencer, writer, CONFIG)
    second = answer(OpenEpoch("e1", 12), sequencer, writer, CONFIG)  # the first start died at once
    assert (first.nonce, second.nonce) == (11, 12)
    assert isinstance(first, EpochOpened) and isinstance(second, EpochOpened)
    assert second.epoch > first.epoch >= 1
    writer.append([batch(1, epoch=second.epoch)])
    # a writer that restarts knows both: the next start gets a newer epoch still
    restarted = Sequencer(read_positions(tmp_path / "journal.db"))
    assert restarted.positions["e1"] == P(second.epoch, 1, 2)
    third = answer(OpenEpoch("e1", 13), restarted, writer, CONFIG)
    assert third.epoch == second.epoch + 1 and (third.batch, third.seq) == (1, 2)


def test_an_unknown_engine_gets_no_epoch(writer):
    sequencer = Sequencer({})
    reply = answer(OpenEpoch("e9", 5), sequencer, writer, CONFIG)
    assert reply == JournalRefused(5, "no engine or ledger shard e9 in this journal writer's config")
    assert sequencer.positions == {}


def test_positions_say_where_each_engines_history_ends(writer):
    sequencer = Sequencer({})
    opened = answer(OpenEpoch("e2", 1), sequencer, writer, CONFIG)
    to_write, _ = sequencer.accept([batch(1, epoch=opened.epoch, engine="e2")])
    writer.append(to_write)
    assert answer(GetPositions(3), sequencer, writer, CONFIG) == Positions(3, {"e2": (opened.epoch, 1, 2)})


def test_an_open_epoch_asked_again_by_the_same_start_gets_the_same_epoch(writer):
    """A starting engine asks again every second until it hears back; copies queued while the
    writer was away all arrive at once. Only the first opens an epoch: the engine keeps the
    first answer, and a second epoch would make the writer drop everything it sends."""
    sequencer = Sequencer({})
    first = answer(OpenEpoch("e1", 42), sequencer, writer, CONFIG)
    again = [answer(OpenEpoch("e1", 42), sequencer, writer, CONFIG) for _ in range(3)]
    assert all(reply == first for reply in again)
    to_write, _ = sequencer.accept([batch(1, epoch=first.epoch)])
    assert written(to_write) == [(first.epoch, 1)]
    assert writer.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 1
    restart = answer(OpenEpoch("e1", 43), sequencer, writer, CONFIG)  # a new start: a new epoch
    assert restart.epoch == first.epoch + 1


def test_batches_of_an_older_epoch_are_dropped_with_one_warning(caplog):
    sequencer = Sequencer({"e1": P(3, 5, 10)})
    sequencer.accept([batch(6, epoch=2), batch(7, epoch=2)])
    assert caplog.text.count("it has started again since (epoch 3)") == 1


# -- what the writer refuses to log, and when it asks for a replay -----------------------------------


def test_a_stream_with_no_epoch_opened_here_is_dropped_and_remembered_within_bounds(caplog):
    """A stream not in the config, or configured but never started (epoch 0), has no epoch opened
    here: its batches are dropped (a batch written for it would be accepted again after a restart
    and fail the whole group commit), each name logged once, and nothing is held for it."""
    from exchange.journal.sequencer import MAX_NOTED

    sequencer = Sequencer({"e1": P(1, 0, 0), "e2": P()})
    to_write, gaps = sequencer.accept([EventBatch("e2", 0, 1, 1, 0, []), EventBatch("zz", 0, 1, 1, 0, []),
                                       EventBatch("zz", 0, 2, 1, 0, []), batch(1)])
    assert written(to_write) == [(1, 1)] and gaps == set()
    assert caplog.text.count("'zz' sends batches but has no epoch opened") == 1
    for n in range(MAX_NOTED + 500):
        sequencer.accept([EventBatch(f"x{n}", 0, 2, 3, 2, [])])
    assert len(sequencer.unopened) == MAX_NOTED and not any(sequencer.held.values())
    assert set(sequencer.positions) == {"e1", "e2"}


def test_a_gap_stays_asked_for_on_later_turns_without_new_batches():
    sequencer = Sequencer({"e1": P(1, 0, 0), "e2": P(1, 0, 0)})
    assert sequencer.accept([batch(2, engine="e2")])[1] == {"e2"}
    sequencer.accept([batch(1)])  # another stream's batch: e2's gap is still open
    assert sequencer.gaps() == {"e2"}
    sequencer.accept([batch(1, engine="e2")])
    assert sequencer.gaps() == set()


def test_a_batch_whose_checkpoint_part_does_not_read_back_is_not_logged():
    """The group commit reads a batch's checkpoint part: one that does not decode would fail it (and
    every batch in it), at every start. The entries are not decoded on the writer's hot path."""
    from exchange.journal.writer import unreadable
    from exchange.wire.messages import BatchHeader, Decoder, encode

    def arrived(frame: bytes) -> BatchHeader:
        header = Decoder(BatchHeader).decode(frame)
        header.body = frame
        return header

    assert unreadable(arrived(encode(batch(1)))) == ""
    assert unreadable(arrived(msgspec.msgpack.encode(["e1", 1, 1, 1, 0, [], b"junk"])))
    assert unreadable(arrived(msgspec.msgpack.encode(["e1", 1, 1, 1, 1, ["not an entry"]]))) == ""


def test_a_logged_batch_that_does_not_read_back_is_left_out_of_the_tables_and_indexing_goes_on(tmp_path, caplog):
    """A sender's bug (or a newer sender than this writer): its body is kept in the log as it came,
    the indexer logs an error and goes on with the batches after it, at every start the same."""
    db = open_db(tmp_path / "journal.db")
    writer = Writer(db, CONFIG.instrument_map())
    bad = Decoder(BatchHeader).decode(msgspec.msgpack.encode(["e1", 1, 2, 3, 4, ["not an entry"]]))
    bad.body = msgspec.msgpack.encode(["e1", 1, 2, 3, 4, ["not an entry"]])
    writer.append([batch(1), bad, batch(3)])
    writer.catch_up()
    assert "e1 batch 2 is in the log but does not read back" in caplog.text
    assert db.conn.execute("SELECT stream, batch FROM indexed").fetchall() == [("e1", 3)]
    assert Writer(open_db(tmp_path / "journal.db"), CONFIG.instrument_map()).unindexed() == 0


def test_an_engine_batch_naming_no_configured_ledger_shard_is_written_not_held_for_ever(caplog):
    """``after`` names the ledger batches holding the holds of a batch's orders; a stream that is no
    ledger shard of the config (a stray sender, a shard removed) has no batch to wait for: the
    engine's batch, and all after it, used to be held for good."""
    sequencer = Sequencer({"e1": P(1, 0, 0), "ledger-0": P(1, 0, 0)})
    stray = EventBatch("e1", 1, 1, 1, 2, [], after=[("ledger-7", 1, 1)])
    to_write, gaps = sequencer.accept([stray, batch(2)])
    assert written(to_write) == [(1, 1), (1, 2)] and gaps == set()
    assert "names 'ledger-7', which is no ledger shard" in caplog.text
