"""Checkpoints: a matcher's whole state as bytes, so a restart replays only the events after it.

``take(matcher, part_size)`` encodes the state after event ``matcher.seq`` and cuts it into parts
of at most ``part_size`` bytes of state each, so that no message carrying one comes near the
mesh's message size cap however big the books grow; ``restore(instruments, pieces)`` builds a
matcher in exactly that state, ready to ``apply`` the events that follow.

Resting orders are stored in the order they entered their book: that is time priority within
each level, and the order in which a cancel-all cancels them, so both survive the round trip.

Each part carries the checkpoint's ``digest``: a sha256 of the encoded state (hashing bytes, in
C, rather than building and sorting ``Matcher.state()``, so that taking a checkpoint does not
stall the engine). The encoding is canonical (books by symbol, leaving out books that never held
an order or a trade, orders and client order ids in the order the matcher keeps them, which
replay reproduces), so the digest identifies the state whatever the order of the engine's
instruments in the config, and adding an instrument to an engine changes nothing of it.
``restore`` checks the parts against the digest and then that the restored matcher encodes to
the same state; ``digest_of(matcher)`` gives a replayed matcher's digest to compare.

Checkpoints taken before the encoding was canonical list every configured book in config order:
``restore`` reads them too (it compares the states, made canonical, not the bytes). A checkpoint
that holds orders or trades of an instrument the config no longer gives the engine is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from exchange.core import parts
from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.orders import Order, SelfTradePrevention, Side, TimeInForce

DEFAULT_PART_SIZE = 4 * 1024 * 1024  # bytes of state per part, well under the mesh's 64 MiB cap


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
    client_order_id_window: int  # ns
    client_order_ids: list[tuple[int, str, str, str, str, int]]  # ClientOrderIds.due, as it is
    books: list[BookState]


class CheckpointPart(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Part ``part`` of ``parts`` of the encoded Checkpoint of an engine after event ``seq``."""

    engine_id: int
    seq: int
    part: int  # 0 .. parts - 1
    parts: int
    digest: str  # sha256 of the whole encoded Checkpoint (32 hex digits)
    client_order_id_window: int  # ns, as in the Checkpoint (a verifier replays with it)
    data: bytes  # this part's slice of it


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Checkpoint)
_part_decoder = msgspec.msgpack.Decoder(CheckpointPart)


_UNTOUCHED_TOP = (None, 0, None, 0)


def _untouched(book: BookState) -> bool:
    """A book that never held an order nor had a trade: the same as no book at all."""
    return not book.orders and book.last_price is None and tuple(book.last_top) == _UNTOUCHED_TOP


def _canonical(checkpoint: Checkpoint) -> Checkpoint:
    books = sorted((b for b in checkpoint.books if not _untouched(b)), key=lambda b: b.symbol)
    return msgspec.structs.replace(checkpoint, books=books)


def _state(matcher: Matcher) -> Checkpoint:
    books = []
    for book in matcher.books.values():
        orders = [(o.order_id, o.user, o.side, o.price, o.qty, o.leaves_qty, o.tif, o.stp, o.client_order_id)
                  for o in book.orders.values()]
        books.append(BookState(book.symbol, book.last_top, orders, book.last_price))
    ids = matcher.client_order_ids
    return _canonical(Checkpoint(matcher.engine_id, matcher.seq, matcher.last_order_number,
                                 matcher.last_trade_number, ids.window, list(ids.due), books))


def encoded(matcher: Matcher) -> bytes:
    """The matcher's state, encoded canonically."""
    return _encode(_state(matcher))


def digest_of(matcher: Matcher) -> str:
    """The digest a checkpoint of ``matcher`` would carry."""
    return parts.digest(encoded(matcher))


def take(matcher: Matcher, part_size: int = DEFAULT_PART_SIZE) -> list[bytes]:
    """The matcher's state as one or more parts, each holding at most ``part_size`` bytes of it."""
    data = encoded(matcher)
    digest, pieces = parts.digest(data), parts.cut(data, part_size)
    window = matcher.client_order_ids.window
    return [_encode(CheckpointPart(matcher.engine_id, matcher.seq, n, len(pieces), digest, window, piece))
            for n, piece in enumerate(pieces)]


def restore(instruments: Iterable[Instrument], pieces: Iterable[bytes]) -> Matcher:
    """A matcher in the state the parts hold; ValueError if they are not one whole checkpoint or
    do not restore to exactly the state they hold."""
    data = parts.join([_part_decoder.decode(part) for part in pieces], "checkpoint")
    checkpoint = _canonical(_decoder.decode(data))
    matcher = Matcher(checkpoint.engine_id, instruments, checkpoint.client_order_id_window)
    gone = [state.symbol for state in checkpoint.books if state.symbol not in matcher.books]
    if gone:
        raise ValueError(f"the checkpoint at seq {checkpoint.seq} holds orders or trades of {', '.join(gone)},"
                         " which the config no longer gives this engine")
    matcher.seq = checkpoint.seq
    matcher.last_order_number = checkpoint.last_order_number
    matcher.last_trade_number = checkpoint.last_trade_number
    matcher.client_order_ids.from_due(checkpoint.client_order_ids)
    for state in checkpoint.books:
        book = matcher.books[state.symbol]
        for fields in state.orders:
            book.add(Order(*fields))
        book.last_top = tuple(state.last_top)
        book.last_price = state.last_price
    if _state(matcher) != checkpoint:
        raise ValueError(f"checkpoint at seq {checkpoint.seq} does not restore to its digest")
    return matcher


def read(part: bytes) -> CheckpointPart:
    """One part's header and data (its seq and digest, say), without building a matcher."""
    return _part_decoder.decode(part)
