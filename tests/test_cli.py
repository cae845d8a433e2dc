"""The command line: errors are one clear line; every command has help; users add makes a working key."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from exchange.cli import cli
from exchange.config import verify_key

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


def test_users_add_prints_a_key_once_and_a_hash_that_verifies_it():
    result = CliRunner().invoke(cli, ["users", "add", "dave"])
    assert result.exit_code == 0
    key = re.search(r"API key for dave \(shown once; give it to the user\): (\S+)", result.output).group(1)
    key_hash = re.search(r"key_hash: (\S+)", result.output).group(1)
    assert key not in key_hash and verify_key(key, key_hash)


def test_users_add_also_makes_a_curve_key_pair_for_the_private_feed():
    import zmq

    result = CliRunner().invoke(cli, ["users", "add", "erin"])
    secret = re.search(r"CURVE secret key for erin's private feed \(shown once\): (\S+)", result.output).group(1)
    public = re.search(r"curve_public_key: '(\S+)'", result.output).group(1)
    assert zmq.curve_public(secret.encode()).decode() == public


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
        assert "no notifier replica named 'nope'; the config has []" in result.output, args
        assert list(tmp_path.iterdir()) == [], "refused before it set up logs or made keys"
