"""Decimal text becomes integer ticks and lots at the edge, or is refused with a reason that says why."""

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.core.instruments import GridError, Instrument
from exchange.errors import RejectCode

BTC = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001", min_qty="0.010", max_qty="100",
                 max_price="1000000")
BAD_PRICE, BAD_QTY = RejectCode.BAD_PRICE, RejectCode.BAD_QTY


def refusal(convert, text: str) -> tuple[RejectCode, str]:
    with pytest.raises(GridError) as caught:
        convert(text)
    return caught.value.code, caught.value.reason


# -- on the grid ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ticks", [
    ("43000.10", 4300010),
    ("43000.1", 4300010),
    ("43000", 4300000),
    ("0.01", 1),
    ("0.010000", 1),
    ("007.50", 750),
    ("1000000", 100000000),  # exactly the maximum price
])
def test_price_on_the_tick_grid_becomes_ticks(text, ticks):
    assert BTC.to_ticks(text) == ticks


@pytest.mark.parametrize("text, lots", [
    ("1.5", 1500),
    ("0.010", 10),  # exactly the minimum quantity
    ("0.01", 10),
    ("2", 2000),
    ("100", 100000),  # exactly the maximum quantity
])
def test_quantity_on_the_lot_grid_becomes_lots(text, lots):
    assert BTC.to_lots(text) == lots


def test_limits_are_held_in_ticks_and_lots():
    assert (BTC.min_qty, BTC.max_qty, BTC.max_price) == (10, 100000, 100000000)


def test_limits_default_to_one_lot_and_large_maxima():
    plain = Instrument("X", "0.01", "0.001")
    assert plain.min_qty == 1
    assert plain.max_qty == 10**12  # 1,000,000,000 units of 0.001
    assert plain.max_price == 10**11  # 1,000,000,000 units of 0.01


# -- off the grid, not positive, out of range ----------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("43000.105", "price 43000.105 is not a multiple of tick 0.01"),
    ("0.001", "price 0.001 is not a multiple of tick 0.01"),
    ("100.000000000001", "price 100.000000000001 is not a multiple of tick 0.01"),
    ("0", "price 0 must be positive"),
    ("0.00", "price 0.00 must be positive"),
    ("-1", "price -1 must be positive"),
    ("-43000.10", "price -43000.10 must be positive"),
    ("1000000.01", "price 1000000.01 is above the maximum 1000000.00"),
    ("999999999999", "price 999999999999 is above the maximum 1000000.00"),
])
def test_price_off_grid_not_positive_or_too_high_is_bad_price(text, reason):
    assert refusal(BTC.to_ticks, text) == (BAD_PRICE, reason)


@pytest.mark.parametrize("text, reason", [
    ("1.0005", "quantity 1.0005 is not a multiple of lot 0.001"),
    ("0.0001", "quantity 0.0001 is not a multiple of lot 0.001"),
    ("0", "quantity 0 must be positive"),
    ("0.000", "quantity 0.000 must be positive"),
    ("-2", "quantity -2 must be positive"),
    ("0.009", "quantity 0.009 is below the minimum 0.010"),
    ("0.001", "quantity 0.001 is below the minimum 0.010"),
    ("100.001", "quantity 100.001 is above the maximum 100.000"),
    ("5000", "quantity 5000.000 is above the maximum 100.000"),
])
def test_quantity_off_grid_not_positive_or_out_of_limits_is_bad_qty(text, reason):
    assert refusal(BTC.to_lots, text) == (BAD_QTY, reason)


NOT_PLAIN = [
    "1234567890123",  # 13 integer digits
    "1.0000000000000",  # 13 fraction digits, although on the grid
    "1e3", "1E3", "1.5e2",  # scientific notation
    "NaN", "nan", "sNaN", "Infinity", "inf", "-inf",
    " 1.00", "1.00 ", "1 000", "1.00\n", "\t1",  # spaces
    "",
    "+1", ".5", "1.", "1,5", "1_000", "0x10", "1/2",
    "١٢٣",  # Arabic-Indic digits, which Decimal itself would accept
]


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_price_that_is_not_plain_decimal_text_is_bad_price(text):
    code, reason = refusal(BTC.to_ticks, text)
    assert code is BAD_PRICE
    assert reason == f"price {text!r} is not a plain decimal number of at most 12+12 digits"  # quoted: any text


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_quantity_that_is_not_plain_decimal_text_is_bad_qty(text):
    code, reason = refusal(BTC.to_lots, text)
    assert code is BAD_QTY
    assert reason == f"quantity {text!r} is not a plain decimal number of at most 12+12 digits"  # quoted: any text


def test_grid_error_is_a_value_error_carrying_code_and_reason():
    error = GridError(BAD_PRICE, "price 1.001 is not a multiple of tick 0.01")
    assert isinstance(error, ValueError)
    assert str(error) == error.reason


