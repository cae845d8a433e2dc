"""scripts/bench_core_peer.py: both cores make the same trades on the stream, and both rates are reported.

The end-to-end test needs matching-engine in .venv-peer (made on first use with python3.12 and
pip); it is skipped, with the reason, only when that cannot be done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from script_modules import import_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


@pytest.fixture(scope="module")
def bench():
    return import_script("bench_core", "bench_core_peer")


def test_the_same_trades_are_no_mismatch(bench):
    trades = [(4_300_001, 120, 3, 7), (4_300_002, 10, 5, 7)]
    assert bench.trade_mismatch(trades, [list(t) for t in trades]) is None  # as decoded from msgpack


@pytest.mark.parametrize("field, value", [(0, 4_300_003), (1, 11), (2, 4), (3, 8)])
def test_an_altered_trade_is_reported_as_the_first_mismatch(bench, field, value):
    ours = [(4_300_001, 120, 3, 7), (4_300_002, 10, 5, 7), (4_300_002, 30, 6, 9)]
    altered = [list(t) for t in ours]
    altered[1][field] = value
    altered[2][field] = value  # a later difference too: only the first is named
    message = bench.trade_mismatch(ours, altered)
    assert message is not None and message.startswith("trade 2 differs:"), message
    assert "ours price 4300002 qty 10 maker #5 taker #7" in message, message


def test_a_missing_trade_is_reported_as_a_mismatch(bench):
    ours = [(4_300_001, 120, 3, 7), (4_300_002, 10, 5, 7)]
    message = bench.trade_mismatch(ours, ours[:1])
    assert message == "ours made 2 trades and matching-engine 1; the first 1 agree"


def test_the_translation_names_orders_by_the_position_of_their_command(bench):
    from bench_core import ENGINE_ID, INSTRUMENT, SYMBOL

    from exchange.core.matching import Matcher
    from exchange.core.messages import CancelOrder, PlaceOrder
    from exchange.core.orders import Side, TimeInForce

    commands = [
        PlaceOrder("ann", SYMBOL, Side.BUY, 10, None, TimeInForce.IOC, ts_received=1),  # no asks: rejected
        PlaceOrder("ann", SYMBOL, Side.SELL, 30, 100, ts_received=2),
        PlaceOrder("bob", SYMBOL, Side.SELL, 20, 101, ts_received=3),
        CancelOrder("bob", SYMBOL, f"{ENGINE_ID}-2", ts_received=4),
        PlaceOrder("cyd", SYMBOL, Side.BUY, 10, 100, TimeInForce.FOK, ts_received=5),
    ]
    rows, trades = bench.translate(commands, Matcher(ENGINE_ID, [INSTRUMENT]).handle)
    assert rows == [
        [1, "new", 1, 1, "buy", 0, 10, "IOC"],
        [2, "new", 2, 1, "sell", 100, 30, "GTC"],
        [3, "new", 3, 2, "sell", 101, 20, "GTC"],
        [4, "cancel", 3, 2],
        [5, "new", 5, 3, "buy", 100, 10, "FOK"],
    ]
    assert trades == [(100, 10, 2, 5)]


def test_both_cores_make_the_same_trades_and_both_rates_are_reported(bench, tmp_path):
    try:
        bench.peer_python(None)
    except bench.PeerUnavailable as problem:
        pytest.skip(f"matching-engine cannot be set up: {problem}")
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_core_peer.py"), "--commands", "3000",
                           "--runs", "1", "--json", str(out)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "the same on both sides" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["trades_match"] and figures["trades"] > 500
    for side in ("ours", "peer"):
        assert figures[side]["median"] > 0 and len(figures[side]["rates"]) == 1
        assert figures[side]["peak_bytes"] > 0
    assert figures["peer"]["matching_engine"] == "0.1.1"
    assert figures["ratio"] == pytest.approx(figures["ours"]["median"] / figures["peer"]["median"])
    assert ("target (ratio >= 1.3 and our peak memory <= matching-engine's): met" in done.stdout
            or "not met" in done.stdout)


def test_the_peak_is_found_at_its_command_and_what_holds_memory_adds_up(bench):
    """--memory: the command where ours peaks is the whole run's peak, and the holdings just before
    it sum to what tracemalloc traced, the resting orders among the largest."""
    from exchange.core.matching import Matcher

    core = import_script("bench_core")
    commands, _ = core.make_stream(3000, 7)
    def new_handle():
        return Matcher(core.ENGINE_ID, [core.INSTRUMENT]).handle

    position, peak = bench.peak_command(commands, new_handle)
    assert abs(peak - core.peak_memory(commands)) < 256
    held = bench.memory_held(new_handle, commands, position, top=3)
    assert len(held) == 4 and held[-1][0] == "(the rest)"
    assert [row[2] for row in held[:3]] == sorted((row[2] for row in held[:3]), reverse=True)
    assert any("Order(" in source for _, source, _, _ in held[:3])
    assert 0 < sum(row[2] for row in held) <= peak


def test_memory_says_where_both_sides_hold_theirs(bench):
    try:
        bench.peer_python(None)
    except bench.PeerUnavailable as problem:
        pytest.skip(f"matching-engine cannot be set up: {problem}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_core_peer.py"), "--commands", "3000", "--memory"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "(where ours peaks)" in done.stdout and "RestingOrder(" in done.stdout
    assert "run 1:" not in done.stdout  # nothing timed
