"""The engine batches the journal writer passes on once written, turned into answers, each once.

The journal writer sends every written engine batch to the gateway (exchange.journal.release);
the gateway answers each request from the batch's entries (``EventBatch.replies``). Batch numbers
grow by one per engine across its epochs, in the order the journal wrote them, so a batch at or
below the last one taken is one passed on again (the journal writer does so for the last few
seconds when it starts, in case it stopped between a commit and passing the batch on), and one
further ahead than the next means batches were missed (their requests time out: UNAVAILABLE).
"""

from __future__ import annotations

import logging

from exchange.wire.messages import EventBatch, Reply

log = logging.getLogger(__name__)


class ReleasedBatches:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # engine → the last batch taken
        self.missed = 0

    def replies(self, batch: EventBatch) -> list[Reply]:
        """The answers in ``batch``, or none if it was taken before."""
        last = self.last.get(batch.engine)
        if last is not None:
            if batch.batch <= last:
                return []
            if batch.batch > last + 1:
                self.missed += batch.batch - last - 1
                log.warning("engine %s: batches %d..%d never reached this gateway; their requests time out"
                            " (UNAVAILABLE)", batch.engine, last + 1, batch.batch - 1)
        self.last[batch.engine] = batch.batch
        return batch.replies()
