"""Assets, exact amounts and an instrument's money terms (base, quote, fee rates).

Inside the core an amount is an int number of its asset's smallest ``unit`` ("0.01" for USD:
12.34 USD is 1234). Decimal text is parsed and formatted only here, at the edge.

An instrument's ``Terms`` turn its integer grids into amounts, exactly:
- ``base_amount(qty)``: lots → base units; one lot must be a whole number of base units;
- ``notional(qty, price)``: lots × ticks → quote units; one lot at one tick must be a whole
  number of quote units, so every trade's value is exact;
- fees: rates in parts per million of the notional (a basis point is 100 ppm); a fee is rounded
  in the venue's favour to the quote's unit (see ``fee_due``). ``grid_problem`` and
  ``fee_problem`` say why a configuration cannot be used.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

from exchange.core.instruments import GridError, Instrument, parse_decimal
from exchange.errors import RejectCode

_RATE_TEXT = re.compile(r"-?[0-9]{1,5}(?:\.[0-9]{1,12})?")
PPM = 1_000_000  # fee rates are in parts per million: 1 bps = 100 ppm
MAX_TAKER_BPS = 10_000  # 100 %: a fee never exceeds the notional it is charged on
MAX_UNITS = 2**63 - 1  # the most units an amount given as text may be: what a message carries (a signed 64-bit int)
# exact for units (up to 20 digits, with a sign: a balance may be below MAX_UNITS' negative) times a unit
# (at most 24 digits: 12 before and 12 after the point)
_EXACT = Context(prec=50)


class Asset:
    """A thing held in an account (``BTC``, ``USD``) and its smallest unit (``"0.00000001"``)."""

    __slots__ = ("name", "unit", "_unit", "_places")

    def __init__(self, name: str, unit: str):
        self.name = name
        self.unit = unit
        try:
            self._unit = parse_decimal(unit, "unit", RejectCode.MALFORMED)
        except GridError as e:
            raise ValueError(f"asset {name}: {e.reason}") from None
        self._places = max(0, -self._unit.as_tuple().exponent)

    def to_units(self, text: str) -> int:
        """Amount text → units; GridError(MALFORMED) if not a positive multiple of the unit."""
        value = parse_decimal(text, f"amount of {self.name}", RejectCode.MALFORMED)
        units, rest = divmod(value, self._unit)
        if rest:
            raise GridError(RejectCode.MALFORMED,
                            f"amount {text} is not a multiple of {self.name}'s unit {self.unit}")
        if units > MAX_UNITS:
            raise GridError(RejectCode.MALFORMED, f"amount {text} is more than the most an amount of {self.name}"
                            f" may be, {self.format(MAX_UNITS)}")
        return int(units)

    def format(self, units: int) -> str:
        """Units → decimal text with the unit's places (``215043`` → ``"2150.43"``), exact for any
        amount a message carries (the default context's 28 digits would round a unit with many
        significant digits times 10^18 units)."""
        return f"{_EXACT.multiply(units, self._unit):.{self._places}f}"

    def units_in(self, amount: Decimal) -> Decimal:
        """How many units ``amount`` (a Decimal of this asset) is; not always whole."""
        return amount / self._unit

    def __repr__(self) -> str:
        return f"Asset({self.name!r}, unit={self.unit!r})"


def _bps_to_ppm(text: str, what: str) -> int:
    """A rate in basis points ("2.5", "-1", "0") → parts per million; ValueError if not exact."""
    if not _RATE_TEXT.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a number of basis points like 2.5 or -1")
    ppm = Decimal(text) * 100
    if ppm != ppm.to_integral_value():
        raise ValueError(f"{what} {text} has more than two decimals of a basis point")
    return int(ppm)


class FeeRates:
    """Maker and taker rates, given in basis points as decimal text; kept in ppm.

    A negative maker rate is a rebate. Rules (``fee_problem``): the taker rate is 0 to 100 %;
    the maker rate is at most the taker rate (a buy holds the taker fee, which must cover
    either) and a rebate is at most the taker fee (the venue never pays out more than it takes
    on one trade).
    """

    __slots__ = ("maker_bps", "taker_bps", "maker", "taker")

    def __init__(self, maker_bps: str = "0", taker_bps: str = "0"):
        self.maker_bps = maker_bps
        self.taker_bps = taker_bps
        self.maker = _bps_to_ppm(maker_bps, "maker fee")
        self.taker = _bps_to_ppm(taker_bps, "taker fee")
        problem = fee_problem(self.maker, self.taker)
        if problem:
            raise ValueError(problem)

    def __repr__(self) -> str:
        return f"FeeRates(maker_bps={self.maker_bps!r}, taker_bps={self.taker_bps!r})"


def fee_problem(maker: int, taker: int) -> str:
    """Why maker and taker rates (ppm) cannot be used, or ""."""
    if not 0 <= taker <= MAX_TAKER_BPS * 100:
        return f"the taker fee {taker / 100:g} bps must be between 0 and {MAX_TAKER_BPS} bps"
    if maker > taker:
        return (f"the maker fee {maker / 100:g} bps is above the taker fee {taker / 100:g} bps;"
                " a buy holds the taker fee, which must cover a maker fill too")
    if -maker > taker:
        return (f"the maker rebate {-maker / 100:g} bps is above the taker fee {taker / 100:g} bps;"
                " the venue would pay out more than it takes on a trade")
    return ""


class FeeSchedule:
    """The default rates and the instruments that have their own."""

    def __init__(self, default: FeeRates | None = None, by_symbol: dict[str, FeeRates] | None = None):
        self.default = default or FeeRates()
        self.by_symbol = dict(by_symbol or {})

    def rates(self, symbol: str) -> FeeRates:
        return self.by_symbol.get(symbol, self.default)


def grid_problem(instrument: Instrument, base: Asset, quote: Asset) -> str:
    """Why ``instrument``'s grids cannot be settled exactly in ``base`` and ``quote``, or ""."""
    lot = Decimal(instrument.lot_size)
    tick = Decimal(instrument.tick_size)
    per_lot = base.units_in(lot)
    if per_lot != per_lot.to_integral_value():
        return (f"{instrument.symbol}: lot_size {instrument.lot_size} is not a whole number of"
                f" {base.name} units ({base.unit}); make {base.name}'s unit divide it")
    per_lot_tick = quote.units_in(lot * tick)
    if per_lot_tick != per_lot_tick.to_integral_value():
        return (f"{instrument.symbol}: one lot ({instrument.lot_size}) at one tick ({instrument.tick_size})"
                f" is {(lot * tick).normalize():f} {quote.name}, finer than {quote.name}'s unit {quote.unit};"
                f" make {quote.name}'s unit divide {(lot * tick).normalize():f} or coarsen the lot or tick")
    return ""


