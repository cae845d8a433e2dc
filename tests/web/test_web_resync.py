"""When the notifier falls silent, the web role's feed re-syncs and the pages hear it: `re-syncing`
while there is no feed, then a fresh snapshot, with what happened meanwhile, once it is back."""

from __future__ import annotations

import json
import os
import signal

from exchange.testing.mesh import Mesh, wait_until

from .conftest import WebMesh, web_mesh_config
from .test_web_socket import open_socket, receive_until


def test_a_silent_notifier_shows_as_resyncing_then_live_again_with_the_book(tmp_path):
    path = web_mesh_config(tmp_path)
    with Mesh(path) as mesh:
        web = WebMesh(mesh, path)
        alice = web.browser("alice")
        alice.place(side="BUY", symbol="BTC-USD", qty="1", price="30000.00")
        wait_until(lambda: alice.get("/api/markets/BTC-USD").json()["bids"], what="the order in the web role's book")
        notifier = mesh.role_pid("notifier")
        with open_socket(web) as ws:
            ws.send(json.dumps({"type": "subscribe", "symbol": "BTC-USD"}))
            first = receive_until(ws, lambda m: m["type"] == "snapshot" and m["bids"] == [["30000.00", "1.0000"]])
            os.kill(notifier, signal.SIGSTOP)  # no heartbeats, no snapshots: silence
            try:
                status = receive_until(ws, lambda m: m["type"] == "status", timeout=30)
                assert status == {"type": "status", "symbol": "BTC-USD", "state": "resyncing"}
                assert alice.place(side="BUY", symbol="BTC-USD", qty="2", price="30001.00").json()["type"] == "Ack"
            finally:
                os.kill(notifier, signal.SIGCONT)
            again = receive_until(ws, lambda m: m["type"] in ("snapshot", "update"), timeout=60)
        assert again["type"] == "snapshot" and again["state"] == "live" and again["seq"] > first["seq"]
        assert again["bids"] == [["30001.00", "2.0000"], ["30000.00", "1.0000"]]
        markets = web.browser().get("/api/markets").json()["markets"]
        assert {m["symbol"]: m["state"] for m in markets}["BTC-USD"] == "live"
    assert "web INFO stopped" in (tmp_path / "var" / "web.log").read_text()  # SIGTERM: it closed everything
