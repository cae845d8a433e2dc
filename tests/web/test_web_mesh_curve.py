"""The web role in a mesh with ``mesh_curve`` on: it reaches the gateway's endpoint for front ends
with its own role key, and nobody without a role key gets a session there."""

from __future__ import annotations

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from exchange.config import load_config
from exchange.testing.mesh import Mesh
from exchange.wire.security.mesh_keys import config_section, make_key_pairs
from .conftest import WebMesh, web_mesh_config

ALICE_SECRET = b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J"  # the demo user's (docs/market-data.md)
ENDED = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


@pytest.fixture(scope="module")
def curved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("curved")
    path = web_mesh_config(directory)
    public_keys, _ = make_key_pairs(load_config(path, mesh_keys=False), directory / "keys")
    assert "web" in public_keys  # the web role is a role of the mesh, with its own key
    path.write_text(path.read_text() + config_section(directory / "keys", public_keys))
    with Mesh(path) as mesh:
        yield WebMesh(mesh, path)


def first_handshake(ctx: zmq.Context, endpoint: str, server: bytes | None, keys: tuple[bytes, bytes]) -> int | None:
    """How a DEALER's first handshake with ``endpoint`` ended (a zmq.EVENT_HANDSHAKE_* value), as a
    CURVE client of ``server`` with ``keys``, or plain without ``server``; None if not within 5 s."""
    dealer = ctx.socket(zmq.DEALER)
    if server is not None:
        dealer.curve_serverkey, dealer.curve_publickey, dealer.curve_secretkey = server, *keys
    monitor = dealer.get_monitor_socket(ENDED)
    dealer.connect(endpoint)
    return recv_monitor_message(monitor)["event"] if monitor.poll(5000) else None


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
        outcome = first_handshake(ctx, config.gateway.front_end, server, keys)
        assert outcome not in (zmq.EVENT_HANDSHAKE_SUCCEEDED, None)
    finally:
        ctx.destroy(linger=0)
