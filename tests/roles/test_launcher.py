"""`exchange up` starts every role, restarts one that dies, and stops them all cleanly."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from conftest import write_config
from exchange.client.text import TextClient
from exchange.testing.mesh import Mesh, wait_until


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_every_role_cleanly_on_signal(mesh, signum):
    with TextClient(mesh.host, mesh.port) as alice:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        assert alice.request("BUY AAPL 1 @ 1.00").startswith("ACK")  # through engine and journal
    pids = [mesh.role_pid(label) for label in ("journal-writer", "engine e1", "engine e2", "notifier",
                                                 "gateway")]
    started = time.monotonic()
    mesh.process.send_signal(signum)
    assert mesh.process.wait(15) == 0
    assert time.monotonic() - started < 10
    assert not mesh.leftovers(), "a role outlived the launcher"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = mesh.log()
    for label in ("engine-e1", "engine-e2", "journal-writer", "notifier", "gateway"):
        assert re.search(rf"{label} INFO stopped", log), f"{label} did not log a clean stop"
    assert "Traceback" not in log


def test_a_killed_engine_is_restarted_and_rebuilds_its_book_from_the_journal(mesh):
    with TextClient(mesh.host, mesh.port) as alice:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        ack = alice.request("SELL AAPL 5 @ 190.00 #keep")
        order_id = ack.split()[1]
        old_pid = mesh.role_pid("engine e2")
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: mesh.role_pid("engine e2") != old_pid, what="engine e2 restarted")
        assert re.search(r"engine e2 exited with -9; restarting", mesh.log())

    with TextClient(mesh.host, mesh.port) as bob:
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        # the restarted engine still has alice's order: bob's buy trades with it
        deadline = time.monotonic() + 20
        while True:
            reply = bob.request("BUY AAPL 2 @ 190.00 IOC", timeout=20)
            if reply.startswith("ACK") or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # BUSY/UNAVAILABLE while the engine comes back
        assert reply.startswith("ACK"), reply
        fill = bob.next_pushed(timeout=20)
        assert fill.startswith(f"FILL {reply.split()[1]} 2 @ 190.00 LEAVES 0 TRADE 2-")
    assert re.search(r"engine-e2 INFO ready: engine e2 id 2 epoch 2, AAPL from batch \d+ seq [1-9]", mesh.log())
    with TextClient(mesh.host, mesh.port) as alice:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        assert alice.request(f"STATUS {order_id}").startswith(f"STATE {order_id} #keep PARTIALLY_FILLED 2 3")


def test_up_says_up_only_once_every_role_is_ready(mesh):
    wait_until(lambda: "exchange is up" in mesh.log(), what="the banner")
    log = mesh.log()
    banner = log.index("exchange is up")
    for label in ("journal-writer", "engine-e1", "engine-e2", "notifier", "gateway"):
        assert re.search(rf"{label} INFO (\S+ )?ready", log[:banner]), f"{label} was not ready before the banner"


def test_an_instrument_removed_after_it_traded_is_a_config_error_and_the_mesh_is_not_up(tmp_path):
    path = write_config(tmp_path)
    with Mesh(path) as mesh:
        with TextClient(mesh.host, mesh.port) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert alice.request("SELL BTC-USD 1 @ 100.00").startswith("ACK")
            assert alice.request("BUY BTC-USD 1 @ 100.00").startswith("ACK")
    text = path.read_text()
    btc = text[text.index("  - symbol: BTC-USD"):text.index("  - symbol: ETH-USD")]
    path.write_text(text.replace(btc, "").replace("[BTC-USD, ETH-USD]", "[ETH-USD]"))
    with Mesh(path, wait_for_engines=False) as mesh:  # e1 will not answer
        wait_until(lambda: "engine e1 exited with 1 before it was ready" in mesh.log(), what="e1's refusal")
        log = mesh.log()
        assert "engine e1: the journal" in log and "holds history of BTC-USD, which the config no longer" in log
        assert "Traceback" not in log
        assert "exchange is up" not in log
