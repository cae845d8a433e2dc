"""Checkpoints: a matcher's whole state as bytes, so a restart replays only the events after it.

``take(matcher)`` encodes the state after event ``matcher.seq``; ``restore(instruments, data)``
builds a matcher in exactly that state (same digest), ready to ``apply`` the events that follow.
Resting orders are stored in the order they entered their book: that is time priority within
each level, and the order in which a cancel-all cancels them, so both survive the round trip.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.orders import Order, SelfTradePrevention, Side, TimeInForce


class BookState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    symbol: str
    last_top: tuple[int | None, int, int | None, int]
    orders: list[tuple[str, str, Side, int, int, int, TimeInForce, SelfTradePrevention, str]]
    last_price: int | None = None  # of the book's last trade (the price band's centre)


class Checkpoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The state of one engine's matcher after event ``seq``."""

    engine_id: int
    seq: int
    last_order_number: int
    last_trade_number: int
    client_order_ids: list[tuple[str, str, str]]  # (user, client order id, order id)
    books: list[BookState]
    digest: str  # Matcher.digest() of this state, so a restore can prove itself


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Checkpoint)


def take(matcher: Matcher) -> bytes:
    """The matcher's state as bytes."""
    books = []
    for book in matcher.books.values():
        orders = [(o.order_id, o.user, o.side, o.price, o.qty, o.leaves_qty, o.tif, o.stp, o.client_order_id)
                  for o in book.orders.values()]
        books.append(BookState(book.symbol, book.last_top, orders, book.last_price))
    ids = [(user, cid, order_id) for (user, cid), order_id in matcher.client_order_ids.items()]
    return _encode(Checkpoint(matcher.engine_id, matcher.seq, matcher.last_order_number,
                              matcher.last_trade_number, ids, books, matcher.digest()))


def restore(instruments: Iterable[Instrument], data: bytes) -> Matcher:
    """A matcher in the state ``data`` holds; ValueError if it does not reproduce its digest."""
    checkpoint = _decoder.decode(data)
    matcher = Matcher(checkpoint.engine_id, instruments)
    matcher.seq = checkpoint.seq
    matcher.last_order_number = checkpoint.last_order_number
    matcher.last_trade_number = checkpoint.last_trade_number
    matcher.client_order_ids = {(user, cid): order_id for user, cid, order_id in checkpoint.client_order_ids}
    for state in checkpoint.books:
        book = matcher.books[state.symbol]
        for fields in state.orders:
            book.add(Order(*fields))
        book.last_top = tuple(state.last_top)
        book.last_price = state.last_price
    if matcher.digest() != checkpoint.digest:
        raise ValueError(f"checkpoint at seq {checkpoint.seq} does not restore to its digest")
    return matcher


def read(data: bytes) -> Checkpoint:
    """The checkpoint in ``data`` (its seq and digest, say), without building a matcher."""
    return _decoder.decode(data)
