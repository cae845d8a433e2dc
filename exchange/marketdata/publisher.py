"""What a notifier publishes from the batches the journal has released: market data and private order updates.

No sockets here: ``Publisher`` turns each released engine batch into [topic, body] frames and keeps
what a snapshot needs. The matcher says only what matching decided; the public book, order by order
and level by level, is derived here from the released events, command by command
(exchange.marketdata.levels), so a snapshot and the messages before it come from one book.
Invariants:
- one message per (symbol, channel) per released batch that changes it, so every notifier that
  follows the same batches from the same book makes the same messages;
- every (symbol, channel) has its own ``chan_seq``: +1 per message, gap-free within the symbol's
  numbering ``epoch`` (given at ``load``: another notifier's, to number as it does, or a new one);
- a heartbeat repeats the channel's current ``chan_seq`` with no events, after ``heartbeat_s`` of
  silence, so a subscriber that missed the last message notices even when the market is quiet;
- ``snapshot(symbol)`` reflects exactly the messages published so far, stamped with their chan_seqs
  and the last batch applied; ``snapshot_frame(symbol)`` is the same, encoded once per change, so a
  burst of requests costs one build and then a send each;
- ``trades(symbol, since)``: the last MAX_RECENT_TRADES trades published (and those the journal had
  when the notifier started, ``remember``), stamped with the "trade" chan_seq they reach up to; it
  reads only the recent trades from the first that reaches ``since`` on (and says how many), so
  asking for few trades, or none, costs little.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from itertools import islice

from exchange.core.messages import ORDER_EVENTS, Match, TopOfBook, Trade
from exchange.core.orders import Side
from exchange.marketdata.levels import LevelBook, level_changes
from exchange.wire.messages import (
    CHANNELS, DAY_NS, BookSnapshot, MarketData, PrivateData, SnapshotRefused, Trades, TradesRefused, encode, private_topic, topic,
)

CHANNEL_NAMES = ("trade", "bbo", "l2", "l3")
_TRADES = frozenset({Match, Trade})  # a Match is published as its Trade (journals from before Match hold Trades)
MAX_RECENT_TRADES = 5_000  # per instrument, for TradesRequest
NOT_READY = "this notifier is catching up with the journal; try again in a moment"


class ReleasedBook:
    """What has been published of one instrument: its book, its last trade, the last event's seq."""

    __slots__ = ("levels", "last_trade", "seq")

    def __init__(self, levels: LevelBook, last_trade: Trade | None, seq: int):
        self.levels, self.last_trade, self.seq = levels, last_trade, seq


