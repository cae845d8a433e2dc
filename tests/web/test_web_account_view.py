"""What a page shows of its account, and of the markets, when the gateway, the notifier or the clock
do what they may: a busy ledger shard, a session ended while the page's socket was down, a sign-in
refused with another code, an order of another of the user's sessions, the 24 h change ageing out,
the first notifier down. In process (the role's own classes, the standalone app beside a fake
gateway, ZMQ sockets on loopback), each within its time limit."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect as connect_async

from exchange.core.messages import Trade
from exchange.core.orders import SelfTradePrevention, Side
from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    AccountBalances, BalanceRequest, Fill, LoginRequest, Orders, OrdersRequest, Rej, State, StatusRequest,
)
from exchange.testing.mesh import free_ports
from exchange.web import hub as hub_module
from exchange.web import sessions
from exchange.web.feeds import FeedThread, fetch_instruments
from exchange.web.hub import Client, Hub
from exchange.web.markets import MarketView
from exchange.web.sessions import TokenBucket, WebSession
from exchange.wire.messages import (
    Decoder, InstrumentSpec, Instruments, InstrumentsRequest, NotifierRequest, Trades, TradesRequest, encode,
)
from . import standalone
from .standalone import DEADLINE_S, serving
from .test_web_session_end import next_of_type, sign_in
from .test_web_views import BTC, S, trade

pytestmark = pytest.mark.timeout(60)

USD = [{"asset": "USD", "available": "100.00", "held": "0.00"}]


class ScriptedGateway:
    """A gateway session answering each kind of request from its list, in turn."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.asked: list = []

    async def request(self, request):
        self.asked.append(request)
        return self.answers[type(request)].pop(0)


def answering(monkeypatch, kind: type, reply) -> None:
    """The fake gateway answers a request of ``kind`` with ``reply(gateway)``, or as it would if that is None."""
    original = standalone.FakeGateway.answer

    async def answer(self, ident, request):
        made = reply(self) if isinstance(request, kind) else None
        if made is None:
            await original(self, ident, request)
        else:
            await self.sock.send_multipart([ident, encode(made)])

    monkeypatch.setattr(standalone.FakeGateway, "answer", answer)


def resting(order_id: str, symbol: str = "ETH-USD", side: Side = Side.SELL) -> State:
    return State(order_id, "", "NEW", "0", "1", side, symbol, "1500.00")


# -- balances: only accounts off is "off" ----------------------------------------------------------

@pytest.mark.parametrize("refusal", [Rej(RejectCode.BUSY, "ledger shard 1 is busy; try again"),
                                     Rej(RejectCode.UNAVAILABLE, "ledger shard 1 does not answer")])
def test_a_busy_ledger_shard_keeps_the_balances_shown_marked_as_maybe_out_of_date(refusal):
    async def run():
        gateway = ScriptedGateway({OrdersRequest: [Orders([], 0)] * 3,
                                   BalanceRequest: [AccountBalances([("USD", "100.00", "0.00")]), refusal,
                                                    AccountBalances([("USD", "90.00", "10.00")])]})
        session = WebSession("alice", gateway, TokenBucket(10, 10))
        await session.refresh()
        assert session.account()["balances"] == USD and session.account()["stale"] is None
        await session.refresh()  # the shard is busy this time: not "accounts are off"
        assert session.account()["balances"] == USD
        assert session.account()["stale"] == f"{refusal.code.value}: {refusal.reason}"
        await session.refresh()  # it answers again
        assert session.account()["balances"] == [{"asset": "USD", "available": "90.00", "held": "10.00"}]
        assert session.account()["stale"] is None
    asyncio.run(run())


def test_only_the_gateways_not_allowed_says_accounts_are_off():
    async def run():
        gateway = ScriptedGateway({OrdersRequest: [Orders([], 0)],
                                   BalanceRequest: [Rej(RejectCode.NOT_ALLOWED, "accounts are off")]})
        session = WebSession("alice", gateway, TokenBucket(10, 10))
        await session.refresh()
        assert session.account()["balances"] is None and session.account()["stale"] is None
    asyncio.run(run())


