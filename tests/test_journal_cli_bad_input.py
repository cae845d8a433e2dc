"""`exchange journal orders/trades/events` on input they cannot take as it is: one usage error, or the
rows they can show, never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.journal.queries import to_ns
from tests.test_journal_cli import CONFIG_PATH, session

INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("journal") / "journal.db"
    session(path).close()
    return path


def run(*args: str, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["journal", *args, "--config", CONFIG_PATH, "--db", str(db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["orders", "trades", "events"])
def test_a_limit_beyond_sqlites_integers_is_a_usage_error_and_the_largest_one_lists_all(journal, command):
    code, output = run(command, "--limit", str(INT64_MAX + 1), db=journal)
    assert code == 2 and "Invalid value for '--limit'" in output, output
    code, everything = run(command, "--limit", "0", "--csv", db=journal)
    assert code == 0
    code, output = run(command, "--limit", str(INT64_MAX), "--csv", db=journal)
    assert (code, output) == (0, everything)


@pytest.mark.parametrize("command", ["orders", "trades", "events"])
@pytest.mark.parametrize("option, value", [("--until", "9999-12-31"), ("--until", "2262-04-12"),
                                           ("--since", "1677-09-21T00:12:43Z"), ("--since", "0001-01-01")])
def test_a_time_beyond_int64_nanoseconds_is_a_usage_error(journal, command, option, value):
    code, output = run(command, option, value, db=journal)
    assert code == 2 and f"'{value}' is outside the journal's time range (1677-09-21T00:12:43" in output, output


def test_the_times_at_the_ends_of_the_range_are_taken(journal):
    assert to_ns("2262-04-11T23:47:16.854775807Z") == INT64_MAX
    assert to_ns("1677-09-21T00:12:43.145224192Z") == -2**63
    with pytest.raises(ValueError, match="outside the journal's time range"):
        to_ns("2262-04-11T23:47:16.854775808Z")
    code, output = run("events", "--since", "1677-09-21T00:12:43.145224192Z", "--until", "2262-04-11",
                       "--limit", "1", "--csv", db=journal)
    assert code == 0 and len(output.splitlines()) == 2  # the header and the newest event


def test_an_event_of_a_kind_from_a_newer_version_is_listed_from_its_columns(tmp_path):
    path = tmp_path / "journal.db"
    session(path).close()
    conn = sqlite3.connect(path)
    with conn:  # what a newer writer's indexer would write: a kind this version does not know
        conn.execute("INSERT INTO events (engine, seq, epoch, batch, kind, symbol, user, order_id, side, ts_event,"
                     " body) VALUES ('e1', 1000, 1, 5, 'OrderAmended', 'BTC-USD', 'alice', '1-1', 'SELL',"
                     " 1767323100000000000, '[\"OrderAmended\",1000,1767323100000000000,\"BTC-USD\",\"1-1\"]')")
    conn.close()
    code, output = run("events", "--order-id", "1-1", "--json", db=path)
    assert code == 0, output
    listed = json.loads(output)
    newer = listed[0]  # the newest
    assert (newer["seq"], newer["kind"], newer["user"], newer["side"]) == (1000, "OrderAmended", "alice", "SELL")
    assert newer["detail"].startswith("(body not understood: ") and "OrderAmended" in newer["detail"]
    assert listed[-1]["kind"] == "OrderAccepted" and listed[-1]["detail"] == "GTC CANCEL_NEWEST #a1"
    code, output = run("events", db=path)
    assert code == 0 and "OrderAmended" in output
