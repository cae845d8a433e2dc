"""Hostile clients that never read their replies, against a real gateway process: its memory
stays bounded (docs/security.md, "Unanswered requests"). Every wait has a deadline."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from pathlib import Path

import msgspec
import zmq

from exchange.testing import fuzz
from exchange.client.text import TextClient
from exchange.core.orders import Side
from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    Ack, AnyReply, CancelRequest, PingRequest, PlaceRequest, Pong, Rej, StatusRequest,
)
from exchange.testing.mesh import Mesh, role_pid, wait_until
from test_security import SECRETS, gateway_key, journal_rows
from test_security import config as security_config
from exchange.wire.security.curve_keys import make_client

REPLIES = msgspec.msgpack.Decoder(AnyReply)

FLOOD_BYTES = 300_000  # blank lines; each is a request, answered REJ MALFORMED
MAX_GROWTH_MB = 16  # without the limit the gateway grows by ~85 MB (one reply slot per line)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make VmHWM (the peak resident size) start again from the current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def send_in_background(client: TextClient, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the gateway may stop reading it); a closed connection ends it."""
    def send() -> None:
        try:
            client.sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_flood_behind_a_slow_login_from_a_client_that_never_reads_keeps_memory_bounded(tmp_path):
    path = fuzz.fuzz_config(tmp_path, users=0, login_failure_delay=2, idle_timeout=2,
                                max_failed_logins=1)
    with Mesh(path) as mesh:
        pid = role_pid(mesh.log(), "gateway")
        with TextClient(mesh.host, mesh.port, timeout=10) as probe:
            # from now on alice's LOGINs are throttled: answered after the delay, with no scrypt
            # (16 MiB each, which would hide what the flood costs)
            assert probe.request("LOGIN alice wrong") == "REJ BAD_LOGIN unknown user or wrong key"
        before = status_kb(pid, "VmRSS")
        reset_peak(pid)
        mallory = TextClient(mesh.host, mesh.port, timeout=10)
        try:
            sender = send_in_background(mallory, b"LOGIN alice wrong\n" + b"\n" * FLOOD_BYTES)
            # the session ends: idle once the gateway stopped reading it, or cut off for not reading
            ends = ("idle for 2 s; closing it", "client does not read its replies")
            wait_until(lambda: any(text in mesh.log() for text in ends), 30, "the flooding session's end")
            grown_mb = (status_kb(pid, "VmHWM") - before) / 1024
            sender.join(10)
        finally:
            mallory.close()
        with TextClient(mesh.host, mesh.port, timeout=10) as honest:
            assert honest.request("PING") == "PONG"
    print(f"the gateway grew by {grown_mb:.1f} MB")
    assert grown_mb < MAX_GROWTH_MB, f"the gateway grew by {grown_mb:.0f} MB"


# -- who a ZMQ session is -------------------------------------------------------------------------

def dealer(mesh: Mesh, ctx: zmq.Context, routing_id: bytes | None = None, user: str | None = None) -> zmq.Socket:
    """A DEALER to the gateway, with this routing id and (CURVE) the key of ``user``."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    if user is not None:
        secret = SECRETS[user]
        make_client(sock, gateway_key(mesh), zmq.curve_public(secret), secret)
    sock.connect(mesh.config.gateway.zmq)
    return sock


def ask(sock: zmq.Socket, request, timeout: float = 5):
    sock.send(msgspec.msgpack.encode(request))
    if not sock.poll(int(timeout * 1000)):
        raise TimeoutError(f"no answer to {request} in {timeout} s")
    return REPLIES.decode(sock.recv())


def test_a_routing_id_reused_by_another_key_is_not_the_first_keys_session(tmp_path):
    path = security_config(tmp_path, zmq_auth="curve")
    routing_id = b"shared-id"
    ctx = zmq.Context()
    try:
        with Mesh(path) as mesh:
            alice = dealer(mesh, ctx, routing_id, "alice")
            placed = ask(alice, PlaceRequest(Side.BUY, "AAPL", "1", "1.00", client_order_id="rid1"))
            assert isinstance(placed, Ack), placed
            alice.close()  # gone; her session waits for idle_timeout (300 s)
            deadline = time.monotonic() + 20
            while True:  # the ROUTER refuses the routing id until it has seen alice's connection close
                bob = dealer(mesh, ctx, routing_id, "bob")
                try:
                    status = ask(bob, StatusRequest(client_order_id="rid1"), timeout=1)
                    break
                except TimeoutError:
                    bob.close()
                    assert time.monotonic() < deadline, "the gateway never answered the second connection"
            assert isinstance(status, Rej) and status.code is RejectCode.NOT_YOUR_ORDER, status
            assert ask(bob, CancelRequest(placed.order_id)).code is RejectCode.NOT_YOUR_ORDER
            mine = ask(bob, PlaceRequest(Side.BUY, "AAPL", "1", "1.00", client_order_id="rid2"))
            assert isinstance(mine, Ack), mine
            bob.close()
            assert journal_rows(mesh, "SELECT client_order_id, user FROM commands WHERE kind='PlaceOrder'"
                                      " ORDER BY rowid") == [("rid1", "alice"), ("rid2", "bob")]
    finally:
        ctx.destroy(linger=0)


def test_zmq_sessions_that_never_log_in_are_closed_within_seconds(tmp_path):
    path = security_config(tmp_path, zmq_auth="login", max_connections=10)
    ctx = zmq.Context()
    try:
        with Mesh(path) as mesh:
            squatters = [dealer(mesh, ctx) for _ in range(15)]
            for sock in squatters:  # one message each, then silence: each holds a session
                sock.send(msgspec.msgpack.encode(PingRequest()))
            def newcomer_served() -> bool:
                with closing(dealer(mesh, ctx)) as newcomer:
                    reply = ask(newcomer, PingRequest())
                assert reply == Pong() or reply.code is RejectCode.MAX_CONNECTIONS, reply
                return reply == Pong()

            wait_until(newcomer_served, 20, "a newcomer served (ZMQ sessions that never logged in gone)")
            for sock in squatters:
                sock.close()
    finally:
        ctx.destroy(linger=0)