def test_balances_the_gateway_did_not_give_are_asked_for_again(monkeypatch):
    """A BUSY balance answer is asked again (every second) until the gateway gives the balances."""
    busy = Rej(RejectCode.BUSY, "ledger shard 1 is busy; try again")

    def balances(gateway):
        gateway.balance_asks = getattr(gateway, "balance_asks", 0) + 1
        return busy if gateway.balance_asks == 1 else None  # the sign-in's is refused

    answering(monkeypatch, BalanceRequest, balances)

    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                assert (await sign_in(browser, "alice")).status_code == 200
                first = (await browser.get("/api/account")).json()
                assert first["balances"] == [] and first["stale"].startswith("BUSY"), first
                await standalone.until(lambda: getattr(gateway, "balance_asks", 0) >= 2, "balances asked again")
                await standalone.until(lambda: next(iter(web.sessions.by_token.values())).stale is None,
                                       "the refresh answered")
                assert (await browser.get("/api/account")).json()["balances"] == USD

    asyncio.run(scenario())


# -- a page reconnecting after its session ended ----------------------------------------------------

def test_a_page_reconnecting_with_the_cookie_of_an_ended_session_hears_signed_out():
    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                assert (await sign_in(browser, "alice")).status_code == 200
                cookie = {"Cookie": f"session={browser.cookies['session']}"}
                # the session ends (expired, or the gateway ended it) while the page's socket is down
                web.sessions.remove(next(iter(web.sessions.by_token.values())))
                async with connect_async(f"ws://{address}/ws", additional_headers=cookie, proxy=None,
                                         open_timeout=DEADLINE_S) as ws:
                    assert (await next_of_type(ws, "signed_out"))["reason"] == "the session ended; sign in again"
                # a page with no session cookie (never signed in) is not told it was signed out
                async with connect_async(f"ws://{address}/ws", proxy=None, open_timeout=DEADLINE_S) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))
                    assert first["type"] == "markets"
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.5)

    asyncio.run(scenario())


# -- a refused sign-in's status -----------------------------------------------------------------------

@pytest.mark.parametrize("code, status", [(RejectCode.MALFORMED, 400), (RejectCode.MAX_SESSIONS, 503),
                                          (RejectCode.BAD_LOGIN, 401), (RejectCode.LOGIN_THROTTLED, 429)])
def test_a_sign_in_the_gateway_refuses_has_the_documented_status(monkeypatch, code, status):
    answering(monkeypatch, LoginRequest, lambda gateway: Rej(code, "refused"))

    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                answer = await sign_in(browser, "alice")
                assert answer.status_code == status, answer.text
                assert answer.json()["error"] == {"code": code.value, "reason": "refused"}

    asyncio.run(scenario())


# -- the orders of the user's other sessions ----------------------------------------------------------

def test_an_order_another_session_placed_shows_within_a_keep_alive(monkeypatch):
    """Nothing this browser did or was pushed says so: the refresh at each keep-alive shows it."""
    monkeypatch.setattr(sessions, "PING_EVERY_S", 0.2)  # the session's loop looks every second

    answering(monkeypatch, OrdersRequest,
              lambda gateway: Orders([resting("1-42")], 1) if getattr(gateway, "placed_elsewhere", False) else None)

    async def scenario():
        async with serving(max_logins=100) as (web, address, gateway):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                assert (await sign_in(browser, "alice")).status_code == 200
                cookie = {"Cookie": f"session={browser.cookies['session']}"}
                async with connect_async(f"ws://{address}/ws", additional_headers=cookie, proxy=None,
                                         open_timeout=DEADLINE_S) as ws:
                    assert (await next_of_type(ws, "account"))["orders"] == []
                    gateway.placed_elsewhere = True  # alice's text client placed 1-42
                    shown = await next_of_type(ws, "account")
                    assert [o["order_id"] for o in shown["orders"]] == ["1-42"]

    asyncio.run(scenario())


def test_a_fill_of_an_order_another_session_placed_is_named_by_its_status():
    """An IOC of alice's text client filled at once: never open, so the STATUS of it names the fill."""
    async def run():
        gateway = ScriptedGateway({OrdersRequest: [Orders([], 0)],
                                   StatusRequest: [resting("1-7")],
                                   BalanceRequest: [AccountBalances([("USD", "100.00", "0.00")])]})
        session = WebSession("alice", gateway, TokenBucket(10, 10))
        session.on_push(Fill("1-7", "", "1", "1500.00", "0", "1-3"))
        assert session.dirty.is_set()
        await session.refresh()
        fill = session.account()["fills"][0]
        assert (fill["order_id"], fill["symbol"], fill["side"]) == ("1-7", "ETH-USD", "SELL"), fill
        assert [r.order_id for r in gateway.asked if isinstance(r, StatusRequest)] == ["1-7"]
    asyncio.run(run())


