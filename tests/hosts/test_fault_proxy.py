"""The fault-injecting proxy itself, in front of a plain TCP echo server: it forwards, delays,
drops, partitions and heals, holds a bounded amount of data, and stops cleanly."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from exchange.testing.fault_proxy import FaultProxy
from exchange.testing.mesh import wait_until

TIMEOUT_S = 10.0


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo():
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


@pytest.fixture
def proxy(echo):
    with FaultProxy(echo) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = TIMEOUT_S) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def echoed(sock: socket.socket, data: bytes, timeout: float = TIMEOUT_S) -> bytes:
    """Send ``data`` and read until as many bytes came back (or the peer closed, or ``timeout``)."""
    sock.settimeout(timeout)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def is_cut(sock: socket.socket) -> bool:
    """Whether the connection is closed or reset by the other end (waits up to TIMEOUT_S)."""
    sock.settimeout(TIMEOUT_S)
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def works(proxy: FaultProxy) -> bool:
    """Whether a fresh connection through the proxy echoes."""
    try:
        with connect(proxy, timeout=2) as sock:
            return echoed(sock, b"ping", timeout=2) == b"ping"
    except OSError:  # refused or reset: socket.timeout is one too
        return False


def test_it_forwards_both_ways_byte_for_byte(proxy):
    payload = bytes(range(256)) * 4096  # 1 MiB, more than the proxy's buffer of one connection
    with connect(proxy) as sock:
        assert echoed(sock, payload) == payload
    assert proxy.endpoint == f"tcp://127.0.0.1:{proxy.port}"


def test_an_added_delay_holds_every_chunk_at_least_that_long_then_it_is_gone(proxy):
    with connect(proxy) as sock:
        assert echoed(sock, b"warm") == b"warm"
        proxy.delay(0.4)
        started = time.monotonic()
        assert echoed(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.8  # a lower bound only: both directions held 0.4 s
        proxy.delay(0)
        assert echoed(sock, b"again") == b"again"


def test_a_drop_cuts_current_connections_and_new_ones_work(proxy):
    with connect(proxy) as first, connect(proxy) as second:
        assert echoed(first, b"a") == b"a" and echoed(second, b"b") == b"b"
        proxy.drop()
        assert is_cut(first) and is_cut(second)
    assert works(proxy)


def test_a_partition_cuts_and_refuses_until_it_heals_by_itself(proxy):
    with connect(proxy) as before:
        assert echoed(before, b"a") == b"a"
        proxy.partition(1.0)
        assert proxy.partitioned
        assert is_cut(before)
        with connect(proxy) as during:  # accepted, then reset: the target never sees it
            assert is_cut(during)
    wait_until(lambda: not proxy.partitioned, TIMEOUT_S, "the partition's end")
    assert works(proxy)


def test_a_stalled_partition_keeps_the_connection_and_delivers_everything_after_healing(proxy):
    with connect(proxy) as sock:
        assert echoed(sock, b"a") == b"a"
        proxy.partition(stall=True)
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(16)  # nothing comes back while stalled
        with connect(proxy) as newcomer:  # a new connection is silent too
            newcomer.settimeout(0.5)
            newcomer.sendall(b"?")
            with pytest.raises(socket.timeout):
                newcomer.recv(16)
        proxy.heal()
        sock.settimeout(TIMEOUT_S)
        got = b""
        while len(got) < 4:
            got += sock.recv(16)
        assert got == b"held"
        assert echoed(sock, b"after") == b"after"


def test_a_stalled_link_holds_a_bounded_amount_and_the_sender_is_held_back(echo):
    with FaultProxy(echo, chunk_size=4096, max_chunks=4) as proxy, connect(proxy) as sock:
        proxy.partition(stall=True)
        sock.setblocking(False)
        sent, block = 0, b"z" * 65536
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                sent += sock.send(block)
            except BlockingIOError:
                break  # the kernel's buffers and the proxy's 16 KiB are full
        else:
            pytest.fail(f"the proxy took {sent} bytes without holding the sender back")
        assert sent < 64 * 1024 * 1024


def test_a_target_that_is_down_shows_as_a_cut_connection():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        target = placeholder.getsockname()  # nothing listens on it
        with FaultProxy(target) as proxy, connect(proxy) as sock:
            assert is_cut(sock)


def test_close_resets_connections_stops_listening_and_ends_its_thread(echo):
    proxy = FaultProxy(echo).start()
    sock = connect(proxy)
    assert echoed(sock, b"a") == b"a"
    proxy.close()
    assert is_cut(sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT_S)
    assert not proxy.running
