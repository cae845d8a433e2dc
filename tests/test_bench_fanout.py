"""scripts/bench_fanout.py: the arrival ranks that say whether some subscribers are systematically first."""

from __future__ import annotations

import pytest
from script_modules import import_script


@pytest.fixture(scope="module")
def bench():
    return import_script("bench_fanout")


def receipts(orders: list[list[int]]) -> tuple[list[int], list[int], list[int]]:
    """(seqs, times, subs) where chan_seq n reaches the subscribers orders[n] in that order, 10 µs apart."""
    seqs, times, subs = [], [], []
    for seq, order in enumerate(orders, start=1):
        for position, sub in enumerate(order):
            seqs.append(seq)
            times.append(1_000_000_000 * seq + 10_000 * position)
            subs.append(sub)
    return seqs, times, subs


def test_a_subscriber_always_first_has_mean_rank_0_and_one_always_last_has_1(bench):
    means = bench.mean_ranks(*receipts([[7, 3, 5]] * 20))
    assert means == {7: 0.0, 3: 0.5, 5: 1.0}


def test_an_even_rotation_gives_every_subscriber_a_mean_rank_of_one_half(bench):
    subscribers = [0, 1, 2, 3, 4]
    orders = [subscribers[n % 5:] + subscribers[:n % 5] for n in range(100)]
    means = bench.mean_ranks(*receipts(orders))
    assert means == pytest.approx({s: 0.5 for s in subscribers})
    summary = bench.rank_summary(means)
    assert (summary["early"], summary["late"]) == (0, 0)
    assert summary["min"] == summary["max"] == pytest.approx(0.5)


def test_receipts_in_any_order_rank_by_time_not_by_position_in_the_input(bench):
    seqs, times, subs = receipts([[1, 2, 3]] * 4)
    shuffled = list(zip(seqs, times, subs))[::-1]
    means = bench.mean_ranks(*map(list, zip(*shuffled)))
    assert means == {1: 0.0, 2: 0.5, 3: 1.0}


def test_ranks_are_normalised_by_the_receivers_of_each_message_and_lone_receipts_rank_nobody(bench):
    # chan_seq 1: three receivers; 2: subscriber 9 missed it; 3: only subscriber 9 got it
    seqs = [1, 1, 1, 2, 2, 3]
    times = [10, 20, 30, 50, 40, 60]
    subs = [1, 2, 9, 1, 2, 9]
    means = bench.mean_ranks(seqs, times, subs)
    assert means == {1: pytest.approx((0 + 1) / 2), 2: pytest.approx((0.5 + 0) / 2), 9: 1.0}


def test_receipts_at_the_same_instant_share_their_ranks(bench):
    means = bench.mean_ranks([1, 1, 1], [5, 5, 9], [1, 2, 3])
    assert means == {1: 0.25, 2: 0.25, 3: 1.0}


def test_summary_counts_the_systematically_early_and_late(bench):
    means = {n: n / 9 for n in range(10)}  # 0, 0.11, ..., 1
    summary = bench.rank_summary(means)
    assert summary["subscribers"] == 10
    assert (summary["min"], summary["max"]) == (0.0, 1.0)
    assert summary["early"] == 3  # 0, 0.11, 0.22 < 0.25
    assert summary["late"] == 3  # 0.78, 0.89, 1 > 0.75
    assert summary["p10"] <= summary["p50"] <= summary["p90"]


def test_split_half_correlation_tells_a_fixed_order_from_a_changing_one(bench):
    fixed = receipts([[0, 1, 2, 3, 4, 5]] * 40)
    assert bench.split_half_correlation(*fixed) == pytest.approx(1.0)
    # even chan_seqs in one order, odd ones in the reverse: early on one half means late on the other
    flipping = receipts([[0, 1, 2, 3, 4, 5] if n % 2 else [5, 4, 3, 2, 1, 0] for n in range(40)])
    assert bench.split_half_correlation(*flipping) == pytest.approx(-1.0)
