"""A mesh with ``mesh_curve`` on: every internal link works encrypted, and nobody else gets in.

One mesh for the module, with keys made by `exchange keys mesh` into its directory. Outsiders
are raw ZMQ sockets: a fresh key pair that knows the server's public key, a user's key pair, a
plain socket. A socket monitor tells how each handshake ended; a control with a real role's key
pair shows that the same probe does see a handshake succeed and a command reach the journal.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner
from zmq.utils.monitor import recv_monitor_message

from conftest import write_config
from exchange.cli.main import cli
from exchange.client.text import TextClient
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side, TimeInForce
from exchange.wire.security.mesh_keys import secret_key_path
from exchange.wire.messages import (
    BookSnapshot, Decoder, OpenEpoch, Request, SnapshotReply, SnapshotRequest, encode,
)
from test_end_to_end import subscribed, wait_for_trade
from exchange.testing.mesh import Mesh
from exchange.wire.security.curve_keys import public_key, server_secret_key
from exchange.journal.readers import wait_for_tables

HANDSHAKE_S = 5
OUTCOMES = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
ALICE_SECRET = b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J"  # the demo user's, docs/market-data.md


@pytest.fixture(scope="module")
def curve_mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("curve")
    path = write_config(directory)
    made = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(path), "--dir", str(directory / "keys")])
    assert made.exit_code == 0, made.output
    path.write_text(path.read_text() + made.stdout)
    with Mesh(path) as running:
        yield running


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def role_keys(mesh: Mesh, role: str) -> tuple[bytes, bytes]:
    """(public, secret) of a role, from the key files `exchange keys mesh` wrote."""
    secret = secret_key_path(mesh.config.mesh_curve.secret_key_dir, role).read_bytes().strip()
    return zmq.curve_public(secret), secret


def server_key(mesh: Mesh, role: str) -> bytes:
    return mesh.config.mesh_curve.public_keys[role].encode()


def probe(ctx: zmq.Context, kind: int, endpoint: str, server: bytes | None = None,
          keys: tuple[bytes, bytes] | None = None) -> tuple[zmq.Socket, zmq.Socket]:
    """A connected socket (a CURVE client if ``server``, with ``keys`` or a fresh pair) and its monitor."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if server is not None:
        public, secret = keys or zmq.curve_keypair()
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server, public, secret
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    return sock, monitor


