"""The web role's WebSocket against a real mesh: the instrument list, a followed instrument's
snapshot and numbered updates, re-syncs, the signed-in user's account, and bad messages."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def open_socket(web, cookies: dict | None = None, origin: str | None = None):
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())} if cookies else None
    return connect(web.ws_url, additional_headers=headers, origin=origin, proxy=None, open_timeout=10)


def receive_until(ws, predicate, timeout: float = 15.0) -> dict:
    """The first message for which ``predicate`` holds (others are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = json.loads(ws.recv(timeout=left))
        if predicate(message):
            return message
    raise TimeoutError("no such message in time")


def of_type(kind: str, symbol: str | None = None):
    return lambda m: m["type"] == kind and (symbol is None or m.get("symbol") == symbol)


def test_a_socket_gets_the_instrument_list_first(web):
    with open_socket(web) as ws:
        first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "markets"
    assert [m["symbol"] for m in first["markets"]] == ["BTC-USD", "ETH-USD", "AAPL"]


def test_following_an_instrument_gives_a_snapshot_then_updates_numbered_one_by_one(web):
    bob = web.browser("bob")
    with open_socket(web) as ws:
        ws.send(json.dumps({"type": "subscribe", "symbol": "BTC-USD"}))
        snapshot = receive_until(ws, of_type("snapshot", "BTC-USD"))
        assert snapshot["state"] == "live" and snapshot["tick_size"] == "0.01"
        order = bob.place(side="SELL", symbol="BTC-USD", qty="0.25", price="50000.00").json()["order_id"]
        update = receive_until(ws, of_type("update", "BTC-USD"))
        assert update["seq"] == snapshot["seq"] + 1
        assert update["levels"] == [["SELL", "50000.00", "0.2500"]] and update["trades"] == []
        web.browser("alice").place(side="BUY", symbol="BTC-USD", qty="0.1", price="50000.00", tif="IOC")
        traded = receive_until(ws, lambda m: m["type"] == "update" and m["trades"])
        assert traded["seq"] == update["seq"] + 1
        assert traded["levels"] == [["SELL", "50000.00", "0.1500"]]
        [trade] = traded["trades"]
        assert (trade["price"], trade["qty"], trade["taker_side"]) == ("50000.00", "0.1000", "BUY")
        assert traded["candles"]["60"][1:] == ["50000.00", "50000.00", "50000.00", "50000.00", "0.1000"]
        ws.send(json.dumps({"type": "resync", "symbol": "BTC-USD"}))
        again = receive_until(ws, of_type("snapshot", "BTC-USD"))
        assert again["seq"] == traded["seq"]
        assert again["asks"][0] == ["50000.00", "0.1500"]
        assert again["trades"][0]["trade_id"] == trade["trade_id"]
        bob.send_json("DELETE", f"/api/orders/{order}")
        gone = receive_until(ws, of_type("update", "BTC-USD"))
        assert gone["levels"] == [["SELL", "50000.00", "0.0000"]]


def test_the_instrument_list_carries_the_last_price_and_change(web):
    alice, bob = web.browser("alice"), web.browser("bob")
    for price in ("180.00", "198.00"):
        bob.place(side="SELL", symbol="AAPL", qty="1", price=price)
        alice.place(side="BUY", symbol="AAPL", qty="1", price=price, tif="IOC")
    with open_socket(web) as ws:
        markets = receive_until(ws, lambda m: m["type"] == "markets" and next(
            x for x in m["markets"] if x["symbol"] == "AAPL")["last"] == "198.00")
    aapl = next(x for x in markets["markets"] if x["symbol"] == "AAPL")
    assert aapl["change_24h"] == "+10.00"


@pytest.mark.parametrize("sent, reason", [
    ("hello", 'a message is a JSON object {"type": "subscribe" or "resync", "symbol": SYMBOL}'),
    ('{"type": "subscribe"}', 'a message is a JSON object {"type": "subscribe" or "resync", "symbol": SYMBOL}'),
    ('{"type": "order", "symbol": "BTC-USD"}', "unknown type 'order'; types are subscribe, resync"),
    ('{"type": "subscribe", "symbol": "DOGE"}', "no instrument 'DOGE'; there are BTC-USD, ETH-USD, AAPL"),
])
def test_a_bad_message_gets_an_error_and_the_socket_stays(web, sent, reason):
    with open_socket(web) as ws:
        ws.send(sent)
        assert receive_until(ws, of_type("error"))["reason"] == reason
        ws.send(json.dumps({"type": "subscribe", "symbol": "ETH-USD"}))
        assert receive_until(ws, of_type("snapshot", "ETH-USD"))["symbol"] == "ETH-USD"


def test_a_socket_opened_from_another_sites_page_is_refused(web):
    with pytest.raises(InvalidStatus):
        open_socket(web, origin="http://evil.example")


def test_a_signed_in_socket_gets_its_own_account_and_nobody_elses(web):
    alice, bob = web.browser("alice"), web.browser("bob")
    with open_socket(web, {"session": alice.cookies["session"]}) as mine, open_socket(web) as anonymous:
        assert receive_until(mine, of_type("account"))["user"] == "alice"
        order = alice.place(side="BUY", symbol="ETH-USD", qty="1", price="55.00").json()["order_id"]
        listed = receive_until(mine, lambda m: m["type"] == "account" and any(o["order_id"] == order for o in m["orders"]))
        assert listed["user"] == "alice"
        bob.place(side="SELL", symbol="ETH-USD", qty="1", price="55.00", tif="IOC")
        filled = receive_until(mine, lambda m: m["type"] == "account" and any(f["order_id"] == order for f in m["fills"]))
        assert all(o["order_id"] != order for o in filled["orders"])
        anonymous.send(json.dumps({"type": "subscribe", "symbol": "ETH-USD"}))  # the trade: in its snapshot,
        receive_until(anonymous, lambda m: m["type"] in ("snapshot", "update") and m["trades"])  # or an update
        anonymous.send(json.dumps({"type": "resync", "symbol": "ETH-USD"}))
        seen = []
        receive_until(anonymous, lambda m: seen.append(m["type"]) or m["type"] == "snapshot")
        assert "account" not in seen
    with open_socket(web, {"session": "made-up"}) as forged:
        forged.send(json.dumps({"type": "resync", "symbol": "ETH-USD"}))
        seen = []
        receive_until(forged, lambda m: seen.append(m["type"]) or m["type"] == "snapshot")
        assert "account" not in seen


def test_a_message_over_4_kib_closes_the_socket(web):
    from websockets.exceptions import ConnectionClosed

    with open_socket(web) as ws:
        ws.send(json.dumps({"type": "subscribe", "symbol": "x" * 5000}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009  # message too big
