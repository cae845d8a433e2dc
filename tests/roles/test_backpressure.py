"""When the journal falls behind, acks stop, and the gateway answers BUSY past `max_in_flight`
orders per engine (engines also stop reading past `max_undurable_events`): memory stays bounded."""

from __future__ import annotations

import os
import re
import signal
import sqlite3

from exchange.testing.mesh import Mesh, loopback_config, wait_until
from exchange.journal.readers import wait_for_tables

ORDERS = 12_000


def test_a_stalled_journal_turns_new_orders_into_busy_rejects_and_loses_nothing(tmp_path):
    mesh = Mesh(loopback_config(tmp_path, request_timeout=120.0, max_undurable_events=1000))
    journal_pid = None
    try:
        mesh.wait_ready()
        journal_pid = mesh.role_pid("journal-writer")
        with mesh.login("alice", timeout=120) as alice:
            os.kill(journal_pid, signal.SIGSTOP)
            # pipelined: the gateway must answer every line, BUSY once the engine stops reading
            alice.send_line("".join(f"BUY AAPL 1 @ 1.{i % 100:02d} #p{i}\n" for i in range(ORDERS)))
            wait_until(lambda: "no longer reading commands" in mesh.log(), 60, "the engine stopping reading commands")
            os.kill(journal_pid, signal.SIGCONT)
            replies = [alice.read_reply() for _ in range(ORDERS)]
            assert alice.request("PING") == "PONG"
            acked = {line.split()[2][1:] for line in replies if line.startswith("ACK")}
            busy = [line for line in replies if " BUSY " in line]
            assert busy and acked, (len(busy), len(acked))
            assert all(line.startswith("ACK") or re.match(r"REJ #p\d+ BUSY ", line) for line in replies)
            assert alice.request("BUY AAPL 1 @ 1.00 #after").startswith("ACK")  # flowing again
        wait_for_tables(mesh.config.journal.path)
        with sqlite3.connect(mesh.config.journal.path) as db:
            journaled = {cid for (cid,) in db.execute("SELECT client_order_id FROM commands WHERE user='alice'")}
        assert acked <= journaled
        assert not (journaled & {line.split()[1][1:] for line in busy}), "a BUSY order reached the journal"
    finally:
        if journal_pid:
            try:
                os.kill(journal_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        mesh.close(20)
