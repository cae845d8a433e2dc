"""A browser's session ends when its gateway session is gone: a gateway that restarted has no login
for the web role's DEALER (which reconnects to it by itself) and answers everything but a PING
``NOT_LOGGED_IN``. The web role then ends the browser's session as after a ``Bye``: its place is
free, its pages get ``signed_out`` and the request is answered 401 ``NOT_LOGGED_IN``, as any request
of a browser that is not signed in. An idle page learns it within one keep-alive.

First without a mesh (tests/web/standalone.py, its fake gateway made to forget its sessions), then
with a real gateway killed and restarted by the launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal

import httpx
import msgspec
import pytest
import zmq
from websockets.asyncio.client import connect as connect_async

from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    AnyReply, LoginOk, LoginRequest, LogoutOk, LogoutRequest, PingRequest, Rej,
)
from exchange.testing.mesh import Mesh, wait_for_mesh, wait_until
from exchange.web import sessions
from exchange.web.gateway_session import KEEP_ALIVE
from exchange.wire.messages import encode
from . import standalone
from .conftest import WebMesh, web_mesh_config
from .standalone import DEADLINE_S, serving
from .test_web_socket import open_socket, receive_until

NOT_LOGGED_IN = {"code": "NOT_LOGGED_IN", "reason": "the session ended; sign in again"}


@pytest.fixture
def forgetful_gateway(monkeypatch):
    """The fake gateway, which forgets every session when a test sets its ``forgot`` (as a gateway
    that restarted): then it answers a PING, a LOGIN and a LOGOUT as before, anything else
    NOT_LOGGED_IN, as the real one answers a session that has not logged in."""
    answer = standalone.FakeGateway.answer

    async def forgetful(self, ident, request):
        if getattr(self, "forgot", False) and not isinstance(request, (PingRequest, LoginRequest, LogoutRequest)):
            self.refused = getattr(self, "refused", 0) + 1
            await self.sock.send_multipart([ident, encode(Rej(RejectCode.NOT_LOGGED_IN,
                                                              "log in first: LOGIN <user> <key>"))])
            return
        await answer(self, ident, request)

    monkeypatch.setattr(standalone.FakeGateway, "answer", forgetful)


async def sign_in(browser: httpx.AsyncClient, user: str) -> httpx.Response:
    csrf = (await browser.get("/api/session")).json()["csrf"]
    return await browser.post("/api/login", json={"user": user, "key": f"{user}-key"},
                              headers={"X-CSRF-Token": csrf})


@contextlib.asynccontextmanager
async def page_of(browser: httpx.AsyncClient, address: str, user: str):
    """``user`` signed in on ``browser``, and the WebSocket of their page, once it has their account."""
    assert (await sign_in(browser, user)).status_code == 200
    cookie = {"Cookie": f"session={browser.cookies['session']}"}
    async with connect_async(f"ws://{address}/ws", additional_headers=cookie, proxy=None,
                             open_timeout=DEADLINE_S) as ws:
        assert (await next_of_type(ws, "account"))["user"] == user
        yield ws


async def next_of_type(ws, kind: str) -> dict:
    """The first message of type ``kind`` on ``ws`` (others skipped), within DEADLINE_S."""
    async def read():
        while (message := json.loads(await ws.recv()))["type"] != kind:
            pass
        return message

    return await asyncio.wait_for(read(), DEADLINE_S)


def test_a_request_the_gateway_answers_not_logged_in_ends_the_browsers_session(forgetful_gateway):
    async def scenario():
        async with serving(max_sessions=1, max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                async with page_of(browser, address, "alice") as ws:
                    gateway.forgot = True
                    csrf = browser.cookies["csrf"]
                    answer = await browser.post("/api/orders", headers={"X-CSRF-Token": csrf}, json={
                        "side": "BUY", "symbol": "BTC-USD", "qty": "1", "type": "limit", "price": "43000.00"})
                    assert answer.status_code == 401 and answer.json() == {"error": NOT_LOGGED_IN}, answer.text
                    assert (await next_of_type(ws, "signed_out"))["reason"] == "the session ended; sign in again"
                assert (await browser.get("/api/session")).json()["user"] is None
                assert (await browser.get("/api/account")).status_code == 401
                assert not web.sessions.by_token
                gateway.forgot = False
                # its place is free again: with max_sessions 1, signing in again is not MAX_SESSIONS
                again = await sign_in(browser, "alice")
                assert again.status_code == 200, again.text

    asyncio.run(scenario())


def test_an_idle_page_learns_within_one_keep_alive_that_the_gateway_forgot_its_session(forgetful_gateway,
                                                                                        monkeypatch):
    monkeypatch.setattr(sessions, "PING_EVERY_S", 0.2)  # the session's loop looks every second

    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                async with page_of(browser, address, "alice") as ws:
                    gateway.forgot = True  # and the page only listens
                    assert (await next_of_type(ws, "signed_out"))["reason"] == "the session ended; sign in again"
                assert gateway.refused == 1  # the keep-alive, which needs a login where a PING does not
                assert not web.sessions.by_token
                assert (await browser.get("/api/session")).json()["user"] is None

    asyncio.run(scenario())


def front_end_answers(endpoint: str, requests: list) -> list:
    """The gateway's answers to ``requests``, sent one by one on one session of its front end endpoint
    (as the web role's DEALER sends them)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        decoder = msgspec.msgpack.Decoder(AnyReply)
        answers = []
        for request in requests:
            sock.send(encode(request))
            assert sock.poll(DEADLINE_S * 1000), f"no answer to {request} in {DEADLINE_S} s"
            answers.append(decoder.decode(sock.recv()))
        return answers
    finally:
        sock.close()
        ctx.term()


def test_after_the_gateway_restarts_the_browser_is_signed_out_and_can_sign_in_again(tmp_path):
    # a long login timeout: the restarted gateway does not end the role's DEALER's new, anonymous session
    # on its own (with a Bye), so only the role can see that the session it kept is gone
    path = web_mesh_config(tmp_path, gateway={"zmq_login_timeout": 60})
    with Mesh(path) as mesh:
        web = WebMesh(mesh, path)
        # what the role's keep-alive relies on: without a login the gateway answers it NOT_LOGGED_IN (a PING
        # it answers Pong), with one NOT_YOUR_ORDER (it names no order), which ends nothing
        before, login, after, logout = front_end_answers(mesh.config.gateway.front_end, [
            KEEP_ALIVE, LoginRequest("carol", "carol-key"), KEEP_ALIVE, LogoutRequest()])
        assert isinstance(before, Rej) and before.code is RejectCode.NOT_LOGGED_IN, before
        assert isinstance(login, LoginOk), login
        assert isinstance(after, Rej) and after.code is RejectCode.NOT_YOUR_ORDER, after
        assert isinstance(logout, LogoutOk), logout
        alice, bob = web.browser("alice"), web.browser("bob")
        first = alice.place(side="BUY", symbol="BTC-USD", qty="1", price="30000.00")
        assert first.status_code == 200 and first.json()["type"] == "Ack", first.text
        with open_socket(web, cookies=dict(alice.cookies)) as ws:
            assert receive_until(ws, lambda m: m["type"] == "account")["user"] == "alice"
            old = mesh.role_pid("gateway")
            os.kill(old, signal.SIGKILL)  # the launcher restarts it
            wait_until(lambda: mesh.role_pid("gateway") != old, timeout=30, what="the gateway restarted")
            wait_for_mesh(mesh.config, timeout=30)
            answer = alice.place(side="BUY", symbol="BTC-USD", qty="1", price="30000.00")
            assert answer.status_code == 401 and answer.json() == {"error": NOT_LOGGED_IN}, answer.text
            assert receive_until(ws, lambda m: m["type"] == "signed_out")["reason"] == (
                "the session ended; sign in again")
        assert alice.get("/api/session").json()["user"] is None
        # bob's page sent nothing: the role's keep-alive finds out (within its 10 s, or the 15 s a request
        # lost with the old gateway waits for its answer)
        wait_until(lambda: bob.get("/api/session").json()["user"] is None, timeout=sessions.PING_EVERY_S + 20,
                   what="bob's session ended by the keep-alive")
        assert alice.sign_in("alice").status_code == 200
        again = alice.place(side="BUY", symbol="BTC-USD", qty="1", price="30000.00")
        assert again.status_code == 200 and again.json()["type"] == "Ack", again.text
