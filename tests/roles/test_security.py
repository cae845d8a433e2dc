"""Hostile clients against a real mesh (guarantees 5 and 6 of docs/architecture.md; docs/security.md).

Most tests share one mesh (``secure``): ZMQ order entry with CURVE keys, a 2-second idle timeout,
and user ``dave`` with small limits (2 sessions, 20 requests per second, cancel on disconnect
by default). Tests that exhaust something for everyone (connections, the login throttle of an
address, the fuzzing) get a mesh of their own. Every client has a timeout on every read.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import ExitStack, closing
from pathlib import Path

import msgspec
import pytest
import zmq
from click.testing import CliRunner

from exchange.testing import fuzz
from exchange.cli.main import cli
from exchange.client.order_entry import ZmqClient
from exchange.client.private_feed import PrivateFeed
from exchange.client.text import TextClient
from exchange.config import hash_key
from exchange.core.messages import OrderCanceled
from exchange.core.orders import CancelReason, Side
from exchange.errors import RejectCode
from exchange.journal.readers import decode_command
from exchange.gateway.protocol.messages import (
    Ack, Bye, CancelRequest, LoginOk, LoginRequest, PingRequest, PlaceRequest, Pong, Rej, State, StatusRequest,
)
from exchange.testing.mesh import Mesh, wait_until
from exchange.wire.security.curve_keys import public_key, server_secret_key
from exchange.journal.readers import wait_for_tables

SECRETS = {"alice": b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J", "bob": b"yLky.7YU5%BnZ[hh(K*6BU8R9FW22d7?iMdyyOJl"}
IDLE_S = 2
DAVE = (f"  - name: dave\n    key_hash: {hash_key('dave-key', n=2**10)}\n    max_sessions: 2\n    max_rate: 20\n"
        f"    cancel_on_disconnect: true\n")


def config(directory: Path, users: str = "", **gateway) -> Path:
    """configs/local.yaml on free loopback ports, with these gateway settings and extra users."""
    path = fuzz.fuzz_config(directory, users=0, secret_key_file=directory / "gateway.key", **gateway)
    path.write_text(path.read_text() + users)
    return path


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    with Mesh(config(tmp_path_factory.mktemp("secure"), DAVE, zmq_auth="curve", idle_timeout=IDLE_S)) as running:
        yield running


@pytest.fixture
def own_mesh(tmp_path):
    with ExitStack() as started:
        yield lambda **gateway: started.enter_context(Mesh(config(tmp_path, **gateway)))


def connect(mesh: Mesh, source: str | None = None) -> TextClient:
    """A text session, from another loopback address if ``source`` (so as not to share its throttle)."""
    return TextClient(mesh.host, mesh.port, timeout=10, source=source)


def pushed_lines(client: TextClient, count: int, timeout: float = 10) -> list[str]:
    """The next ``count`` pushed lines, PINGing meanwhile so that the session itself never idles out."""
    deadline = time.monotonic() + timeout
    while len(client.pushed) < count:
        assert time.monotonic() < deadline, f"only {list(client.pushed)} were pushed in {timeout} s"
        assert client.request("PING") == "PONG"
        time.sleep(0.3)
    return [client.pushed.popleft() for _ in range(count)]


def journal_rows(mesh: Mesh, sql: str, *args) -> list:
    wait_for_tables(mesh.config.journal.path)
    with closing(sqlite3.connect(mesh.config.journal.path)) as db:
        return db.execute(sql, args).fetchall()


def gateway_key(mesh: Mesh) -> bytes:
    """The gateway's public key, as `exchange keys gateway` prints it for clients."""
    result = CliRunner().invoke(cli, ["keys", "gateway", "--config", str(mesh.config_path)])
    assert result.exit_code == 0, result.output
    return result.output.strip().encode()


def keyed(mesh: Mesh, user: str, secret: bytes | None = None, timeout: float = 10) -> ZmqClient:
    secret = secret or SECRETS[user]
    return ZmqClient(mesh.config.gateway.zmq, timeout, (gateway_key(mesh), zmq.curve_public(secret), secret))


