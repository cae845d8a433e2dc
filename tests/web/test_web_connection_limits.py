"""The web role's connections, bounded (exchange/web/connections.py): a connection that has not sent
a whole request in time is closed, while a WebSocket and a request the role is working on are not;
a connection past the cap is closed at once; and one client opening connections and sending half a
request on each neither exhausts the role's file descriptors nor shuts other browsers out.

The server is uvicorn configured by ``connections.make_server``, as the role configures it, with
the app, hub and fake gateway of tests/web/standalone.py, and a deadline shorter than the role's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from exchange.config import WebConfig
from exchange.web.connections import max_connections
from .standalone import DEADLINE_S, connect as connect_tcp, serving_bounded, until

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
HALF_HEAD = b"GET /api/markets HTTP/1.1\r\nHost: x\r\n"  # and the blank line never comes


def bounded_serving(most: int, request_deadline_s: float, hold_logins: bool = False, **web_options):
    """(web, "127.0.0.1:port", gateway, server) while the role's server serves with these bounds."""
    return serving_bounded(most, request_deadline_s, hold_logins=hold_logins, **web_options)


async def closed(sock: socket.socket, timeout: float = DEADLINE_S) -> float:
    """When the server closed ``sock`` (time.monotonic()), having sent nothing on it."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), timeout)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"the server answered {data[:200]!r} instead of closing"
    return time.monotonic()


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor sent anything on it (without waiting)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


async def answer(sock: socket.socket) -> tuple[int, bytes, dict | str]:
    """The status, head and body (JSON, or else text) of the next answer on ``sock`` (with a Content-Length)."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), DEADLINE_S)
        assert chunk, f"the server closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(body) < length:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), DEADLINE_S)
        assert chunk, f"the server closed after {data + body!r}"
        body += chunk
    is_json = fields.get(b"content-type", b"").strip() == b"application/json"
    return int(head.split()[1]), head, json.loads(body) if is_json else body.decode(errors="replace")


def login(address: str, csrf: str = "x", body: bytes | None = None, length: int | None = None) -> bytes:
    """A sign-in request: the whole of it, or its head and ``body`` when ``length`` says it is longer."""
    body = body if body is not None else b'{"user": "alice", "key": "alice-key"}'
    return (f"POST /api/login HTTP/1.1\r\nHost: {address}\r\nCookie: csrf={csrf}\r\nX-CSRF-Token: {csrf}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length or len(body)}\r\n\r\n").encode() + body


def get(path: str, address: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode()


FIT = r"""
import resource
from exchange.config import WebConfig
from exchange.web.connections import fit_descriptor_limit
most = fit_descriptor_limit(WebConfig(listen="127.0.0.1:1", max_sockets=1000, max_sessions=200), 3)
print(most, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_descriptor_limit_is_raised_to_hold_the_cap_up_to_the_hard_limit():
    def fitted(soft: int, hard: int) -> tuple[int, int]:
        """(the cap, the soft limit after) in a process started with these descriptor limits."""
        out = subprocess.run([sys.executable, "-c", FIT], cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
        assert out.returncode == 0, out.stderr
        most, raised = map(int, out.stdout.split())
        return most, raised

    wanted = max_connections(WebConfig(listen="127.0.0.1:1", max_sockets=1000, max_sessions=200))
    assert wanted == 1000 + 200 + 100  # a page's WebSocket, a signed-in browser's requests, and headroom
    most, soft = fitted(1024, 8192)  # a usual soft limit is too low for the defaults: raised as far as needed
    assert most == wanted and 2 * wanted < soft < 8192
    most, soft = fitted(1024, 1024)  # cannot be raised: the cap is what fits beside everything else
    assert soft == 1024 and 0 < most < (1024 - 2 * 200) // 2


def test_a_connection_without_a_whole_request_in_time_is_closed_but_not_a_socket_or_a_request_in_hand():
    deadline_s = 1.0

    async def scenario():
        loop = asyncio.get_running_loop()
        async with bounded_serving(100, deadline_s, hold_logins=True) as (web, address, gateway, _):
            working = await connect_tcp(address)  # a whole sign-in, which the gateway holds for now
            late: list[socket.socket] = []  # then one sending nothing, one half a head, one half a body
            try:
                await loop.sock_sendall(working, login(address))
                await until(lambda: gateway.logins_waiting == 1, "the sign-in at the gateway")
                async with connect(f"ws://{address}/ws", proxy=None, open_timeout=DEADLINE_S) as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))["type"] == "markets"
                    accepted = time.monotonic()
                    for _ in range(3):
                        late.append(await connect_tcp(address))
                    await loop.sock_sendall(late[1], HALF_HEAD)
                    await loop.sock_sendall(late[2], login(address, body=b'{"user": "al', length=38))
                    for sock in late:
                        assert await closed(sock) - accepted >= deadline_s - 0.05
                    # past the deadline of every connection opened before them: the socket still serves
                    await ws.send(json.dumps({"type": "subscribe", "symbol": "BTC-USD"}))
                    while (message := json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S)))["type"] == "markets":
                        pass
                    assert (message["type"], message["symbol"]) == ("snapshot", "BTC-USD")
                gateway.logins_open.set()  # the sign-in the role was working on all along is answered
                status, _, body = await answer(working)
                assert (status, body["user"]) == (200, "alice")
                await loop.sock_sendall(working, get("/api/markets", address))  # and the next request, in time
                status, _, body = await answer(working)
                assert (status, body["type"]) == (200, "markets")
            finally:
                for sock in (working, *late):
                    sock.close()

    asyncio.run(scenario())


def test_a_connection_past_the_cap_is_closed_at_once_and_others_are_served_once_the_late_ones_go():
    most, deadline_s = 6, 2.0

    async def scenario():
        loop = asyncio.get_running_loop()
        async with bounded_serving(most, deadline_s) as (web, address, _, server):
            idle = [await connect_tcp(address) for _ in range(most)]
            extra = None
            try:
                await until(lambda: len(server.server_state.connections) == most, "every connection accepted")
                extra = await connect_tcp(address)
                with contextlib.suppress(OSError):  # it may be closed already
                    await loop.sock_sendall(extra, get("/api/markets", address))
                await closed(extra)
                assert all(still_open(sock) for sock in idle), "the cap closed a connection it had accepted"
                for sock in idle:
                    await closed(sock)  # at their deadline
                async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
                    assert (await client.get(f"http://{address}/api/markets")).status_code == 200
            finally:
                for sock in (*idle, extra):
                    if sock is not None:
                        sock.close()

    asyncio.run(scenario())


FDS = 256  # the server's descriptor limit in the next test, soft and hard: it cannot raise it

SERVER = r"""
import asyncio, sys
from exchange.config import WebConfig
from exchange.web.connections import fit_descriptor_limit
from tests.web.test_web_connection_limits import bounded_serving

async def main():
    settings = {"max_sessions": 10, "max_logins": 1000}
    most = fit_descriptor_limit(WebConfig(listen="127.0.0.1:1", **settings), 1)
    async with bounded_serving(most, float(sys.argv[1]), **settings) as (web, address, gateway, server):
        print(address, most, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FDS, FDS))


