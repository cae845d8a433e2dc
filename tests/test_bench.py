"""`exchange bench` end to end: a short, slow run against a fresh loopback mesh, and its checks.

No timed assertions (speed lives in the benchmark's own figures): the test asserts that the run
is consistent, i.e. that the bench would catch a wrong mesh, and that its report is whole.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from exchange.bench import BenchOptions, run, summary
from exchange.cli import cli
from exchange.soak import loopback_config


def test_a_short_open_loop_run_answers_every_request_once_and_adds_up(tmp_path):
    config = loopback_config(tmp_path)
    result = run(BenchOptions(config_path=str(config), rate=200, duration=3, warmup=1, sessions=4,
                              workers=2, subscribers=2, work_dir=str(tmp_path / "run")))
    text = summary(result)
    assert result.ok, text
    counts = result.counts
    assert counts["requests"] > 0.5 * 200 * 4 and counts["unanswered"] == 0, text
    assert counts["answered"] == counts["requests"], text
    assert counts["answers"]["accepted"] > 0 and counts["fills"] > 0, text
    for kind in ("ack", "cancel", "md"):
        figures = result.latency_us[kind]
        assert figures["count"] > 0, (kind, text)
        values = [figures[p] for p in ("p50", "p90", "p99", "p99.9", "max")]
        assert values == sorted(values) and values[0] > 0, (kind, figures)
    assert result.market_data["gaps"] == [0, 0], text
    assert set(result.cpu) >= {"gateway", "journal-writer", "engine e1", "engine e2", "notifier",
                               "load generator 0", "load generator 1"}, result.cpu
    assert json.loads(result.to_json())["checks"] == {name: [] for name in result.checks}


def test_the_command_reports_and_writes_json(tmp_path):
    config = loopback_config(tmp_path)
    out = tmp_path / "bench.json"
    outcome = CliRunner().invoke(cli, ["bench", "--config", str(config), "--rate", "100", "--duration", "1",
                                       "--warmup", "0", "--sessions", "2", "--workers", "1",
                                       "--subscribers", "1", "--json", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "check one answer per request: ok" in outcome.output
    assert json.loads(out.read_text())["counts"]["unanswered"] == 0
