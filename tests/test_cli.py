"""The command line: errors are one clear line; every command has help; users add makes a working key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config, verify_key

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def all_commands(group: click.Group, prefix: tuple = ()) -> list[tuple[tuple, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
    return found


def test_every_command_has_help():
    runner = CliRunner()
    for path, command in all_commands(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert command.help and len(command.help.split()) >= 3, f"{' '.join(path)} needs a real help text"


def test_a_bad_config_is_one_error_line_and_exit_1(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("instruments: []\n")
    result = CliRunner().invoke(cli, ["up", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: ")
    assert "Traceback" not in result.output


def test_an_engine_needs_a_known_name():
    result = CliRunner().invoke(cli, ["engine", "--config", "configs/local.yaml", "--name", "e9"])
    assert result.exit_code == 1 and "no engine named 'e9'" in result.output


def copy_of_local(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(LOCAL.read_text())
    return path


def test_users_add_writes_a_hash_to_the_config_that_verifies_the_key_shown_once(tmp_path):
    path = copy_of_local(tmp_path)
    result = CliRunner().invoke(cli, ["users", "add", "dave", "--config", str(path)])
    assert result.exit_code == 0, result.output
    key = re.search(r"API key for dave \(shown once; give it to the user\): (\S+)", result.output).group(1)
    dave = load_config(path).user("dave")
    assert key not in path.read_text() and verify_key(key, dave.key_hash)
    assert "# DEMO USERS ONLY" in path.read_text()  # the file's comments stay
    assert [u.name for u in load_config(path).users] == ["alice", "bob", "carol", "ops", "dave"]


def test_users_add_also_makes_a_curve_key_pair_for_the_private_feed(tmp_path):
    import zmq

    path = copy_of_local(tmp_path)
    result = CliRunner().invoke(cli, ["users", "add", "erin", "--config", str(path)])
    secret = re.search(r"CURVE secret key for erin's private feed \(shown once\): (\S+)", result.output).group(1)
    assert zmq.curve_public(secret.encode()).decode() == load_config(path).user("erin").curve_public_key


def test_users_add_dry_run_prints_the_lines_and_changes_nothing(tmp_path):
    path = copy_of_local(tmp_path)
    result = CliRunner().invoke(cli, ["users", "add", "frank", "--dry-run", "--config", str(path)])
    assert result.exit_code == 0 and "  - name: 'frank'\n    key_hash: scrypt$" in result.output
    assert path.read_text() == LOCAL.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.yaml"]  # no draft or lock file left behind


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["add", "dry-run"])
@pytest.mark.parametrize("problem", ["user-exists", "no-config-file", "flow-style-users"])
def test_users_add_dry_run_refuses_what_an_add_refuses(tmp_path, problem, dry_run):
    """--dry-run printed the lines (exit 0) for a user who exists and for a config that is not there."""
    path = copy_of_local(tmp_path)
    name, why = "dave", "edit the file by hand"
    if problem == "user-exists":
        name, why = "alice", "user alice exists already"
    elif problem == "no-config-file":
        path.unlink()
        why = f"{path}: cannot read the config"
    else:
        users = [{"name": u.name, "key_hash": u.key_hash} for u in load_config(LOCAL).users]
        path.write_text(LOCAL.read_text().split("users:\n", 1)[0] + f"users: {json.dumps(users)}\n")
    before = path.read_text() if path.exists() else None
    result = CliRunner().invoke(cli, ["users", "add", name, "--config", str(path), *dry_run])
    assert result.exit_code == 1 and why in result.output, result.output
    assert "API key" not in result.output and "key_hash" not in result.output
    assert (path.read_text() if path.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if before is None else ["mesh.yaml"])


@pytest.mark.parametrize("name, why", [("bad name", "is not a user name"), ("alice", "user alice exists already"),
                                       (".x", "is not a user name"), ("a" * 33, "is not a user name")])
def test_users_add_refuses_what_the_config_would_refuse_and_writes_nothing(tmp_path, name, why):
    path = copy_of_local(tmp_path)
    result = CliRunner().invoke(cli, ["users", "add", name, "--config", str(path)])
    assert result.exit_code == 1 and why in result.output and "API key" not in result.output
    assert path.read_text() == LOCAL.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.yaml"]  # no draft left behind


def test_users_remove_and_list(tmp_path):
    path = copy_of_local(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["users", "remove", "bob", "--config", str(path)]).exit_code == 0
    listed = runner.invoke(cli, ["users", "list", "--config", str(path)]).output
    assert [line.split()[0] for line in listed.splitlines()] == ["alice", "carol", "ops"]
    again = runner.invoke(cli, ["users", "remove", "bob", "--config", str(path)])
    assert again.exit_code == 1 and "no user bob; there are alice, carol" in again.output
    runner.invoke(cli, ["users", "remove", "alice", "--config", str(path)])
    runner.invoke(cli, ["users", "remove", "carol", "--config", str(path)])
    runner.invoke(cli, ["users", "remove", "ops", "--config", str(path)])
    assert load_config(path).users == []
    assert runner.invoke(cli, ["users", "add", "gina", "--config", str(path)]).exit_code == 0
    assert [u.name for u in load_config(path).users] == ["gina"]


def test_config_check_says_what_a_good_config_holds_and_what_is_wrong_with_a_bad_one(tmp_path):
    good = CliRunner().invoke(cli, ["config", "check", str(LOCAL)])
    assert good.exit_code == 0 and good.output.startswith(f"OK: {LOCAL}: 3 instruments (BTC-USD, ETH-USD, AAPL)")
    bad = tmp_path / "bad.yaml"
    bad.write_text(LOCAL.read_text().replace('tick_size: "0.01"', "tick_size: 0.01", 1))
    result = CliRunner().invoke(cli, ["config", "check"], env={"EXCHANGE_CONFIG": str(bad)})
    assert result.exit_code == 1
    assert result.output == (f"Error: {bad}: Expected `str`, got `float` - at `$.instruments[0].tick_size`\n")


def test_every_command_takes_the_config_the_same_way(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments: []\n")
    runner = CliRunner()
    for args in (["up"], ["engine", "--name", "e1"], ["gateway"], ["journal-writer"], ["notifier"],
                 ["journal", "stats"], ["users", "list"], ["keys", "notifier"], ["config", "check"],
                 ["watch", "AAPL", "--plain"]):
        by_option = runner.invoke(cli, [*args, "--config", str(bad)])
        by_env = runner.invoke(cli, args, env={"EXCHANGE_CONFIG": str(bad)})
        for result in (by_option, by_env):
            assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}: "), (args, result.output)


def test_keys_gateway_only_prints_unless_asked_to_create(tmp_path):
    path = copy_of_local(tmp_path)
    result = CliRunner().invoke(cli, ["keys", "gateway", "--config", str(path)])
    assert result.exit_code == 1 and "no key yet; the gateway makes it when it first starts" in result.output
    assert not (tmp_path / "var").exists()
    made = CliRunner().invoke(cli, ["keys", "gateway", "--create", "--config", str(path)])
    assert made.exit_code == 0 and len(made.output.strip()) == 40
    assert CliRunner().invoke(cli, ["keys", "gateway", "--config", str(path)]).output == made.output


def test_keys_new_makes_a_matching_pair():
    import zmq

    result = CliRunner().invoke(cli, ["keys", "new"])
    public = re.search(r"public: (\S+)", result.output).group(1)
    secret = re.search(r"secret: (\S+)", result.output).group(1)
    assert zmq.curve_public(secret.encode()).decode() == public


def test_watch_and_notifier_refuse_a_notifier_replica_the_config_does_not_have(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's var/ is relative: nothing may appear here
    runner = CliRunner()
    for args in (["watch", "AAPL", "--plain", "--notifier", "nope"], ["notifier", "--name", "nope"]):
        result = runner.invoke(cli, [*args, "--config", str(LOCAL)])
        assert result.exit_code == 1, args
        assert "no notifier replica named 'nope'; the config has none" in result.output, args
        assert list(tmp_path.iterdir()) == [], "refused before it set up logs or made keys"


def test_users_list_shows_limits_as_written(tmp_path):
    path = copy_of_local(tmp_path)
    path.write_text(path.read_text().replace("  - name: alice\n", "  - name: alice\n"
                                             "    max_open_orders: 1000000\n    max_rate: 0.5\n", 1))
    listed = CliRunner().invoke(cli, ["users", "list", "--config", str(path)])
    assert listed.exit_code == 0, listed.output
    assert "max_open_orders 1000000, max_rate 0.5" in listed.output.splitlines()[0], listed.output


def test_users_add_refuses_a_users_list_it_cannot_edit_safely_and_changes_nothing(tmp_path):
    path = tmp_path / "mesh.yaml"
    text = LOCAL.read_text()
    head = text.split("users:\n", 1)[0]
    users = [{"name": u.name, "key_hash": u.key_hash, "curve_public_key": u.curve_public_key}
             for u in load_config(LOCAL).users]
    path.write_text(head + f"users: {json.dumps(users)}\n")  # JSON is YAML's flow style
    assert [u.name for u in load_config(path).users] == ["alice", "bob", "carol", "ops"]  # the same users, in flow style
    before = path.read_text()
    result = CliRunner().invoke(cli, ["users", "add", "dave", "--config", str(path)])
    assert result.exit_code == 1 and "edit the file by hand" in result.output
    assert path.read_text() == before
    assert CliRunner().invoke(cli, ["users", "remove", "bob", "--config", str(path)]).exit_code == 1
    assert path.read_text() == before
