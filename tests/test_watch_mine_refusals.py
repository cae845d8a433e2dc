"""What `exchange watch --mine` refuses before it connects, each in one `Error:` line that says what
to do: a notifier key it does not have (it only reads the notifier's key, never makes one: a key
made on this machine would not be the notifier's), and a user without a CURVE key. No mesh runs
here; tests/roles/test_watch_mine.py runs --mine against a real one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.errors import ExchangeError
from exchange.marketdata import watch as watch_module
from exchange.testing.mesh import loopback_config

ALICE_SECRET = "t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J"  # docs/market-data.md, demo only


def _keep_notifier_key_at(path: Path, key: Path) -> None:
    text, found = re.subn(r"(?m)^  secret_key_file: .*$", f"  secret_key_file: {key}", path.read_text(), count=1)
    assert found == 1
    path.write_text(text)


def _watch_mine(path: Path, user: str, *more: str):
    return CliRunner().invoke(cli, ["watch", "BTC-USD", "--config", str(path), "--plain", "--mine", user,
                                    "--secret-key", ALICE_SECRET, *more])


def test_without_the_notifiers_key_file_it_makes_none_and_says_how_to_give_the_key(tmp_path):
    path = loopback_config(tmp_path)
    key = Path(load_config(path).notifier.secret_key_file)
    result = _watch_mine(path, "alice")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {key}: ") and result.output.count("\n") == 1, result.output
    assert "--notifier-key" in result.output and "exchange keys notifier" in result.output
    assert not key.exists(), "watch --mine made a notifier key of its own"


@pytest.mark.parametrize("problem", ["folder-is-a-file", "key-is-a-folder"])
def test_a_notifier_key_path_it_cannot_read_is_one_error_line(tmp_path, problem):
    path = loopback_config(tmp_path)
    if problem == "folder-is-a-file":
        (tmp_path / "blocker").write_text("a file where the key's folder should be\n")
        key = tmp_path / "blocker" / "notifier.key"
    else:
        key = tmp_path / "key-folder"
        key.mkdir()
    _keep_notifier_key_at(path, key)
    result = _watch_mine(path, "alice")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and result.output.startswith(f"Error: {key}: "), result.output
    assert result.output.count("\n") == 1, result.output
    assert (tmp_path / "blocker").is_file() or key.is_dir()  # left as it was


def _server_key_used(monkeypatch) -> list[bytes]:
    """The server keys private_feed hands to PrivateFeed (which is not started: no notifier here)."""
    used: list[bytes] = []

    def feed(endpoint, server, user, public, secret, admitted_within):
        used.append(server)
        raise TimeoutError("no notifier in this test")

    monkeypatch.setattr(watch_module, "PrivateFeed", feed)
    return used


def test_the_notifiers_public_key_given_is_used_and_no_key_file_is_needed(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    config = load_config(path)
    public, _ = zmq.curve_keypair()
    used = _server_key_used(monkeypatch)
    with pytest.raises(ExchangeError, match="no notifier in this test"):
        watch_module.private_feed(config, config.notifier, "alice", ALICE_SECRET.encode(), public.decode())
    assert used == [public]
    assert not Path(config.notifier.secret_key_file).exists()


def test_the_notifiers_key_file_on_this_machine_is_read_as_it_is(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    config = load_config(path)
    public, secret = zmq.curve_keypair()
    key = Path(config.notifier.secret_key_file)
    key.write_bytes(secret + b"\n")
    used = _server_key_used(monkeypatch)
    with pytest.raises(ExchangeError):
        watch_module.private_feed(config, config.notifier, "alice", ALICE_SECRET.encode())
    assert used == [public] and key.read_bytes() == secret + b"\n"


@pytest.mark.parametrize("given", ["short", "%" * 40, "é" * 40])
def test_a_notifier_key_that_is_not_a_key_is_one_error_line(tmp_path, given):
    result = _watch_mine(loopback_config(tmp_path), "alice", "--notifier-key", given)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: the notifier key given is not a CURVE public key"), result.output


def test_a_user_without_a_curve_key_is_told_to_make_a_pair_and_list_its_public_half(tmp_path):
    path = loopback_config(tmp_path, accounts=True)  # ops: a user without curve_public_key
    result = _watch_mine(path, "ops")
    assert result.exit_code == 1, result.output
    assert "`exchange keys new`" in result.output and "curve_public_key" in result.output, result.output
    assert "users add" not in result.output, "advice that fails: ops exists already"


def test_a_user_the_config_does_not_have_is_told_the_command_that_adds_them_and_it_works(tmp_path):
    path = loopback_config(tmp_path)
    result = _watch_mine(path, "dave")
    assert result.exit_code == 1, result.output
    advice = re.search(r"`(exchange users add dave)`", result.output)
    assert advice, result.output
    followed = CliRunner().invoke(cli, [*advice.group(1).split()[1:], "--config", str(path)])
    assert followed.exit_code == 0, followed.output
    assert load_config(path).user("dave").curve_public_key
