"""`exchange bench`'s figures cover exactly the measured window [measure_from, measure_to), and its
percentiles are nearest-rank ones: pure parts, no mesh.

The CPU figures (cores per role, µs per acknowledged request, "waiting for a CPU", "not ours")
were once sampled on the orchestrator's one-second loop, half a second after each end of the
window, and divided by the window plus that half second; acknowledged/s counted whole seconds
from the start, which a fractional --warmup or --duration cuts through; the stage table's and
the progress lines' p50/p99 took one rank too many.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from multiprocessing import Pipe
from types import SimpleNamespace

import pytest
from hdrh.histogram import HdrHistogram

from exchange.bench import checks, latency, load, runner, stages
from exchange.bench.latency import HIGHEST_US, KINDS
from exchange.bench.options import BenchOptions
from exchange.bench.results import BenchResult
from script_modules import import_script


class FakeProcess:
    name = "fake-worker"
    pid = os.getpid()
    exitcode = None

    def is_alive(self):
        return True


def test_a_role_busy_exactly_in_the_window_reads_one_core_sampled_at_its_ends(monkeypatch, tmp_path):
    options = BenchOptions(warmup=1.0, duration=2.0, profile_dir=None)
    start_wall = time.time() + 0.5  # as run() does just before calling _measure
    measure_from = start_wall + options.warmup
    measure_to = measure_from + options.duration
    sampled = []
    ended = threading.Event()  # the window's end has been sampled

    def busy_one_core_in_window(pid):  # every process: one core, in the window only
        now = time.time()
        sampled.append(now)
        if now >= measure_to:
            ended.set()
        return min(max(now, measure_from), measure_to) - measure_from

    monkeypatch.setattr(runner, "cpu_seconds", busy_one_core_in_window)
    monkeypatch.setattr(runner, "cpu_wait_seconds",  # waits for a CPU half of the window
                        lambda pid: (min(max(time.time(), measure_from), measure_to) - measure_from) / 2)
    parent, child = Pipe()
    tick = {"sent": 0, "answered": 0, "acks": 0, "p50": 0, "p99": 0, "max": 0, "outstanding": 0}

    def worker():  # two seconds' ticks, then drained and its report once the window is over, like a load generator
        for _ in range(2):
            child.send(("tick", tick))
        ended.wait(30)  # (if it never comes, the assertions below say why)
        child.send(("drained", 0))
        child.recv()  # the "ping"
        child.send(("done", {}))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    lines = []
    config = SimpleNamespace(journal=SimpleNamespace(path=str(tmp_path / "no-journal.db")))
    result = runner._measure(options, config, {"gateway": 1}, [(FakeProcess(), parent)], [], start_wall,
                             measure_from, measure_to, tmp_path, [], lines.append)
    thread.join(5)
    # (before: 0.6 cores, sampled half a second late; the slack is for a slow, busy machine)
    assert result.cpu["gateway"] == pytest.approx(1.0, abs=0.1), result.cpu
    assert result.cpu["load generator 0"] == pytest.approx(1.0, abs=0.1), result.cpu
    assert result.cpu_wait["gateway"] == pytest.approx(0.5, abs=0.05), result.cpu_wait
    assert min(sampled) == pytest.approx(measure_from, abs=0.25)  # not half a second later
    assert max(sampled) == pytest.approx(measure_to, abs=0.25)
    assert len(result.series) == 2 and len(lines) == 2, lines  # the progress lines still come


def _finish(monkeypatch, warmup, duration, acked_per_second, acked_in_window):
    monkeypatch.setattr(checks, "wait_for_tables", lambda *a: 0.0)
    monkeypatch.setattr(stages, "ack_stages", lambda *a: {})
    monkeypatch.setattr(checks, "_check_journal", lambda *a: [])
    h = {k: HdrHistogram(1, HIGHEST_US, 3).encode() for k in KINDS[:4]}
    report = {"histograms": h, "sent": {"new": 1, "login": 0, "ping": 0}, "answers": {"accepted": 1},
              "rejects": {}, "reject_reasons": {}, "acked_per_second": acked_per_second,
              "acked_in_window": acked_in_window, "answered": 1, "unanswered": 0, "late_fills": 0, "faults": [],
              "fault_count": 0, "fills": [[0, 0, 0, 0]], "traced": []}
    options = BenchOptions(warmup=warmup, duration=duration, instruments=["BTC-USD"], subscribers=0)
    result = BenchResult(options={}, machine={}, counts={"workers": [report]},
                         journal={"samples": [], "measure_from_ns": 0, "measure_to_ns": 1})
    config = SimpleNamespace(journal=SimpleNamespace(path="unused"), instruments=[])
    checks.finish(result, options, config, {}, [], [])
    return result.throughput


@pytest.mark.parametrize("warmup, duration", [(1.0, 2.0), (1.5, 2.0), (1.0, 2.5), (2.0, 10.5), (0.3, 1.4)])
def test_a_steady_100_acks_per_second_reads_100_whatever_the_window(monkeypatch, warmup, duration):
    steady = {s: 100 for s in range(int(warmup + duration) + 2)}
    throughput = _finish(monkeypatch, warmup, duration, steady, round(100 * duration))
    assert throughput["acked_per_s"] == pytest.approx(100, rel=0.01)


def test_the_slowest_and_fastest_seconds_are_whole_seconds_inside_the_window(monkeypatch):
    # the window [1.5, 4.0) s: second 1 is half warmup, so its count says nothing of a whole second
    throughput = _finish(monkeypatch, 1.5, 2.5, {0: 30, 1: 40, 2: 100, 3: 120, 4: 10}, 270)
    assert (throughput["acked_per_s_min_second"], throughput["acked_per_s_max_second"]) == (100, 120)


def test_a_load_generator_counts_the_acks_it_receives_inside_the_window(monkeypatch):
    """It reads its ack count when the window opens and when it closes: the acks before, and those
    after (the drain), are not the window's."""
    w = load.Worker({"rate": None, "seed": 0, "instruments": []})
    w.measure_from = w.end = 0
    moments: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def until_told(delay):  # its wait for each end of the window lasts until the test says
        moment = asyncio.Event()
        await moments.put(moment)
        await moment.wait()

    monkeypatch.setattr(load, "asyncio", SimpleNamespace(sleep=until_told))

    def acks(count: int, second: int) -> None:  # as session.py counts them
        w.acked_in_second[second] += count

    async def run():
        counting = asyncio.create_task(load._count_window(w))
        opening = await moments.get()
        acks(5, 0)  # the warmup's
        opening.set()
        closing = await moments.get()  # it has read the count at the opening
        acks(7, 0)
        acks(4, 1)  # a window across a second's boundary
        closing.set()
        await counting
        acks(3, 1)  # the drain's

    asyncio.run(run())
    assert w.acked_in_window() == 11


