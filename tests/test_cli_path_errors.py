"""Paths the CLI cannot use end in one `Error: <path>: <why>` line, never a traceback: a var_dir
that `exchange up` or a role cannot make or write its log in, and a server's secret key file that
`exchange keys notifier|gateway --create` cannot make or read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.testing.mesh import loopback_config


def _exchange(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchange", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, start_new_session=True)


def _one_error_line(run: subprocess.CompletedProcess, *named: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, f"a traceback instead of an error line:\n{run.stderr[-2000:]}"
    assert run.stderr.startswith("Error:") and run.stderr.count("\n") == 1, run.stderr
    for what in named:
        assert what in run.stderr, run.stderr


def _unusable_var_dir(tmp_path: Path, problem: str, log_name: str) -> tuple[Path, Path]:
    """A config whose var_dir is a file, or holds a folder where the log file ``log_name`` goes; the
    config and the path the error must name."""
    path = loopback_config(tmp_path)
    var_dir = tmp_path / "var-here"
    if problem == "var_dir-is-a-file":
        var_dir.write_text("a file where the logs' folder should be\n")
        named = var_dir
    else:
        named = var_dir / log_name
        named.mkdir(parents=True)
    text, found = re.subn(r"^var_dir: .*$", f"var_dir: {var_dir}", path.read_text(), count=1, flags=re.M)
    assert found == 1
    path.write_text(text)
    return path, named


@pytest.mark.parametrize("problem", ["var_dir-is-a-file", "log-is-a-folder"])
def test_up_with_a_var_dir_it_cannot_use_says_so_in_one_line(tmp_path, problem):
    path, named = _unusable_var_dir(tmp_path, problem, "launcher.log")
    run = _exchange("up", str(path), cwd=tmp_path)
    _one_error_line(run, str(named), "File exists" if problem == "var_dir-is-a-file" else "Is a directory")


@pytest.mark.parametrize("problem", ["var_dir-is-a-file", "log-is-a-folder"])
def test_a_role_with_a_var_dir_it_cannot_use_says_so_in_one_line(tmp_path, problem):
    path, named = _unusable_var_dir(tmp_path, problem, "journal-writer.log")
    run = _exchange("journal-writer", "--config", str(path), cwd=tmp_path)
    _one_error_line(run, str(named))


def _key_file_at(path: Path, role: str, key: Path) -> None:
    """Make the config at ``path`` keep ``role``'s CURVE secret key at ``key``."""
    text = path.read_text()
    if role == "notifier":
        text, found = re.subn(r"(?m)^  secret_key_file: .*notifier\.key$", f"  secret_key_file: {key}", text)
    else:
        text, found = re.subn(r"(?m)^gateway:\n", f"gateway:\n  secret_key_file: {key}\n", text)
    assert found == 1
    path.write_text(text)


@pytest.mark.parametrize("role", ["notifier", "gateway"])
@pytest.mark.parametrize("problem", ["folder-is-a-file", "key-is-a-folder"])
def test_a_server_key_file_that_cannot_be_made_or_read_is_one_error_line(tmp_path, role, problem):
    path = loopback_config(tmp_path)
    if problem == "folder-is-a-file":
        (tmp_path / "blocker").write_text("a file where the key's folder should be\n")
        key, named, why = tmp_path / "blocker" / f"{role}.key", tmp_path / "blocker", "File exists"
    else:
        key = named = tmp_path / f"{role}-key-folder"
        key.mkdir()
        why = "Is a directory"
    _key_file_at(path, role, key)
    run = _exchange("keys", role, "--create", "--config", str(path), cwd=tmp_path)
    _one_error_line(run, f"{named}: {why}")


@pytest.mark.parametrize("role", ["notifier", "gateway"])
def test_a_key_file_that_holds_no_key_is_one_error_line(tmp_path, role):
    """It was a ValueError traceback from zmq (and the role itself failed on it at every start)."""
    path = loopback_config(tmp_path)
    key = tmp_path / f"{role}.key"
    key.write_text("not a key at all\n")
    _key_file_at(path, role, key)
    run = _exchange("keys", role, "--config", str(path), cwd=tmp_path)
    _one_error_line(run, str(key), "not a CURVE secret key")
