"""Ledger checkpoints: a shard's whole state as bytes, so a restart replays only the events after it.

``take(ledger, part_size)`` encodes the state after event ``ledger.seq`` (canonically: balances,
holds, engine positions and transfer references sorted by key) and cuts it into parts of at most
``part_size`` bytes of state each; ``restore`` builds a ledger in exactly that state, checking the
parts against their digest and that the restored ledger encodes to the very same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from exchange.core import parts
from exchange.core.assets import Asset, Terms
from exchange.core.ledger import Ledger
from exchange.core.ledger_messages import HoldState

DEFAULT_PART_SIZE = 4 * 1024 * 1024  # bytes of state per part, well under the mesh's message cap


class LedgerCheckpoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The state of one ledger shard after its event ``seq``."""

    shard: int
    shards: int
    seq: int
    last_entry: int
    last_hold: int
    balances: list[tuple[str, str, int]]
    holds: list[HoldState]
    positions: list[tuple[str, int, int]]
    transfers: list[tuple[str, int]]


class LedgerCheckpointPart(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Part ``part`` of ``parts`` of the encoded LedgerCheckpoint of shard ``shard`` after ``seq``."""

    shard: int
    seq: int
    part: int
    parts: int
    digest: str  # sha256 of the whole encoded LedgerCheckpoint (32 hex digits)
    data: bytes


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(LedgerCheckpoint)
_part_decoder = msgspec.msgpack.Decoder(LedgerCheckpointPart)


def encoded(ledger: Ledger) -> bytes:
    """The ledger's state, encoded canonically."""
    return _encode(LedgerCheckpoint(
        ledger.shard, ledger.shards, ledger.seq, ledger.last_entry, ledger.last_hold,
        [(account, asset, balance) for (account, asset), balance in sorted(ledger.balances.items())],
        [ledger.holds[key] for key in sorted(ledger.holds)],
        [(engine, epoch, seq) for engine, (epoch, seq) in sorted(ledger.positions.items())],
        sorted(ledger.transfers.items())))


def digest_of(ledger: Ledger) -> str:
    """The digest a checkpoint of ``ledger`` would carry."""
    return parts.digest(encoded(ledger))


def take(ledger: Ledger, part_size: int = DEFAULT_PART_SIZE) -> list[bytes]:
    """The ledger's state as one or more parts, each holding at most ``part_size`` bytes of it."""
    data = encoded(ledger)
    digest, pieces = parts.digest(data), parts.cut(data, part_size)
    return [_encode(LedgerCheckpointPart(ledger.shard, ledger.seq, n, len(pieces), digest, piece))
            for n, piece in enumerate(pieces)]


def restore(terms: Iterable[Terms], pieces: Iterable[bytes], assets: Iterable[Asset] = ()) -> Ledger:
    """A ledger in the state the parts hold; ValueError if they are not one whole checkpoint or do
    not restore to exactly the state they hold."""
    decoded = [_part_decoder.decode(part) for part in pieces]
    if len({p.shard for p in decoded}) > 1:
        raise ValueError("ledger checkpoint parts are not one whole checkpoint")
    data = parts.join(decoded, "ledger checkpoint")
    state = _decoder.decode(data)
    ledger = Ledger(state.shard, state.shards, terms, assets)
    ledger.seq, ledger.last_entry, ledger.last_hold = state.seq, state.last_entry, state.last_hold
    ledger.balances = {(account, asset): balance for account, asset, balance in state.balances}
    for hold in state.holds:
        ledger.holds[(hold.user, hold.client_order_id)] = hold
        if hold.order_id:
            ledger.orders[hold.order_id] = (hold.user, hold.client_order_id)
    ledger.positions = {engine: (epoch, seq) for engine, epoch, seq in state.positions}
    ledger.transfers = dict(state.transfers)
    if encoded(ledger) != data:
        raise ValueError(f"ledger checkpoint at seq {state.seq} does not restore to its digest")
    return ledger
