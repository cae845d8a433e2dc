"""Which arriving event batches the journal writer writes, holds, drops or asks for again, per engine.

Only the engine's current epoch (the last one the writer opened for it) is written: a batch of an
older epoch comes from a process that has since restarted, and nothing it sent was released.
Within an epoch, batches must arrive in order, ``batch`` +1 each.
"""

from __future__ import annotations

import logging
from exchange.wire.messages import EventBatch
from exchange.journal.readers import EnginePosition


log = logging.getLogger(__name__)


MAX_HELD_BATCHES = 10_000


class Sequencer:
    """Decides, per engine, which arriving batches to write, hold, drop or ask for again.

    Only the engine's current epoch (the last one ``open_epoch`` gave it) is written: a batch of an
    older epoch comes from a process that has since restarted, and nothing it sent was released.
    """

    def __init__(self, positions: dict[str, EnginePosition]):
        self.positions = dict(positions)
        self.held: dict[str, dict[int, EventBatch]] = {}
        self.foreign: set[tuple[str, int]] = set()  # (engine, epoch) never opened here, already logged
        self.stale: set[tuple[str, int]] = set()  # (engine, older epoch) whose batches were dropped, logged
        self.opened: dict[str, tuple[int, int]] = {}  # engine → (nonce, epoch) of its last OpenEpoch

    def open_epoch(self, engine: str, epoch: int) -> EnginePosition:
        """``engine`` restarted in ``epoch``: from now on only that epoch's batches count."""
        pos = self.positions.get(engine, EnginePosition())
        self.positions[engine] = pos = EnginePosition(epoch, pos.batch, pos.seq)
        self.held.pop(engine, None)
        return pos

    def accept(self, batches: list[EventBatch]) -> tuple[list[EventBatch], set[str]]:
        """(batches to write in order, engines with a gap before a held batch)."""
        to_write, gaps = [], set()
        for b in batches:
            pos = self.positions.get(b.engine, EnginePosition())
            if b.epoch != pos.epoch or b.batch <= pos.batch:
                if b.epoch > pos.epoch and (b.engine, b.epoch) not in self.foreign:
                    self.foreign.add((b.engine, b.epoch))
                    log.error("%s sends epoch %d, which this journal never opened (it is at %d):"
                              " dropping its batches; restart that engine", b.engine, b.epoch, pos.epoch)
                elif b.epoch < pos.epoch and (b.engine, b.epoch) not in self.stale:
                    self.stale.add((b.engine, b.epoch))
                    log.warning("%s sends batches of its epoch %d, but it has started again since (epoch %d):"
                                " dropping them (nothing of them was released)", b.engine, b.epoch, pos.epoch)
                continue  # an older start's, or already written
            held = self.held.setdefault(b.engine, {})
            held[b.batch] = b
            while pos.batch + 1 in held:
                nxt = held.pop(pos.batch + 1)
                to_write.append(nxt)
                pos = EnginePosition(nxt.epoch, nxt.batch, nxt.last_seq)
            self.positions[b.engine] = pos
            if held:
                gaps.add(b.engine)
                if len(held) > MAX_HELD_BATCHES:
                    held.clear()  # they will come again with the replay
        return to_write, gaps