class Terms:
    """An instrument's money: its base and quote assets, exact conversions and fee rates.

    Raises ValueError (from ``grid_problem``) if the grids cannot be settled exactly.
    """

    __slots__ = ("instrument", "symbol", "base", "quote", "rates", "base_per_lot", "quote_per_lot_tick")

    def __init__(self, instrument: Instrument, base: Asset, quote: Asset, rates: FeeRates | None = None):
        problem = grid_problem(instrument, base, quote)
        if problem:
            raise ValueError(problem)
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.base = base
        self.quote = quote
        self.rates = rates or FeeRates()
        lot = Decimal(instrument.lot_size)
        self.base_per_lot = int(base.units_in(lot))
        self.quote_per_lot_tick = int(quote.units_in(lot * Decimal(instrument.tick_size)))

    def base_amount(self, qty: int) -> int:
        """``qty`` lots in base units."""
        return qty * self.base_per_lot

    def notional(self, qty: int, price: int) -> int:
        """``qty`` lots at ``price`` ticks in quote units (exact)."""
        return qty * price * self.quote_per_lot_tick

    def with_taker_fee(self, notional: int) -> int:
        """``notional`` plus the taker fee on it, rounded up: what a buy of that value holds."""
        return notional + fee_due(notional * self.rates.taker)

    def budget(self, funds: int) -> int:
        """The most lots × ticks a market buy may trade so that value plus taker fee fits ``funds``."""
        rate = self.rates.taker
        value = funds * PPM // (PPM + rate)  # the most value whose exact fee fits; its rounded fee may not
        while value and self.with_taker_fee(value) > funds:
            value -= 1
        return value // self.quote_per_lot_tick

    def __repr__(self) -> str:
        return f"Terms({self.symbol!r}, base={self.base.name!r}, quote={self.quote.name!r})"


def fee_due(exact: int) -> int:
    """A fee given exactly in millionths of a quote unit, rounded to a unit in the venue's favour.

    Rounded up: a charge (positive) up, a rebate (negative) towards zero.
    """
    return -(-exact // PPM)