def closed_by_gateway(client: TextClient, timeout: float = 10) -> list[str]:
    """Every line until the gateway closes the connection."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines.append(client.read_line(timeout=max(0.1, deadline - time.monotonic())))
        except ConnectionError:
            return lines
        except OSError:  # reset: the gateway aborted the connection
            return lines
    raise AssertionError(f"the gateway did not close the connection; it sent {lines}")


# -- hostile input ------------------------------------------------------------------------------

def test_fuzzing_the_gateway_from_several_connections_hurts_nobody(tmp_path):
    """Tens of thousands of random, binary, truncated, oversized and almost-valid lines (seeded)."""
    path = fuzz.fuzz_config(tmp_path, users=3)
    with Mesh(path) as running:
        report = fuzz.run(path, running.role_pid("gateway"), lines_per_connection=10_000, seed=7,
                          users=3, anonymous=3, duration=60)
    print(report.summary())
    assert report.faults == [], report.summary()
    assert report.lines == 60_000 and report.honest_orders > 0


# -- who the user is ------------------------------------------------------------------------------

def test_a_zmq_client_is_the_user_of_its_curve_key_whatever_its_messages_say(secure):
    with keyed(secure, "bob") as bob, secure.login("alice") as alice:
        bob.sock.send(msgspec.msgpack.encode({"type": "PlaceRequest", "side": "BUY", "symbol": "AAPL", "qty": "1",
                                              "price": "1.00", "client_order_id": "zk1", "user": "alice"}))
        ack = bob.receive()
        assert isinstance(ack, Ack), ack
        bob.send(LoginRequest("alice", "alice-key"))
        assert bob.receive() == Rej(code=RejectCode.BAD_LOGIN, reason="this connection's key is bob's")
        bob.send(LoginRequest("bob", "", cancel_on_disconnect=False))
        assert bob.receive() == LoginOk("bob", False)
        bob.send(StatusRequest(client_order_id="zk1"))
        assert isinstance(bob.receive(), State)
        assert alice.request("STATUS #zk1").split()[2] == "NOT_YOUR_ORDER"
        assert journal_rows(secure, "SELECT user FROM commands WHERE client_order_id='zk1'") == [("bob",)]
        bob.send(CancelRequest(client_order_id="zk1"))
        assert bob.receive().status == "CANCELED"


def test_a_zmq_client_without_a_known_curve_key_gets_nothing_at_all(secure):
    stranger = keyed(secure, "bob", secret=zmq.curve_keypair()[1], timeout=2)
    plain = ZmqClient(secure.config.gateway.zmq, timeout=2)  # no CURVE: the handshake fails
    try:
        for client in (stranger, plain):
            for request in (PingRequest(), LoginRequest("alice", "alice-key")):
                try:
                    client.sock.send(msgspec.msgpack.encode(request), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # no connection to queue it on: the handshake failed
            with pytest.raises(TimeoutError):
                client.receive()
    finally:
        stranger.close()
        plain.close()
    assert journal_rows(secure, "SELECT COUNT(*) FROM commands WHERE user NOT IN ('alice', 'bob', 'carol',"
                                " 'dave')") == [(0,)]


def test_bob_cannot_touch_or_observe_alices_orders_in_any_way(secure):
    with secure.login("alice") as alice, secure.login("bob") as bob, keyed(secure, "bob") as zbob:
        order_id = alice.request("SELL AAPL 5 @ 150.00 #secret").split()[1]
        engine, number = order_id.split("-")
        missing = f"{engine}-{int(number) + 1000}"
        attempts = [f"CANCEL {order_id}", "CANCEL #secret", f"REPLACE {order_id} 1", "REPLACE #secret 1 @ 1",
                    f"REPLACE {order_id} 5 @ 150.01", f"STATUS {order_id}", "STATUS #secret"]
        for line in attempts:
            reply = bob.request(line)
            assert reply.split()[1:3] in (["NOT_YOUR_ORDER", "no"], ["#secret", "NOT_YOUR_ORDER"]), (line, reply)
            assert "alice" not in reply
            # the same answer as for an id that does not exist
            assert reply == bob.request(line.replace(order_id, missing)).replace(missing, order_id)
        assert bob.request("LOGIN alice alice-key").startswith("REJ ALREADY_LOGGED_IN")
        assert bob.request("CANCELALL") == bob.request("CANCELALL AAPL") == "OK CANCELALL 0"
        for request in (CancelRequest(order_id), StatusRequest(order_id), CancelRequest(client_order_id="secret")):
            zbob.send(request)
            reply = zbob.receive()
            assert isinstance(reply, Rej) and reply.code.value == "NOT_YOUR_ORDER", reply
        # his own order with her client order id is his own, and leaves hers alone
        assert bob.request("SELL AAPL 5 @ 150.00 #secret").startswith("ACK ")
        assert bob.request("CANCEL #secret").endswith("CANCELED")
        # her private feed refuses him
        server = public_key(server_secret_key(secure.config.notifier.secret_key_file))
        with PrivateFeed(secure.config.notifier.private, server, "alice", zmq.curve_public(SECRETS["bob"]),
                         SECRETS["bob"]) as feed:
            assert alice.request("REPLACE #secret 4").startswith("ACK ")
            with pytest.raises(TimeoutError):
                feed.receive(timeout=1)
        assert alice.request("STATUS #secret") == f"STATE {order_id} #secret NEW 0 4 SELL AAPL @ 150.00"
        assert not alice.pushed, list(alice.pushed)
        assert alice.request("CANCEL #secret").endswith("CANCELED")
    history = journal_rows(secure, "SELECT kind, user FROM events WHERE order_id=? ORDER BY seq", order_id)
    assert [kind for kind, user in history if user == "alice"] == ["OrderAccepted", "OrderReplaced", "OrderCanceled"]
    assert {kind for kind, user in history if user != "alice"} == {"OrderRejected"}  # bob's refused cancels


# -- limits ---------------------------------------------------------------------------------------

def test_a_session_over_its_rate_is_refused_rate_limited_and_stays_open(secure):
    with secure.login("dave", "KEEP_ON_DISCONNECT") as dave:
        dave.send_line(b"PING\n" * 60)
        replies = [dave.read_line() for _ in range(60)]
        assert replies[:20] == ["PONG"] * 20  # the bucket holds 20
        limited = [r for r in replies if r != "PONG"]
        assert len(limited) >= 35 and set(limited) == {
            "REJ RATE_LIMITED more than 20 requests per second; slow down"}
        def served() -> bool:  # the bucket refills: served again, same session
            reply = dave.request("PING")
            assert reply == "PONG" or reply.startswith("REJ RATE_LIMITED"), reply
            return reply == "PONG"

        wait_until(served, 10, "dave served again")


def test_a_user_has_at_most_max_sessions(secure):
    sessions = []

    def logged_in() -> bool:  # dave's sessions of the test before may take a moment to be seen closed
        client = connect(secure)
        if client.request("LOGIN dave dave-key").startswith("OK"):
            sessions.append(client)
            return True
        client.close()
        return False

    wait_until(logged_in, 5, "dave logged in")
    with sessions[0] as first, secure.login("dave") as second:
        with connect(secure) as third:
            assert third.request("LOGIN dave dave-key") == (
                "REJ MAX_SESSIONS user dave has 2 sessions, the most allowed; close one first")
        assert first.request("PING") == second.request("PING") == "PONG"


def test_failed_logins_are_slow_and_then_throttled(own_mesh):
    mesh = own_mesh(max_failed_logins=3, login_failure_delay=0.5)
    with connect(mesh, "127.0.0.2") as mallory:
        for _ in range(3):
            started = time.monotonic()
            mallory.send_line("LOGIN alice not-her-key\nPING")
            assert mallory.read_line() == "REJ BAD_LOGIN unknown user or wrong key"
            assert mallory.read_line() == "PONG"  # waited behind the LOGIN's answer
            assert time.monotonic() - started >= 0.5
        reply = mallory.request("LOGIN alice alice-key")  # even her real key, from this address
        assert reply.startswith("REJ LOGIN_THROTTLED too many failed logins for alice from this address;"
                                " try again in ")
        assert mallory.request("LOGIN bob bob-key") == "OK LOGIN bob"  # others behind the address are not
    with mesh.login("alice", source="127.0.0.3") as alice:  # nor is alice from elsewhere
        assert alice.request("PING") == "PONG"
    assert "not-her-key" not in mesh.log() + "".join(
        p.read_text(errors="replace") for p in Path(mesh.config.var_dir).glob("*.log"))


def test_a_connection_flood_is_refused_with_a_reason_and_nobody_else_notices(own_mesh):
    mesh = own_mesh(max_connections=20)
    alice = mesh.login("alice")
    flood = [connect(mesh) for _ in range(40)]
    try:
        refused, waiting = [], list(flood)
        deadline = time.monotonic() + 10
        while len(refused) < 21 and time.monotonic() < deadline:  # the refusals are written on connect
            for client in list(waiting):
                try:
                    refused.append(client.read_line(timeout=0.05))
                    waiting.remove(client)
                except TimeoutError:
                    pass
        for client in waiting:  # the other 19 were taken in: nothing to say to them
            with pytest.raises(TimeoutError):
                client.read_line(timeout=0.05)
        assert len(refused) == 21 and set(refused) == {
            "BYE MAX_CONNECTIONS the gateway has 20 connections, the most it takes; try again later"}
        assert alice.request("BUY AAPL 1 @ 1.00").startswith("ACK ")
    finally:
        for client in flood:
            client.close()
    deadline = time.monotonic() + 10
    while True:  # the gateway sees the closes soon after
        with connect(mesh) as again:
            try:
                if again.request("PING", timeout=2) == "PONG":
                    break
            except (TimeoutError, ConnectionError):
                pass
        assert time.monotonic() < deadline, "the gateway never took a connection again"
    alice.close()


# -- connections that misbehave -------------------------------------------------------------------

def test_idle_and_half_open_connections_are_closed_with_a_reason(secure):
    silent, partial = connect(secure), connect(secure)
    partial.sock.sendall(b"BUY AAPL 1 @")  # half a line, then nothing
    with secure.login("alice") as alive:
        for _ in range(3):
            time.sleep(IDLE_S / 2)
            assert alive.request("PING") == "PONG"
        bye = f"BYE IDLE_TIMEOUT no request in {IDLE_S} s; send PING to stay connected"
        assert closed_by_gateway(silent) == [bye]
        assert closed_by_gateway(partial) == [bye]
    silent.close()
    partial.close()


def test_a_client_that_sends_without_ever_reading_is_cut_off_and_slows_no_one(secure):
    hog = secure.login("carol")
    stopped: list[BaseException] = []

    def flood() -> None:
        line = b"STATUS #nothing-here-" + b"x" * 30 + b"\n"
        try:
            while True:
                hog.sock.sendall(line * 1000)
        except OSError as e:
            stopped.append(e)

    writer = threading.Thread(target=flood, daemon=True)
    hog.sock.settimeout(30)
    writer.start()
    try:
        with secure.login("bob") as bob:
            for _ in range(20):
                assert bob.request("PING", timeout=5) == "PONG"
                time.sleep(0.1)
        writer.join(20)
        assert stopped, "the gateway never cut off the client that does not read"
        assert not isinstance(stopped[0], TimeoutError), stopped
    finally:
        hog.close()


def test_a_session_that_asked_has_its_orders_canceled_when_it_ends_however_it_ends(secure):
    server = public_key(server_secret_key(secure.config.notifier.secret_key_file))
    with secure.login("alice") as staying, PrivateFeed(secure.config.notifier.private, server, "alice",
                                                         zmq.curve_public(SECRETS["alice"]), SECRETS["alice"]) as feed:
        closing_ = secure.login("alice", "CANCEL_ON_DISCONNECT")
        first = closing_.request("BUY AAPL 1 @ 2.00 #cod1").split()[1]
        second = closing_.request("BUY BTC-USD 0.1 @ 2.00 #cod2").split()[1]
        kept = staying.request("BUY AAPL 1 @ 2.00 #kept").split()[1]
        idle = secure.login("alice", "cancel_on_disconnect")
        third = idle.request("BUY AAPL 1 @ 2.01 #cod3").split()[1]
        closing_.close()  # the client closes; the idle one just stops talking
        outs = sorted(pushed_lines(staying, 3, timeout=IDLE_S + 8))
        assert outs == sorted([f"OUT {first} #cod1 CANCELED DISCONNECT", f"OUT {second} #cod2 CANCELED DISCONNECT",
                               f"OUT {third} #cod3 CANCELED DISCONNECT"])
        assert staying.request("STATUS #kept") == f"STATE {kept} #kept NEW 0 1 BUY AAPL @ 2.00"
        canceled = []
        deadline = time.monotonic() + 10
        while len(canceled) < 3 and time.monotonic() < deadline:
            canceled += [e.order_id for e in feed.receive().events
                         if isinstance(e, OrderCanceled) and e.reason is CancelReason.DISCONNECT]
        assert sorted(canceled) == sorted([first, second, third])
        assert staying.request("CANCEL #kept").endswith("CANCELED")
        idle.close()
    bodies = journal_rows(secure, "SELECT body FROM commands WHERE kind='CancelAll' AND user='alice'")
    narrowed = [decode_command(body) for (body,) in bodies]
    assert sorted(i for c in narrowed if c.reason is CancelReason.DISCONNECT for i in c.order_ids) == sorted(
        [first, second, third])


def test_a_zmq_session_that_goes_quiet_ends_and_its_orders_are_canceled(secure):
    with keyed(secure, "bob") as bob, secure.login("bob") as watching:
        bob.send(LoginRequest("bob", "", cancel_on_disconnect=True))
        assert bob.receive() == LoginOk("bob", True)
        bob.send(PlaceRequest(Side.BUY, "AAPL", "1", "3.00", client_order_id="zq1"))
        order_id = bob.receive().order_id
        assert pushed_lines(watching, 1, timeout=IDLE_S + 8) == [f"OUT {order_id} #zq1 CANCELED DISCONNECT"]
        assert bob.receive() == Bye(RejectCode.IDLE_TIMEOUT, f"no request in {IDLE_S} s; send PING to stay connected")
        bob.send(PingRequest())  # the connection is still there: a new session, logged in by its key again
        assert bob.receive() == Pong()
        bob.send(StatusRequest(client_order_id="zq1"))
        assert bob.receive().status == "CANCELED"
