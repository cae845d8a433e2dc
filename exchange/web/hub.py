"""The browsers' WebSockets: which instrument each follows, and what each is sent.

The feed threads' deliveries become ``MarketView`` snapshots and updates here, sent to every
browser that follows the instrument. A browser's market messages wait in a bounded queue; one that
falls that far behind gets its queue dropped and, once it is writable again, a fresh snapshot
(the web side of the re-sync rule). A snapshot (one a browser asked for, or the one after the
role's own feed re-synced) is built when the browser's socket can take it, once however often it
was asked for meanwhile, and shared with every browser that wants the same one. What is not
market data (the instrument list, the signed-in user's account, the end of the session) waits
apart, newest only, and is always delivered. The instrument list (last price, 24 h change) goes to
every browser at most once a second, when it changed (a trade, or only the clock: the 24 h change
moves as minutes leave the day).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from exchange.web.markets import MarketView

log = logging.getLogger(__name__)

MAX_PENDING = 256  # market messages a browser may have waiting before it is re-synced instead
MAX_ANSWERS = 16  # error answers to a browser's own messages kept waiting (the newest)
KEPT = ("markets", "account", "signed_out")  # the newest of each always reaches the browser, in this order
SUMMARY_EVERY_S = 1.0


def dumps(message: dict) -> str:
    """A message as the compact JSON text a socket sends."""
    return json.dumps(message, separators=(",", ":"))


class Client:
    """One browser's WebSocket: what it follows and what waits to be sent to it."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.symbol: str | None = None
        self.pending: deque[str] = deque()  # updates and status of the instrument followed, in order
        self.kept: dict[str, str] = {}  # the newest message of each type in KEPT not sent yet
        self.answers: deque[str] = deque(maxlen=MAX_ANSWERS)  # errors in answer to what the browser sent
        self.wants_snapshot = False  # of the instrument followed: it replaces whatever is pending
        self.stale = False  # it fell behind: the snapshot it wants replaces what it missed
        self.wake = asyncio.Event()

    def send(self, message: dict, text: str | None = None) -> None:
        """Queue ``message`` (``text``: its JSON, made once for every browser it goes to)."""
        kind = message["type"]
        if kind in KEPT:
            self.kept[kind] = text or dumps(message)
        elif kind == "error":
            self.answers.append(text or dumps(message))
        elif self.wants_snapshot:
            return  # the snapshot it is sent next covers this
        elif len(self.pending) >= MAX_PENDING:
            self.pending.clear()
            self.stale = self.wants_snapshot = True  # behind: a snapshot replaces what it missed
        else:
            self.pending.append(text or dumps(message))
        self.wake.set()

    def follow(self, symbol: str) -> None:
        """Follow ``symbol`` (or take a new snapshot of it): its snapshot goes out when the socket can take it."""
        self.symbol = symbol
        self.resync()

    def resync(self) -> None:
        """A snapshot of the instrument followed replaces whatever of it is pending."""
        self.pending.clear()
        self.wants_snapshot = True
        self.wake.set()

    async def next_batch(self) -> list[str]:
        """What to send now, waiting until there is something."""
        await self.wake.wait()
        self.wake.clear()
        batch = [self.kept.pop(kind) for kind in KEPT if kind in self.kept]
        batch.extend(self.answers)
        self.answers.clear()
        if self.wants_snapshot:
            self.wants_snapshot = self.stale = False
            batch.append(self.hub.markets[self.symbol].snapshot_text())
        batch.extend(self.pending)
        self.pending.clear()
        return batch


class Hub:
    """Every instrument's view and every browser's socket."""

    def __init__(self, views: dict[str, MarketView]):
        self.markets = views
        self.clients: set[Client] = set()
        self.summary_sent: str | None = None  # the instrument list last sent to every browser

    def deliver(self, symbol: str, kind: str, payload) -> None:
        """What a feed thread handed the loop (see exchange.web.feeds)."""
        view = self.markets[symbol]
        if kind == "synced":
            view.load(*payload)
            message = None
            for client in self.clients:
                if client.symbol == symbol:
                    client.resync()
        elif kind == "events":
            message = view.apply(payload)
        else:
            view.state = "resyncing"
            message = {"type": "status", "symbol": symbol, "state": "resyncing"}
        if message is not None:
            text = dumps(message)  # once, for every browser that follows the instrument
            for client in self.clients:
                if client.symbol == symbol:
                    client.send(message, text)

    def summaries(self) -> dict:
        now = time.time_ns()
        return {"type": "markets", "markets": [view.summary(now) for view in self.markets.values()]}

    async def send_summaries(self) -> None:
        """The instrument list to every browser, whenever it changed (at most once a second). It is
        made anew each time and compared with the last one sent: not only trades and (re-)syncs
        change it, but time too, as the oldest minutes of the 24 h change leave the day."""
        while True:
            await asyncio.sleep(SUMMARY_EVERY_S)
            if not self.clients:
                continue
            message = self.summaries()
            text = dumps(message)
            if text != self.summary_sent:
                self.summary_sent = text
                for client in self.clients:
                    client.send(message, text)