@pytest.mark.parametrize("n, q", [(100, 0.99), (10, 0.5), (1000, 0.9), (200, 0.5), (100, 0.07), (3, 0.5)])
def test_pick_is_the_nearest_rank_percentile_as_hdrhistogram_gives_it(n, q):
    values = list(range(1, n + 1))
    h = HdrHistogram(1, HIGHEST_US, 3)
    for v in values:
        h.record_value(v)
    nearest_rank = values[-(-n * round(q * 100) // 100) - 1]  # ⌈q·n⌉-th, in integers
    if n >= 10:
        assert h.get_value_at_percentile(q * 100) == nearest_rank
    assert latency.pick(values, q) == nearest_rank


def test_pick_of_one_or_no_value():
    assert latency.pick([7], 0.5) == latency.pick([7], 0.99) == 7
    assert latency.pick([], 0.5) == 0


def test_bench_hops_reports_nearest_rank_p50_and_p99(monkeypatch, capsys):
    hops = import_script("bench_hops")
    monkeypatch.setattr(hops, "one_run", lambda base, rounds, pause: ([float(v) for v in range(1, 101)], 1.0))
    monkeypatch.setattr("sys.argv", ["bench_hops.py", "--runs", "1"])
    hops.main()
    out = capsys.readouterr().out
    assert "one hop p50 50 µs" in out and "p99 99 µs" in out, out
