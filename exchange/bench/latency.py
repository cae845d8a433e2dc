"""Latency figures: the HdrHistogram settings, cheap recording, and percentiles in µs.

Every process of the bench records into histograms made the same way (1 µs to one hour, three
significant digits), so the orchestrating process can add them up.
"""

from __future__ import annotations

import math
from collections import Counter

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
KINDS = ("ack", "fill", "cancel", "replace", "md")  # latency histograms
HIGHEST_US = 3_600_000_000  # one hour, in µs


def pick(sorted_values: list[int], q: float) -> int:
    """The nearest-rank ``q`` quantile (the ⌈q·n⌉-th value), as HdrHistogram gives the others: the
    p99 of 1..100 is 99. q·n is rounded first so that float noise (0.07 * 100 = 7.000000000000001)
    does not push it up a rank."""
    if not sorted_values:
        return 0
    rank = math.ceil(round(q * len(sorted_values), 9))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def record(histogram: HdrHistogram, values: list[int]) -> None:
    """Record many values cheaply: count equal ones first (values ≥ 4096 rounded to 12 bits)."""
    counts = Counter(v if v < 4096 else (v >> (v.bit_length() - 12)) << (v.bit_length() - 12) for v in values)
    for value, count in counts.items():
        histogram.record_value(min(max(value, 1), HIGHEST_US), count)


def percentiles(h: HdrHistogram) -> dict:
    count = h.get_total_count()
    out = {"count": count}
    for p in PERCENTILES:
        out[f"p{p:g}"] = h.get_value_at_percentile(p) if count else 0
    out["max"] = h.get_max_value() if count else 0
    out["mean"] = round(h.get_mean_value(), 1) if count else 0
    return out


def curve(h: HdrHistogram) -> list[tuple[float, int]]:
    if not h.get_total_count():
        return []
    points = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0]
    return [(p, h.get_value_at_percentile(p)) for p in points]


def us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.0f} µs"
