"""The journal is a log of batches as they came, and tables built from it later: what each holds when."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.core.messages import Match, OrderAccepted, OrderFilled, Trade, expand
from exchange.journal.readers import (
    engine_events, engine_symbols, index_lag, last_trades, open_and_recent_order_events, order_history,
)
from exchange.journal.schema import open_db, open_readonly
from exchange.journal.role import IndexPacing
from exchange.journal.verify_log import verify_log
from exchange.journal.writer import Writer
from exchange.wire.messages import BatchHeader, Decoder, EventBatch, encode
from tests.test_recovery import CONFIG, journaled_engine


LOCAL = str(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")


def old_style(batch: EventBatch) -> EventBatch:
    """``batch`` as an engine from before Match sent it."""
    return msgspec.structs.replace(batch, entries=[msgspec.structs.replace(entry, events=expand(entry.events))
                                                   for entry in batch.entries])


def logged_frames(path) -> list[bytes]:
    return [body for (body,) in open_readonly(path).execute("SELECT body FROM batches ORDER BY engine, batch")]


@pytest.fixture
def journal(tmp_path):
    """A journal whose engine e1 handled 400 commands in batches of 20, none of them indexed yet."""
    path = tmp_path / "journal.db"
    engine = journaled_engine(path, 400, checkpoint_every=0, per_batch=20)
    return path, engine


def test_a_batch_is_logged_as_the_bytes_it_came_in_and_the_tables_wait_for_the_indexer(tmp_path):
    path = tmp_path / "journal.db"
    engine = journaled_engine(path, 40, checkpoint_every=0, per_batch=20)
    frames = logged_frames(path)
    decoded = [Decoder(EventBatch).decode(frame) for frame in frames]
    assert [b.batch for b in decoded] == [1, 2] and decoded[-1].last_seq == engine.matcher.seq
    conn = open_readonly(path)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM commands").fetchone() == (0,)
    assert index_lag(conn) == {"e1": (2, 0)}


def test_the_writer_logs_the_frame_it_was_given_byte_for_byte(tmp_path, journal):
    source, _ = journal
    frame = logged_frames(source)[0]
    header = Decoder(BatchHeader).decode(frame)
    header.body = frame
    writer = Writer(open_db(tmp_path / "copy.db"), CONFIG.instrument_map())
    writer.append([header])
    assert logged_frames(tmp_path / "copy.db") == [frame]


def test_indexing_builds_the_tables_a_prefix_at_a_time_and_says_how_far(journal):
    path, engine = journal
    writer = Writer(open_db(path), CONFIG.instrument_map())
    assert writer.unindexed() == 20
    assert writer.index(1) == 1  # at least one batch, however small the budget
    conn = open_readonly(path)
    assert conn.execute("SELECT batch, seq FROM indexed WHERE stream='e1'").fetchone() == (
        1, Decoder(EventBatch).decode(logged_frames(path)[0]).last_seq)
    assert index_lag(conn) == {"e1": (20, 1)}
    assert writer.catch_up() == 19 and writer.unindexed() == 0
    assert index_lag(conn) == {}
    events = [e.seq for e in expand(list(engine_events(conn, "e1")))]  # the tables list a Match as three
    assert [s for (s,) in conn.execute("SELECT seq FROM events WHERE engine='e1' ORDER BY seq")] == events
    assert events == list(range(1, engine.matcher.seq + 1))
    assert writer.catch_up() == 0


def test_readers_that_must_be_exact_see_the_log_the_tables_do_not_hold_yet(journal):
    path, engine = journal
    writer = Writer(open_db(path), CONFIG.instrument_map())
    writer.index(100)  # about 100 events' worth of batches in the tables, the rest in the log only
    conn = open_readonly(path)
    assert index_lag(conn)["e1"][1] < 20
    everything = expand(list(engine_events(conn, "e1")))  # each Match as the three events the tables list
    assert [e.seq for e in everything] == list(range(1, engine.matcher.seq + 1))
    trades = [e for e in everything if isinstance(e, Trade)]
    assert trades and last_trades(conn, "e1") == {t.symbol: t for t in trades}
    assert set(engine_symbols(conn, "e1")) == {"BTC-USD", "ETH-USD"}
    last = [e for e in everything if isinstance(e, OrderAccepted)][-1]
    assert order_history(path, last.order_id)[0] == last
    loaded = list(open_and_recent_order_events(path, since_ns=0))
    assert {e.order_id for e in loaded} >= {e.order_id for e in everything if isinstance(e, OrderAccepted)}
    writer.catch_up()
    assert list(open_and_recent_order_events(path, since_ns=0)) == loaded


def test_a_journal_from_before_the_log_gets_each_batchs_bytes_rebuilt_from_its_rows(journal):
    path, _ = journal
    # a journal from before the log is from before Match too: two fills and a trade per match
    frames = [encode(old_style(Decoder(EventBatch).decode(frame))) for frame in logged_frames(path)]
    writer = Writer(open_db(path), CONFIG.instrument_map())
    writer.catch_up()
    writer.conn.close()
    conn = sqlite3.connect(path)  # as the journal was before the log: no bodies, tables whole
    conn.execute("DROP INDEX batches_by_last_seq")
    conn.execute("ALTER TABLE batches DROP COLUMN body")
    conn.execute("DELETE FROM indexed")
    conn.commit()
    conn.close()
    open_db(path).conn.close()
    assert logged_frames(path) == frames
    assert index_lag(open_readonly(path)) == {}


def test_verify_finds_the_tables_and_the_log_agreeing_and_notes_what_is_not_indexed(journal):
    path, _ = journal
    writer = Writer(open_db(path), CONFIG.instrument_map())
    writer.index(100)
    indexed = writer.indexer.indexed["e1"]
    faults, notes = verify_log(open_readonly(path))
    assert faults == []
    assert notes == [f"e1: the tables hold batches 1..{indexed} of its log's 1..20; the checks of the tables"
                     " did not reach the rest (the journal writer indexes it)"]
    writer.catch_up()
    assert verify_log(open_readonly(path)) == ([], [])


def test_verify_reports_a_body_that_does_not_decode_or_disagrees_with_its_row(journal):
    path, _ = journal
    Writer(open_db(path), CONFIG.instrument_map()).catch_up()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE batches SET body=x'c1' WHERE engine='e1' AND batch=3")
        conn.execute("UPDATE batches SET epoch=7 WHERE engine='e1' AND batch=5")
        conn.execute("UPDATE indexed SET batch=30 WHERE stream='e1'")
    faults, _ = verify_log(open_readonly(path))
    assert faults[0].startswith("e1: batch 3: its body does not decode (")
    assert faults[1].startswith("e1: batch 5: its body says ('e1', 5, 1, ") and "its row ('e1', 5, 7, " in faults[1]
    assert faults[2] == "e1: the tables claim batches up to 30, but the log ends at 20"


def test_queries_say_when_the_tables_are_behind_the_log(journal):
    path, _ = journal
    writer = Writer(open_db(path), CONFIG.instrument_map())
    writer.index(100)
    indexed = writer.indexer.indexed["e1"]
    result = CliRunner().invoke(cli, ["journal", "orders", "--json", "--config", LOCAL,
                                      "--db", str(path)])
    assert result.exit_code == 0
    assert json.loads(result.stdout)  # the orders the tables hold, as JSON still
    assert result.stderr == (f"note: these tables are behind the journal's log (e1 up to batch {indexed} of 20);"
                             " the journal writer is indexing the rest, or will when it next starts\n")
    stats = json.loads(CliRunner().invoke(cli, ["journal", "stats", "--json", "--config", LOCAL,
                                                "--db", str(path)]).stdout)
    assert [(e["engine"], e["batches"], e["indexed"]) for e in stats["engines"]] == [("e1", 20, indexed)]
    writer.catch_up()
    result = CliRunner().invoke(cli, ["journal", "orders", "--config", LOCAL, "--db", str(path)])
    assert result.exit_code == 0 and result.stderr == ""


def test_the_writer_indexes_when_idle_now_and_then_when_busy_every_turn_when_far_behind_and_then_stops_reading():
    pacing = IndexPacing()
    assert not pacing.due(0, idle=True, now=10.0)  # nothing to index
    assert pacing.poll_ms(0) == 100
    assert pacing.due(3, idle=True, now=10.0)  # a little behind, nothing arriving: now
    assert pacing.poll_ms(3) == 0  # and on at once while nothing arrives
    assert not pacing.due(3, idle=False, now=10.01)  # busy: not before EVERY_S
    assert pacing.poll_ms(3) == IndexPacing.IDLE_MS
    assert pacing.due(3, idle=False, now=10.0 + IndexPacing.EVERY_S)
    assert pacing.due(IndexPacing.EAGER, idle=False, now=10.06)  # far enough behind: every turn
    assert pacing.poll_ms(IndexPacing.EAGER) == 0
    assert pacing.reads_batches(IndexPacing.MAX_LAG) and not pacing.reads_batches(IndexPacing.MAX_LAG + 1)


def test_the_log_read_from_a_fill_goes_on_from_the_next_number(journal):
    """The tables list a Match as its two fills and its trade; reading the log after one of those
    numbers gives the rest of the Match, so every number comes once, in order."""
    path, engine = journal
    conn = open_readonly(path)
    match = next(e for e in engine_events(conn, "e1") if type(e) is Match)
    for after in (match.seq - 2, match.seq - 1):
        rest = list(engine_events(conn, "e1", after))
        assert [e.seq for e in expand(rest)] == list(range(after + 1, engine.matcher.seq + 1))
        assert type(rest[0]) is (OrderFilled if after == match.seq - 2 else Trade)


def test_verify_of_a_healthy_journal_whose_tables_lag_its_log_finds_no_fault(journal):
    """The tables trail the log (a writer stopped in a flood): verify checks what they hold, notes
    the rest, and reports no fault."""
    path, _ = journal
    writer = Writer(open_db(path), CONFIG.instrument_map())
    writer.index(100)  # some batches in the tables, the rest in the log only
    writer.conn.close()
    result = CliRunner().invoke(cli, ["journal", "verify", "--config", LOCAL, "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "note: e1: the tables hold batches 1.." in result.output and "\nOK: " in result.output
