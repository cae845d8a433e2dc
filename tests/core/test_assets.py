"""Assets, exact terms and fee rates: the edge where decimal text becomes units, and the grid check."""

from __future__ import annotations

import pytest

from exchange.core.assets import Asset, FeeRates, FeeSchedule, Terms, fee_due, grid_problem
from exchange.core.instruments import GridError, Instrument
from exchange.errors import RejectCode

USD = Asset("USD", "0.01")
BTC = Asset("BTC", "0.00000001")


@pytest.mark.parametrize("text, units", [("2150.43", 215043), ("0.01", 1), ("1", 100), ("1200.00", 120000)])
def test_amount_text_becomes_units_and_back(text, units):
    assert USD.to_units(text) == units
    assert USD.to_units(USD.format(units)) == units


@pytest.mark.parametrize("text, reason", [
    ("0.001", "amount 0.001 is not a multiple of USD's unit 0.01"),
    ("-5", "amount of USD -5 must be positive"),
    ("1e3", "amount of USD '1e3' is not a plain decimal number of at most 12+12 digits"),
])
def test_amount_off_the_unit_is_refused_not_rounded(text, reason):
    with pytest.raises(GridError) as refused:
        USD.to_units(text)
    assert (refused.value.code, refused.value.reason) == (RejectCode.MALFORMED, reason)


def test_a_unit_must_be_a_plain_positive_decimal():
    with pytest.raises(ValueError, match="asset USD: unit"):
        Asset("USD", "0")


@pytest.mark.parametrize("tick, lot, base, quote, problem", [
    ("0.01", "0.0001", BTC, Asset("USD", "0.000001"), ""),
    ("0.01", "0.0001", BTC, USD,
     "BTC-USD: one lot (0.0001) at one tick (0.01) is 0.000001 USD, finer than USD's unit 0.01;"
     " make USD's unit divide 0.000001 or coarsen the lot or tick"),
    ("1", "0.000000001", BTC, USD,
     "BTC-USD: lot_size 0.000000001 is not a whole number of BTC units (0.00000001); make BTC's unit divide it"),
    ("1", "0.01", Asset("BTC", "0.001"), USD, ""),
    ("0.5", "0.02", Asset("BTC", "0.01"), USD, ""),  # 0.01 USD exactly
    ("0.5", "0.01", Asset("BTC", "0.01"), USD,
     "BTC-USD: one lot (0.01) at one tick (0.5) is 0.005 USD, finer than USD's unit 0.01;"
     " make USD's unit divide 0.005 or coarsen the lot or tick"),
])
def test_grid_is_refused_when_a_lot_or_a_trade_is_not_whole_units(tick, lot, base, quote, problem):
    instrument = Instrument("BTC-USD", tick_size=tick, lot_size=lot)
    assert grid_problem(instrument, base, quote) == problem
    if problem:
        with pytest.raises(ValueError, match="BTC-USD: "):
            Terms(instrument, base, quote)


def test_terms_convert_lots_and_ticks_exactly():
    terms = Terms(Instrument("BTC-USD", tick_size="0.01", lot_size="0.0001"), BTC, Asset("USD", "0.000001"))
    assert (terms.base_per_lot, terms.quote_per_lot_tick) == (10_000, 1)
    # 0.5 BTC at 43000.10 USD = 21500.05 USD = 21500050000 µUSD
    assert terms.notional(5000, 4300010) == 21_500_050_000
    assert terms.base_amount(5000) == 50_000_000


@pytest.mark.parametrize("maker, taker, ppm", [
    ("0", "0", (0, 0)), ("1", "2.5", (100, 250)), ("-2.5", "2.5", (-250, 250)), ("0.01", "10000", (1, 1_000_000)),
])
def test_fee_rates_are_basis_points_kept_in_ppm(maker, taker, ppm):
    rates = FeeRates(maker, taker)
    assert (rates.maker, rates.taker) == ppm


@pytest.mark.parametrize("maker, taker, problem", [
    ("3", "2", "the maker fee 3 bps is above the taker fee 2 bps"),
    ("-3", "2", "the maker rebate 3 bps is above the taker fee 2 bps"),
    ("0", "10001", "the taker fee 10001 bps must be between 0 and 10000 bps"),
    ("0", "-1", "the taker fee -1 bps must be between 0 and 10000 bps"),
    ("0.001", "1", "maker fee 0.001 has more than two decimals of a basis point"),
    ("one", "1", "maker fee 'one' is not a number of basis points"),
])
def test_fee_rates_that_would_let_the_venue_pay_out_or_underhold_are_refused(maker, taker, problem):
    with pytest.raises(ValueError, match=problem):
        FeeRates(maker, taker)


@pytest.mark.parametrize("exact, due", [
    (0, 0), (1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2),  # charges round up
    (-1, 0), (-999_999, 0), (-1_000_000, -1), (-1_999_999, -1),  # rebates round towards zero
])
def test_fees_round_in_the_venues_favour(exact, due):
    assert fee_due(exact) == due


def test_fee_schedule_has_a_default_and_per_instrument_rates():
    special = FeeRates("-1", "3")
    schedule = FeeSchedule(FeeRates("1", "5"), {"ETH-USD": special})
    assert schedule.rates("ETH-USD") is special
    assert (schedule.rates("BTC-USD").maker, schedule.rates("BTC-USD").taker) == (100, 500)


@pytest.mark.parametrize("funds, taker_bps, budget", [
    (10_000, "0", 10_000),
    (10_000, "10", 9_990),  # 9990 + fee 9.99 → 10 = 10000
    (10_001, "10", 9_991),  # 9991 + 10 = 10001
    (1, "10", 0),  # one cent buys nothing once the fee is counted
])
def test_market_buy_budget_fits_value_and_rounded_fee_in_the_funds(funds, taker_bps, budget):
    terms = Terms(Instrument("X-USD", tick_size="1", lot_size="0.01"), Asset("X", "0.01"), USD,
                  FeeRates("0", taker_bps))
    assert terms.budget(funds) == budget
    assert terms.with_taker_fee(terms.notional(1, budget)) <= funds < terms.with_taker_fee(terms.notional(1, budget + 1))


@pytest.mark.parametrize("units", [10**18 - 1, -(10**18 - 1), 2**63 - 1, 7])
def test_an_amount_is_formatted_exactly_whatever_the_units_digits(units):
    """A unit with 12 significant digits times 10^18 units has 30 digits: the default context's 28
    would round them, and BALANCE would show an amount that is not the balance."""
    gold = Asset("GOLD", "0.123456789012")
    exact = abs(units) * 123456789012  # in 10^-12 of GOLD
    sign = "-" if units < 0 else ""
    assert gold.format(units) == f"{sign}{exact // 10**12}.{exact % 10**12:012d}"
