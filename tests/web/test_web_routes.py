"""Every HTTP route of the web role against a real mesh: what a page gets, what a bad request gets,
and that nobody sees or touches another user's orders or balances."""

from __future__ import annotations

import pytest

from exchange.testing.mesh import wait_until


def account(browser) -> dict:
    response = browser.get("/api/account")
    assert response.status_code == 200, response.text
    return response.json()


def open_orders(browser) -> dict[str, dict]:
    return {o["order_id"]: o for o in account(browser)["orders"]}


def balance(browser, asset: str) -> dict:
    return next(b for b in account(browser)["balances"] if b["asset"] == asset)


def test_the_page_and_its_files_come_with_security_headers(web):
    browser = web.browser()
    for path in ("/", "/static/app.js", "/static/app.css", "/api/markets"):
        response = browser.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/static/app.js">' in browser.get("/").text
    assert "http" not in browser.get("/").text.replace("http-equiv", "")  # nothing from another site


def test_the_market_list_names_every_instrument_the_notifier_has(web):
    markets = web.browser().get("/api/markets").json()["markets"]
    assert [m["symbol"] for m in markets] == ["BTC-USD", "ETH-USD", "AAPL"]
    assert all(set(m) == {"symbol", "last", "change_24h", "state"} for m in markets)


def test_an_unknown_instrument_or_route_is_a_clear_404(web):
    response = web.browser().get("/api/markets/DOGE-USD")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "UNKNOWN_SYMBOL",
                                        "reason": "no instrument 'DOGE-USD'; there are BTC-USD, ETH-USD, AAPL"}
    assert web.browser().get("/nothing-here").status_code == 404


def test_signing_in_needs_the_csrf_token_and_this_sites_origin(web):
    browser = web.browser()
    response = browser.post("/api/login", json={"user": "alice", "key": "alice-key"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "CSRF"
    response = browser.send_json("POST", "/api/login", {"user": "alice", "key": "alice-key"},
                                 headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "requests from another site's page are refused"
    assert browser.get("/api/session").json()["user"] is None


def test_a_wrong_key_is_refused_with_the_gateways_answer_and_no_session(web):
    browser = web.browser()
    response = browser.sign_in("alice", "not-alices-key")
    assert response.status_code == 401
    assert response.json()["error"] == {"code": "BAD_LOGIN", "reason": "unknown user or wrong key"}
    assert "session" not in browser.cookies
    assert browser.get("/api/account").status_code == 401


@pytest.mark.parametrize("body, reason", [
    ({"user": "alice"}, "Object missing required field `key`"),
    ({"user": "alice", "key": "k", "admin": True}, "Object contains unknown field `admin`"),
    ({"user": "", "key": "k"}, "Expected `str` of length >= 1 - at `$.user`"),
])
def test_a_malformed_sign_in_says_what_was_wrong(web, body, reason):
    response = web.browser().send_json("POST", "/api/login", body)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "MALFORMED", "reason": reason}


def test_routes_of_a_signed_in_user_refuse_anyone_else(web):
    browser = web.browser()
    assert browser.get("/api/account").json()["error"]["code"] == "NOT_LOGGED_IN"
    for method, path in (("POST", "/api/orders"), ("DELETE", "/api/orders/1-1"), ("POST", "/api/orders/1-1/replace"),
                         ("POST", "/api/logout")):
        response = browser.send_json(method, path, {"side": "BUY"} if method == "POST" else None)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "NOT_LOGGED_IN"


def test_a_resting_order_shows_in_my_orders_and_holds_my_balance(web):
    alice = web.browser("alice")
    assert alice.get("/api/session").json()["user"] == "alice"
    before = balance(alice, "USD")
    response = alice.place(side="BUY", symbol="ETH-USD", qty="2", price="100.00")
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["type"] == "Ack" and ack["qty"] == "2.000" and ack["price"] == "100.00" and ack["tif"] == "GTC"
    wait_until(lambda: ack["order_id"] in open_orders(alice), what="the order in alice's orders")
    order = open_orders(alice)[ack["order_id"]]
    assert (order["side"], order["symbol"], order["leaves_qty"], order["status"]) == ("BUY", "ETH-USD", "2.000", "NEW")
    wait_until(lambda: balance(alice, "USD")["held"] != before["held"], what="alice's USD held")
    assert balance(alice, "USD")["held"] == "200.050000"  # 2 at 100.00 and the taker fee it may pay (2.5 bps)
    assert alice.send_json("DELETE", f"/api/orders/{ack['order_id']}").json()["status"] == "CANCELED"
    wait_until(lambda: ack["order_id"] not in open_orders(alice), what="the canceled order gone")


@pytest.mark.parametrize("ticket, code, reason", [
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1"}, "MALFORMED", "a limit order needs a price"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1", "type": "market", "price": "10"}, "MALFORMED",
     "a market order has no price; leave price out or make it a limit order"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1", "price": "10", "post_only": True, "tif": "IOC"}, "MALFORMED",
     "a post-only order rests, so it cannot be IOC; leave tif at GTC"),
    ({"side": "UP", "symbol": "ETH-USD", "qty": "1", "price": "10"}, "MALFORMED",
     "Invalid enum value 'UP' - at `$.side`"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": 1, "price": "10"}, "MALFORMED", "Expected `str`, got `int` - at `$.qty`"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1", "price": "10.001"}, "BAD_PRICE",
     "price 10.001 is not a multiple of tick 0.01"),
    ({"side": "BUY", "symbol": "DOGE", "qty": "1", "price": "10"}, "UNKNOWN_SYMBOL",
     "no instrument DOGE; there are BTC-USD, ETH-USD, AAPL"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1", "type": "market", "tif": "GTC"}, "BAD_TIF",
     "a market order cannot be GTC; it is IOC or FOK"),
    ({"side": "BUY", "symbol": "ETH-USD", "qty": "1", "price": "10", "tif": "DAY"}, "MALFORMED",
     "Invalid enum value 'DAY' - at `$.tif`"),
])
def test_a_bad_ticket_gets_a_clear_error_inline(web, ticket, code, reason):
    alice = web.browser("alice")
    response = alice.place(**ticket)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": code, "reason": reason}


