"""The web role's own app, hub and views without a mesh, for the tests of its limits: uvicorn serves
the app on a free 127.0.0.1 port inside the test's event loop (configured as exchange.web.role
does), beside a fake gateway (a ZMQ ROUTER on ipc:// in a temporary directory) that answers what
the role asks when a browser signs in. Also a raw WebSocket client, which can send and never read
(a page that stopped reading), and a raw HTTP request, which can send a body slowly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import struct
import tempfile
import time

import msgspec
import zmq
import zmq.asyncio

from exchange.config import WebConfig
from exchange.core.instruments import Instrument
from exchange.core.messages import Trade
from exchange.core.orders import Side
from exchange.gateway.protocol.messages import (
    AccountBalances, AnyRequest, BalanceRequest, LoginOk, LoginRequest, LogoutOk, LogoutRequest, Orders,
    OrdersRequest, PingRequest, Pong, Rej, RejectCode, StatusRequest,
)
from exchange.testing.mesh import free_ports
from exchange.web.app import Web, make_app
from exchange.web.connections import REQUEST_DEADLINE_S, make_server, max_connections
from exchange.web.hub import Hub
from exchange.web.markets import MarketView
from exchange.wire.messages import encode

MID = 4_300_000
BTC = Instrument("BTC-USD", "0.01", "0.0001")
DEADLINE_S = 20.0  # what a test waits at most for anything (a slow, busy machine)


def make_hub(levels: int = 20, trades: int = 20) -> Hub:
    """BTC-USD synced: ``levels`` a side around 43000.00 and ``trades`` a minute apart."""
    view = MarketView(BTC, 50)
    hub = Hub({"BTC-USD": view})
    history = [Trade(n, (1_700_000_000 + n * 60) * 10**9, "BTC-USD", f"1-{n}", MID + n % 100, 10, Side.BUY)
               for n in range(1, trades + 1)]
    hub.deliver("BTC-USD", "synced", ([(MID - n, 10) for n in range(1, levels + 1)],
                                      [(MID + n, 10) for n in range(1, levels + 1)], None, history))
    return hub


async def until(predicate, what: str, timeout: float = DEADLINE_S) -> None:
    """Until ``predicate()`` is true, polled on the loop; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.02)


class FakeGateway:
    """The gateway's front end endpoint: every login is LoginOk (with ``hold_logins``, only once the
    test sets ``logins_open``; ``logins_waiting`` counts those held); the account requests, pings, the
    role's keep-alive (a STATUS of no order) and logouts are answered; ``sessions`` are the DEALERs
    signed in now."""

    def __init__(self, ctx: zmq.asyncio.Context, directory: str, hold_logins: bool = False):
        self.endpoint = f"ipc://{directory}/front_end"
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(self.endpoint)
        self.logins_open = asyncio.Event()
        if not hold_logins:
            self.logins_open.set()
        self.logins_waiting = 0
        self.sessions: set[bytes] = set()
        self.decoder = msgspec.msgpack.Decoder(AnyRequest)
        self.answers: set[asyncio.Task] = set()
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            ident, frame = await self.sock.recv_multipart()
            task = asyncio.get_running_loop().create_task(self.answer(ident, self.decoder.decode(frame)))
            self.answers.add(task)
            task.add_done_callback(self.answers.discard)

    async def answer(self, ident: bytes, request) -> None:
        if isinstance(request, LoginRequest):
            self.logins_waiting += 1
            await self.logins_open.wait()
            self.logins_waiting -= 1
            self.sessions.add(ident)
            reply = LoginOk(request.user)
        elif isinstance(request, OrdersRequest):
            reply = Orders([], 0)
        elif isinstance(request, BalanceRequest):
            reply = AccountBalances([("USD", "100.00", "0.00")])
        elif isinstance(request, PingRequest):
            reply = Pong()
        elif isinstance(request, StatusRequest):
            reply = Rej(RejectCode.NOT_YOUR_ORDER, f"order {request.order_id} is not yours")
        elif isinstance(request, LogoutRequest):
            self.sessions.discard(ident)
            reply = LogoutOk()
        else:
            return
        await self.sock.send_multipart([ident, encode(reply)])

    def close(self) -> None:
        self.task.cancel()
        for task in self.answers:
            task.cancel()
        self.sock.close()


@contextlib.asynccontextmanager
async def serving(hub: Hub | None = None, hold_logins: bool = False, **web_options):
    """(web, "127.0.0.1:port", gateway) while uvicorn serves the app; everything closed afterwards."""
    async with serving_bounded(None, REQUEST_DEADLINE_S, hub, hold_logins, **web_options) as (web, address, gateway, _):
        yield web, address, gateway


@contextlib.asynccontextmanager
async def serving_bounded(most: int | None, request_deadline_s: float, hub: Hub | None = None,
                          hold_logins: bool = False, **web_options):
    """(web, "127.0.0.1:port", gateway, server) while the role's own server serves the app, with at most
    ``most`` connections (None: the role's cap) and this deadline for a whole request; everything
    closed afterwards."""
    hub = hub or make_hub()
    directory = tempfile.mkdtemp(prefix="web-test-")
    ctx = zmq.asyncio.Context()
    gateway = FakeGateway(ctx, directory, hold_logins)
    config = WebConfig(listen=f"127.0.0.1:{free_ports(1)[0]}", **web_options)
    web = Web(config, hub, ctx, gateway.endpoint)
    most = max_connections(config) if most is None else most
    server = make_server(make_app(web), config, most, request_deadline_s, log_level="warning")
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "the server listening")
        assert server.started, "the server did not start"
        yield web, config.listen, gateway, server
    finally:
        server.should_exit = server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        web.sessions.close()
        gateway.close()
        ctx.destroy(linger=0)
        shutil.rmtree(directory, ignore_errors=True)


async def connect(address: str) -> socket.socket:
    """A non-blocking TCP connection to ``address`` ("host:port")."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, int(port))), DEADLINE_S)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_raw_socket(address: str, receive_buffer: int = 4096) -> socket.socket:
    """A WebSocket to ``/ws`` that reads nothing past the handshake unless asked (a small receive
    buffer, so that the server soon cannot send it more)."""
    loop = asyncio.get_running_loop()
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), DEADLINE_S)
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (f"GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                                       f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:  # byte by byte: nothing past the handshake
            byte = await asyncio.wait_for(loop.sock_recv(sock, 1), DEADLINE_S)
            assert byte, f"the server closed during the handshake: {response!r}"
            response += byte
        assert response.startswith(b"HTTP/1.1 101"), response
    except BaseException:
        sock.close()
        raise
    return sock


def text_frame(text: str) -> bytes:
    """One masked WebSocket text frame (as a browser sends it)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def send_text(sock: socket.socket, text: str) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, text_frame(text))


async def http_answer(sock: socket.socket, timeout: float = DEADLINE_S) -> bytes:
    """What the server answered on ``sock`` (its status line and headers at least), b"" if it closed."""
    loop = asyncio.get_running_loop()
    answer = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in answer:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.0, deadline - time.monotonic()))
        if not chunk:
            break
        answer += chunk
    return answer
