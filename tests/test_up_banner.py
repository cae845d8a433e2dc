"""The banner of `exchange up`: the commands it suggests read the config it started, so they name it
(`--config FILE`) unless it is the one they would load anyway (configs/local.yaml, or $EXCHANGE_CONFIG)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from exchange.config import load_config
from exchange.launcher import banner
from exchange.testing.mesh import loopback_config

REPO = Path(__file__).resolve().parents[1]


def _hints(text: str) -> list[str]:
    hints = re.findall(r"\((?:try|server key): (exchange [^)]*)\)", text)
    assert len(hints) == 3, text  # watch, keys notifier, journal trades
    return hints


@pytest.fixture
def no_config_env(monkeypatch):
    monkeypatch.delenv("EXCHANGE_CONFIG", raising=False)


def test_the_hints_name_a_config_the_commands_would_not_load_by_default(tmp_path, no_config_env):
    folder = tmp_path / "my mesh"  # a space: the path is quoted for the shell
    folder.mkdir()
    path = loopback_config(folder)
    for hint in _hints(banner(load_config(path), str(path))):
        assert hint.endswith(f" --config {shlex.quote(str(path))}"), hint
        assert shlex.split(hint)[-1] == str(path)


def test_the_hints_leave_out_the_default_config(monkeypatch, no_config_env):
    monkeypatch.chdir(REPO)
    config = load_config("configs/local.yaml")
    for given in ("configs/local.yaml", str(REPO / "configs" / "local.yaml")):
        assert all("--config" not in hint for hint in _hints(banner(config, given))), given


def test_the_hints_leave_out_the_config_that_exchange_config_names(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    monkeypatch.setenv("EXCHANGE_CONFIG", str(path))
    assert all("--config" not in hint for hint in _hints(banner(load_config(path), str(path))))
    monkeypatch.setenv("EXCHANGE_CONFIG", str(REPO / "configs" / "local.yaml"))  # another one
    assert all(f"--config {path}" in hint for hint in _hints(banner(load_config(path), str(path))))
