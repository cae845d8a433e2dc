"""Instruments and the one place where decimal text becomes integer ticks and lots.

Text on the grid is read as integers, straight from its digits; anything else (off the grid, not
positive, out of range, not a plain decimal) goes the Decimal way, which says exactly why. Each
instrument remembers the texts it read and the values it formatted lately (at most MAX_CACHED of
each kind): a market's prices and sizes repeat, and the gateway reads and writes them per order.
"""

from __future__ import annotations

import re
from decimal import Decimal

from exchange.core.orders import SelfTradePrevention
from exchange.errors import RejectCode

# At most 12 integer digits and 12 fraction digits: anything longer is a typo or an attack.
_DECIMAL_TEXT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
DEFAULT_MAX_PRICE = "1000000000"  # one billion units of the quote currency
MAX_CACHED = 1024  # texts read, and values formatted, that an instrument keeps per kind: about 0.4 MB in all


class GridError(ValueError):
    """A decimal value that is not on the instrument's grid; ``code`` and ``reason`` say why."""

    def __init__(self, code: RejectCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_decimal(text: str, what: str, code: RejectCode) -> Decimal:
    """A plain positive decimal (digits, optional fraction), or GridError naming ``what``."""
    if not _DECIMAL_TEXT.fullmatch(text):
        if text.startswith("-") and _DECIMAL_TEXT.fullmatch(text[1:]):
            raise GridError(code, f"{what} {text} must be positive")
        raise GridError(code, f"{what} {text!r} is not a plain decimal number of at most 12+12 digits")
    value = Decimal(text)
    if value == 0:
        raise GridError(code, f"{what} {text} must be positive")
    return value


def _units(text: str, places: int) -> int | None:
    """``text`` as a whole number of 10**-``places`` if it is a decimal ``parse_decimal`` takes and
    has no digit below that place but zeros; else None (then ``parse_decimal`` and the grid say why).

    Exact and without Decimal: the digits themselves, read as one integer.
    """
    whole, dot, fraction = text.partition(".")
    digits = whole + fraction
    # isascii too: str.isdigit takes other scripts' digits and superscripts
    if not (digits.isdigit() and digits.isascii() and 0 < len(whole) <= 12 and (0 < len(fraction) <= 12 or not dot)):
        return None
    short = places - len(fraction)
    if short >= 0:
        return int(digits) * _POWERS_OF_TEN[short]
    units, below = divmod(int(digits), _POWERS_OF_TEN[-short])
    return None if below else units


_POWERS_OF_TEN = [10**n for n in range(25)]


def _remember(cache: dict, key, value) -> None:
    """Keep ``value`` under ``key`` in one of an instrument's caches, which never hold more than MAX_CACHED."""
    if len(cache) >= MAX_CACHED:
        cache.clear()  # prices wander: begin again rather than keep the oldest
    cache[key] = value


def _grid(text: str, what: str) -> Decimal:
    try:
        return parse_decimal(text, what, RejectCode.MALFORMED)
    except GridError as e:
        raise ValueError(e.reason) from None


class Instrument:
    """A tradable thing: its symbol, price and quantity grids, limits and self-trade default.

    Built from decimal strings (as written in the config); afterwards everything is in
    integer ticks and lots: ``min_qty``, ``max_qty`` in lots and ``max_price`` in ticks.
    Raises ValueError if the grids or limits are inconsistent.

    Risk limits, each None when not set (the matcher checks them; see ``notional_problem`` and
    ``band_problem``): ``max_notional`` in lots × ticks (so ``qty * price`` compares to it as is),
    ``price_band`` as the fraction (numerator, denominator) of 100 %, ``reference_price`` in
    ticks (the band's centre until the first trade) and ``max_open_orders`` per user.
    """

    __slots__ = (
        "symbol", "tick_size", "lot_size", "min_qty", "max_qty", "max_price", "stp_default",
        "max_notional", "price_band", "reference_price", "max_open_orders",
        "_tick", "_lot", "_price_places", "_qty_places", "_max_notional_text", "_band_text",
        "_tick_units", "_lot_units", "_ticks", "_lots", "_price_texts", "_qty_texts",
    )

    def __init__(
        self,
        symbol: str,
        tick_size: str,
        lot_size: str,
        min_qty: str | None = None,
        max_qty: str | None = None,
        max_price: str | None = None,
        stp_default: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST,
        max_notional: str | None = None,
        price_band: str | None = None,
        reference_price: str | None = None,
        max_open_orders: int | None = None,
    ):
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._tick = _grid(tick_size, "tick_size")
        self._lot = _grid(lot_size, "lot_size")
        self._price_places = max(0, -self._tick.as_tuple().exponent)
        self._qty_places = max(0, -self._lot.as_tuple().exponent)
        self._tick_units = int(self._tick.scaleb(self._price_places))  # the tick in 10**-places
        self._lot_units = int(self._lot.scaleb(self._qty_places))
        # the texts read and the values formatted lately: a market's prices and sizes repeat
        self._ticks: dict[str, int] = {}
        self._lots: dict[str, int] = {}
        self._price_texts: dict[int, str] = {}
        self._qty_texts: dict[int, str] = {}
        self.min_qty = self._limit(min_qty or lot_size, self._lot, "min_qty", "lot_size")
        self.max_qty = self._limit(max_qty or "1000000000", self._lot, "max_qty", "lot_size")
        self.max_price = self._limit(max_price or DEFAULT_MAX_PRICE, self._tick, "max_price", "tick_size")
        if self.min_qty > self.max_qty:
            raise ValueError(f"min_qty {min_qty} is above max_qty {max_qty}")
        self.stp_default = stp_default
        self._max_notional_text = max_notional
        # notional = qty × lot × price × tick; qty × price is an int, so compare it to max / (lot × tick)
        self.max_notional = (int(_grid(max_notional, "max_notional") // (self._lot * self._tick))
                             if max_notional is not None else None)
        self._band_text = price_band
        if price_band is not None:
            band = _grid(price_band, "price_band").as_integer_ratio()
            self.price_band: tuple[int, int] | None = (band[0], band[1] * 100)
        else:
            self.price_band = None
        self.reference_price = (self._limit(reference_price, self._tick, "reference_price", "tick_size")
                                if reference_price is not None else None)
        if self.reference_price is not None and self.reference_price > self.max_price:
            raise ValueError(f"reference_price {reference_price} is above max_price")
        if max_open_orders is not None and max_open_orders < 1:
            raise ValueError(f"max_open_orders {max_open_orders} must be at least 1")
        self.max_open_orders = max_open_orders

    @staticmethod
    def _limit(text: str, unit: Decimal, what: str, unit_name: str) -> int:
        count, rest = divmod(_grid(text, what), unit)
        if rest:
            raise ValueError(f"{what} {text} is not a multiple of {unit_name} {unit}")
        return int(count)

    def to_ticks(self, text: str) -> int:
        """Price text → ticks; GridError(BAD_PRICE) if off the grid, not positive or too large."""
        ticks = self._ticks.get(text)
        if ticks is not None:
            return ticks
        units = _units(text, self._price_places)
        if units:  # the common case, in integers; anything else takes the Decimal way, which says why
            ticks, rest = divmod(units, self._tick_units)
            if not rest and ticks <= self.max_price:
                _remember(self._ticks, text, ticks)
                return ticks
        value = parse_decimal(text, "price", RejectCode.BAD_PRICE)
        ticks, rest = divmod(value, self._tick)
        if rest:
            raise GridError(RejectCode.BAD_PRICE, f"price {text} is not a multiple of tick {self.tick_size}")
        if ticks > self.max_price:
            raise GridError(
                RejectCode.BAD_PRICE,
                f"price {text} is above the maximum {self.format_price(self.max_price)}",
            )
        return int(ticks)

    def to_lots(self, text: str) -> int:
        """Quantity text → lots; GridError(BAD_QTY) if off the grid, not positive or out of limits."""
        lots = self._lots.get(text)
        if lots is not None:
            return lots
        units = _units(text, self._qty_places)
        if units:  # as in to_ticks
            lots, rest = divmod(units, self._lot_units)
            if not rest and self.min_qty <= lots <= self.max_qty:
                _remember(self._lots, text, lots)
                return lots
        value = parse_decimal(text, "quantity", RejectCode.BAD_QTY)
        lots, rest = divmod(value, self._lot)
        if rest:
            raise GridError(RejectCode.BAD_QTY, f"quantity {text} is not a multiple of lot {self.lot_size}")
        lots = int(lots)
        reason = self.qty_problem(lots)
        if reason:
            raise GridError(RejectCode.BAD_QTY, reason)
        return lots

    def qty_problem(self, lots: int) -> str:
        """Why ``lots`` is outside the limits, or "" if it is allowed."""
        if lots < self.min_qty:
            return f"quantity {self.format_qty(lots)} is below the minimum {self.format_qty(self.min_qty)}"
        if lots > self.max_qty:
            return f"quantity {self.format_qty(lots)} is above the maximum {self.format_qty(self.max_qty)}"
        return ""

    def price_problem(self, ticks: int) -> str:
        """Why ``ticks`` is not an allowed price, or "" if it is."""
        if ticks < 1:
            return f"price must be at least one tick ({self.tick_size})"
        if ticks > self.max_price:
            return f"price {self.format_price(ticks)} is above the maximum {self.format_price(self.max_price)}"
        return ""

    def notional_problem(self, lots: int, ticks: int) -> str:
        """Why ``lots`` at ``ticks`` is above ``max_notional``, or "" if it is allowed (or unlimited)."""
        if self.max_notional is None or lots * ticks <= self.max_notional:
            return ""
        return (f"notional {self.format_notional(lots * ticks)} ({self.format_qty(lots)} at"
                f" {self.format_price(ticks)}) is above the maximum {self._max_notional_text}")

    def band(self, reference: int) -> tuple[int, int]:
        """The lowest and highest price (ticks) allowed around ``reference`` by the price band."""
        num, den = self.price_band
        low = -(-reference * (den - num) // den) if den > num else 1  # rounded up
        high = reference * (den + num) // den  # rounded down
        return max(low, 1), high

    def band_problem(self, ticks: int, last_price: int | None) -> str:
        """Why ``ticks`` is outside the price band around the last trade (or the reference price)."""
        if self.price_band is None:
            return ""
        reference, what = last_price, "the last trade"
        if reference is None:
            reference, what = self.reference_price, "the reference price"
            if reference is None:
                return ""  # nothing traded and no reference: no band yet
        low, high = self.band(reference)
        if low <= ticks <= high:
            return ""
        return (f"price {self.format_price(ticks)} is more than {self._band_text}% from {what}"
                f" {self.format_price(reference)}; allowed {self.format_price(low)} to {self.format_price(high)}")

    def format_notional(self, lots_ticks: int) -> str:
        """A notional in lots × ticks → decimal text in the quote currency, without trailing zeros."""
        text = f"{lots_ticks * self._lot * self._tick:.{self._price_places + self._qty_places}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    def format_price(self, ticks: int) -> str:
        """Ticks → decimal text with the tick's number of places (``430001`` → ``"4300.10"``)."""
        text = self._price_texts.get(ticks)
        if text is None:
            text = f"{ticks * self._tick:.{self._price_places}f}"
            _remember(self._price_texts, ticks, text)
        return text

    def format_qty(self, lots: int) -> str:
        """Lots → decimal text with the lot's number of places."""
        text = self._qty_texts.get(lots)
        if text is None:
            text = f"{lots * self._lot:.{self._qty_places}f}"
            _remember(self._qty_texts, lots, text)
        return text

    def __repr__(self) -> str:
        return f"Instrument({self.symbol!r}, tick_size={self.tick_size!r}, lot_size={self.lot_size!r})"
