"""Which arriving event batches the journal writer writes, holds, drops or asks for again, per engine.

Only the engine's current epoch (the last one the writer opened for it) is written: a batch of an
older epoch comes from a process that has since restarted, and nothing it sent was released; a
batch of a stream that has no epoch opened here (not in the config, or never started) is dropped.
Within an epoch, batches must arrive in order, ``batch`` +1 each.

An engine batch that names ledger shards' batches (``EventBatch.after``: the batches holding the
holds of its orders) is written only once they are, in the same transaction or an earlier one, so
no order's execution is durable before its hold. If such a ledger batch can never come (its shard
restarted before the journal had it, and batch numbers went on in a new epoch), the engine's epoch
is refused (``refused``): nothing more of it is written, and the engine is told to start again. That
is decided as soon as the shard's new epoch opens, not when the next batch arrives (on an idle market
none may).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exchange.wire.messages import EventBatch
from exchange.journal.readers import EnginePosition


log = logging.getLogger(__name__)


MAX_HELD_BATCHES = 10_000
MAX_NOTED = 1_000


def _first_time(seen: set, key) -> bool:
    """Whether ``key`` is new to ``seen`` (then it is added, while ``seen`` has room)."""
    if key in seen or len(seen) >= MAX_NOTED:
        return False
    seen.add(key)
    return True


class Sequencer:
    """Decides, per engine, which arriving batches to write, hold, drop or ask for again.

    Only the engine's current epoch (the last one ``open_epoch`` gave it) is written: a batch of an
    older epoch comes from a process that has since restarted, and nothing it sent was released.
    """

    def __init__(self, positions: dict[str, EnginePosition],
                 last_batch_of: Callable[[str, int], int] = lambda stream, epoch: 0):
        """``last_batch_of(stream, epoch)``: the last batch the journal holds of an epoch that ended
        before this writer started (it keeps the later ones itself)."""
        self.positions = dict(positions)
        self.held: dict[str, dict[int, EventBatch]] = {}
        # what was dropped and logged once (at most MAX_NOTED of each: a sender of many names or
        # epochs is logged, not remembered without bound)
        self.unopened: set[str] = set()  # streams with no epoch opened here (unknown, or never started)
        self.foreign: set[tuple[str, int]] = set()  # (engine, epoch) never opened here
        self.stale: set[tuple[str, int]] = set()  # (engine, older epoch) whose batches were dropped
        self.waiting: set[str] = set()  # ledger streams a held engine batch waits for
        self.opened: dict[str, tuple[int, int]] = {}  # engine → (nonce, epoch) of its last OpenEpoch
        self.refused: set[tuple[str, int]] = set()  # (engine, epoch) whose batches wait for a lost ledger batch
        self.epoch_ends: dict[tuple[str, int], int] = {}  # (stream, ended epoch) → its last written batch
        self.last_batch_of = last_batch_of

    def open_epoch(self, engine: str, epoch: int) -> EnginePosition:
        """``engine`` restarted in ``epoch``: from now on only that epoch's batches count.

        The batches held here are judged again at once: an engine batch that waits for a ledger
        batch this shard's old epoch never reached can never be written, and its engine must hear
        so now (``refused``), not when some batch next arrives. On an idle market none may: the
        engine would go on matching in an epoch that is never written, and answer the next order
        in it with UNAVAILABLE when the refusal came. Nothing becomes writable by an opening (a
        batch of the new epoch is numbered past where the old one ended), so nothing is written
        here; what waits is noted again (``waiting``), so no replay is asked for what no held
        batch waits for any more (a restarted engine's own held batches are dropped)."""
        pos = self.positions.get(engine, EnginePosition())
        self.epoch_ends[(engine, pos.epoch)] = pos.batch
        self.positions[engine] = pos = EnginePosition(epoch, pos.batch, pos.seq)
        self.held.pop(engine, None)
        self._judge(take=False)
        return pos

    def accept(self, batches: list[EventBatch]) -> tuple[list[EventBatch], set[str]]:
        """(batches to write in order, streams to ask for a replay: a gap before a held batch, or a
        ledger batch that an engine batch waits for and that has not come)."""
        for b in batches:
            pos = self.positions.get(b.engine)
            if pos is None or not pos.epoch:  # not a stream of the config, or one that never opened an epoch
                if _first_time(self.unopened, b.engine):
                    log.error("%r sends batches but has no epoch opened with this journal writer: dropping them",
                              b.engine[:64])
                continue
            if b.epoch != pos.epoch or b.batch <= pos.batch or (b.engine, b.epoch) in self.refused:
                if b.epoch > pos.epoch and _first_time(self.foreign, (b.engine, b.epoch)):
                    log.error("%s sends epoch %d, which this journal never opened (it is at %d):"
                              " dropping its batches; restart that engine", b.engine, b.epoch, pos.epoch)
                elif b.epoch < pos.epoch and _first_time(self.stale, (b.engine, b.epoch)):
                    log.warning("%s sends batches of its epoch %d, but it has started again since (epoch %d):"
                                " dropping them (nothing of them was released)", b.engine, b.epoch, pos.epoch)
                continue  # an older start's, already written, or of a refused epoch
            self.held.setdefault(b.engine, {})[b.batch] = b
        to_write = self._judge()
        for stream, held in self.held.items():
            if len(held) > MAX_HELD_BATCHES:
                held.clear()  # they will come again with the replay
        return to_write, self.gaps()

    def _judge(self, take: bool = True) -> list[EventBatch]:
        """Walk each stream's held batches from its next one: the batches to write in order (with
        ``take``: they are taken, and the positions advance past them); an engine epoch whose next
        batch needs a lost ledger batch is refused; ``waiting`` is what the first one left waits for."""
        to_write: list[EventBatch] = []
        waiting: set[str] = set()
        progress = True
        while progress:  # ledger batches first makes the engine batches that wait on them writable
            progress = False
            waiting = set()
            for stream, held in self.held.items():
                pos = self.positions.get(stream, EnginePosition())
                while pos.batch + 1 in held:
                    nxt = held[pos.batch + 1]
                    missing = self._missing(nxt)
                    if missing is None:  # a ledger batch it needs is lost for good
                        self._refuse(stream, nxt.epoch)
                        held.clear()
                        break
                    if missing:
                        waiting.update(missing)
                        break
                    if not take:
                        break  # left for the next accept, which writes it
                    del held[pos.batch + 1]
                    to_write.append(nxt)
                    pos = EnginePosition(nxt.epoch, nxt.batch, nxt.last_seq)
                    progress = True
                self.positions[stream] = pos
        self.waiting = waiting
        return to_write

    def gaps(self) -> set[str]:
        """The streams to ask for a replay: a gap before a batch held here, or a ledger batch that a
        held engine batch waits for and that has not come (as of the last ``accept``)."""
        gaps = {stream for stream, held in self.held.items()
                if held and self.positions.get(stream, EnginePosition()).batch + 1 not in held}
        return gaps | {s for s in self.waiting if not self.held.get(s)}

    def _missing(self, batch: EventBatch) -> set[str] | None:
        """The ledger streams whose batches ``batch`` waits for (empty: none), or None if one never comes."""
        missing = set()
        for stream, epoch, needed in batch.after:
            pos = self.positions.get(stream)
            if pos is None:  # no ledger shard of the config: its batch never comes, and no hold is in it
                if _first_time(self.unopened, stream):
                    log.error("%s batch %d names %r, which is no ledger shard of this journal writer's config;"
                              " not waiting for it", batch.engine, batch.batch, stream[:64])
                continue
            if pos.epoch == epoch:
                if pos.batch < needed:
                    missing.add(stream)
            elif pos.epoch > epoch:  # that shard has restarted since: did its old epoch get that far?
                end = self.epoch_ends.get((stream, epoch))
                if end is None:
                    end = self.epoch_ends[(stream, epoch)] = self.last_batch_of(stream, epoch)
                if end < needed:
                    return None
            else:
                missing.add(stream)  # an epoch this writer has not opened yet: it will, or never
        return missing

    def _refuse(self, engine: str, epoch: int) -> None:
        if (engine, epoch) not in self.refused:
            self.refused.add((engine, epoch))
            log.error("%s epoch %d: a batch of it needs a ledger batch that its shard lost when it restarted;"
                      " writing nothing more of this epoch, and telling the engine to start again", engine, epoch)
