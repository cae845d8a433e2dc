"""The result for people: the summary table, and the latency and throughput plot."""

from __future__ import annotations

from exchange.bench import latency
from exchange.bench.results import BenchResult


def summary(result: BenchResult) -> str:
    """The result as a table for people."""
    o, t = result.options, result.throughput
    load = (f"as fast as possible ({o['window']} outstanding per session)" if o["rate"] is None
            else f"{o['rate']:,.0f} requests/s offered, open loop")
    lines = [f"machine: {result.machine['cpus']} x {result.machine['cpu_model']}, Python {result.machine['python']},"
             f" libzmq {result.machine['libzmq']}, SQLite {result.machine['sqlite']}",
             f"load: {load},"
             f" {o['sessions']} sessions in {o['workers']} processes, {o['subscribers']} subscribers,"
             f" {o['warmup']:g} s warmup + {o['duration']:g} s measured",
             "",
             f"acknowledged   {t['acked_per_s']:,.0f}/s sustained (slowest second {t['acked_per_s_min_second']:,},"
             f" fastest {t['acked_per_s_max_second']:,}): ACK, ACK REPLACED and OUT CANCELED answers",
             f"requests       {result.counts['requests']:,} sent, {result.counts['answered']:,} answered,"
             f" {result.counts['unanswered']:,} unanswered; answers: "
             + (", ".join(f"{n:,} {kind}" for kind, n in sorted(result.counts['answers'].items(),
                                                                 key=lambda item: -item[1])) or "none") + ";"
             f" {result.counts['fills']:,} fills",
             *_rejects(result.counts),
             f"ordering       {result.counts['late_fills']:,} fills reached their session after the OUT line"
             " answering a cancel of the order (the fill happened first)",
             "",
             f"{'latency':22s} {'count':>9s} {'p50':>9s} {'p90':>9s} {'p99':>9s} {'p99.9':>9s} {'max':>9s}"]
    names = {"ack": "ack (send → ACK)", "fill": "fill (send → 1st FILL)", "cancel": "cancel (send → OUT)",
             "replace": "replace (send → ACK)", "md": "market data (→ SUB)"}
    for kind, name in names.items():
        v = result.latency_us[kind]
        lines.append(f"{name:22s} {v['count']:>9,d} " + " ".join(
            f"{latency.us(v[p]):>9s}" for p in ("p50", "p90", "p99", "p99.9", "max")))
    s = result.market_data["spread_us"]
    lines.append(f"{'md spread first→last':22s} {s['count']:>9,d} " + " ".join(
        f"{latency.us(s[p]):>9s}" for p in ("p50", "p90", "p99", "p99.9", "max")))
    if result.ack_stages_us:
        count = next(iter(result.ack_stages_us.values()))["count"]
        lines += ["", f"{'where an ACK goes':26s} {'p50':>9s} {'p90':>9s} {'p99':>9s}"
                  f"   ({count:,} sampled ACKs of new orders, journal timestamps)"]
        for name, v in result.ack_stages_us.items():
            lines.append(f"  {name:24s} " + " ".join(f"{latency.us(v[p]):>9s}" for p in ("p50", "p90", "p99")))
    lines += ["", f"market data: {result.market_data['messages']} messages per subscriber,"
              f" gaps {result.market_data['gaps']}",
              f"journal: {result.journal['durable_events_per_s']:,.0f} events/s made durable; lag (age of the"
              f" newest durable batch) p50 {latency.us(result.journal['lag_us']['p50'])},"
              f" max {latency.us(result.journal['lag_us']['max'])}; its tables caught up with its log"
              f" {result.journal.get('tables_caught_up_s', 0):.2f} s after the load{_catch_up(result)}",
              "cpu (cores, measured window): " + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu.items())]
    if result.cpu_wait:  # runnable but not running: the machine was full at those moments
        lines.append("waiting for a cpu (share of the window, each role's main thread): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_wait.items()))
    lines.append("")
    for name, faults in result.checks.items():
        lines.append(f"check {name}: {'ok' if not faults else 'FAILED'}")
        lines += [f"    {f}" for f in faults[:10]]
    return "\n".join(lines)


def _catch_up(result: BenchResult) -> str:
    """What building the tables after the load cost the journal writer (outside the measured window)."""
    cpu = result.journal.get("tables_catch_up_cpu_s")
    requests = result.counts.get("requests")
    if cpu is None or not requests:
        return ""
    return f" (the journal writer's CPU meanwhile: {cpu:.2f} s, {cpu / requests * 1e6:.1f} µs per request of the run)"


def accounts_cost(without: BenchResult, with_accounts: BenchResult) -> str:
    """What accounts cost: the same load without and with them, side by side."""
    rows = [("acknowledged/s", without.throughput["acked_per_s"], with_accounts.throughput["acked_per_s"], "")]
    for kind, name in (("ack", "ack"), ("fill", "fill"), ("cancel", "cancel")):
        for p in ("p50", "p99"):
            rows.append((f"{name} {p}", without.latency_us[kind][p], with_accounts.latency_us[kind][p], "us"))
    cores = (without.roles_cores(), with_accounts.roles_cores())
    per_ack = (without.roles_us_per_ack(), with_accounts.roles_us_per_ack())
    lines = ["", "accounts: the same load without and with them (ledger shards on the way in, settlement after)",
             f"{'':18s} {'off':>12s} {'on':>12s} {'change':>12s}"]
    for name, off, on, unit in rows:
        if unit:
            change = f"{(on - off) / 1000:+.2f} ms" if off is not None and on is not None else "-"
            lines.append(f"{name:18s} {latency.us(off):>12s} {latency.us(on):>12s} {change:>12s}")
        else:
            change = f"{(on - off) / off * 100:+.1f} %" if off else "-"
            lines.append(f"{name:18s} {off:>12,.0f} {on:>12,.0f} {change:>12s}")
    lines.append(f"{'roles cpu (cores)':18s} {cores[0]:>12.2f} {cores[1]:>12.2f} {cores[1] - cores[0]:>+12.2f}")
    if None not in per_ack:
        lines.append(f"{'roles cpu per ack':18s} {per_ack[0]:>9.1f} us {per_ack[1]:>9.1f} us"
                     f" {per_ack[1] - per_ack[0]:>+9.1f} us")
    return "\n".join(lines)


def _rejects(counts: dict) -> list[str]:
    """The REJ answers by code, most first, each with the reason the first one gave."""
    rejects = counts["rejects"]
    if not rejects:
        return ["rejects        none"]
    lines = [f"rejects        {sum(rejects.values()):,} in all; by code, with the first reason given:"]
    for code, n in sorted(rejects.items(), key=lambda item: -item[1]):
        lines.append(f"    {code:16s} {n:>9,d}  {counts['reject_reasons'].get(code, '')}")
    return lines


def plot(result: BenchResult, path: str) -> None:
    """The latency percentile curves and throughput over time, as a PNG (needs matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'exchange[plot]'"
                           " (or pip install 'matplotlib>=3.7')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for kind, points in result.curves.items():
        if points:
            xs = [1 / (1 - p / 100) if p < 100 else 1e6 for p, _ in points]
            left.plot(xs, [v / 1000 for _, v in points], marker=".", label=kind)
    left.set_xscale("log")
    left.set_yscale("log")
    ticks = [2, 10, 100, 1000, 10000, 100000, 1e6]
    left.set_xticks(ticks, ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"])
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms)")
    left.set_title("latency by percentile (from scheduled send)")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    series = result.series
    right.plot([e["t"] for e in series], [e["sent"] for e in series], label="sent/s")
    right.plot([e["t"] for e in series], [e.get("acked", 0) for e in series], label="acknowledged/s")
    right.axvline(result.options["warmup"], color="grey", linestyle=":", label="end of warmup")
    right.set_xlabel("second")
    right.set_ylabel("per second")
    right.set_title("throughput")
    right.grid(True, alpha=0.3)
    right.legend()
    o = result.options
    load = "max" if o["rate"] is None else f"{o['rate']:,.0f}/s offered"
    fig.suptitle(f"exchange bench: {load}, {o['sessions']} sessions,"
                 f" {result.machine['cpus']} CPUs ({result.machine['cpu_model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