def handshake(monitor: zmq.Socket, timeout: float = HANDSHAKE_S) -> int | None:
    """How the first handshake ended (a zmq.EVENT_HANDSHAKE_* value), or None if none ended in time."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if monitor.poll(int(left * 1000)):
            event = recv_monitor_message(monitor)["event"]
            if event in OUTCOMES:
                return event
    return None


def place(client_order_id: str) -> bytes:
    """Requests as the gateway sends them: alice buys 1 AAPL at 0.01, IOC (it never trades)."""
    command = PlaceOrder("alice", "AAPL", Side.BUY, 1, 1, TimeInForce.IOC, client_order_id=client_order_id,
                         ts_received=time.time_ns())
    return encode([Request("outsider", 1, 1, command)])  # a gateway sends Requests lists


def try_send(sock: zmq.Socket, frame: bytes) -> None:
    """Send if the socket takes it: a refused PUSH may have no peer left to queue for (zmq.Again)."""
    try:
        sock.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        pass


def journaled(mesh: Mesh, client_order_id: str) -> bool:
    wait_for_tables(mesh.config.journal.path)
    with closing(sqlite3.connect(mesh.config.journal.path)) as db:
        return bool(db.execute("SELECT 1 FROM commands WHERE client_order_id=?", (client_order_id,)).fetchall())


def settle(mesh: Mesh) -> None:
    """Return once every command sent before is journaled: a round trip through both engines."""
    with TextClient(mesh.host, mesh.port) as carol:
        assert carol.request("LOGIN carol carol-key") == "OK LOGIN carol"
        assert carol.request("CANCELALL", timeout=10).startswith("OK CANCELALL")


def test_every_internal_link_works_encrypted(curve_mesh):
    md = subscribed(curve_mesh, "AAPL")  # gateway → engine → journal → engine → notifier, all CURVE
    with md, TextClient(curve_mesh.host, curve_mesh.port) as alice, \
            TextClient(curve_mesh.host, curve_mesh.port) as bob:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        assert alice.request("SELL AAPL 3 @ 187.50 #c1").startswith("ACK ")
        ack = bob.request("BUY AAPL 3 @ 187.50 #c2")
        assert ack.startswith("ACK "), ack
        fill = bob.next_pushed()
        assert fill.startswith(f"FILL {ack.split()[1]} #c2 3 @ 187.50 LEAVES 0 TRADE ")
        trade_id = fill.split()[-1]
        _, trades = wait_for_trade(md)
        assert [t.trade_id for t in trades] == [trade_id]
    wait_for_tables(curve_mesh.config.journal.path)
    with closing(sqlite3.connect(curve_mesh.config.journal.path)) as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE trade_id=?", (trade_id,))]
    assert "Trade" in kinds


def test_the_replay_links_work_encrypted(curve_mesh, ctx):
    dealer = ctx.socket(zmq.DEALER)  # notifier → engine replay ROUTER carries the snapshot
    dealer.linger = 0
    dealer.connect(curve_mesh.config.notifier.snapshots)
    dealer.send(encode(SnapshotRequest("BTC-USD")))
    assert dealer.poll(10_000), "no snapshot through the notifier's CURVE link to the engine"
    assert isinstance(Decoder(SnapshotReply).decode(dealer.recv_multipart()[-1]), BookSnapshot)
    var = Path(curve_mesh.config.var_dir)
    for engine in ("e1", "e2"):  # the journal writer asks each engine for a replay when it starts
        deadline = time.monotonic() + 10
        while "replay from batch" not in (var / f"engine-{engine}.log").read_text():
            assert time.monotonic() < deadline, f"engine {engine} got no replay request from the journal"
            time.sleep(0.2)


def test_a_role_key_pair_gets_in_which_shows_the_probes_can_tell(curve_mesh, ctx):
    engine = curve_mesh.config.engine("e2")
    push, monitor = probe(ctx, zmq.PUSH, engine.commands, server_key(curve_mesh, "engine-e2"),
                          role_keys(curve_mesh, "gateway"))
    assert handshake(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    push.send(place("insider-1"), zmq.NOBLOCK)
    settle(curve_mesh)
    assert journaled(curve_mesh, "insider-1")


@pytest.mark.parametrize("who", ["a fresh key pair", "a user's key pair"])
def test_an_outsider_key_cannot_push_commands_into_an_engine(curve_mesh, ctx, who):
    keys = None if who == "a fresh key pair" else (zmq.curve_public(ALICE_SECRET), ALICE_SECRET)
    if keys:
        assert keys[0].decode() == curve_mesh.config.user("alice").curve_public_key
    engine = curve_mesh.config.engine("e2")
    push, monitor = probe(ctx, zmq.PUSH, engine.commands, server_key(curve_mesh, "engine-e2"), keys)
    assert handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    tag = f"outsider-{len(who)}"
    try_send(push, place(tag))
    settle(curve_mesh)
    assert not journaled(curve_mesh, tag)


def test_an_outsider_key_hears_nothing_from_the_journal_writers_feed(curve_mesh, ctx):
    sub, monitor = probe(ctx, zmq.SUB, curve_mesh.config.journal.watermarks, server_key(curve_mesh, "journal-writer"))
    assert handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    settle(curve_mesh)  # traffic meanwhile: watermarks, and the written batches passed on to the notifiers
    assert not sub.poll(1500)


@pytest.mark.parametrize("endpoint", ["commands", "replay", "watermarks", "events", "recovery"])
def test_a_plain_socket_cannot_connect_to_a_curve_mesh(curve_mesh, ctx, endpoint):
    config = curve_mesh.config
    address = {"commands": config.engine("e2").commands, "replay": config.engine("e2").replay,
               "watermarks": config.journal.watermarks, "events": config.journal.events,
               "recovery": config.journal.recovery}[endpoint]
    kind = {"commands": zmq.PUSH, "events": zmq.PUSH, "recovery": zmq.DEALER, "replay": zmq.DEALER}.get(
        endpoint, zmq.SUB)
    sock, monitor = probe(ctx, kind, address)
    assert handshake(monitor, 3) != zmq.EVENT_HANDSHAKE_SUCCEEDED
    if kind == zmq.DEALER:  # no epoch, and no book, for a stranger
        try_send(sock, encode(OpenEpoch("e2", 1) if endpoint == "recovery" else SnapshotRequest("AAPL")))
        assert not sock.poll(1500)
    elif kind == zmq.PUSH:
        try_send(sock, place("plain-1"))
        settle(curve_mesh)
        assert not journaled(curve_mesh, "plain-1")
    else:
        settle(curve_mesh)
        assert not sock.poll(1500)


def test_a_role_key_is_no_user_on_the_private_feed(curve_mesh, ctx):
    config = curve_mesh.config
    server = public_key(server_secret_key(config.notifier.secret_key_file))
    sub, monitor = probe(ctx, zmq.SUB, config.notifier.private, server, role_keys(curve_mesh, "gateway"))
    assert handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    alice, monitor = probe(ctx, zmq.SUB, config.notifier.private, server,
                           (zmq.curve_public(ALICE_SECRET), ALICE_SECRET))
    assert handshake(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED  # the same probe, with a user's key
