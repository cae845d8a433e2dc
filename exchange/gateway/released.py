"""The engine batches the journal writer passes on once written, turned into answers, each once.

The journal writer sends every written engine batch to the gateway (exchange.journal.release);
the gateway answers each request from the batch's entries (``EventBatch.replies``). Batch numbers
grow by one per engine across its epochs, in the order the journal wrote them, so a batch at or
below the last one taken is one passed on again (the journal writer does so for the last few
seconds when it starts, in case it stopped between a commit and passing the batch on), and one
further ahead than the next means batches were lost on the way (a link that broke or stalled):
the gateway first takes those from the journal (``missing`` names them; exchange.gateway.role
fetches them), and only if the journal cannot give them are they skipped, their requests timing
out (UNAVAILABLE) and the orders in them unknown here.
"""

from __future__ import annotations

import logging

from exchange.wire.messages import EventBatch, Reply

log = logging.getLogger(__name__)


class ReleasedBatches:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # engine → the last batch taken
        self.missed = 0  # batches skipped: never taken, neither as passed on nor from the journal

    def missing(self, batch: EventBatch) -> tuple[int, int] | None:
        """(the last batch taken, ``batch``'s number) if batches between them were never taken."""
        last = self.last.get(batch.engine)
        if last is not None and batch.batch > last + 1:
            return last, batch.batch
        return None

    def replies(self, batch: EventBatch) -> list[Reply]:
        """The answers in ``batch`` (passed on, or read from the journal), or none if it was taken before."""
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
