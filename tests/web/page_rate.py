"""How many book updates per second the page keeps up with: the web role's own Hub, MarketView and
app (no mesh: the feed is driven here, as a FeedThread hands it over, every 50 ms) and the page
in Debian's Chromium, reading the ``seq`` the page last rendered.

    PYTHONPATH=. .venv/bin/python tests/web/page_rate.py --rates 1000,5000,20000 --seconds 10

For each rate it drives ``DepthUpdate``s (on random levels of a book ``--levels`` deep per side) for ``--seconds``,
samples every 100 ms how far the page's rendered ``seq`` is behind the server's, and prints the
rate achieved, the largest lag (in updates and ms), the snapshots the page needed because it fell
behind, and whether the page's ladder equals the server's book once the drive stops. A rate is
kept up with when the lag stays within two of the role's 50 ms hand-overs and no snapshot was needed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import uvicorn
import zmq.asyncio
from playwright.async_api import async_playwright

from exchange.config import WebConfig
from exchange.core.instruments import Instrument
from exchange.core.messages import DepthUpdate
from exchange.core.orders import Side
from exchange.testing.mesh import free_ports
from exchange.web.app import Web, make_app
from exchange.web.hub import Client, Hub
from exchange.web.markets import MarketView
from tests.web.chromium import ARGS, CHROMIUM

HAND_OVER_S = 0.05  # as exchange.web.feeds.POLL_S
MID = 4_300_000


async def drive(hub: Hub, view: MarketView, rate: int, seconds: float, levels: int) -> int:
    """DepthUpdates at ``rate`` per second for ``seconds``, handed over every 50 ms; how many."""
    rng = random.Random(7)
    sent, seq, start = 0, 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * min(elapsed + HAND_OVER_S, seconds))
        events = []
        for _ in range(due - sent):
            seq += 1
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = rng.randrange(1, levels + 1)
            price = MID - offset if side is Side.BUY else MID + offset
            events.append(DepthUpdate(seq, time.time_ns(), view.symbol, side, price, rng.randrange(0, 50)))
        sent = due
        if events:
            hub.deliver(view.symbol, "events", events)
        await asyncio.sleep(max(0.0, start + elapsed + HAND_OVER_S - time.monotonic()))
    return sent


async def measure(rate: int, seconds: float, levels: int, chromium: str) -> dict:
    instrument = Instrument("BTC-USD", "0.01", "0.0001")
    view = MarketView(instrument, 50)
    hub = Hub({"BTC-USD": view})
    book = [(MID - n, 10) for n in range(1, levels + 1)], [(MID + n, 10) for n in range(1, levels + 1)]
    hub.deliver("BTC-USD", "synced", (*book, None, []))
    port = free_ports(1)[0]
    web = Web(WebConfig(listen=f"127.0.0.1:{port}"), hub, zmq.asyncio.Context(), "tcp://127.0.0.1:1")
    server = uvicorn.Server(uvicorn.Config(make_app(web), host="127.0.0.1", port=port, ws="websockets-sansio",
                                           lifespan="off", log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    snapshots = 0
    original = Client.next_batch

    async def counting(self):  # a snapshot sent because the page fell behind
        nonlocal snapshots
        snapshots += self.stale
        return await original(self)

    Client.next_batch = counting
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        # the page's CSP forbids eval, which wait_for_function's predicates need: only here is it lifted
        page = await browser.new_page(viewport={"width": 1280, "height": 720}, bypass_csp=True)
        await page.goto(f"http://127.0.0.1:{port}/#BTC-USD")
        await page.wait_for_function(f"document.getElementById('ladder').dataset.seq == '{view.seq}'")
        lags = []

        async def sample():
            while True:
                shown = int(await page.evaluate("document.getElementById('ladder').dataset.seq"))
                lags.append(view.seq - shown)
                await asyncio.sleep(0.1)

        sampler = asyncio.get_running_loop().create_task(sample())
        start = time.monotonic()
        sent = await drive(hub, view, rate, seconds, levels)
        driven = time.monotonic() - start
        await page.wait_for_function(f"document.getElementById('ladder').dataset.seq == '{view.seq}'", timeout=30_000)
        caught_up = time.monotonic() - start - driven
        sampler.cancel()
        rendered = await page.evaluate("[...document.querySelectorAll('#bids tr')].map(r => r.dataset.price)")
        await browser.close()
    Client.next_batch = original
    server.should_exit = True
    await serving
    expected = [instrument.format_price(p) for p, _ in view.depth.levels(Side.BUY, 15)]
    worst = max(lags, default=0)
    return {"rate": rate, "levels": levels, "achieved": round(sent / driven), "max_lag_updates": worst,
            "max_lag_ms": round(worst * HAND_OVER_S * 1000), "caught_up_ms": round(caught_up * 1000),
            "snapshots": snapshots, "ladder_matches": rendered == expected,
            "kept_up": worst <= 2 and snapshots == 0 and rendered == expected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,5000,20000", help="book updates per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", type=int, default=200, help="price levels per side the updates fall on")
    parser.add_argument("--chromium", default=CHROMIUM)
    options = parser.parse_args()
    for rate in (int(r) for r in options.rates.split(",")):
        print(asyncio.run(measure(rate, options.seconds, options.levels, options.chromium)), flush=True)


if __name__ == "__main__":
    main()
