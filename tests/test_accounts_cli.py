"""`exchange accounts balances` and `exchange accounts ledger` on a journal written by real ledger
shards and matchers (tests/ledger_journal.py), checked against the live ledgers' balances."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from ledger_journal import ASSETS, LedgerJournal, session

from exchange.cli.main import cli
from exchange.core.ledger_messages import FEE_ACCOUNT
from exchange.testing.mesh import without_accounts

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = str(ROOT / "configs" / "local.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> LedgerJournal:
    journal = session(tmp_path_factory.mktemp("accounts") / "journal.db", checkpoint_every=4)
    journal.close()
    return journal


def run(*args: str, db: Path | str, config: str = CONFIG_PATH) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["accounts", *args, "--config", config, "--db", str(db)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def rows(*args: str, db) -> list[dict]:
    code, output = run(*args, "--json", db=db)
    assert code == 0, output
    return json.loads(output)


def test_balances_of_a_user_are_the_live_ledgers_in_asset_units(built):
    ledger = built.shard("bob")
    expected = [{"user": "bob", "asset": asset, "available": unit.format(ledger.balance("bob", asset)[0]),
                 "held": unit.format(ledger.balance("bob", asset)[1])} for asset, unit in ASSETS.items()]
    assert rows("balances", "bob", db=built.path) == expected
    usd = next(r for r in expected if r["asset"] == "USD")
    assert usd["held"] != "0.000000"  # bob's half-filled buy still holds USD


def test_balances_of_everyone_end_with_the_venues_fee_account(built):
    found = rows("balances", db=built.path)
    assert [r["user"] for r in found] == [*["alice"] * 4, *["bob"] * 4, *["carol"] * 4, FEE_ACCOUNT]
    fee = sum(ledger.balances.get((FEE_ACCOUNT, "USD"), 0) for ledger in built.ledgers)
    assert found[-1] == {"user": FEE_ACCOUNT, "asset": "USD", "available": ASSETS["USD"].format(fee), "held": None}
    assert fee > 0


def test_balances_as_a_table_for_people(built):
    code, output = run("balances", "alice", db=built.path)
    lines = output.splitlines()
    assert code == 0 and lines[0].split() == ["user", "asset", "available", "held"]
    aapl = built.shard("alice").balance("alice", "AAPL")
    assert lines[-1].split() == ["alice", "AAPL", str(aapl[0]), str(aapl[1])]  # AAPL's unit is 1


def test_ledger_lists_a_users_entries_newest_first_with_what_each_came_from(built):
    found = rows("ledger", "bob", "--limit", "0", db=built.path)
    assert [r["entry_id"] for r in found] == sorted((r["entry_id"] for r in found), reverse=True)
    withdrawal = found[0]
    assert (withdrawal["kind"], withdrawal["account"], withdrawal["asset"], withdrawal["delta"], withdrawal["ref"]) \
        == ("WITHDRAWAL", "available", "USD", "-1000.000000", "out-1")
    assert withdrawal["balance"] == ASSETS["USD"].format(built.shard("bob").balance("bob", "USD")[0])
    trades = [r for r in found if r["kind"] == "TRADE" and r["order_id"] == "1-2"]
    assert {r["trade_id"] for r in trades} == {"1-1"} and {r["ref"] for r in trades} == {"#b1"}
    assert {(r["account"], r["asset"]) for r in trades} == {("held", "USD"), ("available", "BTC")}
    deposit = found[-1]
    assert (deposit["kind"], deposit["ref"]) == ("DEPOSIT", "opening:bob:USD")


def test_ledger_filters_by_asset_and_limits(built):
    btc = rows("ledger", "bob", "--asset", "btc", "--limit", "0", db=built.path)
    assert btc and {r["asset"] for r in btc} == {"BTC"}
    assert len(rows("ledger", "bob", "--limit", "3", db=built.path)) == 3


@pytest.mark.parametrize("args, message", [
    (("balances", "zed"), "Error: no user zed; the users are alice, bob, carol, ops"),
    (("ledger", "zed"), "Error: no user zed; the users are alice, bob, carol, ops"),
    (("ledger", "bob", "--asset", "XYZ"), "Error: no asset XYZ; the assets are USD, BTC, ETH, AAPL"),
])
def test_unknown_users_and_assets_are_one_error_line(built, args, message):
    assert run(*args, db=built.path) == (1, message + "\n")


def test_no_journal_is_one_error_line(tmp_path):
    assert run("balances", db=tmp_path / "none.db") == (1, f"Error: {tmp_path / 'none.db'}: no journal here\n")


def test_accounts_off_is_one_error_line_before_any_journal_is_looked_for(tmp_path):
    config = tmp_path / "plain.yaml"
    config.write_text(without_accounts((ROOT / "configs" / "local.yaml").read_text()))
    code, output = run("balances", db=tmp_path / "none.db", config=str(config))
    assert (code, output) == (1, "Error: accounts are off: the config has no `assets:` (docs/accounts.md), so there"
                                 " are no balances\n")


def test_every_accounts_command_is_documented_and_the_documented_lines_parse():
    text = (ROOT / "docs" / "accounts.md").read_text()
    group = cli.commands["accounts"]
    examples = re.findall(r"^\$ exchange accounts (\S+)(.*)$", text, re.M)
    for name in ("balances", "ledger"):
        assert f"`exchange accounts {name}" in text, name
        assert name in {found for found, _ in examples}, name
    for name, args in examples:
        if name in group.commands:
            group.commands[name].make_context(name, args.split())  # raises on an unknown option or value


def test_a_user_removed_from_the_config_keeps_their_balances_in_view(built, tmp_path):
    """Removing a user from the config leaves their money on the ledger: `balances` still lists it,
    and `balances USER` and `ledger USER` still answer for them."""
    text = Path(CONFIG_PATH).read_text()
    carol = re.search(r"  - name: carol\n(    .*\n)+", text).group(0)
    config = tmp_path / "without-carol.yaml"
    config.write_text(text.replace(carol, "").replace("../var", str(ROOT / "var")))
    everyone = rows_with(config, "balances", db=built.path)
    expected = rows("balances", "carol", db=built.path)
    assert [r for r in everyone if r["user"] == "carol"] == expected and expected
    assert rows_with(config, "balances", "carol", db=built.path) == expected
    assert rows_with(config, "ledger", "carol", db=built.path) == rows("ledger", "carol", db=built.path)
    code, output = run("balances", "nobody", db=built.path, config=str(config))
    assert code == 1 and "no user nobody" in output


def rows_with(config: Path, *args: str, db) -> list[dict]:
    code, output = run(*args, "--json", db=db, config=str(config))
    assert code == 0, output
    return json.loads(output)


def test_balances_and_ledger_say_when_the_tables_are_behind_the_log(tmp_path):
    """An admin reading a balance the tables have not caught up with (a deposit answered OK but not
    indexed yet) is told so, as the journal's own queries tell it, instead of seeing an old balance
    as if it were the last."""
    journal = session(tmp_path / "journal.db")
    before = rows("balances", "bob", db=journal.path)
    journal.writer.catch_up = lambda: None  # the writer logs the next batch and indexes it later
    journal.deposit("bob", "USD", "5", ref="wire-late")
    stream = f"ledger-{journal.shard('bob').shard}"
    logged = journal.batches[stream]
    note = (f"note: these tables are behind the journal's log ({stream} up to batch {logged - 1} of {logged});"
            " the journal writer is indexing the rest, or will when it next starts\n")
    for args in (["balances", "bob"], ["ledger", "bob"]):
        result = CliRunner().invoke(cli, ["accounts", *args, "--json", "--config", CONFIG_PATH, "--db",
                                          str(journal.path)])
        assert result.exit_code == 0 and result.stderr == note, result.output
    assert json.loads(CliRunner().invoke(cli, ["accounts", "balances", "bob", "--json", "--config", CONFIG_PATH,
                                               "--db", str(journal.path)]).stdout) == before
    journal.close()


def test_a_limit_beyond_what_sqlite_counts_is_a_usage_error_and_the_largest_lists_everything(built):
    code, output = run("ledger", "bob", "--limit", "99999999999999999999", db=built.path)
    assert code == 2 and "Invalid value for '--limit'" in output, output
    assert rows("ledger", "bob", "--limit", str(2**63 - 1), db=built.path) == rows("ledger", "bob", "--limit", "0",
                                                                                db=built.path)
