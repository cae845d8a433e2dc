"""`exchange bench` end to end: a short, slow run against a fresh loopback mesh, and its checks.

No timed assertions (speed lives in the benchmark's own figures): the test asserts that the run
is consistent, i.e. that the bench would catch a wrong mesh, and that its report is whole.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from exchange.bench import BenchOptions, run, summary
from exchange.bench.load import MAX_SELECT_SESSIONS, event_loop_for
from exchange.bench.report import accounts_cost
from exchange.bench.results import BenchResult
from exchange.bench.stages import STAGES, ack_stages
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side
from exchange.cli.main import cli
from exchange.testing.mesh import loopback_config, wait_until
from exchange.wire.messages import Entry, EventBatch
from exchange.journal.schema import open_db, open_readonly
from exchange.journal.writer import Writer


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
    if Path("/proc/self/schedstat").exists():  # the roles' waits for a CPU, from the kernel
        assert set(result.cpu_wait) == {"gateway", "journal-writer", "engine e1", "engine e2", "notifier"}, result.cpu_wait
        assert all(0 <= share < 2 for share in result.cpu_wait.values()), result.cpu_wait
        assert "waiting for a cpu" in text
    assert result.journal["tables_catch_up_cpu_s"] >= 0 and "the journal writer's CPU meanwhile" in text, text
    assert json.loads(result.to_json())["checks"] == {name: [] for name in result.checks}
    stages = result.ack_stages_us
    assert list(stages) == [name for name, _ in STAGES], text
    assert all(v["count"] > 0 and 0 <= v["p50"] <= v["p99"] for v in stages.values()), stages


def test_ack_stages_follow_each_sampled_ack_through_the_journal_timestamps(tmp_path):
    path = tmp_path / "journal.db"
    writer = Writer(open_db(path), {})
    command = PlaceOrder("alice", "AAPL", Side.BUY, 1, 100, client_order_id="c1", ts_received=1_000_000)
    writer.append([EventBatch("e1", 1, 1, 1, 0, [Entry("gw", 1, 1, command, [])], b"", ts_matched=3_000_000)])
    writer.catch_up()
    writer.conn.close()
    written = open_readonly(path).execute("SELECT ts_written FROM batches").fetchone()[0]
    traced = [("alice", "c1", 0, written + 10_000_000), ("alice", "unknown", 0, 1), ("bob", "c1", 0, 1)]
    stages = ack_stages(str(path), traced)
    assert [(v["count"], v["p50"]) for v in stages.values()] == [
        (1, 1000), (1, 2000), (1, (written - 3_000_000) // 1000), (1, 10_000)]


@pytest.mark.parametrize("had", [(), ("ts_matched",)])  # the second: a migration cut short by a crash
def test_a_journal_from_before_batch_timestamps_gets_the_columns(tmp_path, had):
    path = tmp_path / "old.db"
    open_db(path).conn.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE batches")
    conn.execute("CREATE TABLE batches (engine TEXT, batch INTEGER, epoch INTEGER, first_seq INTEGER,"
                 f" last_seq INTEGER, {''.join(c + ' INTEGER, ' for c in had)}PRIMARY KEY (engine, batch))")
    conn.execute(f"INSERT INTO batches VALUES ('e1', 1, 1, 1, 5{', NULL' * len(had)})")
    conn.commit()
    conn.close()
    db = open_db(path)
    assert db.conn.execute("SELECT engine, batch, epoch, first_seq, last_seq, ts_matched, ts_written FROM batches"
                           ).fetchall() == [("e1", 1, 1, 1, 5, None, None)]
    Writer(db, {}).append([EventBatch("e1", 1, 2, 6, 5, [], b"", ts_matched=7)])
    assert db.conn.execute("SELECT batch, ts_matched FROM batches WHERE batch = 2").fetchone() == (2, 7)


def test_sessions_over_the_zmq_order_entry_pass_the_same_checks(tmp_path):
    config = loopback_config(tmp_path)
    result = run(BenchOptions(config_path=str(config), rate=200, duration=2, warmup=1, sessions=4,
                              workers=2, subscribers=1, zmq=True, work_dir=str(tmp_path / "run")))
    assert result.ok, summary(result)
    assert result.counts["answered"] == result.counts["requests"] > 0.5 * 200 * 3
    assert result.counts["answers"]["accepted"] > 0 and result.counts["fills"] > 0


def test_sessions_spread_over_two_gateways_pass_the_same_checks(tmp_path):
    config = loopback_config(tmp_path, accounts=True)
    result = run(BenchOptions(config_path=str(config), rate=200, duration=2, warmup=1, sessions=4,
                              workers=2, subscribers=1, gateways=2, work_dir=str(tmp_path / "run")))
    assert result.ok, summary(result)
    assert result.counts["answered"] == result.counts["requests"] > 0.5 * 200 * 3
    assert {"gateway", "gateway g2"} <= set(result.cpu)  # both ran, each measured


def test_the_command_reports_and_writes_json(tmp_path):
    config = loopback_config(tmp_path)
    out = tmp_path / "bench.json"
    outcome = CliRunner().invoke(cli, ["bench", "--config", str(config), "--rate", "100", "--duration", "1",
                                       "--warmup", "0", "--sessions", "2", "--workers", "1",
                                       "--subscribers", "1", "--json", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "check one answer per request: ok" in outcome.output
    assert json.loads(out.read_text())["counts"]["unanswered"] == 0


LIMIT_CODES = {"PRICE_BAND", "BAD_PRICE", "BAD_QTY", "MAX_NOTIONAL", "MAX_OPEN_ORDERS"}


def limited_config(tmp_path):
    """The loopback config with every kind of instrument limit, each tight enough to matter."""
    path = loopback_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    limits = {"BTC-USD": {"price_band": "2", "reference_price": "43000.00"},  # far from any default price
              "ETH-USD": {"max_qty": "0.005", "price_band": "0.05"},  # 5 lots; ±0.05 % of the last trade
              "AAPL": {"max_price": "999.00", "max_notional": "5000", "max_open_orders": 3, "min_qty": "2"}}
    for instrument in data["instruments"]:
        instrument.update(limits[instrument["symbol"]])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_load_keeps_to_every_instruments_limits(tmp_path):
    result = run(BenchOptions(config_path=str(limited_config(tmp_path)), rate=300, duration=3, warmup=1,
                              sessions=4, workers=2, subscribers=1, work_dir=str(tmp_path / "run")))
    text = summary(result)
    assert result.ok, text
    assert not LIMIT_CODES & set(result.counts["rejects"]), text
    assert result.counts["answers"]["accepted"] > 0 and result.counts["fills"] > 0, text


def test_the_report_explains_rejects_by_code_with_the_first_reason(tmp_path):
    path = loopback_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["gateway"].update({"max_rate": 20, "max_burst": 5})  # the load goes faster than that
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run(BenchOptions(config_path=str(path), rate=200, duration=2, warmup=0, sessions=2,
                              workers=1, subscribers=1, work_dir=str(tmp_path / "run")))
    text = summary(result)
    assert result.counts["rejects"].get("RATE_LIMITED", 0) > 0, text
    reason = result.counts["reject_reasons"]["RATE_LIMITED"]
    assert reason and "RATE_LIMITED" not in reason, reason
    line = next(line for line in text.splitlines() if "RATE_LIMITED" in line)
    assert line.split()[:2] == ["RATE_LIMITED", f"{result.counts['rejects']['RATE_LIMITED']:,}"], line
    assert line.endswith(reason), line


def test_with_accounts_the_command_runs_without_and_with_them_and_reports_the_cost(tmp_path):
    config = loopback_config(tmp_path, accounts=True)
    out = tmp_path / "bench.json"
    outcome = CliRunner().invoke(cli, ["bench", "--config", str(config), "--rate", "100", "--duration", "1",
                                       "--warmup", "0", "--sessions", "2", "--workers", "1",
                                       "--subscribers", "1", "--json", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "== accounts off ==" in outcome.output and "== accounts on ==" in outcome.output
    assert "accounts: the same load without and with them" in outcome.output
    off, on = json.loads(out.read_text())
    assert (off["options"]["accounts"], on["options"]["accounts"]) == (False, True)
    assert off["counts"]["unanswered"] == on["counts"]["unanswered"] == 0
    assert on["counts"]["answers"]["accepted"] > 0 and "INSUFFICIENT_FUNDS" not in on["counts"]["rejects"]
    assert any(label.startswith("ledger") for label in on["cpu"]), on["cpu"]


def test_the_accounts_table_counts_the_roles_cpu_only():
    # ``cpu`` also holds the load generators (each and their total), the subscribers, the bench
    # itself and the machine-wide figures: summing all of it once printed 3.4 cores on a 2-core machine
    def result(acked: float, **roles: float) -> BenchResult:
        latency = {kind: {"p50": 1000, "p99": 2000} for kind in ("ack", "fill", "cancel")}
        cpu = {"load generator 0": 0.1, "load generators, total": 0.1, "subscriber 0": 0.05,
               "bench (this process)": 0.01, "machine, all processes": 1.7, "not ours (other processes, kernel)": 0.1}
        cpu.update({label.replace("_", " ").replace("journal writer", "journal-writer"): v for label, v in roles.items()})
        return BenchResult(options={}, machine={}, throughput={"acked_per_s": acked}, latency_us=latency, cpu=cpu)

    off = result(20_000, gateway=0.5, journal_writer=0.3, engine_e1=0.1, notifier=0.2)
    on = result(10_000, gateway=0.4, journal_writer=0.3, engine_e1=0.1, notifier=0.2, ledger_0=0.2, ledger_1=0.2)
    assert off.roles_cores() == pytest.approx(1.1) and on.roles_cores() == pytest.approx(1.4)
    assert off.roles_us_per_ack() == pytest.approx(55.0) and on.roles_us_per_ack() == pytest.approx(140.0)
    table = accounts_cost(off, on).splitlines()
    assert any(line.split() == ["roles", "cpu", "(cores)", "1.10", "1.40", "+0.30"] for line in table), table
    assert any(line.split() == ["roles", "cpu", "per", "ack", "55.0", "us", "140.0", "us", "+85.0", "us"]
               for line in table), table


def test_a_load_generator_times_its_requests_with_select_unless_it_has_too_many_sockets():
    # epoll's timeouts are whole milliseconds: the open-loop schedule would be late by up to one
    loop = event_loop_for(8)
    try:
        assert isinstance(loop._selector, selectors.SelectSelector)
    finally:
        loop.close()
    loop = event_loop_for(MAX_SELECT_SESSIONS + 1)
    try:
        assert not isinstance(loop._selector, selectors.SelectSelector)
    finally:
        loop.close()


def processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_a_bench_stopped_with_sigterm_stops_the_mesh_it_started(tmp_path):
    config, keep, log = loopback_config(tmp_path), tmp_path / "kept", tmp_path / "bench.log"
    with open(log, "wb") as out:
        bench = subprocess.Popen([sys.executable, "-m", "exchange", "bench", "--config", str(config), "--rate", "50",
                                  "--duration", "60", "--warmup", "0", "--sessions", "1", "--workers", "1",
                                  "--subscribers", "0", "--keep", str(keep)], stdout=out, stderr=out)
    try:
        wait_until(lambda: b"measure" in log.read_bytes() or bench.poll() is not None, timeout=60)
        assert bench.poll() is None, log.read_text()
        assert processes_naming(str(keep))  # the mesh is up
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        assert processes_naming(str(keep)) == [], log.read_text()[-2000:]
    finally:
        bench.kill()
        for pid in processes_naming(str(keep)):
            os.kill(pid, signal.SIGKILL)


def test_the_bench_mesh_runs_no_web_page(tmp_path):
    """The demo config starts a web role; the bench measures order flow only, so its mesh leaves it out."""
    from exchange.bench.target import bench_config
    from exchange.testing.mesh import LOCAL_CONFIG

    assert "web" in yaml.safe_load(LOCAL_CONFIG.read_text())
    path, users = bench_config(str(LOCAL_CONFIG), tmp_path, sessions=2)
    data = yaml.safe_load(path.read_text())
    assert "web" not in data and [u for u, _ in users] == ["bench1", "bench2"]
