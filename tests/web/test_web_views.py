"""The web role's pure parts: candles from trades, an instrument's view and its numbered messages,
and a browser that falls behind getting a snapshot instead of what it missed."""

from __future__ import annotations

import asyncio
import json

from exchange.core.instruments import Instrument
from exchange.core.messages import DepthUpdate, TopOfBook, Trade
from exchange.core.orders import Side
from exchange.web.candles import Candles
from exchange.web.hub import MAX_PENDING, Client, Hub
from exchange.web.markets import MarketView

S = 1_000_000_000
BTC = Instrument("BTC-USD", "0.01", "0.0001")


def trade(ts_s: float, price: int, qty: int, n: int = 1) -> Trade:
    return Trade(n, int(ts_s * S), "BTC-USD", f"1-{n}", price, qty, Side.BUY)


def test_candles_open_high_low_close_and_quantity_per_interval():
    candles = Candles()
    for n, (ts, price, qty) in enumerate([(120, 100, 1), (130, 105, 2), (179, 95, 3), (180, 101, 4), (3599, 90, 1)]):
        candles.add(ts * S, price, qty)
    assert candles.history(60) == [[120, 100, 105, 95, 95, 6], [180, 101, 101, 101, 101, 4], [3540, 90, 90, 90, 90, 1]]
    assert candles.history(300) == [[0, 100, 105, 95, 101, 10], [3300, 90, 90, 90, 90, 1]]
    assert candles.history(3600) == [[0, 100, 105, 90, 90, 11]]


def test_candles_keep_only_the_newest():
    candles = Candles(keep=3)
    for minute in range(5):
        candles.add(minute * 60 * S, 100 + minute, 1)
    assert [c[0] for c in candles.history(60)] == [120, 180, 240]


def test_a_view_numbers_its_messages_and_formats_in_the_instruments_units():
    view = MarketView(BTC, tape_length=2)
    view.load([(4300010, 5000)], [(4300100, 2500)], None, [])
    snapshot = view.snapshot()
    assert (snapshot["seq"], snapshot["bids"], snapshot["asks"]) == (1, [["43000.10", "0.5000"]], [["43001.00", "0.2500"]])
    update = view.apply([trade(60, 4300100, 1000), DepthUpdate(2, 60 * S, "BTC-USD", Side.SELL, 4300100, 1500),
                         TopOfBook(2, 60 * S, "BTC-USD", 4300010, 5000, 4300100, 1500)])
    assert update["seq"] == 2 and update["levels"] == [["SELL", "43001.00", "0.1500"]]
    assert update["trades"][0]["price"] == "43001.00" and update["candles"]["60"][1:] == [
        "43001.00", "43001.00", "43001.00", "43001.00", "0.1000"]
    assert view.apply([TopOfBook(3, 61 * S, "BTC-USD", 4300010, 5000, 4300100, 1500)]) is None  # nothing shown moved
    assert view.snapshot()["seq"] == 2


def test_the_24h_change_counts_trades_of_the_last_day_only():
    view = MarketView(BTC, tape_length=10)
    view.load([], [], None, [])
    view.apply([trade(1000, 100, 1, 1), trade(2000, 120, 1, 2), trade(88_000, 110, 1, 3)])
    assert view.summary(88_000 * S)["change_24h"] == "-8.33"  # from 120 (2000 s) to 110: 1000 s is over a day ago
    assert view.summary(88_000 * S)["last"] == "1.10"


def test_a_browser_that_falls_behind_gets_a_snapshot_instead_of_what_it_missed():
    async def scenario():
        view = MarketView(BTC, tape_length=5)
        hub = Hub({"BTC-USD": view})
        hub.deliver("BTC-USD", "synced", ([(100, 1)], [], None, []))
        client = Client(hub)
        hub.clients.add(client)
        client.follow("BTC-USD")
        assert [json.loads(m)["seq"] for m in await client.next_batch()] == [1]
        for n in range(MAX_PENDING + 5):
            hub.deliver("BTC-USD", "events", [DepthUpdate(n, 0, "BTC-USD", Side.BUY, 100, n + 2)])
        [message] = [json.loads(m) for m in await client.next_batch()]
        assert message["type"] == "snapshot" and message["seq"] == view.seq and message["bids"] == [["1.00", f"0.0{MAX_PENDING + 6}"]]
        hub.deliver("BTC-USD", "resyncing", None)
        assert json.loads((await client.next_batch())[0]) == {"type": "status", "symbol": "BTC-USD",
                                                               "state": "resyncing"}

    asyncio.run(scenario())


def test_the_notifiers_recent_trades_fill_the_tape_and_candles_and_no_trade_counts_twice():
    view = MarketView(BTC, tape_length=10)
    history = [trade(60, 100, 1, 1), trade(120, 110, 2, 2)]  # from the notifier's TradesRequest, at a (re-)sync
    view.load([], [], history[-1], history)
    snapshot = view.snapshot()
    assert [t["trade_id"] for t in snapshot["trades"]] == ["1-2", "1-1"]
    assert [c[0] for c in snapshot["candles"]["60"]] == [60, 120]
    assert view.apply([trade(120, 110, 2, 2)]) is None  # the same trade again, from the feed: already there
    update = view.apply([trade(130, 120, 1, 3)])
    assert [t["trade_id"] for t in update["trades"]] == ["1-3"] and update["candles"]["60"][4] == "1.20"
    view.load([], [], None, history)  # a re-sync brings the history again: nothing counts twice
    assert [t.trade_id for t in view.tape] == ["1-3", "1-2", "1-1"]
    assert view.candles.history(60)[-1][5] == 3  # the 120 s candle: 2 + 1, once each
