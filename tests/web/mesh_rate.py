"""The page behind a real mesh: orders at a given rate through the gateway's ZMQ order entry, each
resting on its own level and so making one book update, through engine, journal, notifier and the
web role's BookFeed to the page in Debian's Chromium.

    PYTHONPATH=. .venv/bin/python tests/web/mesh_rate.py --rates 1000,3000 --seconds 10

For each rate (a fresh mesh each time) it prints the orders acknowledged per second, how far the
page's rendered ``seq`` fell behind the web role's (sampled every 100 ms, in 50 ms hand-overs),
whether the page ever showed ``re-syncing``, and whether its ladder equals the role's book at the end.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import zmq
from playwright.sync_api import sync_playwright

from exchange.config import load_config
from exchange.core.orders import Side
from exchange.gateway.protocol.messages import Ack, AnyReply, LoginRequest, PlaceRequest
from exchange.testing.mesh import Mesh, loopback_config, wait_until
from exchange.wire.messages import encode
from tests.web.chromium import ARGS, CHROMIUM



def drive(endpoint: str, rate: int, seconds: float, sample) -> tuple[int, float]:
    """Resting orders at ``rate`` a second for ``seconds`` (``sample()`` every 100 ms); acks and the time taken."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    decoder = msgspec.msgpack.Decoder(AnyReply)
    dealer.send(encode(LoginRequest("alice", "alice-key")))
    dealer.recv()
    rng = random.Random(7)
    sent = acked = 0
    start = next_sample = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        for _ in range(int(rate * elapsed) - sent):
            buy = rng.random() < 0.5
            price = f"{(40000 - rng.randrange(0, 200) if buy else 50000 + rng.randrange(0, 200))}.00"
            dealer.send(encode(PlaceRequest(Side.BUY if buy else Side.SELL, "BTC-USD", "0.01", price)))
            sent += 1
        while dealer.poll(0):
            acked += isinstance(decoder.decode(dealer.recv()), Ack)
        if time.monotonic() >= next_sample:
            next_sample += 0.1
            sample()
        time.sleep(0.001)
    deadline = time.monotonic() + 30
    while acked < sent and dealer.poll(int(max(0, deadline - time.monotonic()) * 1000)):
        acked += isinstance(decoder.decode(dealer.recv()), Ack)
    taken = time.monotonic() - start
    ctx.destroy(linger=0)
    return acked, taken


def measure(rate: int, seconds: float, chromium: str) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        path = loopback_config(Path(directory), web=True)
        config = load_config(path)
        base = f"http://{config.web.listen}"
        with Mesh(path), sync_playwright() as p, httpx.Client(base_url=base) as http:
            wait_until(lambda: all(m["state"] == "live" for m in http.get("/api/markets").json()["markets"]),
                       timeout=60, what="the web role live")
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720}, bypass_csp=True)
            page.goto(f"{base}/#BTC-USD")
            page.wait_for_function("document.getElementById('feed-state').textContent == 'live'")
            lags, states = [], set()

            def sample():
                role = http.get("/api/markets/BTC-USD").json()["seq"]
                shown, state = page.evaluate("[document.getElementById('ladder').dataset.seq,"
                                             " document.getElementById('feed-state').textContent]")
                lags.append(role - int(shown))
                states.add(state)

            acked, taken = drive(config.gateway.zmq, rate, seconds, sample)
            role = http.get("/api/markets/BTC-USD").json()
            page.wait_for_function(f"document.getElementById('ladder').dataset.seq == '{role['seq']}'",
                                   timeout=30_000)
            shown = page.evaluate("[...document.querySelectorAll('#bids tr')].map(r => r.dataset.price)")
            browser.close()
    return {"rate": rate, "acked_per_s": round(acked / taken), "max_lag": max(lags, default=0),
            "resyncing_seen": "re-syncing" in states, "ladder_matches": shown == [p for p, _ in role["bids"][:15]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,3000", help="orders (book updates) per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chromium", default=CHROMIUM)
    options = parser.parse_args()
    for rate in (int(r) for r in options.rates.split(",")):
        print(measure(rate, options.seconds, options.chromium), flush=True)


if __name__ == "__main__":
    main()
