"""The web role as the gateway's front end, against a real mesh with the gateway's default settings
(ZMQ clients prove who they are with CURVE keys): browsers sign in all the same, a browser that
signs out or expires ends its gateway session at once, and the gateway throttles failed sign-ins
by each browser's own address, which it believes from the web role only.

The gateway's side is seen through what the gateway does: bob and carol may have one session each
(a second one is refused MAX_SESSIONS while the first lasts), and bob's orders are canceled when
his session ends (his ``cancel_on_disconnect``).
"""

from __future__ import annotations

import pytest

from exchange.client.order_entry import ZmqClient
from exchange.config import load_config
from exchange.gateway.protocol.messages import LoginOk, LoginRequest, Rej
from exchange.testing.mesh import Mesh, login, wait_until
from exchange.wire.security.curve_keys import public_key, server_secret_key
from .conftest import Browser, WebMesh, web_mesh_config

EXPIRY_S = 3
ALICE_SECRET = b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J"  # the demo's (docs/market-data.md)
ALICE_PUBLIC = b"A%OPA(0>$F&sAZ-4aRiHaF1]8-OG}CaKzcYCpXjZ"


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    path = web_mesh_config(tmp_path_factory.mktemp("front"), session_expiry=EXPIRY_S, trusted_proxies="[127.0.0.1]",
                           gateway={"login_failure_delay": 0, "max_failed_logins": 2},
                           users={"bob": {"max_sessions": 1, "cancel_on_disconnect": "true"},
                                  "carol": {"max_sessions": 1}})
    assert load_config(path).gateway.zmq_auth == "curve"
    with Mesh(path) as mesh:
        yield WebMesh(mesh, path)


def text_login(web: WebMesh, user: str) -> str:
    """What a text LOGIN of ``user`` gets now ("OK LOGIN …" or the refusal), closing the session again."""
    try:
        client = login(web.mesh.host, web.mesh.port, user)
    except RuntimeError as e:
        return str(e)
    client.close()
    return f"OK LOGIN {user}"


def from_address(web: WebMesh, address: str) -> Browser:
    """A browser behind the trusted proxy (127.0.0.1), which says it is at ``address``."""
    browser = Browser(web.base_url)
    browser.headers["X-Forwarded-For"] = address
    return browser


def test_a_browser_signs_in_and_trades_with_the_gateways_default_settings(front):
    alice = front.browser("alice")
    response = alice.place(side="BUY", symbol="AAPL", qty="1", price="150.00")
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "Ack"
    order_id = response.json()["order_id"]
    wait_until(lambda: order_id in {o["order_id"] for o in alice.get("/api/account").json()["orders"]},
               what="alice's order among her open orders")
    assert alice.send_json("DELETE", f"/api/orders/{order_id}").json()["status"] == "CANCELED"


def test_signing_out_ends_the_gateway_session_at_once(front):
    bob = front.browser("bob")
    assert text_login(front, "bob").startswith("login as bob failed: REJ MAX_SESSIONS")  # his one session
    response = bob.place(side="BUY", symbol="AAPL", qty="2", price="151.00")
    assert response.status_code == 200, response.text
    order_id = response.json()["order_id"]
    assert bob.send_json("POST", "/api/logout").status_code == 200
    # the gateway has dropped the session before the sign-out was answered: bob may log in elsewhere now
    assert text_login(front, "bob") == "OK LOGIN bob"
    with login(front.mesh.host, front.mesh.port, "bob", "KEEP_ON_DISCONNECT") as status:
        # and it ended as a session ends: his cancel on disconnect canceled the order
        wait_until(lambda: status.request(f"STATUS {order_id}").startswith(f"STATE {order_id} CANCELED"),
                   what="bob's order canceled when his session ended")


def test_a_text_session_that_logs_out_is_answered_and_closed(front):
    with login(front.mesh.host, front.mesh.port, "alice") as client:
        client.send_line("LOGOUT")
        client.send_line("PING")  # after LOGOUT: not answered
        assert client.read_line() == "OK LOGOUT alice"
        with pytest.raises(ConnectionError):
            client.read_line()


def test_an_expired_browser_session_ends_its_gateway_session(front):
    carol = front.browser("carol")
    assert text_login(front, "carol").startswith("login as carol failed: REJ MAX_SESSIONS")
    # carol's page stays silent: after EXPIRY_S the web role ends her session, and the gateway's with it
    wait_until(lambda: text_login(front, "carol") == "OK LOGIN carol", timeout=EXPIRY_S + 15,
               what="carol's gateway session ending with her browser's")
    assert carol.get("/api/account").status_code == 401


def test_failed_sign_ins_are_throttled_by_each_browsers_own_address(front):
    typist, other = from_address(front, "203.0.113.7"), from_address(front, "198.51.100.20")
    for _ in range(2):  # the gateway's max_failed_logins for one name from one address
        assert typist.sign_in("alice", "wrong").json()["error"]["code"] == "BAD_LOGIN"
    refused = typist.sign_in("alice")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "LOGIN_THROTTLED"
    assert "for alice from this address" in refused.json()["error"]["reason"]
    assert other.sign_in("alice").status_code == 200  # someone else, elsewhere, is not locked out


def test_only_the_proxys_own_hop_of_x_forwarded_for_is_believed(front):
    """A browser may write anything into X-Forwarded-For; the trusted proxy appends where it really is."""
    for _ in range(2):
        assert from_address(front, "192.0.2.50, 203.0.113.99").sign_in("alice", "wrong").status_code == 401
    assert from_address(front, "192.0.2.50, 203.0.113.99").sign_in("alice").json()["error"]["code"] == (
        "LOGIN_THROTTLED")
    assert from_address(front, "192.0.2.50, 203.0.113.98").sign_in("alice").status_code == 200


def test_an_ordinary_zmq_client_cannot_say_where_it_logs_in_from(front):
    server = public_key(server_secret_key(front.config.gateway.secret_key_file))
    with ZmqClient(front.config.gateway.zmq, curve_keys=(server, ALICE_PUBLIC, ALICE_SECRET)) as client:
        client.send(LoginRequest("alice", "alice-key", address="203.0.113.1"))
        reply = client.receive()
        assert isinstance(reply, Rej) and reply.code.value == "NOT_ALLOWED"
        assert reply.reason == "only a front end of the gateway may say where a LOGIN comes from; leave `address` out"
        client.send(LoginRequest("alice", "alice-key"))
        assert isinstance(client.receive(), LoginOk)