def test_a_fill_of_an_order_another_session_placed_is_named_by_the_open_orders():
    async def run():
        gateway = ScriptedGateway({OrdersRequest: [Orders([resting("1-8", side=Side.BUY)], 1)],
                                   BalanceRequest: [AccountBalances([("USD", "100.00", "0.00")])]})
        session = WebSession("alice", gateway, TokenBucket(10, 10))
        session.on_push(Fill("1-8", "", "1", "1500.00", "1", "1-4"))
        await session.refresh()
        fill = session.account()["fills"][0]
        assert (fill["symbol"], fill["side"]) == ("ETH-USD", "BUY"), fill
        assert not any(isinstance(r, StatusRequest) for r in gateway.asked)
    asyncio.run(run())


# -- the instrument list as the day moves on ----------------------------------------------------------

class Clock:
    def __init__(self, ns: int):
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns


def test_an_open_page_sees_the_24h_change_age_out_with_no_trade(monkeypatch):
    now = 100_000 * S
    clock = Clock(now)
    monkeypatch.setattr(hub_module, "time", clock)
    monkeypatch.setattr(hub_module, "SUMMARY_EVERY_S", 0.01)
    view = MarketView(BTC, tape_length=10)
    view.load([], [], None, [])
    view.apply([trade(now / S - 86_400 + 120, 100, 1, 1), trade(now / S - 3600, 110, 1, 2)])  # quiet since
    hub = Hub({"BTC-USD": view})

    async def run():
        client = Client(hub)
        hub.clients.add(client)
        task = asyncio.get_running_loop().create_task(hub.send_summaries())
        try:
            first = json.loads((await asyncio.wait_for(client.next_batch(), 2))[0])
            assert first["markets"][0]["change_24h"] == "+10.00"
            with pytest.raises(asyncio.TimeoutError):  # nothing changed: nothing sent again
                await asyncio.wait_for(client.next_batch(), 0.2)
            clock.ns = now + 5 * 60 * S  # five minutes later the 100 trade is more than a day old
            shown = json.loads((await asyncio.wait_for(client.next_batch(), 2))[0])
            assert shown["markets"][0]["change_24h"] == "+0.00" == hub.summaries()["markets"][0]["change_24h"]
        finally:
            task.cancel()

    asyncio.run(run())


# -- the first notifier down, a replica up ----------------------------------------------------------

class Replica:
    """A notifier replica's snapshot endpoint on loopback, answering TradesRequest and InstrumentsRequest."""

    def __init__(self, trades: list[Trade]):
        self.port = free_ports(1)[0]
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.router = zmq.Context.instance().socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind(self.endpoint)
        self.trades, self.stop = trades, threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        decoder = Decoder(NotifierRequest)
        while not self.stop.is_set():
            if self.router.poll(50):
                ident, frame = self.router.recv_multipart()
                request = decoder.decode(frame)
                if isinstance(request, TradesRequest):
                    reply = Trades(request.symbol, 1, 1, self.trades)
                elif isinstance(request, InstrumentsRequest):
                    reply = Instruments([InstrumentSpec("ETH-USD", "0.01", "0.0001", "0.0001", "1000", "1000000",
                                                                None, None, None, None,
                                                                SelfTradePrevention.CANCEL_NEWEST)])
                else:
                    continue
                self.router.send_multipart([ident, encode(reply)])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.router.close()


@pytest.fixture
def replica():
    now = time.time_ns()
    server = Replica([Trade(seq=7, ts_event=now - 10**9, symbol="ETH-USD", trade_id="1-1", price=200000, qty=1000,
                            taker_side=Side.BUY)])
    yield server
    server.close()


def test_recent_trades_come_from_a_live_replica_when_the_first_notifier_is_down(replica):
    dead = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    thread = FeedThread([], [dead, replica.endpoint], "ETH-USD", None, None, None)
    assert [t.trade_id for t in thread._recent_trades()] == ["1-1"]
    started = time.monotonic()  # the one the book came from is asked first
    assert [t.trade_id for t in thread._recent_trades(1)] == ["1-1"]
    assert time.monotonic() - started < 1.0


def test_the_instrument_list_comes_from_a_live_replica_when_the_first_notifier_is_down(replica):
    dead = f"tcp://127.0.0.1:{free_ports(1)[0]}"

    async def run():
        ctx = zmq.asyncio.Context()
        try:
            return await asyncio.wait_for(fetch_instruments(ctx, [dead, replica.endpoint],
                                                           SimpleNamespace(requested=False), 0.2), 10)
        finally:
            ctx.destroy(linger=0)

    assert [i.symbol for i in asyncio.run(run())] == ["ETH-USD"]