def test_one_client_with_half_sent_requests_neither_exhausts_descriptors_nor_shuts_browsers_out(tmp_path):
    deadline_s = 5.0  # longer than one client takes to open its connections (a second, when the queue is full)
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(deadline_s)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=log, preexec_fn=limit_descriptors, text=True)
    flood: list[socket.socket] = []
    browser = None
    try:
        ready, _, _ = select.select([server.stdout], [], [], DEADLINE_S)
        assert ready, "the server did not start"
        address, most = server.stdout.readline().split()
        assert 1 <= int(most) < FDS // 2, most  # what fits beside its own descriptors
        browser = socket.create_connection(address.rsplit(":", 1), timeout=DEADLINE_S)  # accepted first
        for _ in range(FDS + 50):  # one client: half a request on each connection, then nothing
            sock = socket.create_connection(address.rsplit(":", 1), timeout=DEADLINE_S)
            flood.append(sock)
            with contextlib.suppress(OSError):  # closed at once past the cap
                sock.sendall(HALF_HEAD)
        browser.sendall(login(address))  # signing in makes the role a ZMQ socket: descriptors are left for it
        status, _, body = asyncio.run(read_answer(browser))
        assert status == 200, (status, body, tail(log))
        assert body["user"] == "alice"
        asyncio.run(all_closed(flood))  # the cap's at once, the rest at their deadline
        assert httpx.get(f"http://{address}/api/markets", timeout=DEADLINE_S).status_code == 200, tail(log)
        assert server.poll() is None, tail(log)
    finally:
        for sock in (*flood, browser):
            if sock is not None:
                sock.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        log.close()


async def read_answer(sock: socket.socket) -> tuple[int, bytes, dict | str]:
    sock.setblocking(False)
    try:
        return await answer(sock)
    finally:
        sock.setblocking(True)
        sock.settimeout(DEADLINE_S)


async def all_closed(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.setblocking(False)
    await asyncio.gather(*(closed(sock) for sock in socks))


def tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-3000:]


def test_a_client_gone_in_the_middle_of_a_body_is_let_go_without_an_error(caplog):
    """Defect: a browser that went away (or was cut at the deadline) in the middle of a request's
    body made the app raise, and the log took a whole "Exception in ASGI application" traceback."""
    async def scenario():
        loop = asyncio.get_running_loop()
        async with bounded_serving(100, 30.0) as (_, address, _, server):
            sock = await connect_tcp(address)
            try:
                await loop.sock_sendall(sock, login(address, body=b'{"user": "al', length=38))
                await until(lambda: server.server_state.tasks, "the app reading the body")
            finally:
                sock.close()
            await until(lambda: not server.server_state.tasks and not server.server_state.connections,
                        "the request and its connection let go")

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