class Publisher:
    def __init__(self, engine_of: dict[str, str], heartbeat_s: float = 1.0):
        """``engine_of``: every symbol this notifier may publish → its engine."""
        self.engine_of = engine_of
        self.heartbeat_s = heartbeat_s
        self.books: dict[str, ReleasedBook] = {}  # the symbols published now (loaded, not unloaded)
        self.levels: dict[str, LevelBook] = {}
        self.epoch: dict[str, int] = {}
        self.applied: dict[str, int] = {}  # engine → the last of its batches published
        self.chan_seq: dict[tuple[str, str], int] = {}
        self.last_sent: dict[tuple[str, str], float] = {}
        self.snapshot_frames: dict[str, tuple[int, bytes]] = {}  # symbol → (batch, its encoded snapshot)
        self.recent: dict[str, deque[Trade]] = {symbol: deque(maxlen=MAX_RECENT_TRADES) for symbol in engine_of}
        # for each recent trade, the latest ts_event of the trades up to it. The trades are kept in seq
        # order, which is ts_event order only roughly (a ts_event is when a gateway received the command,
        # by that gateway's clock); this never goes back, so it can be bisected for where the trades
        # since some time begin
        self.ts_reached: dict[str, deque[int]] = {symbol: deque(maxlen=MAX_RECENT_TRADES) for symbol in engine_of}

    def load(self, symbol: str, book: ReleasedBook, batch: int, epoch: int, chan_seqs: dict[str, int],
             now: float) -> None:
        """Publish ``symbol`` from ``book`` (which holds its engine's batches up to ``batch``), numbering
        on from ``chan_seqs`` in ``epoch``."""
        self.books[symbol], self.levels[symbol] = book, book.levels
        self.epoch[symbol] = epoch
        self.applied[self.engine_of[symbol]] = batch
        for channel in CHANNEL_NAMES:
            self.chan_seq[(symbol, channel)] = chan_seqs.get(channel, 0)
            self.last_sent[(symbol, channel)] = now
        self.snapshot_frames.pop(symbol, None)

    def unload(self, symbol: str) -> None:
        """Publish nothing more of ``symbol`` (its notifier lost track of its engine's batches)."""
        for table in (self.books, self.levels, self.epoch, self.snapshot_frames):
            table.pop(symbol, None)
        for channel in CHANNEL_NAMES:
            self.chan_seq.pop((symbol, channel), None)
            self.last_sent.pop((symbol, channel), None)

    def market_data(self, engine: str, batch: int, released: list[list], now: float) -> list[list[bytes]]:
        """One [topic, MarketData] message per (symbol, channel) that the events of one released batch
        of ``engine`` (one list per command) change: the trades, and the book's changes they make.
        Symbols not loaded are passed over."""
        groups: dict[tuple[str, str], list] = {}
        books = self.books
        for events in released:
            public = [e.trade() if type(e) is Match else e for e in events if type(e) in _TRADES and e.symbol in books]
            public += level_changes(self.levels, events)
            for event in public:
                book = books[event.symbol]
                book.seq = event.seq
                if type(event) is Trade:
                    book.last_trade = event
                    self.remember(event)  # (once by seq: a held batch's trades may be remembered already)
                groups.setdefault((event.symbol, CHANNELS[type(event)]), []).append(event)
        self.applied[engine] = batch
        frames = []
        for key, group in groups.items():
            self.chan_seq[key] += 1
            self.last_sent[key] = now
            frames.append([topic(*key), encode(MarketData(key[0], key[1], self.epoch[key[0]], self.chan_seq[key],
                                                          group))])
        return frames

    def remember(self, trade: Trade) -> None:
        """Keep ``trade`` among its instrument's recent trades (once: by its seq)."""
        recent = self.recent[trade.symbol]
        if not recent or trade.seq > recent[-1].seq:
            reached = self.ts_reached[trade.symbol]
            reached.append(max(reached[-1], trade.ts_event) if reached else trade.ts_event)
            recent.append(trade)

    def trades(self, symbol: str, since_ns: int, now_ns: int) -> tuple[Trades | TradesRefused, int]:
        """The recent trades of ``symbol`` at or after ``since_ns`` (at most a day's), oldest first, with
        the "trade" channel's chan_seq they reach up to; and how many recent trades were read for them:
        those from the first whose ts_event reaches ``since_ns`` on (found by bisection: none past the
        newest). A few of them may be left out of the answer, if a gateway's clock is behind the others'."""
        if symbol not in self.books:
            return TradesRefused(symbol, NOT_READY if symbol in self.engine_of else f"no instrument {symbol}"), 0
        since = max(since_ns, now_ns - DAY_NS)
        reached = self.ts_reached[symbol]
        newest = last(self.recent[symbol], len(reached) - bisect_left(reached, since))
        return Trades(symbol, self.epoch[symbol], self.chan_seq[(symbol, "trade")],
                      [t for t in newest if t.ts_event >= since]), len(newest)

    @staticmethod
    def private(engine: str, epoch: int, events: list) -> list[list[bytes]]:
        """One [priv.<user>|, PrivateData] message per user with order events among ``events``; a
        Match is the maker's fill for the maker and the taker's fill for the taker."""
        users: dict[str, list] = {}
        for event in events:
            if type(event) is Match:
                users.setdefault(event.maker_user, []).append(event.maker_fill())
                users.setdefault(event.taker_user, []).append(event.taker_fill())
            elif isinstance(event, ORDER_EVENTS):
                users.setdefault(event.user, []).append(event)
        return [[private_topic(user), encode(PrivateData(user, engine, epoch, group))]
                for user, group in users.items()]

    def heartbeats(self, now: float) -> list[list[bytes]]:
        """Empty messages, with the current chan_seq, for the channels quiet for heartbeat_s."""
        frames = []
        for key, last in self.last_sent.items():
            if now - last >= self.heartbeat_s:
                self.last_sent[key] = now
                frames.append([topic(*key), encode(MarketData(key[0], key[1], self.epoch[key[0]], self.chan_seq[key],
                                                              []))])
        return frames

    def snapshot_frame(self, symbol: str) -> bytes:
        """``snapshot(symbol)``, encoded; built again only once the book or its batch has moved."""
        batch = self.applied.get(self.engine_of.get(symbol, ""), 0)
        cached = self.snapshot_frames.get(symbol)
        if cached is not None and cached[0] == batch:
            return cached[1]
        frame = encode(self.snapshot(symbol))
        if symbol in self.books:
            self.snapshot_frames[symbol] = (batch, frame)
        return frame

    def snapshot(self, symbol: str) -> BookSnapshot | SnapshotRefused:
        book = self.books.get(symbol)
        if book is None:
            return SnapshotRefused(symbol, NOT_READY if symbol in self.engine_of else f"no instrument {symbol}")
        levels = book.levels
        return BookSnapshot(symbol, self.epoch[symbol], book.seq,
                            {channel: self.chan_seq[(symbol, channel)] for channel in CHANNEL_NAMES},
                            levels.levels(Side.BUY), levels.levels(Side.SELL),
                            TopOfBook(book.seq, 0, symbol, *levels.best()), book.last_trade, levels.resting(),
                            self.applied[self.engine_of[symbol]])


def last(items: deque, count: int) -> list:
    """The last ``count`` of ``items``, in their order, read from the end (an islice from the front
    would read every item before them too)."""
    newest = list(islice(reversed(items), count))
    newest.reverse()
    return newest
