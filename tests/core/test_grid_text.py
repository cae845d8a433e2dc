"""Prices and quantities read from text as integers, and formatted from remembered texts, give
exactly what the plain Decimal way gives: the same ticks and lots, the same refusals, the same text."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core.instruments import MAX_CACHED, GridError, Instrument, parse_decimal
from exchange.errors import RejectCode

INSTRUMENTS = [
    Instrument("BTC-USD", "0.01", "0.0001", max_qty="1000"),
    Instrument("AAPL", "0.01", "1", max_qty="100000", max_price="100000"),
    Instrument("X", "0.05", "0.010", min_qty="0.050", max_qty="5", max_price="2000"),
    Instrument("Y", "5", "10", max_price="1000000"),
    Instrument("Z", "0.000000000001", "0.000000000001"),
]


def decimal_ticks(instrument: Instrument, text: str) -> int:
    """The reference: price text to ticks with Decimal, as the instrument did before it read integers."""
    value = parse_decimal(text, "price", RejectCode.BAD_PRICE)
    ticks, rest = divmod(value, Decimal(instrument.tick_size))
    if rest:
        raise GridError(RejectCode.BAD_PRICE, f"price {text} is not a multiple of tick {instrument.tick_size}")
    if ticks > instrument.max_price:
        raise GridError(RejectCode.BAD_PRICE,
                        f"price {text} is above the maximum {decimal_text(instrument.max_price, instrument.tick_size)}")
    return int(ticks)


def decimal_lots(instrument: Instrument, text: str) -> int:
    """The reference for quantities, as ``decimal_ticks``."""
    value = parse_decimal(text, "quantity", RejectCode.BAD_QTY)
    lots, rest = divmod(value, Decimal(instrument.lot_size))
    if rest:
        raise GridError(RejectCode.BAD_QTY, f"quantity {text} is not a multiple of lot {instrument.lot_size}")
    reason = instrument.qty_problem(int(lots))
    if reason:
        raise GridError(RejectCode.BAD_QTY, reason)
    return int(lots)


def decimal_text(count: int, unit: str) -> str:
    """The reference: ``count`` units as text with the unit's places, by Decimal."""
    places = max(0, -Decimal(unit).as_tuple().exponent)
    return f"{count * Decimal(unit):.{places}f}"


def outcome(convert, *args):
    """What a conversion gives: its value, or the code and reason of its refusal."""
    try:
        return convert(*args)
    except GridError as e:
        return e.code, e.reason


def both_ways(instrument: Instrument, text: str) -> None:
    """Each conversion agrees with its reference, twice (the second time from what it remembered)."""
    for _ in range(2):
        assert outcome(instrument.to_ticks, text) == outcome(decimal_ticks, instrument, text)
        assert outcome(instrument.to_lots, text) == outcome(decimal_lots, instrument, text)


# -- reading -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "999999999999.999999999999", "999999999999", "1000000000000", "0.0000000000001", "1.0000000000000",
    "000043000.05", "43000.050000000000", "43000.050000000001", "0043000", "0", "0.0", "000000000000.000000000000",
    "0.000000000001", "0.01", "0.05", "0.10", "5", "10", "15", "1000", "2000.00", "2000.05", "100000", "100001",
    "+1", "-1", "-0.05", "--1", "1e3", "1E3", "1e-2", "1.5e2", "1_000", " 1", "1 ", "\t1", "1\n", "",
    ".", "1.", ".5", "1.2.3", "1,5", "nan", "NaN", "inf", "Infinity", "-inf", "0x10", "١٢", "1²", "½", "٣.٥",
    "12345678901234567890", "0." + "0" * 12 + "1",
])
def test_edge_cases_are_read_or_refused_as_the_decimal_way_does(text):
    for instrument in INSTRUMENTS:
        both_ways(instrument, text)


@given(st.text(alphabet="0123456789.-+eE _\t١²", max_size=30))
@settings(max_examples=500, deadline=None)
def test_any_short_text_is_read_or_refused_as_the_decimal_way_does(text):
    for instrument in INSTRUMENTS:
        both_ways(instrument, text)


@given(st.integers(0, 10**12 - 1), st.integers(0, 12), st.integers(0, 10**12 - 1), st.booleans())
@settings(max_examples=500, deadline=None)
def test_any_plain_decimal_is_read_or_refused_as_the_decimal_way_does(whole, places, fraction, zeros):
    digits = str(fraction % 10**places).rjust(places, "0") if places else ""
    text = f"{whole}.{digits}{'000' if zeros else ''}" if places or zeros else str(whole)
    for instrument in INSTRUMENTS:
        both_ways(instrument, text)


@given(st.sampled_from(INSTRUMENTS), st.integers(1, 10**9))
@settings(max_examples=300, deadline=None)
def test_every_price_and_quantity_on_the_grid_reads_back_from_its_text(instrument, count):
    ticks = min(count, instrument.max_price)
    assert instrument.to_ticks(instrument.format_price(ticks)) == ticks
    lots = min(max(count, instrument.min_qty), instrument.max_qty)
    assert instrument.to_lots(instrument.format_qty(lots)) == lots


def test_a_refused_text_stays_refused_when_asked_again():
    btc = INSTRUMENTS[0]
    for _ in range(3):
        with pytest.raises(GridError, match="not a multiple of tick 0.01"):
            btc.to_ticks("43000.005")
        with pytest.raises(GridError, match="must be positive"):
            btc.to_lots("0.0000")


# -- formatting ----------------------------------------------------------------------------------

@given(st.sampled_from(INSTRUMENTS), st.integers(-10**15, 10**15))
@settings(max_examples=500, deadline=None)
def test_prices_and_quantities_format_as_the_decimal_way_does(instrument, count):
    for _ in range(2):
        assert instrument.format_price(count) == decimal_text(count, instrument.tick_size)
        assert instrument.format_qty(count) == decimal_text(count, instrument.lot_size)


def test_what_an_instrument_remembers_is_bounded_and_stays_right():
    btc = Instrument("BTC-USD", "0.01", "0.0001", max_qty="1000")
    for ticks in range(1, 3 * MAX_CACHED):
        text = decimal_text(ticks, "0.01")
        assert btc.format_price(ticks) == text
        assert btc.to_ticks(text) == ticks
        assert btc.to_lots(decimal_text(ticks, "0.0001")) == ticks
        assert btc.format_qty(ticks) == decimal_text(ticks, "0.0001")
    assert btc.format_price(1) == "0.01" and btc.to_ticks("0.01") == 1
    for cache in (btc._ticks, btc._lots, btc._price_texts, btc._qty_texts):
        assert 0 < len(cache) <= MAX_CACHED
