"""What an engine publishes once the journal holds it: public market data and private order updates.

No sockets here: ``Publisher`` turns released events into [topic, body] frames and keeps what a
snapshot needs. Invariants:
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
from exchange.marketdata.depth import Depth
from exchange.wire.messages import (
    CHANNELS, BookSnapshot, MarketData, PrivateData, SnapshotRefused, encode, private_topic, topic,
)

CHANNEL_NAMES = ("trade", "bbo", "l2")


class Publisher:
    def __init__(self, engine: str, epoch: int, depths: dict[str, Depth], heartbeat_s: float = 1.0):
        self.engine, self.epoch = engine, epoch
        self.depths = depths
        self.heartbeat_s = heartbeat_s
        self.chan_seq = {(symbol, channel): 0 for symbol in depths for channel in CHANNEL_NAMES}
        self.last_sent = dict.fromkeys(self.chan_seq, 0.0)
        self.snapshot_frames: dict[str, bytes] = {}  # symbol → its encoded snapshot, until its book changes

    def market_data(self, events: list, now: float) -> list[list[bytes]]:
        """One [topic, MarketData] message per (symbol, channel) of these released events."""
        groups: dict[tuple[str, str], list] = {}
        for event in events:
            self.depths[event.symbol].apply(event)
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
            if symbol in self.depths:
                self.snapshot_frames[symbol] = frame
        return frame

    def snapshot(self, symbol: str) -> BookSnapshot | SnapshotRefused:
        depth = self.depths.get(symbol)
        if depth is None:
            return SnapshotRefused(symbol, f"engine {self.engine} does not trade {symbol}")
        return BookSnapshot(symbol, self.epoch, depth.seq,
                            {channel: self.chan_seq[(symbol, channel)] for channel in CHANNEL_NAMES},
                            depth.levels(Side.BUY), depth.levels(Side.SELL), depth.top, depth.last_trade)


def released_depths(matcher, last_trades: dict[str, Trade]) -> dict[str, Depth]:
    """The public books of a freshly recovered matcher: all it holds is journaled, so all is released."""
    depths = {}
    for symbol, book in matcher.books.items():
        depth = depths[symbol] = Depth(symbol)
        bid, bid_qty, ask, ask_qty = book.top()
        depth.load(book.depth(Side.BUY), book.depth(Side.SELL),
                   TopOfBook(matcher.seq, 0, symbol, bid, bid_qty, ask, ask_qty), last_trades.get(symbol),
                   matcher.seq)
    return depths
