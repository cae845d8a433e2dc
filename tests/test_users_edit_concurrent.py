"""`exchange users add/remove` run at the same time lose nobody: each holds a lock file beside the
config (``.<name>.lock``, there only while an edit runs) from its first read until the file is
replaced, and another one waits for it (at most config_users.LOCK_WAIT_S, then an error that says
why); an edit that finds the file changed since it read it (by hand) makes its change again on the
new text rather than overwrite it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from exchange import config_users
from exchange.config import hash_key, load_config
from exchange.errors import ConfigError
from exchange.testing.mesh import loopback_config

USERS = ["alice", "bob", "carol", "ops"]  # configs/local.yaml's


def _block(name: str) -> str:
    public, _ = zmq.curve_keypair()
    return config_users.user_block(name, hash_key(f"{name}-key", n=2), public.decode())


def lock_of(config: Path) -> Path:
    return config.parent / f".{config.name}.lock"


class HeldLock:
    """The config's lock, held as another `exchange users` command holds it: made, locked, and
    removed before it is let go."""

    def __init__(self, config: Path):
        self.path = lock_of(config)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else holds it: it is taken at once

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink()
            os.close(self.fd)
            self.fd = None


def test_an_edit_waits_for_the_lock_and_then_makes_its_change(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    before = path.read_text()
    waiting = threading.Event()
    real_wait = config_users._wait_for_lock

    def wait_for_lock() -> None:  # the edit found the lock held, and waits to try again
        waiting.set()
        real_wait()

    monkeypatch.setattr(config_users, "_wait_for_lock", wait_for_lock)
    held = HeldLock(path)
    outcome: list = []
    editor = threading.Thread(target=lambda: outcome.append(config_users.add_user(path, "dave", _block("dave"))))
    try:
        editor.start()
        assert waiting.wait(10), "the edit did not wait for the lock"
        assert path.read_text() == before  # nothing written while another command holds the lock
    finally:
        held.release()
        editor.join(30)
    assert not editor.is_alive() and outcome, "the edit did not finish once the lock was free"
    assert [u.name for u in load_config(path).users] == [*USERS, "dave"]
    assert not lock_of(path).exists()


def test_an_edit_gives_up_on_a_lock_held_too_long_and_changes_nothing(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    before = path.read_text()
    monkeypatch.setattr(config_users, "LOCK_WAIT_S", 0.2, raising=False)
    held = HeldLock(path)
    try:
        with pytest.raises(ConfigError, match=rf"\.{path.name}\.lock"):
            config_users.remove_user(path, "bob")
        with pytest.raises(ConfigError, match="another `exchange users` command"):
            config_users.add_user(path, "dave", _block("dave"))
    finally:
        held.release()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no draft, no lock


def test_a_hand_edit_made_while_users_add_checks_its_draft_is_kept(tmp_path, monkeypatch):
    """The lock does not stop an editor that does not take it: the file is compared with what was
    read just before it is replaced, and the change made again on the new text."""
    path = loopback_config(tmp_path)
    real_load = config_users.load_config
    edited = []

    def load_while_someone_edits_by_hand(p, *args, **kwargs):
        if Path(p).name.startswith(f".{path.name}.") and not edited:  # the add's draft
            edited.append(True)
            path.write_text(path.read_text().replace("\nusers:", "\n# edited by hand meanwhile\nusers:", 1))
        return real_load(p, *args, **kwargs)

    monkeypatch.setattr(config_users, "load_config", load_while_someone_edits_by_hand)
    config_users.add_user(path, "dave", _block("dave"))
    assert edited
    assert "# edited by hand meanwhile\nusers:" in path.read_text()
    assert [u.name for u in load_config(path).users] == [*USERS, "dave"]


def test_users_added_and_removed_by_commands_at_once_are_all_done(tmp_path):
    """Real `exchange users` processes started together, a few rounds (they race without the lock)."""
    for round_ in range(3):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        path = loopback_config(folder)
        commands = [["add", f"new{i}"] for i in range(6)] + [["remove", "bob"], ["remove", "carol"]]
        runs = [subprocess.Popen([sys.executable, "-m", "exchange", "users", *command, "--config", str(path)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
                for command in commands]
        try:
            errors = [run.communicate(timeout=60)[1] for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()
        assert [run.returncode for run in runs] == [0] * len(runs), errors
        assert [u.name for u in load_config(path).users][:2] == ["alice", "ops"], f"round {round_}"
        assert sorted(u.name for u in load_config(path).users) == sorted(
            ["alice", "ops", *(f"new{i}" for i in range(6))]), f"round {round_}: {errors}"
