"""After the run: merge the processes' reports into the result and check them.

Every request answered exactly once, with the right kind of answer; percentiles monotonic; fills
add up per instrument (bought = sold); the journal holds what the sessions were told.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter, defaultdict

from hdrh.histogram import HdrHistogram

from exchange.bench import latency, stages
from exchange.bench.latency import HIGHEST_US, KINDS
from exchange.bench.options import BenchOptions
from exchange.bench.target import cpu_seconds
from exchange.bench.results import BenchResult
from exchange.bench.subscribers import SPREAD_SAMPLE
from exchange.config import Config
from exchange.journal.readers import wait_for_tables
from exchange.journal.schema import readonly_uri

TABLES_WAIT_S = 300.0  # the journal's tables catch up with its log after a flood (docs/journal.md)


def finish(result: BenchResult, options: BenchOptions, config: Config, baseline: dict, md: list[dict],
            users, writer_cpu: tuple[int, float | None] | None = None) -> None:
    """Merge the workers' and subscribers' reports, check them, and read the journal. ``writer_cpu``:
    the journal writer's pid and its CPU seconds when the load ended (for the tables' catch-up cost)."""
    reports = result.counts.pop("workers")
    window = options.duration
    histograms = {k: HdrHistogram(1, HIGHEST_US, 3) for k in KINDS}
    for report in reports:
        for kind, encoded in report["histograms"].items():
            histograms[kind].decode_and_add(encoded)
    for sub in md:
        histograms["md"].decode_and_add(sub["histogram"])
    for kind, h in histograms.items():
        result.latency_us[kind] = latency.percentiles(h)
        result.curves[kind] = latency.curve(h)
    sent: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    reasons: dict[str, str] = {}  # code → the first reason given for it
    acked_per_second: Counter[int] = Counter()
    for report in reports:
        sent.update(report["sent"])
        answers.update(report["answers"])
        rejects.update(report["rejects"])
        for code, reason in report["reject_reasons"].items():
            reasons.setdefault(code, reason)
        acked_per_second.update({int(k): v for k, v in report["acked_per_second"].items()})
    requests = sum(v for k, v in sent.items() if k not in ("login", "ping"))
    answered = sum(r["answered"] for r in reports) - sent["login"] - sent["ping"]
    result.counts = {"sent": dict(sent), "requests": requests, "answered": answered,
                     "unanswered": sum(r["unanswered"] for r in reports), "answers": dict(answers),
                     "rejects": dict(rejects.most_common()), "reject_reasons": reasons, "late_fills": sum(r["late_fills"] for r in reports)}
    acked = sum(r["acked_in_window"] for r in reports)  # counted at the window's ends (load.py), not whole seconds
    # the slowest and fastest of the whole seconds (from the start) inside the window
    first, last = math.ceil(options.warmup), math.floor(options.warmup + options.duration)
    measured = [acked_per_second.get(s, 0) for s in range(first, last)]
    for entry in result.series:
        entry["acked"] = acked_per_second.get(entry["t"] - 1, 0)
    result.throughput = {
        "offered_per_s": options.rate, "acked_per_s": round(acked / window, 1),
        "acked_per_s_min_second": min(measured) if measured else 0,
        "acked_per_s_max_second": max(measured) if measured else 0,
        "requests_per_s": round(requests / (options.warmup + options.duration), 1)}
    checks: dict[str, list[str]] = {
        "one answer per request": [f"{result.counts['unanswered']} requests got no answer"]
        if result.counts["unanswered"] else [],
        "answers match requests": [f for r in reports for f in r["faults"]],
        "something was acknowledged": [] if answers["accepted"] else ["no order was acknowledged"],
        "percentiles are monotonic": [f"{k}: {v}" for k, v in result.latency_us.items()
                                      if v["count"] and [v[p] for p in ("p50", "p90", "p99", "p99.9", "max")]
                                      != sorted(v[p] for p in ("p50", "p90", "p99", "p99.9", "max"))],
    }
    fills = [[0, 0, 0, 0] for _ in reports[0]["fills"]] if reports else []
    for report in reports:
        for i, stats in enumerate(report["fills"]):
            fills[i] = [a + b for a, b in zip(fills[i], stats)]
    symbols = options.instruments or [i.symbol for i in config.instruments]
    checks["fills add up (bought = sold)"] = [
        f"{symbols[i]}: {b} buy fills of {bq} units, {s} sell fills of {sq} units"
        for i, (b, s, bq, sq) in enumerate(fills) if (b, bq) != (s, sq)]
    result.counts["fills"] = sum(f[0] + f[1] for f in fills)
    more = sum(r["fault_count"] for r in reports) - len(checks["answers match requests"])
    checks["answers match requests"] += [f"... and {more} more"] if more else []
    result.journal["tables_caught_up_s"] = round(wait_for_tables(config.journal.path, TABLES_WAIT_S), 3)
    if writer_cpu is not None and writer_cpu[1] is not None:
        now = cpu_seconds(writer_cpu[0])
        if now is not None:  # work the measured window did not pay for: the tables the load left to build
            result.journal["tables_catch_up_cpu_s"] = round(now - writer_cpu[1], 3)
    result.ack_stages_us = stages.ack_stages(config.journal.path, [t for r in reports for t in r["traced"]])
    checks["journal agrees"] = _check_journal(config.journal.path, baseline, answers, result.counts["fills"],
                                              options.connect)
    # market data
    arrivals: dict[tuple, list[int]] = defaultdict(list)
    for sub in md:
        for key, t in sub["arrivals"].items():
            arrivals[key].append(t)
    spreads = HdrHistogram(1, HIGHEST_US, 3)
    latency.record(spreads, [(max(t) - min(t)) // 1000 for t in arrivals.values() if len(t) == len(md) and len(md) > 1])
    result.market_data = {"subscribers": len(md), "messages": [s["messages"] for s in md],
                          "gaps": [s["gaps"] for s in md], "spread_us": latency.percentiles(spreads),
                          "spread_sample": f"every message with chan_seq % {SPREAD_SAMPLE} == 0"}
    result.cpu["load generators, total"] = round(sum(v for k, v in result.cpu.items()
                                                     if k.startswith("load generator")), 3)
    _journal_figures(result, options)
    result.checks = checks


def _check_journal(path: str, baseline: dict, answers: Counter, fills: int, connect: bool) -> list[str]:
    """The journal's new events equal what the sessions were told (assumes nobody else traded)."""
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        counts = Counter()
        for engine, kind, n in conn.execute("SELECT engine, kind, COUNT(*) FROM events WHERE seq > COALESCE("
                                            "(SELECT value FROM json_each(?) WHERE key = engine), 0)"
                                            " GROUP BY engine, kind", (json.dumps(baseline),)):
            counts[kind] += n
    finally:
        conn.close()
    faults = []
    for kind, told in (("OrderAccepted", answers["accepted"]), ("OrderReplaced", answers["replaced"]),
                       ("OrderFilled", fills)):
        if counts[kind] != told:
            faults.append(f"{kind}: the journal has {counts[kind]}, the sessions were told {told}"
                          + (" (did someone else trade on this mesh?)" if connect else ""))
    if counts["Trade"] * 2 != counts["OrderFilled"]:
        faults.append(f"{counts['Trade']} trades but {counts['OrderFilled']} order fills")
    return faults


def _journal_figures(result: BenchResult, options: BenchOptions) -> None:
    samples = result.journal.pop("samples")
    lo, hi = result.journal["measure_from_ns"], result.journal["measure_to_ns"]
    inside = [(t, seqs) for t, seqs in samples if lo <= t <= hi and seqs]
    lags = sorted((t - ts) // 1000 for t, seqs in inside for seq, ts in seqs.values() if ts)
    events = 0.0
    if len(inside) >= 2:
        (t0, s0), (t1, s1) = inside[0], inside[-1]
        events = sum(s1[e][0] - s0.get(e, (0, 0))[0] for e in s1) / ((t1 - t0) / 1e9)
    result.journal.update({
        "durable_events_per_s": round(events, 1),
        "lag_us": {"what": "age of the newest durable batch (now - when it was matched) when sampled each second",
                   "samples": len(lags), "p50": latency.pick(lags, 0.5), "max": lags[-1] if lags else 0}})
