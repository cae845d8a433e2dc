"""The web role's bounds, without a mesh (tests/web/standalone.py): what a browser may send, what
the role holds for a page and for the day's prices, and how many sessions it keeps."""

from __future__ import annotations

import asyncio
import json

import httpx
from websockets.asyncio.client import connect

from exchange.core.messages import DepthUpdate, Trade
from exchange.core.orders import Side
from exchange.web.hub import MAX_PENDING, Client
from exchange.web.markets import MarketView
from .standalone import (
    BTC, DEADLINE_S, MID, connect as connect_tcp, http_answer, make_hub, open_raw_socket, send_text, serving, until,
)


async def receive(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))


# -- what a page sends on its socket ------------------------------------------------------------


def test_deeply_nested_json_is_answered_with_an_error_and_the_socket_stays():
    async def scenario():
        async with serving() as (web, address, _):
            async with connect(f"ws://{address}/ws", proxy=None, open_timeout=DEADLINE_S) as ws:
                assert (await receive(ws))["type"] == "markets"
                await ws.send("[" * 3000)  # within the 4 KiB a message may have
                assert await receive(ws) == {
                    "type": "error",
                    "reason": 'a message is a JSON object {"type": "subscribe" or "resync", "symbol": SYMBOL}'}
                await ws.send(json.dumps({"type": "subscribe", "symbol": "BTC-USD"}))
                assert (await receive(ws))["type"] == "snapshot"

    asyncio.run(scenario())


# -- request bodies -----------------------------------------------------------------------------


def login_head(address: str, framing: str) -> bytes:
    """An anonymous sign-in's request line and headers (the CSRF cookie and header agree)."""
    return (f"POST /api/login HTTP/1.1\r\nHost: {address}\r\nCookie: csrf=x\r\nX-CSRF-Token: x\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n").encode()


def test_a_body_said_to_be_too_large_is_refused_before_it_is_read():
    async def scenario():
        async with serving() as (web, address, _):
            sock = await connect_tcp(address)
            try:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, login_head(address, f"Content-Length: {300 << 20}\r\n"))
                await loop.sock_sendall(sock, b" " * 65536)  # and nothing more of the 300 MB
                answer = await http_answer(sock)
            finally:
                sock.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head.lower()
            assert json.loads(body)["error"] == {
                "code": "TOO_LARGE", "reason": "the body is larger than 4096 bytes, the most a request here takes"}

    asyncio.run(scenario())


def test_a_body_of_no_said_length_is_refused_once_it_is_too_large():
    async def scenario():
        async with serving() as (web, address, _):
            sock = await connect_tcp(address)
            try:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, login_head(address, "Transfer-Encoding: chunked\r\n"))
                for _ in range(5):  # 5 KiB, and the body does not end
                    await loop.sock_sendall(sock, b"400\r\n" + b" " * 1024 + b"\r\n")
                answer = await http_answer(sock)
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 413 ")

    asyncio.run(scenario())


# -- what the role keeps of the day's prices ----------------------------------------------------

S = 1_000_000_000


def trade(seq: int, at_s: float, price: int) -> Trade:
    return Trade(seq, int(at_s * S), "BTC-USD", f"1-{seq}", price, 1, Side.BUY)


