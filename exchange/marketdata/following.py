"""How a notifier follows one engine's released batches, from a start it is given. Pure.

The journal writer passes on every engine batch once a commit holds it, numbered +1 per batch of
the engine (across the engine's restarts). A notifier publishes an engine's market data from a book
per instrument that it keeps itself, so it needs, for each instrument, a start: the book as of some
batch, and then every batch after it. A start comes from another notifier (a ``BookSnapshot``: a
released book, with that notifier's numbering, which this one then continues) or from the engine
(an ``EngineBook``: matching runs ahead of the journal, so its book may hold batches the journal has
not released yet; nothing of it is published before they are).

``EngineFollower`` keeps the batches that arrive while the starts are being gathered, and goes live
once it has a start for every instrument of the engine and every batch after the oldest of them:
each instrument then gets the batches after its own start. Live, each batch must follow the last
(+1); one that does not means batches were lost on the way, and the follower starts over (the
notifier stops publishing that engine's instruments meanwhile; their subscribers re-sync).

A start can be ahead of the batches received: another notifier may have published batches that
are still on their way here, and an engine's book holds batches the journal has released but not
yet passed on. Such batches, when they come, are new (their users' order events and their trades
are not in the start) but the books hold them already: they are neither applied nor published
again. Only a batch at or below the highest received is one seen before (the journal writer passes
recent batches on again when it restarts), and is dropped.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from exchange.marketdata.publisher import ReleasedBook
from exchange.wire.messages import EventBatch

MAX_PENDING = 2_000  # batches held while the starts are gathered (a few seconds of a flood)


class Start(NamedTuple):
    """Where one instrument's book starts: ``book`` holds its engine's batches up to ``batch``."""

    book: ReleasedBook
    batch: int
    epoch: int  # the numbering to continue (0: none, the notifier begins its own)
    chan_seqs: dict[str, int]
    engine_epoch: int  # from the engine: the epoch the batches up to ``batch`` were matched in; else 0
    released: bool  # every batch up to ``batch`` is released (from a notifier, or durable at the engine)


class Step(NamedTuple):
    """What the notifier does after a batch or a start: load ``starts`` into its publisher (when the
    follower has just gone live), then publish ``apply`` in order, each batch's events of the
    instruments named (None: all); ``stopped``: the follower has lost track, unload its instruments."""

    starts: dict[str, Start]
    apply: list[tuple[EventBatch, frozenset[str] | None]]
    stopped: bool = False


NOTHING = Step({}, [])


class EngineFollower:
    def __init__(self, engine: str, symbols: list[str]):
        self.engine, self.symbols = engine, frozenset(symbols)
        self.live = False
        self.received = 0  # the highest batch received: any batch at or below it is a repeat
        self.last = 0  # live: the last batch the books hold (their start's, or the last applied)
        self.pending: deque[EventBatch] = deque()  # not live: every batch since the oldest start may need
        self.starts: dict[str, Start] = {}
        self.restarts = 0  # how often it lost track and started over

    def missing(self) -> list[str]:
        """The instruments that still need a start (none while live)."""
        return [] if self.live else sorted(self.symbols - self.starts.keys())

    def released(self, batch: EventBatch) -> tuple[bool, Step]:
        """A released batch: (whether it is new, what to do)."""
        if batch.batch <= self.received:
            return False, NOTHING
        if self.live:
            if batch.batch <= self.last:  # one the start went live ahead of: in the books already
                self.received = batch.batch
                return True, NOTHING
            if batch.batch == self.last + 1:
                self.received = self.last = batch.batch
                return True, Step({}, [(batch, None)])
            self.live, self.starts = False, {}  # batches were lost on the way: start over
            self.restarts += 1
            self.pending = deque([batch])
            self.received = batch.batch
            return True, Step({}, [], stopped=True)
        if self.pending and batch.batch != self.pending[-1].batch + 1 or len(self.pending) >= MAX_PENDING:
            # a gap (or too many): the starts must be newer than what was held, and an engine's book
            # not yet released can no longer be checked against the batches up to it
            self.pending.clear()
            self.starts = {symbol: start for symbol, start in self.starts.items() if start.released}
        self.pending.append(batch)
        self.received = batch.batch
        return True, self._go_live()

    def durable(self, engine_epoch: int, batch: int) -> Step:
        """The journal holds the engine's batches up to ``batch`` of ``engine_epoch`` (its watermark,
        which the journal writer repeats): an engine's book within them is released, even if the
        batches themselves went by before this notifier listened."""
        if self.live:
            return NOTHING
        for symbol, start in list(self.starts.items()):
            if not start.released and start.engine_epoch == engine_epoch and start.batch <= batch:
                self.starts[symbol] = start._replace(released=True)
        return self._go_live()

    def started(self, symbol: str, start: Start) -> Step:
        """A start for ``symbol``, from another notifier or the engine.

        A start that continues a numbering is kept over one that would begin a new numbering (from
        the engine), and of two numberings the older (the smaller epoch): notifiers that began
        numberings of their own (each from the engine, when none could reach another) end up all
        numbering as the oldest of them does (``start_over``).
        """
        if self.live or symbol not in self.symbols:
            return NOTHING
        held = self.starts.get(symbol)
        if held is not None and held.epoch and (not start.epoch or start.epoch > held.epoch):
            return NOTHING
        self.starts[symbol] = start
        return self._go_live()

    def start_over(self) -> Step:
        """Stop publishing and gather starts again: another notifier numbers these instruments in an
        older numbering, which this one should continue (its subscribers re-sync once)."""
        if not self.live:
            return NOTHING
        self.live, self.starts, self.pending = False, {}, deque()
        self.restarts += 1
        return Step({}, [], stopped=True)

    def _go_live(self) -> Step:
        """Live once every instrument has a start and every batch after it is here (see the module)."""
        starts, pending = self.starts, self.pending
        for symbol, start in list(starts.items()):
            # a batch of a later epoch numbered within the book: the engine restarted before the journal
            # held its book, so the book may hold batches that were never released: ask again. (A batch
            # of an earlier epoch is one the journal held before the engine's restart, and so in the book.)
            if start.engine_epoch and any(b.epoch > start.engine_epoch and b.batch <= start.batch for b in pending):
                del starts[symbol]
        if starts.keys() != self.symbols:
            return NOTHING
        if any(not s.released and s.batch > self.received for s in starts.values()):
            return NOTHING  # an engine's book holds batches the journal has not released yet
        until = max(self.received, max(s.batch for s in starts.values()))
        first = pending[0].batch if pending else None
        behind = [symbol for symbol, s in starts.items() if s.batch < until and (first is None or first > s.batch + 1)]
        for symbol in behind:
            del starts[symbol]  # batches after this start were released before they could be held: ask again
        if behind:
            return NOTHING
        if until > self.received and any(s.batch < until for s in starts.values()):
            return NOTHING  # another notifier has published batches that are still on their way here
        # the books hold every batch up to ``until``: those of them not received yet, when they come,
        # are new (above ``received``) but not applied again (not above ``last``)
        self.live, self.starts, self.pending, self.last = True, {}, deque(), until
        oldest = min(s.batch for s in starts.values())
        apply = [(b, frozenset(symbol for symbol, start in starts.items() if start.batch < b.batch))
                 for b in pending if b.batch > oldest]
        return Step(starts, apply)
