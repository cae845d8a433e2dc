"""A market data subscriber for the partition soak (exchange.testing.partition): every trade it saw,
every trade message it can tell it missed, and a book per symbol kept by BookFeed (snapshot plus
deltas, re-synced by itself), to compare with the books the journal rebuilds.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing

from exchange.config import Config
from exchange.core.matching import Matcher
from exchange.core.messages import Trade
from exchange.core.orders import Side
from exchange.journal.readers import decode_event, engine_events
from exchange.journal.schema import open_readonly
from exchange.marketdata.feed import BookFeed, MarketDataClient

POLL_S = 0.02  # each source's turn in the feed's loop


class Feed(threading.Thread):
    """Follows ``symbols`` on the notifier of ``config``: ``trades`` (trade_id → (price, qty)) seen on
    the trade channel, ``missed`` trade messages (a jump in the channel's ``chan_seq``, or a new
    ``epoch``: a new numbering), ``heard_at`` (symbol → when a message of it last came, heartbeats
    too), and ``books`` (symbol → the BookFeed's ``depth.state()``, once synced). The thread replaces
    each value whole, so other threads may read them (the GIL keeps a dict read atomic)."""

    def __init__(self, config: Config, symbols: list[str]):
        super().__init__(daemon=True, name="feed")
        self.config, self.symbols = config, symbols
        self.trades: dict[str, tuple[int, int]] = {}
        self.missed = 0
        self.resyncs = 0  # BookFeed re-syncs, all symbols together
        self.heard_at: dict[str, float] = {}
        self.books: dict[str, tuple] = {}
        self.last: dict[tuple[str, int], int] = {}  # (symbol, epoch) → the trade channel's last chan_seq
        self.epochs: dict[str, int] = {}  # symbol → the epoch of its last message
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        notifier = self.config.notifier
        try:  # the sockets belong to this thread
            with MarketDataClient(notifier.publish, self.symbols, channels=("trade", "bbo")) as md:
                feeds = [BookFeed(notifier.publish, notifier.snapshots, symbol) for symbol in self.symbols]
                try:
                    while not self.stop.is_set():
                        self._receive(md)
                        for feed in feeds:
                            feed.poll(POLL_S)
                            if feed.synced:
                                self.books[feed.symbol] = feed.depth.state()
                        self.resyncs = sum(max(0, feed.resyncs) for feed in feeds)
                finally:
                    for feed in feeds:
                        feed.close()
        except BaseException as e:  # reported by the soak's checks
            self.error = e

    def _receive(self, md: MarketDataClient) -> None:
        """What the raw subscriber has, up to a bounded number of messages."""
        for _ in range(1000):
            try:
                message = md.receive(timeout=POLL_S)
            except TimeoutError:
                return
            self.heard_at[message.symbol] = time.monotonic()
            if self.epochs.setdefault(message.symbol, message.epoch) != message.epoch:
                self.missed += 1  # a new numbering: what came between is not on the feed
                self.epochs[message.symbol] = message.epoch
            if message.channel == "trade":
                last = self.last.get((message.symbol, message.epoch), 0)  # a fresh mesh: chan_seqs start at 1
                self.missed += max(0, message.chan_seq - last - 1)
                self.last[(message.symbol, message.epoch)] = message.chan_seq
            for event in message.events:
                if isinstance(event, Trade):
                    self.trades[event.trade_id] = (event.price, event.qty)

    def close(self) -> None:
        self.stop.set()
        self.join(10)


def journal_books(config: Config, symbols: list[str]) -> dict[str, tuple]:
    """symbol → the book the journal's events rebuild, as ``Depth.state()`` shows one."""
    books = {}
    instruments = config.instrument_map()
    with closing(open_readonly(config.journal.path)) as conn:
        for spec in {config.engine_of(symbol).name: config.engine_of(symbol) for symbol in symbols}.values():
            matcher = Matcher.rebuild(spec.id, [instruments[s] for s in spec.instruments], engine_events(conn, spec.name))
            for symbol in set(spec.instruments) & set(symbols):
                book = matcher.books[symbol]
                books[symbol] = (symbol, book.depth(Side.BUY), book.depth(Side.SELL))
    return books


def journaled_trades(config: Config) -> dict[str, tuple[int, int]]:
    """trade_id → (price, qty) of every journaled trade."""
    with closing(open_readonly(config.journal.path)) as conn:
        rows = conn.execute("SELECT trade_id, body FROM events WHERE kind='Trade'").fetchall()
    return {trade_id: (e.price, e.qty) for trade_id, body in rows for e in [decode_event(body)]}
