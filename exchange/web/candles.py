"""Candles (open, high, low, close, traded quantity) of one instrument, built from its trades. Pure.

A candle covers ``interval`` seconds from a multiple of ``interval`` (UTC); a trade goes into the
candle its ``ts_event`` falls in. Trades arrive in order, so only the newest candle of each
interval ever changes; a trade older than the newest candle (none should come) still lands in its
own candle. Each interval keeps its last ``keep`` candles.
"""

from __future__ import annotations

INTERVALS = (60, 300, 3600)  # seconds: 1 m, 5 m, 1 h
NS = 1_000_000_000


class Candles:
    """Every interval's candles of one instrument: start (s) → [start, open, high, low, close, qty]
    in ticks and lots."""

    __slots__ = ("series", "keep")

    def __init__(self, keep: int = 500):
        self.keep = keep
        self.series: dict[int, dict[int, list[int]]] = {interval: {} for interval in INTERVALS}

    def add(self, ts_event: int, price: int, qty: int) -> list[tuple[int, list[int]]]:
        """Put one trade in; the (interval, candle) pairs it changed."""
        changed = []
        for interval, candles in self.series.items():
            start = ts_event // NS // interval * interval
            candle = candles.get(start)
            if candle is None:
                candle = candles[start] = [start, price, price, price, price, 0]
                if len(candles) > self.keep:
                    del candles[min(candles)]
            candle[2] = max(candle[2], price)
            candle[3] = min(candle[3], price)
            candle[4] = price
            candle[5] += qty
            changed.append((interval, candle))
        return changed

    def history(self, interval: int) -> list[list[int]]:
        """An interval's candles, oldest first."""
        return [self.series[interval][start] for start in sorted(self.series[interval])]
