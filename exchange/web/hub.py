"""The browsers' WebSockets: which instrument each follows, and what each is sent.

The feed threads' deliveries become ``MarketView`` snapshots and updates here, sent to every
browser that follows the instrument. A browser's messages wait in a bounded queue; one that
falls that far behind gets its queue dropped and, once it is writable again, a fresh snapshot
(the web side of the re-sync rule). The instrument list (last price, 24 h change) goes to every
browser at most once a second, when it changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from exchange.web.markets import MarketView

log = logging.getLogger(__name__)

MAX_PENDING = 256  # messages a browser may have waiting before it is re-synced instead
SUMMARY_EVERY_S = 1.0


class Client:
    """One browser's WebSocket: what it follows and what waits to be sent to it."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.symbol: str | None = None
        self.pending: deque[str] = deque()
        self.stale = False
        self.wake = asyncio.Event()

    def send(self, message: dict) -> None:
        if self.stale:
            return
        if len(self.pending) >= MAX_PENDING:
            self.pending.clear()
            self.stale = True  # behind: a snapshot replaces what it missed
        else:
            self.pending.append(json.dumps(message, separators=(",", ":")))
        self.wake.set()

    def follow(self, symbol: str) -> None:
        self.symbol = symbol
        self.pending.append(json.dumps(self.hub.markets[symbol].snapshot(), separators=(",", ":")))
        self.wake.set()

    async def next_batch(self) -> list[str]:
        """What to send now, waiting until there is something."""
        await self.wake.wait()
        self.wake.clear()
        if self.stale:
            self.stale = False
            self.pending.clear()
            if self.symbol is not None:
                return [json.dumps(self.hub.markets[self.symbol].snapshot(), separators=(",", ":"))]
        batch = list(self.pending)
        self.pending.clear()
        return batch


class Hub:
    """Every instrument's view and every browser's socket."""

    def __init__(self, views: dict[str, MarketView]):
        self.markets = views
        self.clients: set[Client] = set()
        self.summary_changed = True

    def deliver(self, symbol: str, kind: str, payload) -> None:
        """What a feed thread handed the loop (see exchange.web.feeds)."""
        view = self.markets[symbol]
        if kind == "synced":
            message = view.load(*payload)
            self.summary_changed = True
        elif kind == "events":
            message = view.apply(payload)
            if message is not None and message["trades"]:
                self.summary_changed = True
        else:
            view.state = "resyncing"
            message = {"type": "status", "symbol": symbol, "state": "resyncing"}
            self.summary_changed = True
        if message is not None:
            for client in self.clients:
                if client.symbol == symbol:
                    client.send(message)

    def summaries(self) -> dict:
        now = time.time_ns()
        return {"type": "markets", "markets": [view.summary(now) for view in self.markets.values()]}

    async def send_summaries(self) -> None:
        """The instrument list to every browser, whenever it changed (at most once a second)."""
        while True:
            await asyncio.sleep(SUMMARY_EVERY_S)
            if self.summary_changed and self.clients:
                self.summary_changed = False
                message = self.summaries()
                for client in self.clients:
                    client.send(message)
