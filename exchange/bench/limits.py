"""What the load may send on each instrument, so that no order breaks one of its limits.

Pure: an Instrument (its grids and limits) and the instrument's last trade in, an ``InstrumentLoad``
out. Every price the load sends lies within ``reach`` ticks of ``centre`` (the mid swings by two
thirds of the reach, orders sit or cross up to the rest), and every trade happens at such a price,
so the price band around any last trade the load makes still holds every price it sends. Prices
also stay within one tick and ``max_price``; quantities within ``min_qty``, ``max_qty`` and
``max_notional`` at the highest price; resting orders within ``max_open_orders``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange.core.instruments import Instrument

DEFAULT_CENTRE = 100_000  # ticks (1000.00 with a 0.01 tick), for an instrument with no price yet
FULL_REACH = 30  # ticks either side of the centre, when the limits leave room for it
QTY_CHOICES = 10  # order sizes 1..10 lots, before the limits


@dataclass(frozen=True)
class InstrumentLoad:
    symbol: str
    tick_size: str
    lot_size: str
    centre: int  # ticks
    reach: int  # ticks either side of the centre that prices may go
    lots: tuple[int, ...]  # the order sizes to choose from, in lots
    max_resting: int | None  # resting orders per session on this instrument (None: no limit)

    @property
    def swing(self) -> int:
        """How far the mid moves from the centre."""
        return self.reach * 2 // 3

    @property
    def offset(self) -> int:
        """How far from the mid orders rest (and cross) at most."""
        return self.reach - self.swing


def plan(instrument: Instrument, last_price: int | None, sessions_per_user: int = 1) -> InstrumentLoad:
    """The load for ``instrument``, whose last trade was at ``last_price`` ticks (None: none yet).

    Raises ValueError if the limits leave no order the load could send.
    """
    centre = last_price or instrument.reference_price or min(DEFAULT_CENTRE, instrument.max_price - FULL_REACH)
    centre = max(1, min(centre, instrument.max_price))
    reach = min(FULL_REACH, centre - 1, instrument.max_price - centre)
    while reach and not _inside_band(instrument, centre, reach):
        reach -= 1
    highest = centre + reach
    max_lots = instrument.max_qty
    if instrument.max_notional is not None:
        max_lots = min(max_lots, instrument.max_notional // highest)
    if max_lots < instrument.min_qty:
        raise ValueError(f"{instrument.symbol}: max_notional allows no order of the minimum quantity"
                         f" {instrument.format_qty(instrument.min_qty)} at {instrument.format_price(highest)}")
    lots = tuple(min(max(n, instrument.min_qty), max_lots) for n in range(1, QTY_CHOICES + 1))
    max_resting = (instrument.max_open_orders // sessions_per_user
                   if instrument.max_open_orders is not None else None)
    return InstrumentLoad(instrument.symbol, instrument.tick_size, instrument.lot_size, centre, reach, lots,
                          max_resting)


def _inside_band(instrument: Instrument, centre: int, reach: int) -> bool:
    """Whether every price within ``reach`` of ``centre`` is inside the band around every other."""
    if instrument.price_band is None:
        return True
    low, high = centre - reach, centre + reach
    return instrument.band(high)[0] <= low and instrument.band(low)[1] >= high
