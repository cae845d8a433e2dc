"""A small kit for writing matcher tests as trading sessions.

Commands are built from decimal text, converted by the instrument (``buy("bob", "1.5", at="100.00")``);
``Market`` runs them on a fresh Matcher, checks the invariants after every command (seq +1 once each
Match is expanded into the three events it stands for, ``ts_event``
copied, ``OrderBook.check()``, no market data but trades from the core) and tells back, one short
line each (``story``), the core's events followed by the price levels and top of book an engine
publishes from them (``marketdata.levels``), so a test reads like the session it describes. ``Market.book()`` is ``OrderBook.render()`` with runs of spaces
squeezed, to compare with ``drawn(...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from operator import attrgetter

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import (
    CancelAll, CancelOrder, DepthUpdate, Event, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled,
    OrderReduced, OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder, TopOfBook, Trade, expand,
)
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.levels import LevelBook, level_changes

BTC = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001", max_qty="100", max_price="1000000")
ETH = Instrument("ETH-USD", tick_size="0.05", lot_size="0.01", max_qty="1000", max_price="100000",
                 stp_default=SelfTradePrevention.DECREMENT)
INSTRUMENTS = {i.symbol: i for i in (BTC, ETH)}
ENGINE_ID = 7


def place(side: Side, user: str, qty: str, at: str | None = None, tif: str = "GTC", stp: str | None = None,
          cid: str = "", symbol: str = "BTC-USD", ts: int = 0) -> PlaceOrder:
    instrument = INSTRUMENTS[symbol]
    return PlaceOrder(user, symbol, side, instrument.to_lots(qty), None if at is None else instrument.to_ticks(at),
                      TimeInForce(tif), None if stp is None else SelfTradePrevention(stp), cid, ts)


def buy(user: str, qty: str, at: str | None = None, **options) -> PlaceOrder:
    """A buy order; ``at=None`` makes it a market order (give ``tif="IOC"`` or ``"FOK"``)."""
    return place(Side.BUY, user, qty, at, **options)


def sell(user: str, qty: str, at: str | None = None, **options) -> PlaceOrder:
    """A sell order; ``at=None`` makes it a market order (give ``tif="IOC"`` or ``"FOK"``)."""
    return place(Side.SELL, user, qty, at, **options)


def cancel(user: str, order_id: str = "", cid: str = "", symbol: str = "BTC-USD", ts: int = 0) -> CancelOrder:
    return CancelOrder(user, symbol, order_id, cid, ts)


def replace(user: str, order_id: str, qty: str, at: str | None = None, cid: str = "", symbol: str = "BTC-USD",
            ts: int = 0) -> ReplaceOrder:
    """Replace an order; ``symbol`` only picks the grid for the text when the command's symbol is empty."""
    instrument = INSTRUMENTS[symbol or "BTC-USD"]
    return ReplaceOrder(user, symbol, instrument.to_lots(qty), None if at is None else instrument.to_ticks(at),
                        order_id, cid, ts)


def cancel_all(user: str, symbol: str | None = None, ts: int = 0) -> CancelAll:
    return CancelAll(user, symbol, ts)


