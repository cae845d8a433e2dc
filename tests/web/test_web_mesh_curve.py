"""The web role in a mesh with ``mesh_curve`` on: it reaches the gateway's endpoint for front ends
with its own role key, and nobody without a role key gets a session there."""

from __future__ import annotations

import time

import pytest
import zmq
from click.testing import CliRunner
from zmq.utils.monitor import recv_monitor_message

from exchange.cli.main import cli
from exchange.testing.mesh import Mesh
from .conftest import WebMesh, web_mesh_config

ALICE_SECRET = b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J"  # the demo user's (docs/market-data.md)
OUTCOMES = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}


@pytest.fixture(scope="module")
def curved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("curved")
    path = web_mesh_config(directory)
    made = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(path), "--dir", str(directory / "keys")])
    assert made.exit_code == 0, made.output
    assert "    web: '" in made.stdout  # the web role is a role of the mesh, with its own key
    path.write_text(path.read_text() + made.stdout)
    with Mesh(path) as mesh:
        yield WebMesh(mesh, path)


def handshake(ctx: zmq.Context, endpoint: str, server: bytes | None, keys: tuple[bytes, bytes] | None) -> int | None:
    """How a DEALER's first handshake with ``endpoint`` ended (a zmq.EVENT_HANDSHAKE_* value): a CURVE
    client of ``server`` with ``keys`` (or a plain socket without ``server``); None if none ended in 5 s."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if server is not None:
        sock.curve_serverkey, (sock.curve_publickey, sock.curve_secretkey) = server, keys
    monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    deadline = time.monotonic() + 5
    while (left := deadline - time.monotonic()) > 0:
        if monitor.poll(int(left * 1000)):
            event = recv_monitor_message(monitor)["event"]
            if event in OUTCOMES:
                return event
    return None


def test_the_web_role_signs_in_and_trades_over_the_encrypted_front_end(curved):
    alice = curved.browser("alice")
    response = alice.place(side="BUY", symbol="AAPL", qty="1", price="150.00")
    assert response.status_code == 200, response.text
    assert alice.send_json("POST", "/api/logout").status_code == 200


@pytest.mark.parametrize("who", ["a fresh key pair", "a user's key pair", "a plain socket"])
def test_nobody_without_a_role_key_reaches_the_front_end(curved, who):
    config = curved.config
    server = None if who == "a plain socket" else config.mesh_curve.public_keys["gateway"].encode()
    keys = (zmq.curve_public(ALICE_SECRET), ALICE_SECRET) if who == "a user's key pair" else zmq.curve_keypair()
    ctx = zmq.Context()
    try:
        outcome = handshake(ctx, config.gateway.front_end, server, keys)
        assert outcome not in (zmq.EVENT_HANDSHAKE_SUCCEEDED, None)
    finally:
        ctx.destroy(linger=0)
