"""scripts/bench_gateway.py measures the gateway answering its load, the same way every run.

A figure measured on a replay that went wrong (requests refused BUSY, answers that do not match
their requests) would measure the wrong work: a short run is checked here, with and without
accounts.
"""

from __future__ import annotations

import asyncio

import pytest
from script_modules import import_script

ORDERS = 3000


@pytest.fixture(scope="module")
def bench():
    return import_script("bench_gateway")


@pytest.mark.parametrize("accounts", [True, False])
def test_every_replay_answers_every_order_line_alike(bench, accounts):
    config = bench.bench_config(accounts)
    chunks, kinds, _ = asyncio.run(bench.record(config, ORDERS, seed=3))
    assert sum(kinds[k] for k in ("new", "cross", "cancel", "replace")) == ORDERS
    assert kinds["cancel"] and kinds["replace"] and kinds["cross"] and kinds["OrderFilled"]
    first, again = (asyncio.run(bench.replay(config, chunks))[1] for _ in range(2))
    assert first == again
    lines = first.decode().splitlines()
    assert sum(line.startswith("ACK ") and " REPLACED " not in line for line in lines) >= kinds["new"] + kinds["cross"]
    assert sum(" REPLACED " in line for line in lines) == kinds["OrderReplaced"]
    refused = [line for line in lines if line.startswith("REJ")]
    assert all(" NOT_YOUR_ORDER " in line or " UNKNOWN_ORDER " in line for line in refused), refused[:3]