# -- integer values checked inside the core ------------------------------------------------------

@pytest.mark.parametrize("ticks, problem", [
    (1, ""),
    (100000000, ""),
    (0, "price must be at least one tick (0.01)"),
    (-5, "price must be at least one tick (0.01)"),
    (100000001, "price 1000000.01 is above the maximum 1000000.00"),
])
def test_price_problem_names_what_is_allowed(ticks, problem):
    assert BTC.price_problem(ticks) == problem


@pytest.mark.parametrize("lots, problem", [
    (10, ""),
    (100000, ""),
    (9, "quantity 0.009 is below the minimum 0.010"),
    (0, "quantity 0.000 is below the minimum 0.010"),
    (-1, "quantity -0.001 is below the minimum 0.010"),
    (100001, "quantity 100.001 is above the maximum 100.000"),
])
def test_qty_problem_names_what_is_allowed(lots, problem):
    assert BTC.qty_problem(lots) == problem


# -- back to text --------------------------------------------------------------------------------

@pytest.mark.parametrize("tick_size, lot_size, ticks, price, lots, qty", [
    ("0.01", "0.001", 4300010, "43000.10", 1500, "1.500"),
    ("0.01", "0.001", 1, "0.01", 1, "0.001"),
    ("0.05", "0.01", 21, "1.05", 250, "2.50"),
    ("0.5", "1", 3, "1.5", 7, "7"),
    ("5", "10", 3, "15", 2, "20"),
    ("0.000001", "0.00000001", 1234567, "1.234567", 1, "0.00000001"),
])
def test_format_shows_the_grid_number_of_places(tick_size, lot_size, ticks, price, lots, qty):
    instrument = Instrument("X", tick_size, lot_size)
    assert instrument.format_price(ticks) == price
    assert instrument.format_qty(lots) == qty


GRIDS = [
    Instrument("BTC-USD", "0.01", "0.001", min_qty="0.010", max_qty="100", max_price="1000000"),
    Instrument("ETH-USD", "0.05", "0.01"),
    Instrument("COARSE", "25", "5", max_price="100000000000"),
    Instrument("FINE", "0.000000000001", "0.000000000001", max_price="999999999999"),
]


@pytest.mark.parametrize("instrument", GRIDS, ids=lambda i: i.symbol)
@given(data=st.data())
def test_on_grid_values_round_trip_through_text(instrument, data):
    ticks = data.draw(st.integers(1, instrument.max_price), label="ticks")
    lots = data.draw(st.integers(instrument.min_qty, instrument.max_qty), label="lots")
    price, qty = instrument.format_price(ticks), instrument.format_qty(lots)
    assert instrument.to_ticks(price) == ticks
    assert instrument.to_lots(qty) == lots
    assert instrument.format_price(instrument.to_ticks(price)) == price
    assert instrument.format_qty(instrument.to_lots(qty)) == qty


@given(ticks=st.integers(1, BTC.max_price), zeros=st.integers(0, 10))
def test_trailing_zeros_do_not_change_the_value(ticks, zeros):
    text = BTC.format_price(ticks) + "0" * zeros
    assert BTC.to_ticks(text) == ticks
    assert Decimal(BTC.format_price(BTC.to_ticks(text))) == Decimal(text)


# -- inconsistent definitions --------------------------------------------------------------------

@pytest.mark.parametrize("definition, message", [
    (dict(tick_size="0"), "tick_size 0 must be positive"),
    (dict(tick_size="-0.01"), "tick_size -0.01 must be positive"),
    (dict(tick_size="1e-2"), "tick_size '1e-2' is not a plain decimal"),
    (dict(tick_size=""), "tick_size '' is not a plain decimal"),
    (dict(lot_size="0.000"), "lot_size 0.000 must be positive"),
    (dict(lot_size="abc"), "lot_size 'abc' is not a plain decimal"),
    (dict(min_qty="0.0015"), "min_qty 0.0015 is not a multiple of lot_size 0.001"),
    (dict(min_qty="0"), "min_qty 0 must be positive"),
    (dict(max_qty="100.0005"), "max_qty 100.0005 is not a multiple of lot_size 0.001"),
    (dict(max_price="100.005"), "max_price 100.005 is not a multiple of tick_size 0.01"),
    (dict(max_price="0.001"), "max_price 0.001 is not a multiple of tick_size 0.01"),
    (dict(min_qty="2", max_qty="1"), "min_qty 2 is above max_qty 1"),
])
def test_inconsistent_instrument_definition_raises_value_error(definition, message):
    arguments = dict(symbol="BTC-USD", tick_size="0.01", lot_size="0.001") | definition
    with pytest.raises(ValueError, match=re.escape(message)):
        Instrument(**arguments)
