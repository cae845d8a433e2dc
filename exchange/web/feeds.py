"""The notifier's public feed, brought onto the web role's event loop: the instrument list, and one
``BookFeed`` per instrument, each followed on a thread of its own (``BookFeed`` blocks), handing
what it applied to the loop.

``BookFeed`` keeps the book in step (snapshot, then deltas; a gap, a new epoch or silence
re-syncs). The thread passes the loop three things: ``resyncing`` when the feed lost step,
``synced`` with a copy of the whole book after every (re-)sync (and the notifier's recent trades,
for the tape, the candles and the day's change), and the events applied otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import zmq
import zmq.asyncio

from exchange.core.instruments import Instrument
from exchange.core.messages import Trade
from exchange.core.orders import Side
from exchange.marketdata.feed import BookFeed
from exchange.wire.sockets import Stopper
from exchange.wire.messages import (
    DAY_NS, Decoder, Instruments, InstrumentsRequest, NotifierReply, Trades, TradesRequest, encode,
)

log = logging.getLogger(__name__)

POLL_S = 0.05  # a feed thread hands the loop what it applied at most this often
RECENT_TRADES_WAIT_S = 2.0


async def fetch_instruments(ctx: zmq.asyncio.Context, endpoints: str | list[str], stopper: Stopper,
                            timeout_s: float = 0.5) -> list[Instrument]:
    """Every instrument, asked of the notifiers' snapshot endpoints (the notifier, then its replicas, in
    turn, so that the role starts while any one of them answers) until one answers (or a stop is asked)."""
    endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    decoder = Decoder(NotifierReply)
    said = False
    asked = 0
    while not stopper.requested:
        endpoint = endpoints[asked % len(endpoints)]
        asked += 1
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(endpoint)
        try:
            await dealer.send(encode(InstrumentsRequest()))
            if await dealer.poll(int(timeout_s * 1000)):
                reply = decoder.decode(await dealer.recv())
                if isinstance(reply, Instruments):
                    return [Instrument(s.symbol, s.tick_size, s.lot_size, s.min_qty, s.max_qty, s.max_price)
                            for s in reply.instruments]
                raise RuntimeError(f"the notifier refused the instrument list: {reply}")  # our request was wrong
            if not said and asked >= len(endpoints):
                said = True
                log.info("no instrument list from %s yet; asking until one answers", ", ".join(endpoints))
        finally:
            dealer.close()
    return []


class FeedThread(threading.Thread):
    """Follows one instrument's ``BookFeed`` and calls ``deliver(kind, payload)`` on the loop; if it
    fails (our bug, or a snapshot refused for good), ``on_crash()`` on the loop: the role then exits
    with an error, as any role does, and the launcher restarts it."""

    def __init__(self, publish: list[str], snapshots: list[str], symbol: str,
                 loop: asyncio.AbstractEventLoop, deliver, on_crash):
        super().__init__(name=f"feed-{symbol}", daemon=True)
        self.publish, self.snapshots, self.symbol = publish, snapshots, symbol
        self.loop, self.deliver, self.on_crash = loop, deliver, on_crash
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._follow()
        except Exception:
            log.exception("the feed of %s failed", self.symbol)
            self.loop.call_soon_threadsafe(self.on_crash)

    def _follow(self) -> None:
        with BookFeed(self.publish, self.snapshots, self.symbol) as feed:
            resyncs, synced = feed.resyncs, False
            while not self.stopping.is_set():
                events = feed.poll(POLL_S)
                if feed.synced and feed.resyncs != resyncs:
                    resyncs, synced = feed.resyncs, True
                    depth = feed.depth
                    self._hand("synced", (depth.levels(Side.BUY), depth.levels(Side.SELL), depth.last_trade,
                                          self._recent_trades(feed.snapshot_from)
                                          + [e for e in events if type(e) is Trade]))
                    continue
                if events:
                    self._hand("events", events)
                if synced and not feed.synced:
                    synced = False
                    self._hand("resyncing", None)

    def _recent_trades(self, first: int = 0) -> list[Trade]:
        """The notifier's recent trades of the last day (its TradesRequest), oldest first, asked of the
        snapshot endpoints in turn from ``first`` (the one the book just came from: it answers), as
        BookFeed asks for snapshots; none if no one answers within RECENT_TRADES_WAIT_S each (the
        page then has the trades from now on)."""
        ctx = zmq.Context.instance()
        for i in range(len(self.snapshots)):
            endpoint = self.snapshots[(first + i) % len(self.snapshots)]
            dealer = ctx.socket(zmq.DEALER)
            dealer.linger = 0
            try:
                dealer.connect(endpoint)
                dealer.send(encode(TradesRequest(self.symbol, time.time_ns() - DAY_NS)))
                if dealer.poll(int(RECENT_TRADES_WAIT_S * 1000)):
                    reply = Decoder(NotifierReply).decode(dealer.recv())
                    if isinstance(reply, Trades):
                        return reply.trades
            finally:
                dealer.close()
        log.info("no recent trades of %s from a notifier; the page has those from now on", self.symbol)
        return []

    def _hand(self, kind: str, payload) -> None:
        try:
            self.loop.call_soon_threadsafe(self.deliver, self.symbol, kind, payload)
        except RuntimeError:  # the loop has closed: the role is stopping
            self.stopping.set()
