"""When the journal falls behind, acks stop, and the gateway answers BUSY past `max_in_flight`
orders per engine (engines also stop reading past `max_undurable_events`): memory stays bounded."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.testing.mesh import loopback_config
from exchange.testing.mesh import wait_for_mesh

ORDERS = 12_000


def test_a_stalled_journal_turns_new_orders_into_busy_rejects_and_loses_nothing(tmp_path):
    path = loopback_config(tmp_path, request_timeout=120.0, max_undurable_events=1000)
    config = load_config(path)
    log_path = tmp_path / "mesh.log"
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "exchange", "up", str(path)], stderr=log,
                                    stdout=subprocess.DEVNULL, start_new_session=True)
    journal_pid = None
    try:
        host, port = config.gateway.text.rsplit(":", 1)
        port = int(port)
        wait_for_mesh(host, port, launcher)
        journal_pid = int(re.findall(r"started journal-writer \(pid (\d+)\)", log_path.read_text())[-1])
        with TextClient(host, port, timeout=120) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            os.kill(journal_pid, signal.SIGSTOP)
            # pipelined: the gateway must answer every line, BUSY once the engine stops reading
            alice.send_line("".join(f"BUY AAPL 1 @ 1.{i % 100:02d} #p{i}\n" for i in range(ORDERS)))
            deadline = time.monotonic() + 60
            while "no longer reading commands" not in log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, "the engine never stopped reading commands"
                time.sleep(0.05)
            os.kill(journal_pid, signal.SIGCONT)
            replies = [alice.read_reply() for _ in range(ORDERS)]
            assert alice.request("PING") == "PONG"
            acked = {line.split()[2][1:] for line in replies if line.startswith("ACK")}
            busy = [line for line in replies if " BUSY " in line]
            assert busy and acked, (len(busy), len(acked))
            assert all(line.startswith("ACK") or re.match(r"REJ #p\d+ BUSY ", line) for line in replies)
            assert alice.request("BUY AAPL 1 @ 1.00 #after").startswith("ACK")  # flowing again
        with sqlite3.connect(config.journal.path) as db:
            journaled = {cid for (cid,) in db.execute("SELECT client_order_id FROM commands WHERE user='alice'")}
        assert acked <= journaled
        assert not (journaled & {line.split()[1][1:] for line in busy}), "a BUSY order reached the journal"
    finally:
        if journal_pid:
            try:
                os.kill(journal_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(20)
        finally:
            try:
                os.killpg(launcher.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
