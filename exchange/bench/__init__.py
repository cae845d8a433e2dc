"""`exchange bench`: end-to-end load over the real text protocol, with latency histograms.

A client of a running mesh: may import exchange.client, exchange.testing, exchange.wire, the
journal's readers and exchange.config; nothing of it runs inside a role.

    result = run(BenchOptions(config_path="configs/local.yaml", rate=10_000, duration=60))
    print(summary(result))

What it does, and why it can be trusted:

- **Open loop.** Every session sends on a fixed schedule whatever the replies do (lines are
  pipelined on the TCP connection), and latency is measured from the *scheduled* send time, so a
  stalled mesh shows up as latency instead of hiding as a lower offered rate (coordinated
  omission). ``rate=None`` (``--max``) instead keeps ``window`` requests outstanding per session
  and measures from the real send time: that finds the throughput ceiling.
- **A realistic mix.** Passive limits a few ticks either side of a mid that moves (a sine over
  30 s, the same in every process), cancels and replaces of resting orders by client order id,
  and crossing IOC orders that take liquidity, all within each instrument's limits (price band,
  price and quantity limits, max notional, max open orders), so that rejects mean something.
- **Checked as it goes.** The gateway answers each session in request order, so replies are
  matched to requests in order; every answer must name the request's client order id and be of
  the right kind (ACK / ACK REPLACED / OUT CANCELED / REJ). Fills are checked per order
  (filled + leaves = the order's quantity) and per instrument (bought = sold), and, after the
  run, against the journal (accepted, replaced and filled counts; trades). A fast wrong run
  fails.
- **Measured.** Ack, fill, cancel and replace latency with HdrHistogram; market data latency
  (gateway receipt ``ts_event`` → subscriber) and the first-to-last spread over M subscribers;
  the journal's durable progress and lag (age of the newest durable batch, sampled every
  second) and how long its tables took to catch up with its log after the load; CPU per role from /proc/<pid>/stat, the load generator's own included, and how long each role waited for a CPU (/proc/<pid>/schedstat).

Processes: this one (orchestration, journal sampling), ``workers`` load generator processes
(asyncio, several sessions each) and one process per market data subscriber.

The package, in the order a run goes through it:

    options.py      BenchOptions: what a run is asked to do
    target.py       start a fresh mesh for the bench or find the running one; CPU readings from /proc
    runner.py       run(): start the processes, follow the run second by second, sample the journal
    limits.py       what the load may send on each instrument: prices and sizes within its limits
    load.py         the load generator processes: the open-loop schedule, workers of several sessions
    session.py      one order entry session: the order mix, replies matched to requests and checked
    subscribers.py  the market data subscriber processes
    latency.py      HdrHistogram settings, cheap recording, percentiles in µs
    checks.py       after the run: merge the reports, check them, compare with the journal
    stages.py       where an ACK's time goes: sampled ACKs followed through the journal's timestamps
    results.py      BenchResult: figures, checks and the JSON form
    report.py       summary() table and plot()
    profiles.py     py-spy records of every role, and summarise_profiles()
"""

from exchange.bench.options import BenchOptions
from exchange.bench.profiles import summarise_profiles
from exchange.bench.report import accounts_cost, plot, summary
from exchange.bench.results import BenchResult
from exchange.bench.runner import run
from exchange.bench.target import bench_config, cpu_seconds, running_roles

__all__ = ["BenchOptions", "accounts_cost", "BenchResult", "bench_config", "cpu_seconds", "plot", "run", "running_roles",
           "summarise_profiles", "summary"]
