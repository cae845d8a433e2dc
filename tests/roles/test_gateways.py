"""Several gateways (gateway.replicas): order entry on two gateway processes at once, a user's orders
followed, cancelled and resent on either, and the ledger shards' answers reaching the gateway asked."""

from __future__ import annotations

import socket
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from conftest import add_replica
from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.journal.readers import wait_for_tables
from exchange.testing.mesh import Mesh, free_ports, loopback_config, wait_until


def with_second_gateway(tmp_path: Path, accounts: bool = True) -> Path:
    """The loopback test config (accounts on, unless not), plus gateway g2 on free ports."""
    port, zmq_port, replies = free_ports(3)
    return add_replica(loopback_config(tmp_path, accounts=accounts), r"\n  replies: tcp://127\.0\.0\.1:\d+\n", "g2", {
        "text": f"127.0.0.1:{port}", "zmq": f"tcp://127.0.0.1:{zmq_port}", "replies": f"tcp://127.0.0.1:{replies}"})


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with Mesh(with_second_gateway(tmp_path_factory.mktemp("gateways"))) as running:
        yield running


def login(mesh, gateway: str, user: str, timeout: float = 10.0) -> TextClient:
    section = mesh.config.gateway.replica(None if gateway == "gateway" else gateway)
    host, port = section.text.rsplit(":", 1)
    wait_until(lambda: listening(host, int(port)), 30, f"gateway {gateway} listens")  # g2 may start after the first
    client = TextClient(host, int(port), timeout=timeout)
    assert client.request(f"LOGIN {user} {user}-key") == f"OK LOGIN {user}"
    return client


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def until(ask, wanted: str, seconds: float = 10.0) -> str:
    """``ask()`` again until its answer starts with ``wanted`` (the other gateway hears of a batch as
    this one does, not before the client's next request)."""
    answers = []
    wait_until(lambda: answers.append(ask()) or answers[-1].startswith(wanted), seconds, f"an answer {wanted!r}")
    return answers[-1]


def test_a_second_gateway_follows_cancels_and_answers_resends_of_orders_placed_on_the_first(mesh):
    with login(mesh, "gateway", "alice") as alice_a, login(mesh, "g2", "alice") as alice_b, \
            login(mesh, "g2", "bob") as bob_b:
        order_id = alice_a.request("SELL AAPL 5 @ 190.00 #twice").split()[1]
        until(lambda: alice_b.request("STATUS #twice"), f"STATE {order_id} #twice NEW 0 5")
        # a resend on the other gateway is answered with the first placement, not placed again
        assert alice_b.request("SELL AAPL 5 @ 190.00 #twice").startswith(f"ACK {order_id} #twice")
        buy = bob_b.request("BUY AAPL 2 @ 190.00")
        assert buy.startswith("ACK")
        assert bob_b.next_pushed().startswith(f"FILL {buy.split()[1]} 2 @ 190.00")
        assert alice_a.next_pushed().startswith(f"FILL {order_id} #twice 2 @ 190.00 LEAVES 3")  # its own session
        assert alice_b.request("CANCEL #twice") == f"OUT {order_id} #twice CANCELED"
        held = alice_b.request_block("BALANCE AAPL")  # a ledger shard's answer, to the gateway asked
        assert held[-1] == "END BALANCE 1" and "HELD 0 " in held[0] + " ", held
    wait_for_tables(mesh.config.journal.path)  # the tables follow the log
    with closing(sqlite3.connect(mesh.config.journal.path)) as conn:
        (placed,) = conn.execute("SELECT COUNT(*) FROM events WHERE kind='OrderAccepted' AND"
                                 " json_extract(body, '$[11]') = 'twice'").fetchone()
    assert placed == 1


def test_a_gateway_replica_names_file_key_and_problem(tmp_path):
    path = with_second_gateway(tmp_path)
    path.write_text(path.read_text().replace("    - name: g2\n", "    - name: gateway\n"))
    with pytest.raises(Exception, match="gateway name gateway is used twice"):
        load_config(path)
