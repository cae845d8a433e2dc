"""How a matcher's state follows from its events alone, and the digest that says two states are equal.

A restarting engine rebuilds its books by applying the journal's events (after its newest
checkpoint); ``journal verify`` does the same to check a journal. ``Replay`` is the part of
``Matcher`` that does this: it changes books only through ``OrderBook``'s methods, as live
matching does (Rule 1 of exchange.core.matching), and raises ValueError when the events
contradict the state they are applied to (a journal that is not what an engine wrote).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from exchange.core.book import OrderBook
from exchange.core.client_order_ids import DEFAULT_WINDOW_NS
from exchange.core.instruments import Instrument
from exchange.core.messages import (
    DepthUpdate, Event, Match, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderRejected,
    OrderReplaced, TopOfBook, Trade, expand,
)
from exchange.core.orders import Order


class Replay:
    """Replay and digest for ``Matcher`` (which holds ``books``, ``seq``, the id counters, the
    client order ids and ``_replay_takers``: market orders between their acceptance and expiry)."""

    @classmethod
    def rebuild(cls, engine_id: int, instruments: Iterable[Instrument], events: Iterable[Event],
                client_order_id_window: int = DEFAULT_WINDOW_NS):
        """A matcher in the state that produced ``events`` (as read back from a journal)."""
        matcher = cls(engine_id, instruments, client_order_id_window)
        for event in events:
            matcher.apply(event)
        return matcher

    def apply(self, event: Event) -> None:
        """Change state as the event says it changed; raise ValueError if the events disagree."""
        if type(event) is Match:  # as the three events it stands for
            for part in expand([event]):
                self.apply(part)
            return
        if event.seq != self.seq + 1:
            raise ValueError(f"event {event.seq} does not follow {self.seq}")
        self.seq = event.seq
        book = self.books.get(event.symbol)
        match event:
            case OrderAccepted():
                order = Order(event.order_id, event.user, event.side, event.price, event.qty, event.qty,
                              event.tif, event.stp, event.client_order_id)
                self.last_order_number = self._number(event.order_id)
                if event.client_order_id:
                    self.client_order_ids.add((event.user, event.client_order_id), event.order_id,
                                              event.symbol, event.ts_event)
                if event.price is None:
                    self._replay_takers[event.order_id] = order
                else:
                    book.add(order)  # rests at the back, as in live matching, until it fills
            case OrderFilled():
                order = self._replayed(book, event.order_id)
                if order.live and order.order_id in book.orders:
                    book.reduce(order, event.last_qty)
                else:
                    order.leaves_qty -= event.last_qty
                if order.leaves_qty != event.leaves_qty:
                    raise ValueError(f"event {event.seq}: {event.order_id} leaves {order.leaves_qty}")
                if order.leaves_qty == 0:
                    self._replay_takers.pop(event.order_id, None)
            case Trade():
                self.last_trade_number = self._number(event.trade_id)
                book.last_price = event.price
            case OrderCanceled() | OrderExpired():
                order = self._replayed(book, event.order_id)
                if event.order_id in book.orders:
                    book.remove(order)
                self._replay_takers.pop(event.order_id, None)
            case OrderReduced():
                order = self._replayed(book, event.order_id)
                if event.order_id in book.orders:
                    book.reduce(order, event.reduced_qty)
                else:
                    order.leaves_qty -= event.reduced_qty
                order.qty -= event.reduced_qty
            case OrderReplaced():
                order = self._replayed(book, event.order_id)
                if event.priority_kept:
                    book.reduce(order, order.leaves_qty - event.leaves_qty)
                    order.qty = event.qty
                else:
                    book.remove(order)
                    book.add(Order(order.order_id, order.user, order.side, event.price, event.qty,
                                   event.leaves_qty, order.tif, order.stp, order.client_order_id))
            case TopOfBook():
                book.last_top = (event.bid_price, event.bid_qty, event.ask_price, event.ask_qty)
            case DepthUpdate():
                if book.level_qty(event.side, event.price) != event.qty:
                    raise ValueError(f"event {event.seq}: level {event.side.value} {event.price} is"
                                     f" {book.level_qty(event.side, event.price)}, not {event.qty}")
            case OrderRejected():
                pass

    def _replayed(self, book: OrderBook, order_id: str) -> Order:
        order = book.orders.get(order_id) or self._replay_takers.get(order_id)
        if order is None:
            raise ValueError(f"event names order {order_id}, which is not open")
        return order

    @staticmethod
    def _number(an_id: str) -> int:
        return int(an_id.rsplit("-", 1)[1])

    def state(self) -> tuple:
        """Everything that defines this matcher's future behaviour, but each book's ``last_price``.

        ``last_price`` (the price band's centre) is left out so that digests stay what they were
        before price bands existed (journals hold checkpoint digests); checkpoints carry it.
        """
        return (self.engine_id, self.seq, self.last_order_number, self.last_trade_number,
                self.client_order_ids.state(),
                tuple((book.state(), book.top(), book.last_top) for book in self.books.values()))

    def digest(self) -> str:
        """A short hex digest of ``state()``: equal digests mean equal books and counters."""
        return hashlib.sha256(msgspec.msgpack.encode(self.state())).hexdigest()[:32]
