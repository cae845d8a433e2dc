"""exchange.bench.limits: the load's prices and sizes stay inside every limit of an instrument."""

from __future__ import annotations

import pytest

from exchange.bench.limits import DEFAULT_CENTRE, FULL_REACH, plan
from exchange.core.instruments import Instrument


def every_price_inside_every_band(instrument: Instrument, centre: int, reach: int) -> bool:
    prices = range(centre - reach, centre + reach + 1)
    return all(instrument.band_problem(price, last) == "" for last in prices for price in prices)


def test_without_limits_the_load_goes_its_full_reach_around_the_default_centre():
    load = plan(Instrument("AAPL", "0.01", "1"), None)
    assert (load.centre, load.reach, load.lots, load.max_resting) == (
        DEFAULT_CENTRE, FULL_REACH, tuple(range(1, 11)), None)
    assert load.swing + load.offset == load.reach and load.offset >= 5


@pytest.mark.parametrize("band, last", [("0.05", None), ("0.01", 43_000_00), ("2", 150_00), ("0.1", 20), ("5", 1)])
def test_prices_stay_inside_the_band_around_any_trade_they_can_make(band, last):
    instrument = Instrument("X", "0.01", "1", price_band=band, reference_price="1000.00")
    load = plan(instrument, last)
    assert load.centre == (last or 1000_00)
    assert every_price_inside_every_band(instrument, load.centre, load.reach)
    assert load.reach == FULL_REACH or not every_price_inside_every_band(instrument, load.centre, load.reach + 1)


def test_prices_stay_between_one_tick_and_max_price():
    load = plan(Instrument("X", "0.01", "1", max_price="500.00"), None)
    assert load.centre + load.reach <= 500_00 and load.centre - load.reach >= 1
    low = plan(Instrument("X", "0.01", "1"), 3)
    assert low.centre - low.reach >= 1


def test_sizes_keep_to_min_qty_max_qty_and_max_notional():
    load = plan(Instrument("X", "0.01", "0.001", min_qty="0.002", max_qty="0.008"), None)
    assert load.lots == (2, 2, 3, 4, 5, 6, 7, 8, 8, 8)
    notional = plan(Instrument("X", "0.01", "1", max_notional="5000"), None)  # 5 shares at ~1,000
    assert max(notional.lots) * (notional.centre + notional.reach) * 0.01 <= 5000 < 6 * (notional.centre - notional.reach) * 0.01
    with pytest.raises(ValueError, match="max_notional allows no order of the minimum quantity 10"):
        plan(Instrument("X", "0.01", "1", min_qty="10", max_notional="5000"), None)


def test_resting_orders_are_shared_among_the_sessions_of_a_user():
    instrument = Instrument("X", "0.01", "1", max_open_orders=7)
    assert plan(instrument, None).max_resting == 7
    assert plan(instrument, None, sessions_per_user=3).max_resting == 2