def tell(event: Event) -> str:
    """One event as one short line, prices and quantities in decimal text."""
    instrument = INSTRUMENTS.get(event.symbol)
    p = instrument.format_price if instrument else str
    q = instrument.format_qty if instrument else str
    cid = f" #{event.client_order_id}" if getattr(event, "client_order_id", "") else ""
    match event:
        case OrderAccepted():
            price = "MARKET" if event.price is None else p(event.price)
            line = f"accepted {event.order_id} {event.user} {event.side.value} {q(event.qty)} @ {price}" \
                   f" {event.tif.value}{cid}"
        case OrderRejected():
            target = f" {event.order_id}" if event.order_id else ""
            line = f"rejected {event.user} {event.code.value}{target}{cid}: {event.reason}"
        case OrderFilled():
            role = "maker" if event.maker else "taker"
            line = f"fill {event.order_id} {event.user} {role} {q(event.last_qty)} @ {p(event.last_price)}" \
                   f" leaves {q(event.leaves_qty)}{cid}"
        case Trade():
            line = f"trade {event.trade_id} {q(event.qty)} @ {p(event.price)} {event.taker_side.value}"
        case OrderCanceled():
            line = f"canceled {event.order_id} {event.user} {q(event.canceled_qty)} {event.reason.value}{cid}"
        case OrderExpired():
            line = f"expired {event.order_id} {event.user} {q(event.expired_qty)} {event.reason.value}{cid}"
        case OrderReplaced():
            kept = "kept" if event.priority_kept else "lost"
            line = f"replaced {event.order_id} {event.user} {q(event.qty)} @ {p(event.price)}" \
                   f" leaves {q(event.leaves_qty)} priority {kept}{cid}"
        case OrderReduced():
            line = f"reduced {event.order_id} {event.user} by {q(event.reduced_qty)}" \
                   f" leaves {q(event.leaves_qty)}{cid}"
        case DepthUpdate():
            line = f"depth {event.side.value} {p(event.price)} {q(event.qty)}"
        case TopOfBook():
            bid = "-" if event.bid_price is None else f"{q(event.bid_qty)} @ {p(event.bid_price)}"
            ask = "-" if event.ask_price is None else f"{q(event.ask_qty)} @ {p(event.ask_price)}"
            line = f"top {bid} | {ask}"
        case _:
            raise AssertionError(f"no story for {event!r}")
    return line if event.symbol in ("BTC-USD", "") else f"{event.symbol}: {line}"


def story(events: Iterable[Event]) -> list[str]:
    return [tell(event) for event in events]


def orders_story(events: Iterable[Event]) -> list[str]:
    """The story without market data (Trade, DepthUpdate, TopOfBook): what happened to the orders."""
    return [tell(e) for e in events if not isinstance(e, (Trade, DepthUpdate, TopOfBook))]


def squeeze(line: str) -> str:
    return " ".join(line.split())


def drawn(picture: str) -> str:
    """A book drawn in a test, in the form ``Market.book()`` returns."""
    return "\n".join(squeeze(line) for line in picture.strip("\n").splitlines() if line.strip())


class Market:
    """A fresh matcher (engine 7, BTC-USD and ETH-USD) that checks its invariants after each command."""

    def __init__(self, engine_id: int = ENGINE_ID, instruments: Iterable[Instrument] = (BTC, ETH)):
        self.instruments = list(instruments)
        self.matcher = Matcher(engine_id, self.instruments)
        self.commands: list = []
        self.events: list[Event] = []  # the core's
        self.levels = {i.symbol: LevelBook(i.symbol) for i in self.instruments}

    def handle(self, command) -> list[Event]:
        """Run one command; return its events, then the market data derived from them, after
        checking seq, ts_event and every book."""
        emitted = self.matcher.handle(command)
        events = expand(emitted)  # a Match told as the maker's fill, the taker's fill and the trade
        assert not any(isinstance(e, (DepthUpdate, TopOfBook)) for e in events), "the core derives no depth"
        for expected_seq, event in enumerate(events, start=len(self.events) + 1):
            assert event.seq == expected_seq, f"{event!r} should have seq {expected_seq}"
            assert event.ts_event == command.ts_received, f"{event!r} should copy ts {command.ts_received}"
        assert self.matcher.seq == len(self.events) + len(events)
        for book in self.matcher.books.values():
            book.check()
        self.commands.append(command)
        self.events.extend(events)
        told: list[Event] = []  # each book's events, then the market data derived from them
        for symbol, group in groupby(emitted, key=attrgetter("symbol")):  # the levels follow the Matches
            group = list(group)
            told += expand(group) + [e for e in level_changes(self.levels, group)
                                     if isinstance(e, (DepthUpdate, TopOfBook))]
        return told

    def __call__(self, command) -> list[str]:
        """Run one command and tell its events."""
        return story(self.handle(command))

    def run(self, *commands) -> None:
        """Run commands whose events the test does not look at (setting up a book)."""
        for command in commands:
            self.handle(command)

    def book(self, symbol: str = "BTC-USD") -> str:
        return "\n".join(squeeze(line) for line in self.matcher.books[symbol].render().splitlines())
