"""What the page shows of each instrument, kept on the web role's event loop: the book as the
notifier's feed has it, the trade tape, candles and the last 24 hours' change.

Each instrument's ``MarketView`` numbers what it sends to browsers with its own ``seq``: a
``snapshot`` carries the whole view and the ``seq`` it reflects, every ``update`` after it is
``seq + 1``. A browser that sees any other number, or whose updates were dropped because it did
not keep up, takes a new snapshot: the same rules ``BookFeed`` follows with the notifier, one hop
further. Prices and quantities go out as decimal text in the instrument's units.
"""

from __future__ import annotations

import json
from collections import deque

from exchange.core.instruments import Instrument
from exchange.core.messages import DepthUpdate, Trade
from exchange.core.orders import Side
from exchange.marketdata.depth import Depth
from exchange.web.candles import INTERVALS, Candles
from exchange.wire.messages import DAY_NS

MINUTE_NS = 60 * 1_000_000_000


class MarketView:
    """One instrument as the page shows it, and the sequence of messages that keep a page in step."""

    def __init__(self, instrument: Instrument, tape_length: int):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.depth = Depth(instrument.symbol)
        self.state = "connecting"  # connecting, live, resyncing
        self.seq = 0
        self.tape: deque[Trade] = deque(maxlen=tape_length)
        # [minute, first price, last price] of each minute of the last 24 h that had trades, oldest first
        self.day: deque[list[int]] = deque(maxlen=DAY_NS // MINUTE_NS)
        self.candles = Candles()
        self.trade_seq = 0  # of the newest trade taken in: each trade counts once, from history or the feed
        self.snapshot_made: tuple[tuple[int, str], str] | None = None  # ((seq, state), the snapshot's JSON)

    def load(self, bids: list, asks: list, last_trade: Trade | None, trades: list[Trade]) -> None:
        """A (re-)sync of the feed: the whole book now, its last trade and the trades that came with
        it (the notifier's recent trades first, oldest first). Its pages want a new snapshot."""
        self.depth.load(bids, asks, None, last_trade, 0)
        for trade in trades:
            self._trade(trade)
        self.state = "live"
        self.seq += 1

    def apply(self, events: list) -> dict | None:
        """Events from the feed, in order; the update message they make (None if nothing shown changed)."""
        levels: dict[tuple[Side, int], int] = {}
        trades = []
        changed = {}
        for event in events:
            self.depth.apply(event)
            if type(event) is DepthUpdate:
                levels[(event.side, event.price)] = event.qty
            elif type(event) is Trade and (candles := self._trade(event)) is not None:
                trades.append(event)
                changed.update((interval, self._candle(candle)) for interval, candle in candles)
        if not levels and not trades:
            return None
        self.seq += 1
        fmt = self.instrument
        return {"type": "update", "symbol": self.symbol, "seq": self.seq,
                "levels": [[side.value, fmt.format_price(price), fmt.format_qty(qty)]
                           for (side, price), qty in levels.items()],
                "trades": [self._trade_row(t) for t in trades],
                "candles": {str(interval): candle for interval, candle in changed.items()}}

    def _trade(self, trade: Trade) -> list | None:
        """Take a trade into the tape, the day and the candles, unless it was taken before (None); the
        (interval, candle) pairs it changed."""
        if trade.seq <= self.trade_seq:
            return None
        self.trade_seq = trade.seq
        self.tape.appendleft(trade)
        self._day_trade(trade.ts_event, trade.price)
        return self.candles.add(trade.ts_event, trade.price, trade.qty)

    def _day_trade(self, ts: int, price: int) -> None:
        """Count a trade in its minute of the day, and forget the minutes more than 24 h before it."""
        minute = ts - ts % MINUTE_NS
        if self.day and minute <= self.day[-1][0]:  # this minute's (or an earlier one's, if clocks differ)
            self.day[-1][2] = price
        else:
            self.day.append([minute, price, price])
        self._forget_day_before(ts)

    def _forget_day_before(self, now_ns: int) -> None:
        """Forget the minutes that began 24 h or more before ``now_ns``'s minute."""
        oldest = now_ns - now_ns % MINUTE_NS - DAY_NS
        while self.day and self.day[0][0] <= oldest:
            self.day.popleft()

    def snapshot(self) -> dict:
        fmt = self.instrument
        return {"type": "snapshot", "symbol": self.symbol, "seq": self.seq, "state": self.state,
                "tick_size": fmt.tick_size, "lot_size": fmt.lot_size,
                "tape_length": self.tape.maxlen,  # the page keeps this many trades as updates come
                "bids": [[fmt.format_price(p), fmt.format_qty(q)] for p, q in self.depth.levels(Side.BUY)],
                "asks": [[fmt.format_price(p), fmt.format_qty(q)] for p, q in self.depth.levels(Side.SELL)],
                "trades": [self._trade_row(t) for t in self.tape],
                "candles": {str(i): [self._candle(c) for c in self.candles.history(i)] for i in INTERVALS}}

    def snapshot_text(self) -> str:
        """The snapshot as JSON text, made once for each ``seq`` and state and shared by all who ask."""
        made = self.snapshot_made
        if made is None or made[0] != (self.seq, self.state):
            made = self.snapshot_made = ((self.seq, self.state), json.dumps(self.snapshot(), separators=(",", ":")))
        return made[1]

    def summary(self, now_ns: int) -> dict:
        """Symbol, last price and the change over the last 24 h, to the minute (the notifier's recent
        trades, then the feed's)."""
        self._forget_day_before(now_ns)
        day = self.day
        last = self.depth.last_trade
        change = None
        if day and day[0][1]:
            change = f"{(day[-1][2] - day[0][1]) * 100 / day[0][1]:+.2f}"
        return {"symbol": self.symbol, "last": self.instrument.format_price(last.price) if last else None,
                "change_24h": change, "state": self.state}

    def _trade_row(self, trade: Trade) -> dict:
        fmt = self.instrument
        return {"trade_id": trade.trade_id, "price": fmt.format_price(trade.price), "qty": fmt.format_qty(trade.qty),
                "taker_side": trade.taker_side.value, "ts": trade.ts_event // 1_000_000}

    def _candle(self, candle: list[int]) -> list:
        fmt = self.instrument
        start, open_, high, low, close, qty = candle
        return [start, fmt.format_price(open_), fmt.format_price(high), fmt.format_price(low),
                fmt.format_price(close), fmt.format_qty(qty)]
