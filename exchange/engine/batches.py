"""An engine's state around its matcher: the batches it made, and what it keeps for replay until the
journal holds it. Everything that leaves towards clients leaves from the journal writer once a
commit holds it (exchange.journal.release): the answers, the settlements, the market data.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import Command, Match, PlaceOrder, ReplaceOrder, Trade
from exchange.core.orders import Side
from exchange.errors import JournalError, WireError
from exchange.wire.messages import (
    Decoder, Durable, EngineBook, Entry, EventBatch, Request, Requests, SnapshotRefused, encode,
)
from exchange.journal.readers import EnginePosition


log = logging.getLogger(__name__)

BYTES_PER_EVENT = 256  # of a batch's frame, weighed as one event against max_undurable_events (well above an event's size)
# what a batch may grow to, its commands' bytes plus BYTES_PER_EVENT per event, before the next
# entry starts a new one: a quarter of the mesh's message cap (exchange.wire.sockets.MAX_MSG_SIZE),
# which a batch past it never crosses to the journal writer (and every later batch waits behind it)
MAX_BATCH_BYTES = 16 * 1024 * 1024


_SINGLE_REQUEST = Decoder(Request)


class Engine:
    def __init__(self, name: str, matcher: Matcher, epoch: int, position: EnginePosition,
                 checkpoint_every: int = 100_000, checkpoint_part_size: int = checkpoint.DEFAULT_PART_SIZE,
                 last_trades: dict[str, Trade] | None = None):
        """An engine in ``epoch`` (the journal writer's, new for this start) whose journaled history
        ends at ``position``, with the last trade of each instrument in it."""
        self.name = name
        self.matcher = matcher
        self.checkpoint_every = checkpoint_every
        self.checkpoint_part_size = checkpoint_part_size
        self.checkpoint_seq = matcher.seq
        self.checkpoint_parts: deque[bytes] = deque()  # of the last checkpoint, one per batch
        self.epoch = epoch
        self.max_order_age_ns = 0  # 0: no limit (see handle_requests)
        self.too_old = 0  # orders not executed because they came too late
        self.ahead = 0  # orders not executed because they were stamped ahead of this engine's clock
        self.batch = position.batch  # the last batch number used
        self.durable_batch = position.batch
        self.retained: deque[tuple[int, int, bytes]] = deque()  # (batch, event count, frame)
        self.retained_events = 0
        # for a notifier that starts (``book``): each symbol's last Trade, or the Match it comes from
        self.last_trades: dict[str, Trade | Match] = dict(last_trades or {})
        self.unsent: deque[bytes] = deque()  # batches the journal PUSH had no room for yet
        self.max_batch_bytes = MAX_BATCH_BYTES

    def handle_requests(self, frames: list[list[bytes]], decoder: Decoder, now_ns: int = 0) -> bytes | None:
        """Match every request of every frame (each a Requests list) into EventBatch frames, queued
        in ``unsent`` and retained; return the last (None if no request was valid).

        A turn makes one batch, or more when its entries weigh more than ``max_batch_bytes``
        (``MAX_BATCH_BYTES``): an entry that takes a batch past it is the batch's last. One entry is
        never split (its events answer one command), so a single cancel-all of more orders than
        fit is the one batch that can still pass the message cap.

        A placement or replace received by its gateway more than ``max_order_age_ns`` before
        ``now_ns`` is not executed: its gateway has answered it or is about to (UNAVAILABLE, outcome
        unknown), and it must not trade behind that answer. It is journaled with no events and gets no
        reply. Cancels always execute: late or not, they only take risk away.

        So is one stamped more than ``max_order_age_ns`` after ``now_ns``: the matcher keeps time by
        the commands' stamps (a client order id is free again a window after the stamp of the order
        that used it), and one stamped far ahead would free every user's ids at once. Only a gateway
        whose clock is that far ahead of the engine's, or a sender that is not a gateway, stamps so.
        """
        handle = self.matcher.handle
        entries: list[Entry] = []
        last_trades = self.last_trades
        # (ledger stream, its epoch) → the last of its batches that this batch's holds are in; per
        # epoch, not per stream: a shard that restarted lost the end of its old epoch, and an order
        # held there must stop this batch even when an order held after the restart comes with it
        after: dict[tuple[str, int], int] = {}
        first_seq = self.matcher.seq + 1
        weight = 0  # of the batch's entries so far: their commands' bytes, BYTES_PER_EVENT per event
        frame = None
        oldest = now_ns - self.max_order_age_ns if now_ns and self.max_order_age_ns else 0
        newest = now_ns + self.max_order_age_ns if oldest else None
        for parts in frames:
            try:
                requests: list[Request] = decoder.decode(parts[-1])
            except WireError as e:
                try:  # one Request per message, from a gateway older than Requests
                    requests = [_SINGLE_REQUEST.decode(parts[-1])]
                except WireError:
                    log.warning("commands: dropped %s", e)
                    continue
            weight += len(parts[-1])  # its commands, counted in the batch they start in
            for request in requests:
                command = request.command
                if not isinstance(command, Command):  # a ledger shard's command, sent here by mistake
                    log.warning("commands: dropped a %s from %s (not an engine's command)", type(command).__name__,
                                request.gateway)
                    continue
                if oldest and not oldest <= command.ts_received <= newest \
                        and isinstance(command, (PlaceOrder, ReplaceOrder)):
                    if command.ts_received < oldest:
                        self.too_old += 1
                    else:
                        self.ahead += 1
                    entries.append(Entry(request.gateway, request.session, request.request_id, command, []))
                    continue
                events = handle(command)
                if request.after is not None:
                    stream, epoch, batch = request.after
                    if batch > after.get((stream, epoch), 0):
                        after[(stream, epoch)] = batch
                entries.append(Entry(request.gateway, request.session, request.request_id, request.command,
                                     events))
                for event in events:
                    if type(event) is Match:
                        last_trades[event.symbol] = event
                weight += len(events) * BYTES_PER_EVENT
                if weight >= self.max_batch_bytes:
                    frame = self.close_batch(entries, first_seq, after)
                    entries, after, first_seq, weight = [], {}, self.matcher.seq + 1, 0
        if entries:
            frame = self.close_batch(entries, first_seq, after)
        return frame

    def close_batch(self, entries: list[Entry], first_seq: int, after: dict[tuple[str, int], int]) -> bytes:
        """The next batch, of ``entries`` (events ``first_seq`` to the matcher's seq): encoded,
        retained and queued for the journal."""
        self.batch += 1
        # A checkpoint goes out one part per batch (each far below the mesh's message cap); the
        # journal uses it once it holds every part. No digest of the books is computed here.
        if not self.checkpoint_parts and self.matcher.seq - self.checkpoint_seq >= self.checkpoint_every:
            self.checkpoint_parts.extend(checkpoint.take(self.matcher, self.checkpoint_part_size))
            self.checkpoint_seq = self.matcher.seq
        state = self.checkpoint_parts.popleft() if self.checkpoint_parts else b""
        frame = encode(EventBatch(self.name, self.epoch, self.batch, first_seq, self.matcher.seq, entries, state,
                                  time.time_ns(), [(stream, epoch, batch) for (stream, epoch), batch in after.items()]))
        # what the batch weighs against max_undurable_events: its events, but at least one per
        # command (commands that make none, an empty cancel-all or a placement come too late, are
        # kept until durable all the same) and one per BYTES_PER_EVENT of its frame (a cancel-all
        # naming a hundred thousand orders that are not open makes no event, and weighs megabytes)
        count = max(self.matcher.seq - first_seq + 1, len(entries), len(frame) // BYTES_PER_EVENT)
        self.retained.append((self.batch, count, frame))
        self.retained_events += count
        self.unsent.append(frame)
        return frame

    def on_durable(self, durable: Durable) -> None:
        """Advance the watermark: the batches it covers need not be kept for replay any more."""
        if durable.engine == self.name and durable.epoch == self.epoch and durable.batch < 0:
            raise JournalError(f"engine {self.name}: the journal refuses epoch {self.epoch} (a batch of it holds"
                               " orders whose holds a restarted ledger shard lost); starting again from the"
                               " journal, where nothing of those batches is")
        if durable.engine != self.name or durable.epoch != self.epoch or durable.batch <= self.durable_batch:
            return
        self.durable_batch = durable.batch
        while self.retained and self.retained[0][0] <= durable.batch:
            _, count, _ = self.retained.popleft()
            self.retained_events -= count

    def book(self, symbol: str) -> EngineBook | SnapshotRefused:
        """The book of ``symbol`` after the last batch, for a notifier that starts following this engine."""
        book = self.matcher.books.get(symbol)
        if book is None:
            return SnapshotRefused(symbol, f"engine {self.name} does not trade {symbol}")
        last = self.last_trades.get(symbol)
        return EngineBook(symbol, self.epoch, self.batch, self.durable_batch, self.matcher.seq, resting_orders(book),
                          last.trade() if type(last) is Match else last)


def resting_orders(book) -> list[tuple[str, Side, int, int]]:
    """A matcher's book as (order id, side, price, open qty): bids best first, then asks best first,
    each level in time priority (what ``LevelBook.load`` and a BookSnapshot's ``orders`` take)."""
    return [(o.order_id, o.side, o.price, o.leaves_qty)
            for side in (Side.BUY, Side.SELL) for level in book.levels(side) for o in level.orders()]