def test_the_day_forgets_what_is_older_than_a_day_with_nobody_watching():
    view = MarketView(BTC, 50)
    view.load([], [], None, [])
    for n in range(3 * 1440):  # three days of a trade a minute; no page asks for the instrument list
        view.apply([trade(n + 1, n * 60, 100 + n)])
    first, last = 100 + 2 * 1440, 100 + 3 * 1440 - 1  # the prices of the day's first and last minutes
    assert view.summary((3 * 1440 - 1) * 60 * S)["change_24h"] == f"{(last - first) * 100 / first:+.2f}"
    sparse = MarketView(BTC, 50)
    sparse.load([], [], None, [])
    for n in range(9):  # a trade every 8 hours for three days: too few for a bound by count to forget any
        sparse.apply([trade(n + 1, n * 8 * 3600, 100 + n)])
    assert [minute // (3600 * S) for minute, _, _ in sparse.day] == [48, 56, 64]  # the last day's only


def test_the_day_keeps_one_entry_a_minute_whatever_the_volume():
    view = MarketView(BTC, 50)
    view.load([], [], None, [trade(1, 0, 200)])  # the notifier's recent trades count as well
    seq = 1
    for second in range(600):  # ten minutes, 50 trades a second
        view.apply([trade(seq + n + 1, second + n / 50, 100 if second < 599 else 150) for n in range(50)])
        seq += 50
    assert len(view.day) <= 11
    assert view.summary(600 * S)["change_24h"] == "-25.00"  # from the day's first price to its last


# -- what the role holds for a page -------------------------------------------------------------

RESYNC = json.dumps({"type": "resync", "symbol": "BTC-USD"})


def test_a_page_that_stopped_reading_and_asks_for_snapshots_is_held_to_one(monkeypatch):
    taken = []  # the subscribes and resyncs the role has taken
    follow = Client.follow
    monkeypatch.setattr(Client, "follow", lambda client, symbol: taken.append(symbol) or follow(client, symbol))
    handed = []  # the snapshots handed to the socket's writer (held until the page reads them)
    next_batch = Client.next_batch

    async def counting(client):
        batch = await next_batch(client)
        handed.extend(text for text in batch if text.startswith('{"type":"snapshot"'))
        return batch

    monkeypatch.setattr(Client, "next_batch", counting)

    async def scenario():
        async with serving(make_hub(levels=1000), max_rate=10_000, max_burst=10_000) as (web, address, _):
            sock = await open_raw_socket(address)  # reads nothing after the handshake
            try:
                for _ in range(MAX_PENDING + 50):
                    await send_text(sock, RESYNC)
                await until(lambda: len(taken) == MAX_PENDING + 50, "every resync taken")
                [client] = web.hub.clients
                assert not client.pending and len(handed) < 50, (
                    f"{len(handed)} snapshots handed out to one page that reads nothing")
            finally:
                sock.close()

    asyncio.run(scenario())


def test_pages_asking_for_the_same_snapshot_share_one_build(monkeypatch):
    async def scenario():
        hub = make_hub()
        builds = []
        snapshot = MarketView.snapshot
        monkeypatch.setattr(MarketView, "snapshot", lambda view: builds.append(view.seq) or snapshot(view))
        clients = [Client(hub) for _ in range(20)]
        for client in clients:
            client.follow("BTC-USD")
            client.follow("BTC-USD")  # and a resync before it was sent the first
        batches = [await asyncio.wait_for(client.next_batch(), DEADLINE_S) for client in clients]
        assert all(len(batch) == 1 and json.loads(batch[0])["type"] == "snapshot" for batch in batches)
        assert len(builds) == 1
        hub.clients.update(clients)
        hub.deliver("BTC-USD", "synced", ([(MID - 1, 5)], [], None, []))  # the role's own feed re-synced
        batches = [await asyncio.wait_for(client.next_batch(), DEADLINE_S) for client in clients]
        assert all(len(batch) == 1 and json.loads(batch[0])["bids"] == [["42999.99", "0.0005"]] for batch in batches)
        assert len(builds) == 2

    asyncio.run(scenario())


def test_an_update_is_made_into_json_once_for_every_page_that_follows_it(monkeypatch):
    import exchange.web.hub as hub_module

    async def scenario():
        hub = make_hub()
        clients = [Client(hub) for _ in range(20)]
        for client in clients:
            client.follow("BTC-USD")
            await asyncio.wait_for(client.next_batch(), DEADLINE_S)  # the snapshot
        hub.clients.update(clients)
        made = []
        dumps = hub_module.dumps
        monkeypatch.setattr(hub_module, "dumps", lambda message: made.append(message["type"]) or dumps(message))
        hub.deliver("BTC-USD", "events", [depth_update(1)])
        batches = [await asyncio.wait_for(client.next_batch(), DEADLINE_S) for client in clients]
        assert all(len(batch) == 1 and json.loads(batch[0])["type"] == "update" for batch in batches)
        assert made == ["update"]

    asyncio.run(scenario())


def depth_update(n: int) -> DepthUpdate:
    return DepthUpdate(n, 0, "BTC-USD", Side.BUY, MID - 1, n + 1)


def test_a_page_that_fell_behind_still_gets_its_account_its_sign_out_and_the_instrument_list():
    async def scenario():
        hub = make_hub()
        client = Client(hub)
        hub.clients.add(client)
        client.send(hub.summaries())
        client.follow("BTC-USD")
        await asyncio.wait_for(client.next_batch(), DEADLINE_S)
        client.send({"type": "account", "user": "alice", "orders": [], "fills": [], "balances": []})
        client.send(hub.summaries())
        for n in range(MAX_PENDING + 1):  # a burst on the market while the page's connection is slow
            hub.deliver("BTC-USD", "events", [depth_update(n)])
        client.send({"type": "account", "user": "alice", "orders": [], "fills": [{"order_id": "1-1"}], "balances": []})
        client.send({"type": "signed_out", "reason": "the session ended; sign in again"})
        sent = [json.loads(text) for text in await asyncio.wait_for(client.next_batch(), DEADLINE_S)]
        assert [m["type"] for m in sent] == ["markets", "account", "signed_out", "snapshot"]
        assert sent[1]["fills"] == [{"order_id": "1-1"}]  # the newest account
        assert sent[3]["seq"] == hub.markets["BTC-USD"].seq

    asyncio.run(scenario())


# -- signed-in browsers -------------------------------------------------------------------------


async def sign_in(browser: httpx.AsyncClient, user: str, key: str | None = None) -> httpx.Response:
    csrf = (await browser.get("/api/session")).json()["csrf"]
    return await browser.post("/api/login", json={"user": user, "key": key or f"{user}-key"},
                              headers={"X-CSRF-Token": csrf})


def test_a_refused_sign_in_leaves_the_browsers_session_as_it_was(monkeypatch):
    from exchange.gateway.protocol.messages import LoginRequest, Rej, RejectCode
    from exchange.wire.messages import encode

    from . import standalone

    answer = standalone.FakeGateway.answer

    async def refusing(self, ident, request):  # the gateway refuses a wrong key
        if isinstance(request, LoginRequest) and request.key == "wrong":
            await self.sock.send_multipart([ident, encode(Rej(RejectCode.BAD_LOGIN, "bad user or key"))])
            return
        await answer(self, ident, request)

    monkeypatch.setattr(standalone.FakeGateway, "answer", refusing)

    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                assert (await sign_in(browser, "alice")).status_code == 200
                assert (await sign_in(browser, "bob", key="wrong")).status_code == 401  # a typo in another tab
                still = await browser.get("/api/account")
                assert still.status_code == 200 and still.json()["user"] == "alice", still.text

    asyncio.run(scenario())


def test_two_sign_ins_at_once_from_one_browser_leave_it_one_session():
    async def scenario():
        async with serving(hold_logins=True, max_sessions=10, max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                first = asyncio.create_task(sign_in(browser, "alice"))
                await until(lambda: gateway.logins_waiting == 1, "the first sign-in at the gateway")
                gateway.logins_open.set()
                assert (await first).status_code == 200
                gateway.logins_open.clear()
                csrf = browser.cookies["csrf"]
                clicks = [asyncio.create_task(browser.post(  # a double click
                    "/api/login", json={"user": "alice", "key": "alice-key"}, headers={"X-CSRF-Token": csrf}))
                    for _ in range(2)]
                await until(lambda: gateway.logins_waiting == 2, "both sign-ins at the gateway at once")
                gateway.logins_open.set()
                answers = await asyncio.gather(*clicks)
                assert [a.status_code for a in answers] == [200, 200]
                assert len(web.sessions.by_token) == 1 and len(web.sessions.by_browser) <= 2

    asyncio.run(scenario())


def test_sign_ins_at_the_same_time_do_not_exceed_max_sessions():
    async def scenario():
        async with serving(hold_logins=True, max_sessions=2, max_logins=100) as (web, address, gateway):
            browsers = [httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) for _ in range(6)]
            try:
                tasks = [asyncio.create_task(sign_in(b, f"user{n}")) for n, b in enumerate(browsers)]
                # every sign-in either waits at the gateway or is answered, all at the same time
                await until(lambda: gateway.logins_waiting + sum(t.done() for t in tasks) == 6, "every sign-in")
                assert gateway.logins_waiting == 2  # the places held while they sign in count
                gateway.logins_open.set()
                answers = await asyncio.gather(*tasks)
            finally:
                for browser in browsers:
                    await browser.aclose()
            assert sorted(a.status_code for a in answers) == [200, 200, 503, 503, 503, 503]
            assert {a.json()["error"]["code"] for a in answers if a.status_code == 503} == {"MAX_SESSIONS"}
            assert len(web.sessions.by_token) == 2
            await until(lambda: len(gateway.sessions) == 2, "the gateway holding two sessions")

    asyncio.run(scenario())


def test_signing_in_again_ends_the_browsers_session_and_its_gateway_session():
    async def scenario():
        async with serving(max_sessions=1, max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                assert (await sign_in(browser, "alice")).status_code == 200
                first = browser.cookies["session"]
                again = await sign_in(browser, "bob")  # its place is the only one: it is freed for this
                assert again.status_code == 200, again.text
                assert browser.cookies["session"] != first
                assert (await browser.get("/api/account")).json()["user"] == "bob"
            assert list(web.sessions.by_token) == [browser.cookies["session"]]
            await until(lambda: len(gateway.sessions) == 1, "the first gateway session ended")

    asyncio.run(scenario())
