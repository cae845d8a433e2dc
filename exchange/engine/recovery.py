"""Rebuilding an engine's matcher from the journal: the newest checkpoint, then the events after it,
read from the journal writer's history service (or, for tools, the file), and a refusal for history
the config can no longer place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from exchange.core import checkpoint
from exchange.core.client_order_ids import DEFAULT_WINDOW_NS
from exchange.core.matching import Matcher
from exchange.errors import ConfigError
from exchange.journal.readers import (
    EnginePosition, engine_events, engine_symbols, last_trades, latest_checkpoint, positions,
)
from exchange.journal.handshake import JournalClient, events_after, stream_start
from exchange.journal.schema import read_snapshot


log = logging.getLogger(__name__)


def recover(path: str, name: str, engine_id: int, instruments: list,
            client_order_id_window: int = DEFAULT_WINDOW_NS) -> tuple[Matcher, EnginePosition]:
    """The matcher rebuilt from the journal's events of this engine, and where they end."""
    matcher, position, _ = recover_all(path, name, engine_id, instruments, client_order_id_window)
    return matcher, position


def recover_all(path: str, name: str, engine_id: int, instruments: list,
                client_order_id_window: int = DEFAULT_WINDOW_NS):
    """(matcher, position, last trade per symbol) from the journal's events of this engine, all
    read in one read transaction: a batch the writer commits meanwhile is in none of them
    (``client_order_id_window``: see ``restored``). For tools and tests on the journal's host; an
    engine reads its history over the mesh (``recover_over_mesh``)."""
    if not Path(path).exists():
        return Matcher(engine_id, instruments, client_order_id_window), EnginePosition(), {}
    with read_snapshot(path) as conn:
        check_instruments(engine_symbols(conn, name), name, instruments, path)
        position = positions(conn, [name]).get(name, EnginePosition())
        matcher = restored(engine_id, instruments, client_order_id_window, latest_checkpoint(conn, name))
        for event in engine_events(conn, name, matcher.seq):
            matcher.apply(event)
        trades = last_trades(conn, name)
    return matcher, position, trades


def recover_over_mesh(history: JournalClient, name: str, engine_id: int, instruments: list,
                      client_order_id_window: int = DEFAULT_WINDOW_NS):
    """``recover_all``, with the history read from the journal writer's history service instead of
    the journal file (exchange.journal.history): the engine needs no access to the journal's disk."""
    start, state = stream_start(history, name)
    check_instruments(start.symbols, name, instruments, "the journal")
    matcher = restored(engine_id, instruments, client_order_id_window, state)
    for event in events_after(history, name, matcher.seq):
        matcher.apply(event)
    log.info("read the history over the mesh: %s, to seq %d",
             f"a checkpoint at seq {start.checkpoint_seq} in {start.checkpoint_parts} parts" if state else
             "no checkpoint", matcher.seq)
    return matcher, EnginePosition(*start.position), {trade.symbol: trade for trade in start.last_trades}


def restored(engine_id: int, instruments: list, client_order_id_window: int, state: list[bytes] | None) -> Matcher:
    """A matcher from a checkpoint's parts (None: a new one), with the configured id window.

    ``client_order_id_window`` (ns) replaces the one a checkpoint was taken with, so a changed
    window applies from the restart on."""
    if state is None:
        return Matcher(engine_id, instruments, client_order_id_window)
    matcher = checkpoint.restore(instruments, state)
    matcher.client_order_ids.window = client_order_id_window
    log.info("restored the checkpoint at seq %d", matcher.seq)
    return matcher


def check_instruments(history: dict[str, tuple[int, int, int]], name: str, instruments: list, path: str) -> None:
    """Raise ConfigError if the journal holds history of an instrument the config no longer gives
    this engine: its books could not be rebuilt, and its orders would be lost without a word."""
    missing = sorted(set(history) - {i.symbol for i in instruments})
    if missing:
        rows = "; ".join(f"{symbol}: {history[symbol][0]} events, seq {history[symbol][1]}..{history[symbol][2]}"
                         for symbol in missing)
        raise ConfigError(f"engine {name}: the journal {path} holds history of {', '.join(missing)}, which"
                          f" the config no longer gives this engine ({rows}); give it back to engine {name}"
                          " (`engines[].instruments`), or start from a new journal")
