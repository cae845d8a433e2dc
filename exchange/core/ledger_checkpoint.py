"""Ledger checkpoints: a shard's whole state as bytes, so a restart replays only the events after it.

``take(ledger, part_size)`` encodes the state after event ``ledger.seq`` (canonically: balances,
holds, engine positions and transfer references sorted by key) and cuts it into parts of at most
``part_size`` bytes of state each; ``restore`` builds a ledger in exactly that state, checking the
parts against their digest and that the restored ledger encodes to the very same bytes.

Transfer references are kept by (user, ref) with the terms of their transfer (``user_transfers``).
A checkpoint of an older version holds them by ref alone, in ``transfers``, without user or terms:
those restore as the ledger's ``legacy_refs`` and are written back there. A checkpoint with no
(user, ref) leaves ``user_transfers`` out (nine fields), so it is byte for byte what the older
version wrote, and an older checkpoint restores to its own digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from exchange.core import parts
from exchange.core.assets import Asset, Terms
from exchange.core.ledger import Ledger
from exchange.core.ledger_messages import AppliedTransfer, HoldState

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
    transfers: list[tuple[str, int]]  # references of old: ref → entry id (Ledger.legacy_refs)
    user_transfers: list[tuple[str, str, AppliedTransfer]] = []  # (user, ref, transfer), by (user, ref)


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


def encoded(ledger: Ledger, legacy: Mapping[str, int] | None = None) -> bytes:
    """The ledger's state, encoded canonically; ``legacy`` as in ``digest_of``."""
    legacy_refs, by_user = _references(ledger, legacy or {})
    state = LedgerCheckpoint(
        ledger.shard, ledger.shards, ledger.seq, ledger.last_entry, ledger.last_hold,
        [(account, asset, balance) for (account, asset), balance in sorted(ledger.balances.items())],
        [ledger.holds[key] for key in sorted(ledger.holds)],
        [(engine, epoch, seq) for engine, (epoch, seq) in sorted(ledger.positions.items())],
        sorted(legacy_refs.items()), [(user, ref, transfer) for (user, ref), transfer in sorted(by_user.items())])
    if not state.user_transfers:  # the older version's nine fields, byte for byte
        return _encode(msgspec.structs.astuple(state)[:-1])
    return _encode(state)


def _references(ledger: Ledger, legacy: Mapping[str, int]
                ) -> tuple[dict[str, int], dict[tuple[str, str], AppliedTransfer]]:
    """(references of old, references by user) of ``ledger``, with each transfer that ``legacy``
    names (its ref and entry id) counted among those of old."""
    legacy_refs, by_user = dict(ledger.legacy_refs), {}
    for (user, ref), transfer in ledger.transfers.items():
        if legacy.get(ref) == transfer.entry_id:
            legacy_refs[ref] = transfer.entry_id
        else:
            by_user[(user, ref)] = transfer
    return legacy_refs, by_user


def digest_of(ledger: Ledger, legacy: Mapping[str, int] | None = None) -> str:
    """The digest a checkpoint of ``ledger`` would carry. With ``legacy`` (ref → entry id, the
    references of old a restored checkpoint holds): the digest it would carry had it been restored
    from that checkpoint, which knew those transfers by ref alone. A ledger replayed from the first
    event knows every transfer by (user, ref), one restored from an older version's checkpoint
    does not: this is how ``exchange journal verify`` compares the two."""
    return parts.digest(encoded(ledger, legacy))


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
    ledger.legacy_refs = dict(state.transfers)
    ledger.transfers = {(user, ref): transfer for user, ref, transfer in state.user_transfers}
    if encoded(ledger) != data:
        raise ValueError(f"ledger checkpoint at seq {state.seq} does not restore to its digest")
    return ledger
