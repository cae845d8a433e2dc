"""A signed-in page's account beside the user's other clients (the text protocol) and a slow ledger
shard, on a real mesh: what the in-process tests (test_web_account_view) show, end to end."""

from __future__ import annotations

import os
import signal

import pytest

from exchange.testing.mesh import login, wait_until

pytestmark = pytest.mark.timeout(240)


def account(browser) -> dict:
    response = browser.get("/api/account")
    assert response.status_code == 200, response.text
    return response.json()


def text_session(web, user: str):
    host, port = web.config.gateway.text.rsplit(":", 1)
    return login(host, int(port), user)


def test_a_fill_of_an_order_placed_from_another_client_names_its_symbol_and_side(web):
    alice_web, bob = web.browser("alice"), web.browser("bob")
    assert bob.place(side="BUY", symbol="ETH-USD", qty="1", price="1500.00").status_code == 200
    with text_session(web, "alice") as alice_text:
        ack = alice_text.request("SELL ETH-USD 1 @ 1500.00 IOC")
        assert ack.startswith("ACK"), ack
        order = ack.split()[1]
    wait_until(lambda: any(f["order_id"] == order and f["symbol"] for f in account(alice_web)["fills"]),
               what="alice's fill on the web, named")
    fill = next(f for f in account(alice_web)["fills"] if f["order_id"] == order)
    assert (fill["symbol"], fill["side"]) == ("ETH-USD", "SELL"), fill


def test_orders_placed_and_canceled_from_another_client_show_within_a_keep_alive(web):
    """Open orders are the user's, whichever session placed them: the role asks again every 10 s."""
    alice_web = web.browser("alice")
    with text_session(web, "alice") as alice_text:
        ack = alice_text.request("BUY ETH-USD 1 @ 1001.00")
        assert ack.startswith("ACK"), ack
        order = ack.split()[1]
        try:
            wait_until(lambda: any(o["order_id"] == order for o in account(alice_web)["orders"]), 13,
                       f"order {order}, placed by alice's text client, in the web's open orders")
        finally:
            assert alice_text.request(f"CANCEL {order}").startswith("OUT")
    wait_until(lambda: not any(o["order_id"] == order for o in account(alice_web)["orders"]), 13,
               f"order {order}, canceled from alice's text client, gone from the web's open orders")


def test_a_sign_in_the_gateway_finds_malformed_is_a_400(web):
    response = web.browser().sign_in("alice smith", "k")  # 1..32 characters: the web role lets it through
    assert response.json()["error"]["code"] == "MALFORMED"
    assert response.status_code == 400, f"{response.status_code} {response.text}"


def test_balances_are_not_shown_as_accounts_off_while_the_ledger_shard_is_slow(web):
    first = account(web.browser("alice"))
    assert first["balances"] and first["stale"] is None, first
    pids = [pid for label, pid in web.mesh.pids().items() if label.startswith("ledger")]
    assert pids, web.mesh.pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # the shards are slow (paused), not gone
    try:
        alice = web.browser("alice")  # signing in asks ORDERS and BALANCE; BALANCE is not answered in time
        shown = account(alice)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert shown["balances"] is not None and shown["stale"], shown  # not "accounts are off": maybe out of date
    wait_until(lambda: account(alice)["stale"] is None and account(alice)["balances"], timeout=30,
               what="the balances once the shard answers again")
