"""The public book as market data describes it: price levels, best bid/offer, last trade. Pure.

An engine keeps one ``Depth`` per instrument of what it has *released* (so a snapshot never shows
anything the journal does not hold yet); a subscriber keeps one built from a snapshot and the
deltas after it. Both apply the same events, so both end with the same book.
"""

from __future__ import annotations

from exchange.core.messages import DepthUpdate, TopOfBook, Trade
from exchange.core.orders import Side

BUY = Side.BUY


class Depth:
    """Levels of one instrument (price → total qty per side), the top of book and the last trade."""

    __slots__ = ("symbol", "bids", "asks", "top", "last_trade", "seq")

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.top: TopOfBook | None = None
        self.last_trade: Trade | None = None
        self.seq = 0  # engine seq of the last event applied

    def apply(self, event) -> None:
        if isinstance(event, DepthUpdate):
            levels = self.bids if event.side is BUY else self.asks
            if event.qty:
                levels[event.price] = event.qty
            else:
                levels.pop(event.price, None)
        elif isinstance(event, TopOfBook):
            self.top = event
        elif isinstance(event, Trade):
            self.last_trade = event
        self.seq = max(self.seq, event.seq)

    def levels(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """(price, qty) of one side, best first."""
        levels = self.bids if side is BUY else self.asks
        return sorted(levels.items(), reverse=side is BUY)[:limit]

    def load(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]], top: TopOfBook | None,
             last_trade: Trade | None, seq: int) -> None:
        self.bids, self.asks = dict(bids), dict(asks)
        self.top, self.last_trade, self.seq = top, last_trade, seq

    def state(self) -> tuple:
        """What two copies must agree on."""
        return (self.symbol, self.levels(Side.BUY), self.levels(Side.SELL))
