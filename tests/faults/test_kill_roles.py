"""kill -9 each role under load; nothing acknowledged is lost, nothing is applied twice.

A few seconds of load per role here; `scripts/soak` runs the same checks for as long as you like.
Each run's seed is in its failure message; `FAULT_SEED=N` runs the load and the kill times of seed N.
"""

from __future__ import annotations

import os
import zlib

import pytest

from exchange.config import load_config
from exchange.testing.mesh import loopback_config
from exchange.testing.soak import soak, soak_config

DURATION_S = 5.0


@pytest.mark.parametrize("role", ["engine", "journal-writer", "gateway", "notifier"])
def test_killing_a_role_under_load_loses_nothing(tmp_path, role):
    # checkpoints every 200 events, so a restarted engine restores one and replays the rest
    config = loopback_config(tmp_path, request_timeout=2.0, checkpoint_every=200)
    seed = int(os.environ.get("FAULT_SEED", zlib.crc32(role.encode()) % 1000))  # the same in every process
    observed, faults, log = soak(config, role, DURATION_S, seed=seed)
    assert faults == [], (f"seed {seed} (rerun with FAULT_SEED={seed})\n" + "\n".join(faults)
                          + "\n--- mesh log tail ---\n" + log[-4000:])
    label = role if role != "engine" else "engine e"
    assert f"{label}" in log and "exited with -9; restarting" in log
    assert len(observed.acks) > 20, observed  # the load really ran, before and after the kill
    assert observed.fills, "no order crossed: the load is too thin to prove anything"
    if role == "engine":
        assert "restored the checkpoint at seq" in log


@pytest.mark.parametrize("role", ["ledger", "engine"])
def test_with_accounts_killing_a_ledger_shard_or_an_engine_loses_no_hold_and_settles_each_fill_once(tmp_path, role):
    # two ledger shards (alice and carol on one, bob on the other) in front of two engines (BTC-USD on
    # e1, AAPL on e2, both paid in USD); checkpoints often, so a restart restores one and replays the rest
    config = loopback_config(tmp_path, request_timeout=2.0, checkpoint_every=200, accounts=True)
    seed = int(os.environ.get("FAULT_SEED", zlib.crc32(b"accounts " + role.encode()) % 1000))
    observed, faults, log = soak(config, role, DURATION_S, seed=seed)
    assert faults == [], (f"seed {seed} (rerun with FAULT_SEED={seed})\n" + "\n".join(faults)
                          + "\n--- mesh log tail ---\n" + log[-4000:])
    assert "exited with -9; restarting" in log
    assert len(observed.acks) > 20 and observed.fills, observed


@pytest.mark.parametrize("role, accounts, shards", [("ledger", False, 2), ("engine", False, 0), ("engine", True, 2)])
def test_scripts_soak_runs_each_role_on_a_mesh_that_has_it(tmp_path, role, accounts, shards):
    """`scripts/soak --role all` reaches the ledger too: its mesh has ledger shards to kill."""
    config = load_config(soak_config(tmp_path, role, accounts))
    assert len(config.ledgers) == shards
