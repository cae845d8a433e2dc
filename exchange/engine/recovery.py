"""Rebuilding an engine's matcher from the journal: the newest checkpoint, then the events after it,
all read in one read transaction, and a refusal for history the config can no longer place.
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
    read in one read transaction: a batch the writer commits meanwhile is in none of them.

    ``client_order_id_window`` (ns) is the configured uniqueness window of client order ids; it
    replaces the one a restored checkpoint was taken with, so a changed window applies from the
    restart on.
    """
    if not Path(path).exists():
        return Matcher(engine_id, instruments, client_order_id_window), EnginePosition(), {}
    with read_snapshot(path) as conn:
        check_instruments(engine_symbols(conn, name), name, instruments, path)
        position = positions(conn, [name]).get(name, EnginePosition())
        state = latest_checkpoint(conn, name)
        if state is None:
            matcher = Matcher(engine_id, instruments, client_order_id_window)
        else:
            matcher = checkpoint.restore(instruments, state)
            matcher.client_order_ids.window = client_order_id_window
            log.info("restored the checkpoint at seq %d", matcher.seq)
        for event in engine_events(conn, name, matcher.seq):
            matcher.apply(event)
        trades = last_trades(conn, name)
    return matcher, position, trades


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
