"""`exchange bench` refuses, before it runs anything, what it could not use: durations and rates that
are no finite numbers in range (a usage error), and --json and --plot files it could not write (one
`Error:` line naming the file, where it was a traceback after the whole run). No benchmark runs here:
bench_lib.run is replaced by one that records that it was called and returns a finished result."""

from __future__ import annotations

import json
import sys
import types

import pytest
from click.testing import CliRunner

import exchange.bench as bench_lib
from exchange.cli.main import cli
from exchange.testing.mesh import loopback_config


class Done:
    ok = True

    def to_json(self) -> str:
        return '{"counts": {}}'


@pytest.fixture
def runs(monkeypatch) -> list:
    """The options of each run the command started (none should start when it refuses)."""
    started = []

    def run(options):
        started.append(options)
        return Done()

    monkeypatch.setattr(bench_lib, "run", run)
    monkeypatch.setattr(bench_lib, "summary", lambda result: "summary")
    return started


def _bench(tmp_path, *args: str):
    return CliRunner().invoke(cli, ["bench", "--config", str(loopback_config(tmp_path)), *args])


@pytest.mark.parametrize("option, value", [
    ("--duration", "nan"), ("--duration", "inf"), ("--duration", "1e300"),
    ("--warmup", "nan"), ("--warmup", "inf"), ("--warmup", "-1"),
    ("--rate", "nan"), ("--rate", "inf"), ("--rate", "0")])
def test_a_duration_or_rate_that_is_no_finite_number_in_range_is_a_usage_error(tmp_path, runs, option, value):
    result = _bench(tmp_path, option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output
    assert runs == []


@pytest.mark.parametrize("option", ["--json", "--plot"])
@pytest.mark.parametrize("problem", ["folder-is-a-file", "no-such-folder"])
def test_an_output_file_it_cannot_write_is_one_error_line_before_the_run(tmp_path, runs, monkeypatch, option,
                                                                         problem):
    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))  # --plot asks for it first
    (tmp_path / "blocker").write_text("a file where a folder should be\n")
    target = tmp_path / "blocker" / "out" if problem == "folder-is-a-file" else tmp_path / "missing" / "out"
    result = _bench(tmp_path, option, str(target))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and result.output.startswith(f"Error: {option} {target}: "), result.output
    assert runs == [], "it ran the whole benchmark first"


def test_a_json_file_it_can_write_gets_the_result_and_the_check_leaves_nothing_behind(tmp_path, runs):
    out = tmp_path / "result.json"
    result = _bench(tmp_path, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == {"counts": {}}
    refused = _bench(tmp_path, "--json", str(tmp_path / "other.json"), "--accounts", "on")  # no accounts
    assert refused.exit_code == 1 and not (tmp_path / "other.json").exists()
