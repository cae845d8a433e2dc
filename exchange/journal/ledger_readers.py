"""Reading the journal for a ledger shard: its own state at start, and the engines' batches it settles.

``recover_ledger`` rebuilds a shard as a restarting engine rebuilds its books: the newest whole
checkpoint of its stream, then its events after it, all in one read transaction.
``released_batches`` gives the engines' journaled batches after a seq, to fill a settlement gap
or catch up at start; the journal holds only durable batches, so all of them are released.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from exchange.core import ledger_checkpoint
from exchange.core.assets import Asset, Terms
from exchange.core.ledger import Ledger
from exchange.core.ledger_messages import AnyLedgerEvent
from exchange.core.messages import AnyEvent
from exchange.errors import ConfigError
from exchange.journal.ledger_rows import is_ledger_stream
from exchange.journal.readers import (
    EnginePosition, latest_checkpoint, log_batches, log_events, log_streams, positions,
)
from exchange.journal.schema import read_snapshot

_ledger_event_decoder = msgspec.json.Decoder(AnyLedgerEvent)
_any_event_decoder = msgspec.json.Decoder(AnyEvent | AnyLedgerEvent)


def decode_ledger_event(body: str | bytes):
    return _ledger_event_decoder.decode(body)


def decode_any_event(body: str | bytes):
    """A journaled event of any stream: an engine's or a ledger shard's."""
    return _any_event_decoder.decode(body)


def ledger_stream(shard: int) -> str:
    """The journal stream of ledger shard ``shard`` (as ``LedgerConfig.name`` says)."""
    return f"ledger-{shard}"


def agree_on_ledger_shards(conn, shards: int) -> None:
    """Record ``shards``, the config's number of ledger shards, in a journal that has no number yet;
    raise ConfigError if the journal was started with another one (or, from before the record, holds
    the streams of another number of shards). A user's shard follows from the number, so with
    another one their accounts would be looked for on a shard that does not hold them, checkpoint
    or not. ``shards`` 0 (accounts off) checks nothing: no shard runs."""
    if not shards:
        return
    row = conn.execute("SELECT value FROM meta WHERE key='ledger_shards'").fetchone()
    if row is not None:
        recorded, how = int(row[0]), "was started with"
    else:
        found = [int(s.rsplit("-", 1)[1]) for s in log_streams(conn) if is_ledger_stream(s)]
        recorded, how = (max(found) + 1 if found else None), "holds the streams of"
    if recorded is not None and recorded != shards:
        raise ConfigError(f"the journal {how} {recorded} ledger shard{'' if recorded == 1 else 's'}, but the"
                          f" config has {shards}: a user's shard follows from that number (docs/accounts.md),"
                          " so accounts would be looked for on shards that do not hold them; change `ledgers:`"
                          " back, or start from a new journal")
    if row is None:
        with conn:
            conn.execute("INSERT INTO meta VALUES ('ledger_shards', ?)", (str(shards),))


def recover_ledger(path: str | Path, shard: int, shards: int, terms: Iterable[Terms],
                   assets: Iterable[Asset] = ()) -> tuple[Ledger, EnginePosition]:
    """Ledger shard ``shard`` of ``shards`` rebuilt from the journal at ``path``, and where its
    stream ends (epoch, batch, seq): its newest whole checkpoint, then every event after it, read
    in one read transaction. No journal, or nothing of this shard: a fresh ledger at position 0.

    Raises ConfigError if the journal's checkpoint was taken with another number of shards (users
    would be on the wrong shard), ValueError if the journal's events do not follow each other.
    """
    terms, assets = list(terms), list(assets)
    stream = ledger_stream(shard)
    if not Path(path).exists():
        return Ledger(shard, shards, terms, assets), EnginePosition()
    with read_snapshot(path) as conn:
        position = positions(conn, [stream]).get(stream, EnginePosition())
        ledger = restored_ledger(shard, shards, terms, assets, latest_checkpoint(conn, stream), f"the journal {path}")
        for event in log_events(conn, stream, ledger.seq):
            ledger.apply(event)
    return ledger, position


def restored_ledger(shard: int, shards: int, terms: list[Terms], assets: list[Asset], state: list[bytes] | None,
                    where: str) -> Ledger:
    """Ledger shard ``shard`` of ``shards`` from its checkpoint's parts (None: a new one). Raises
    ConfigError if the checkpoint was taken with another number of shards (users would be on the
    wrong shard); ``where`` names the journal in that error."""
    if state is None:
        return Ledger(shard, shards, terms, assets)
    ledger = ledger_checkpoint.restore(terms, state, assets)
    if (ledger.shard, ledger.shards) != (shard, shards):
        raise ConfigError(f"{ledger_stream(shard)}: {where} holds a checkpoint of shard {ledger.shard} of"
                          f" {ledger.shards}, but the config has {shards} ledger shards; users would be"
                          " on other shards: change `ledgers:` back, or start from a new journal")
    return ledger


def released_batches(path: str | Path, engine: str, after_seq: int, max_events: int
                     ) -> list[tuple[int, int, int, list]]:
    """Engine ``engine``'s journaled batches that hold events after ``after_seq``, in order, as
    (epoch, first_seq, last_seq, events), whole batches, until they hold ``max_events`` events or
    more (at least one batch, however big). Batches without events are left out.

    One read transaction, so only committed batches; from the log, so whatever the tables hold
    yet. With nothing new it costs one index seek. Empty without a journal.
    """
    if not Path(path).exists():
        return []
    with read_snapshot(path) as conn:
        result, count = [], 0
        for batch in log_batches(conn, engine, after_seq):
            if count >= max_events or (not result and batch.first_seq > after_seq + 1):
                break  # enough; or the log does not hold the events right after ``after_seq``
            events = [event for entry in batch.entries for event in entry.events]
            result.append((batch.epoch, batch.first_seq, batch.last_seq, events))
            count += len(events)
    return result
