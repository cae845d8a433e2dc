"""The page's tape holds `web.tape_length` trades (docs/web.md), the number the role's snapshot says:
not fewer when the role keeps more, and not more as the feed brings trades, also when the tape was
empty when the page took its snapshot. The page in Chromium against the role's own hub, views and
app (tests/web/standalone.py), the trades handed to the hub as a feed thread hands them."""

from __future__ import annotations

import asyncio
import shutil

import pytest

playwright = pytest.importorskip("playwright.async_api", reason="playwright is installed by scripts/install")
from playwright.async_api import async_playwright  # noqa: E402

from exchange.core.messages import Trade  # noqa: E402
from exchange.core.orders import Side  # noqa: E402
from exchange.web.hub import Hub  # noqa: E402
from exchange.web.markets import MarketView  # noqa: E402
from .chromium import ARGS, CHROMIUM  # noqa: E402
from .standalone import BTC, DEADLINE_S, MID, serving  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                reason=f"no Chromium at {CHROMIUM}; scripts/install installs Debian's")


def trade(n: int) -> Trade:
    return Trade(n, (1_700_000_000 + n) * 10**9, "BTC-USD", f"1-{n}", MID + n, 10, Side.BUY)


async def tape_shown(tape_length: int, history: int, updates: list[int]) -> list[str]:
    """The trade ids the page's tape shows, newest first, once it has rendered the role's last update:
    the role keeps ``tape_length`` trades, has ``history`` when the page opens, and then hands the
    page one update for each number in ``updates``, with that many new trades."""
    hub = Hub({"BTC-USD": MarketView(BTC, tape_length)})
    view = hub.markets["BTC-USD"]
    hub.deliver("BTC-USD", "synced", ([(MID - 1, 10)], [(MID + 1, 10)], None,
                                      [trade(n) for n in range(1, history + 1)]))
    async with serving(hub, tape_length=tape_length) as (web, address, _):
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"http://{address}/#BTC-USD")
                await page.wait_for_selector(f'#ladder[data-seq="{view.seq}"]', state="attached",
                                             timeout=DEADLINE_S * 1000)  # the snapshot rendered
                n = history
                for count in updates:
                    hub.deliver("BTC-USD", "events", [trade(n + k) for k in range(1, count + 1)])
                    n += count
                await page.wait_for_selector(f'#ladder[data-seq="{view.seq}"]', state="attached",
                                             timeout=DEADLINE_S * 1000)  # and the last update
                assert not errors, errors
                return await page.eval_on_selector_all("#tape tbody tr", "rows => rows.map(r => r.dataset.tradeId)")
            finally:
                await browser.close()


def newest(last: int, count: int) -> list[str]:
    return [f"1-{n}" for n in range(last, last - count, -1)]


def test_a_tape_longer_than_50_shows_every_trade_the_role_keeps():
    assert asyncio.run(tape_shown(100, 150, [])) == newest(150, 100)
    assert asyncio.run(tape_shown(100, 0, [1] * 60 + [60])) == newest(120, 100)


def test_a_short_tape_stays_short_as_trades_come_even_from_an_empty_start():
    assert asyncio.run(tape_shown(10, 0, [1] * 30)) == newest(30, 10)  # one trade an update
    assert asyncio.run(tape_shown(10, 10, [25, 1])) == newest(36, 10)  # more in one update than the tape holds
