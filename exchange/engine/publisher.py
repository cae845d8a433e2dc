"""What an engine publishes once the journal holds it: public market data and private order updates.

No sockets here: ``Publisher`` turns released events into [topic, body] frames and keeps what a
snapshot needs. The matcher says only what matching decided; the public book, order by order and
level by level, is derived here from the released events, command by command
(exchange.marketdata.levels), so a snapshot and the messages before it come from one book.
Invariants:
- every (symbol, channel) has its own ``chan_seq``: 1, 2, 3, … within an engine epoch, +1 per message;
- a heartbeat repeats the channel's current ``chan_seq`` with no events, after ``heartbeat_s`` of
  silence, so a subscriber that missed the last message notices even when the market is quiet;
- ``snapshot(symbol)`` reflects exactly the messages published so far, stamped with their chan_seqs;
  ``snapshot_frame(symbol)`` is the same, encoded once per change of the book, so a burst of
  requests costs the engine one build and then a send each.
"""

from __future__ import annotations

from exchange.core.messages import ORDER_EVENTS, TopOfBook, Trade
from exchange.core.orders import Side
from exchange.marketdata.levels import LevelBook, level_changes
from exchange.wire.messages import (
    CHANNELS, BookSnapshot, MarketData, PrivateData, SnapshotRefused, encode, private_topic, topic,
)

CHANNEL_NAMES = ("trade", "bbo", "l2", "l3")


class Publisher:
    def __init__(self, engine: str, epoch: int, books: dict[str, "ReleasedBook"], heartbeat_s: float = 1.0):
        self.engine, self.epoch = engine, epoch
        self.books = books
        self.levels = {symbol: book.levels for symbol, book in books.items()}
        self.heartbeat_s = heartbeat_s
        self.chan_seq = {(symbol, channel): 0 for symbol in books for channel in CHANNEL_NAMES}
        self.last_sent = dict.fromkeys(self.chan_seq, 0.0)
        self.snapshot_frames: dict[str, bytes] = {}  # symbol → its encoded snapshot, until its book changes

    def market_data(self, released: list[list], now: float) -> list[list[bytes]]:
        """One [topic, MarketData] message per (symbol, channel) of these released commands' events
        (one list per command): the trades, and the book's changes they make."""
        groups: dict[tuple[str, str], list] = {}
        books = self.books
        for events in released:
            public = [e for e in events if type(e) is Trade] + level_changes(self.levels, events)
            for event in public:
                book = books[event.symbol]
                book.seq = event.seq
                if type(event) is Trade:
                    book.last_trade = event
                self.snapshot_frames.pop(event.symbol, None)
                groups.setdefault((event.symbol, CHANNELS[type(event)]), []).append(event)
        frames = []
        for key, group in groups.items():
            self.chan_seq[key] += 1
            self.last_sent[key] = now
            frames.append([topic(*key), encode(MarketData(key[0], key[1], self.epoch, self.chan_seq[key], group))])
        return frames

    def private(self, events: list) -> list[list[bytes]]:
        """One [priv.<user>|, PrivateData] message per user with order events in this release."""
        users: dict[str, list] = {}
        for event in events:
            if isinstance(event, ORDER_EVENTS):
                users.setdefault(event.user, []).append(event)
        return [[private_topic(user), encode(PrivateData(user, self.engine, self.epoch, group))]
                for user, group in users.items()]

    def heartbeats(self, now: float) -> list[list[bytes]]:
        """Empty messages, with the current chan_seq, for the channels quiet for heartbeat_s."""
        frames = []
        for key, last in self.last_sent.items():
            if now - last >= self.heartbeat_s:
                self.last_sent[key] = now
                frames.append([topic(*key), encode(MarketData(key[0], key[1], self.epoch, self.chan_seq[key], []))])
        return frames

    def snapshot_frame(self, symbol: str) -> bytes:
        """``snapshot(symbol)``, encoded; built again only once the book has changed."""
        frame = self.snapshot_frames.get(symbol)
        if frame is None:
            frame = encode(self.snapshot(symbol))
            if symbol in self.books:
                self.snapshot_frames[symbol] = frame
        return frame

    def snapshot(self, symbol: str) -> BookSnapshot | SnapshotRefused:
        book = self.books.get(symbol)
        if book is None:
            return SnapshotRefused(symbol, f"engine {self.engine} does not trade {symbol}")
        levels = book.levels
        return BookSnapshot(symbol, self.epoch, book.seq,
                            {channel: self.chan_seq[(symbol, channel)] for channel in CHANNEL_NAMES},
                            levels.levels(Side.BUY), levels.levels(Side.SELL),
                            TopOfBook(book.seq, 0, symbol, *levels.best()), book.last_trade, levels.resting())


class ReleasedBook:
    """What has been published of one instrument: its book, its last trade, the last event's seq."""

    __slots__ = ("levels", "last_trade", "seq")

    def __init__(self, levels: LevelBook, last_trade: Trade | None, seq: int):
        self.levels, self.last_trade, self.seq = levels, last_trade, seq


def released_books(matcher, last_trades: dict[str, Trade]) -> dict[str, ReleasedBook]:
    """The public books of a freshly recovered matcher: all it holds is journaled, so all is released."""
    books = {}
    for symbol, book in matcher.books.items():
        levels = LevelBook(symbol)
        levels.load((o.order_id, o.side, o.price, o.leaves_qty)
                    for side in (Side.BUY, Side.SELL) for level in book.levels(side) for o in level.live_orders())
        books[symbol] = ReleasedBook(levels, last_trades.get(symbol), matcher.seq)
    return books
