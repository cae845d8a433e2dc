"""The number of ledger shards is part of a journal: a user's shard follows from it, so a journal
that holds accounts refuses a config with another number, checkpoint or not."""

from __future__ import annotations

import pytest

from exchange.errors import ConfigError
from exchange.journal.ledger_readers import agree_on_ledger_shards
from exchange.journal.schema import open_db


def logged(db, stream: str) -> None:
    db.conn.execute("INSERT INTO batches (engine, batch, epoch, first_seq, last_seq, body) VALUES (?, 1, 1, 1, 1, x'')",
                    (stream,))
    db.conn.commit()


def test_a_journal_keeps_its_number_of_shards_from_the_first_start(tmp_path):
    db = open_db(tmp_path / "journal.db")
    agree_on_ledger_shards(db.conn, 1)  # a new journal takes the config's number
    logged(db, "ledger-0")  # young: no checkpoint yet
    agree_on_ledger_shards(db.conn, 1)
    with pytest.raises(ConfigError, match="1 ledger shard.*the config has 2"):
        agree_on_ledger_shards(db.conn, 2)
    reopened = open_db(tmp_path / "journal.db")
    with pytest.raises(ConfigError, match="the config has 2"):
        agree_on_ledger_shards(reopened.conn, 2)
    agree_on_ledger_shards(reopened.conn, 0)  # accounts turned off: no shard runs, nothing moves


def test_a_journal_from_before_the_record_tells_its_number_by_its_ledger_streams(tmp_path):
    db = open_db(tmp_path / "journal.db")
    db.conn.execute("DELETE FROM meta")
    logged(db, "ledger-0")
    logged(db, "ledger-1")
    with pytest.raises(ConfigError, match="2 ledger shards.*the config has 3"):
        agree_on_ledger_shards(db.conn, 3)
    agree_on_ledger_shards(db.conn, 2)
    with pytest.raises(ConfigError):
        agree_on_ledger_shards(db.conn, 1)


def test_a_journal_without_accounts_takes_them_on_with_any_number(tmp_path):
    db = open_db(tmp_path / "journal.db")
    logged(db, "e1")
    agree_on_ledger_shards(db.conn, 0)
    agree_on_ledger_shards(db.conn, 3)
    with pytest.raises(ConfigError):
        agree_on_ledger_shards(db.conn, 2)


def test_the_journal_writer_does_not_start_with_another_number_of_shards(tmp_path):
    """The demo config has two ledger shards; its journal was started with one. The writer refuses
    before it writes anything, so no shard's batch (an opening balance paid twice, a reference
    applied again on another shard) ever becomes durable."""
    import subprocess
    import sys

    from exchange.config import load_config
    from exchange.testing.mesh import loopback_config

    path = loopback_config(tmp_path, accounts=True)
    journal = load_config(path).journal.path
    db = open_db(journal)
    agree_on_ledger_shards(db.conn, 1)
    db.conn.close()
    done = subprocess.run([sys.executable, "-m", "exchange", "journal-writer", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the journal was started with 1 ledger shard, but the config has 2" in done.stderr
