"""Cutting a state's bytes into parts that fit in a message, and putting them back together.

A checkpoint (the matcher's, a ledger's) can be larger than any one message may be; it travels and
is stored as parts of at most ``part_size`` bytes, each carrying the digest of the whole. Putting
them back checks that they are all there, belong together and hash to that digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol


class Part(Protocol):
    """What a part says about itself (its own header fields may add more)."""

    seq: int
    part: int
    parts: int
    digest: str
    data: bytes


def digest(data: bytes) -> str:
    """The short hex digest that names a state's bytes."""
    return hashlib.sha256(data).hexdigest()[:32]


def cut(data: bytes, part_size: int) -> list[bytes]:
    """``data`` in pieces of at most ``part_size`` bytes (one piece, maybe empty, at least)."""
    count = max(1, -(-len(data) // part_size))
    return [data[n * part_size:(n + 1) * part_size] for n in range(count)]


def join(parts: Sequence[Part], what: str) -> bytes:
    """The whole state the ``parts`` hold; ValueError if they are not one whole state of that
    digest (a part missing or repeated, parts of different states, or changed bytes)."""
    ordered = sorted(parts, key=lambda p: p.part)
    if not ordered or [p.part for p in ordered] != list(range(ordered[0].parts)) or \
            len({(p.seq, p.digest) for p in ordered}) != 1:
        raise ValueError(f"{what} parts are not one whole checkpoint")
    data = b"".join(p.data for p in ordered)
    if digest(data) != ordered[0].digest:
        raise ValueError(f"{what} at seq {ordered[0].seq} does not match its digest")
    return data
