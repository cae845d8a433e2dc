"""The web role's own limits against a real mesh: sign-in attempts per address, requests per
session, and sessions that expire."""

from __future__ import annotations

import pytest

from exchange.testing.mesh import Mesh
from .conftest import WebMesh, web_mesh_config
from .test_web_socket import open_socket, receive_until


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    path = web_mesh_config(tmp_path_factory.mktemp("strict"), max_logins=3, max_rate=1, max_burst=3,
                           session_expiry=2, max_sessions=2)
    with Mesh(path) as mesh:
        yield WebMesh(mesh, path)


def test_a_silent_session_expires_and_a_busy_one_is_rate_limited(strict):
    idle = strict.browser("alice")
    busy = strict.browser("bob")
    assert strict.browser().sign_in("carol").json()["error"] == {
        "code": "MAX_SESSIONS", "reason": "2 browsers are signed in, the most this server takes; try again later"}
    codes = [busy.place(side="BUY", symbol="AAPL", qty="1", price="1.00").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    limited = busy.place(side="BUY", symbol="AAPL", qty="1", price="1.00")
    if limited.status_code == 429:
        assert limited.json()["error"] == {"code": "RATE_LIMITED", "reason": "more than 1 requests per second; slow down"}
    with open_socket(strict, {"session": idle.cookies["session"]}) as ws:  # listens, sends nothing
        assert receive_until(ws, lambda m: m["type"] == "signed_out")["reason"] == "the session ended; sign in again"
    assert idle.get("/api/account").status_code == 401
    assert idle.get("/api/session").json()["user"] is None


def test_sign_in_attempts_from_one_address_are_limited(strict):
    browser = strict.browser()
    answers = [browser.send_json("POST", "/api/login", {"user": "x"}).json()["error"]["code"] for _ in range(5)]
    assert "LOGIN_THROTTLED" in answers
    throttled = browser.send_json("POST", "/api/login", {"user": "alice", "key": "alice-key"}).json()["error"]
    assert throttled["code"] == "LOGIN_THROTTLED"
    assert throttled["reason"].startswith("too many sign-in attempts from this address; try again in ")


def test_a_page_sending_too_many_messages_is_told_to_slow_down(strict):
    with open_socket(strict) as ws:
        for _ in range(6):
            ws.send('{"type": "resync", "symbol": "AAPL"}')
        error = receive_until(ws, lambda m: m["type"] == "error")
    assert error["reason"] == "more than 1 messages per second; slow down"
