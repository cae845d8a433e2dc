"""An order for an engine that is down is refused at once, and never runs when the engine returns.

The roles run without the launcher here (which would restart the engine at once): journal
writer, both engines and the gateway, each `python -m exchange <role>`, killed in the end.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.testing.mesh import loopback_config, wait_for_mesh


def start(role: str, path, log, name: str | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "exchange", role, "--config", str(path)] + (["--name", name] if name else [])
    return subprocess.Popen(args, cwd=path.parent, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)


def first_answer(host: str, port: int, line: str, deadline: float, wanted: str = "") -> str:
    """The reply to ``line`` on a new session of alice's; tried again on a new session, until
    ``deadline``, while no reply comes within a few seconds or the reply does not start with
    ``wanted`` (each try with its own client order id: ``line`` has a ``{}`` for it)."""
    attempt = 0
    while True:
        with TextClient(host, port, timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            try:
                reply = alice.request(line.format(attempt), timeout=3)
                if reply.startswith(wanted):
                    return reply
            except TimeoutError:
                reply = "nothing"
        attempt += 1
        assert time.monotonic() < deadline, f"{line} got {reply}"
        time.sleep(0.2)


def test_an_order_for_a_dead_engine_is_refused_at_once_and_never_runs_later(tmp_path):
    path = loopback_config(tmp_path, request_timeout=60.0)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    port = int(port)
    processes: dict[str, subprocess.Popen] = {}
    with open(tmp_path / "roles.log", "wb") as log:
        try:
            processes["journal"] = start("journal-writer", path, log)
            for engine in config.engines:
                processes[engine.name] = start("engine", path, log, engine.name)
            processes["gateway"] = start("gateway", path, log)
            wait_for_mesh(host, port, processes["gateway"])
            first_answer(host, port, "BUY AAPL 1 @ 1.00 #up{}", time.monotonic() + 20, "ACK")

            engine = next(e.name for e in config.engines if "AAPL" in e.instruments)
            processes[engine].kill()
            processes[engine].wait(10)
            reply = first_answer(host, port, "BUY AAPL 1 @ 1.00 #down{}", time.monotonic() + 20)
            assert reply.startswith("REJ #down") and reply.split()[2] == "BUSY", reply

            processes[engine] = start("engine", path, log, engine)
            first_answer(host, port, "BUY AAPL 1 @ 1.00 #back{}", time.monotonic() + 30, "ACK")
            with TextClient(host, port, timeout=10) as alice:
                assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
                assert alice.request("STATUS #down0").split()[2] == "NOT_YOUR_ORDER"
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
    with closing(sqlite3.connect(config.journal.path)) as db:
        placed = [cid for (cid,) in db.execute("SELECT client_order_id FROM commands WHERE kind='PlaceOrder'")]
    assert not [cid for cid in placed if cid.startswith("down")], placed
    assert any(cid.startswith("back") for cid in placed), placed