def test_a_body_that_is_not_json_is_malformed(web):
    alice = web.browser("alice")
    response = alice.post("/api/orders", content=b"BUY 1 ETH", headers={"X-CSRF-Token": alice.csrf})
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "MALFORMED", "reason": "the body is not JSON; send a JSON object"}


def test_a_post_only_order_that_would_cross_is_refused_by_the_engine(web):
    alice, bob = web.browser("alice"), web.browser("bob")
    rest = bob.place(side="SELL", symbol="AAPL", qty="5", price="150.00").json()
    response = alice.place(side="BUY", symbol="AAPL", qty="1", price="150.00", post_only=True)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "WOULD_CROSS"
    bob.send_json("DELETE", f"/api/orders/{rest['order_id']}")


def test_nobody_sees_or_touches_another_users_orders_or_balances(web):
    alice, bob = web.browser("alice"), web.browser("bob")
    order = alice.place(side="SELL", symbol="ETH-USD", qty="1", price="900.00").json()["order_id"]
    wait_until(lambda: order in open_orders(alice), what="alice's order listed")
    assert order not in open_orders(bob)
    response = bob.send_json("DELETE", f"/api/orders/{order}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "NOT_YOUR_ORDER"
    response = bob.send_json("POST", f"/api/orders/{order}/replace", {"qty": "0.5"})
    assert response.json()["error"]["code"] == "NOT_YOUR_ORDER"
    assert account(bob)["user"] == "bob" and all(o["order_id"] != order for o in account(bob)["orders"])
    # bob's cookie with alice's CSRF token, or the other way round, is refused
    response = bob.post("/api/orders", json={"side": "BUY"}, headers={"X-CSRF-Token": alice.csrf})
    assert response.status_code == 403
    assert order in open_orders(alice)
    alice.send_json("DELETE", f"/api/orders/{order}")


def test_replace_changes_my_order_and_cancel_ends_it(web):
    alice = web.browser("alice")
    order = alice.place(side="BUY", symbol="ETH-USD", qty="3", price="101.00").json()["order_id"]
    response = alice.send_json("POST", f"/api/orders/{order}/replace", {"qty": "2", "price": "102.00"})
    assert response.status_code == 200, response.text
    assert (response.json()["type"], response.json()["price"], response.json()["leaves_qty"]) == ("ReplaceAck", "102.00",
                                                                                                 "2.000")
    wait_until(lambda: open_orders(alice).get(order, {}).get("price") == "102.00", what="the replaced price listed")
    response = alice.send_json("POST", f"/api/orders/{order}/replace", {"qty": "two"})
    assert response.json()["error"]["code"] == "BAD_QTY"
    response = alice.send_json("DELETE", f"/api/orders/{order}")
    assert response.json() == {"type": "Out", "order_id": order, "client_order_id": "", "status": "CANCELED", "reason": ""}
    response = alice.send_json("DELETE", f"/api/orders/{order}")
    assert response.json()["error"]["code"] == "NOT_YOUR_ORDER"


def test_a_trade_shows_in_both_users_fills_and_balances(web):
    alice, bob = web.browser("alice"), web.browser("bob")
    before = balance(alice, "ETH")
    sell = alice.place(side="SELL", symbol="ETH-USD", qty="1.5", price="2000.00").json()["order_id"]
    buy = bob.place(side="BUY", symbol="ETH-USD", qty="1.5", price="2000.00", tif="IOC").json()["order_id"]
    wait_until(lambda: any(f["order_id"] == sell for f in account(alice)["fills"]), what="alice's fill")
    wait_until(lambda: any(f["order_id"] == buy for f in account(bob)["fills"]), what="bob's fill")
    fill = next(f for f in account(alice)["fills"] if f["order_id"] == sell)
    assert (fill["symbol"], fill["side"], fill["qty"], fill["price"], fill["leaves_qty"]) == (
        "ETH-USD", "SELL", "1.500", "2000.00", "0.000")
    assert all(f["order_id"] != sell for f in account(bob)["fills"])
    wait_until(lambda: balance(alice, "ETH")["available"] != before["available"] and balance(alice, "ETH")["held"]
               == before["held"], what="alice's ETH settled")
    assert float(before["available"]) - float(balance(alice, "ETH")["available"]) == pytest.approx(1.5)
    wait_until(lambda: web.browser().get("/api/markets/ETH-USD").json()["trades"], what="the trade on the tape")
    market = web.browser().get("/api/markets/ETH-USD").json()
    assert market["trades"][0]["price"] == "2000.00" and market["trades"][0]["qty"] == "1.500"
    assert market["candles"]["60"][-1][4] == "2000.00"


def test_signing_out_ends_the_session(web):
    alice = web.browser("alice")
    assert alice.send_json("POST", "/api/logout").status_code == 200
    assert alice.get("/api/account").status_code == 401
    assert alice.get("/api/session").json()["user"] is None


def test_the_launcher_starts_the_web_role_and_says_where_to_open_it(web):
    wait_until(lambda: "exchange is up" in web.mesh.log(), what="the launcher's banner")
    assert f"web page                {web.base_url}/   (open it in a browser)" in web.mesh.log()
