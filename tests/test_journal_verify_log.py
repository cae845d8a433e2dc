"""`exchange journal verify` on a journal whose tables lag its log: the log past the tables is checked
as one history (a lost batch there is a fault), and the OK line counts only what the checks reached."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.journal.readers import whole_checkpoints
from exchange.journal.schema import open_db, open_readonly
from exchange.journal.verify_log import verify_log
from exchange.journal.writer import Writer
from tests.test_recovery import CONFIG, journaled_engine

LOCAL = str(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")


@pytest.fixture
def lagging(tmp_path) -> tuple[Path, int]:
    """(path, batches the tables hold) of a journal whose e1 logged 20 batches of 20 commands, each with a
    checkpoint, and whose tables hold only the first few."""
    path = tmp_path / "journal.db"
    journaled_engine(path, 400, checkpoint_every=0, per_batch=20)
    db = open_db(path)
    writer = Writer(db, CONFIG.instrument_map())
    writer.index(100)
    indexed = writer.indexer.indexed["e1"]
    db.conn.close()
    assert 1 <= indexed < 10
    return path, indexed


def verify(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["journal", "verify", "--config", LOCAL, "--db", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output.splitlines()


def delete_batch(path: Path, batch: int) -> tuple[int, int]:
    """Delete ``batch`` of e1 from the log; (first_seq, last_seq) it held."""
    conn = sqlite3.connect(path)
    with conn:
        span = conn.execute("SELECT first_seq, last_seq FROM batches WHERE engine='e1' AND batch=?",
                            (batch,)).fetchone()
        conn.execute("DELETE FROM batches WHERE engine='e1' AND batch=?", (batch,))
    conn.close()
    return span


@pytest.mark.parametrize("lost", ["the first past the tables", "one further on"])
def test_a_batch_lost_from_the_log_past_the_tables_is_a_fault(lagging, lost):
    path, indexed = lagging
    batch = indexed + 1 if lost == "the first past the tables" else 15
    first_seq, last_seq = delete_batch(path, batch)
    faults, notes = verify_log(open_readonly(path))
    assert faults == [f"e1: batch {batch} is missing",
                      f"e1: batch {batch + 1} starts at event {last_seq + 1};"
                      f" the batch before ended at {first_seq - 1}"]
    assert notes[0].startswith(f"e1: the tables hold batches 1..{indexed} of its log's 1..20;")
    code, lines = verify(path)
    assert code == 1 and f"e1: batch {batch} is missing" in lines and lines[-1].startswith("FAULTY: ")


def test_a_batch_lost_from_the_part_of_the_log_the_tables_hold_is_one_fault_not_two(lagging):
    path, indexed = lagging
    Writer(open_db(path), CONFIG.instrument_map()).catch_up()
    delete_batch(path, 4)
    code, lines = verify(path)
    assert code == 1 and lines.count("e1: batch 4 is missing") == 1, lines


def test_the_ok_line_counts_the_batches_and_checkpoints_the_checks_reached(lagging):
    path, indexed = lagging
    conn = open_readonly(path)
    last_seq = conn.execute("SELECT last_seq FROM batches WHERE engine='e1' AND batch=?", (indexed,)).fetchone()[0]
    checkpoints = whole_checkpoints(conn, "e1")
    conn.close()
    reached = sum(seq <= last_seq for seq in checkpoints)
    assert reached < len(checkpoints) == 20
    code, lines = verify(path)
    assert code == 0, lines
    assert re.fullmatch(rf"OK: {re.escape(str(path))}: e1 events 1\.\.{last_seq} in {indexed} batches; .*"
                        rf" \({reached} checkpoints checked\)", lines[-1]), lines
    Writer(open_db(path), CONFIG.instrument_map()).catch_up()
    code, lines = verify(path)
    assert code == 0 and lines[-1].endswith("in 20 batches; log and tables, sequences, orders, trades and replay"
                                            " agree (20 checkpoints checked)"), lines
