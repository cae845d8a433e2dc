"""What the journal writer passes on once a group commit holds it: each engine batch, as it came.

Every gateway answers its own requests from a batch's entries (``EventBatch.replies``) and learns
of the other gateways' orders from the rest, every ledger
shard settles its users' side of the batch's events, and every notifier derives the market data
and private order updates from them (exchange.marketdata.following). The engine sends nothing
towards clients: from the journal writer, everything leaves one process hop sooner, and nothing
leaves before the commit that holds it.

No send waits. A gateway that is not reading misses the batch: the requests in it time out there
(UNAVAILABLE, outcome unknown; `STATUS` tells). A ledger shard that is not reading notices the
gap and reads the missed batches from the journal, as it always could. A notifier that is not
reading (its queue holds ``NOTIFIER_HWM`` batches) sees the gap in the batch numbers and takes
its books again.
"""

from __future__ import annotations

import logging
import sqlite3

import zmq

from exchange.journal.readers import recent_batch_bodies
from exchange.wire.messages import RELEASED

log = logging.getLogger(__name__)

RESEND_MAX_BATCHES = 1000  # per engine, at a start
NOTIFIER_HWM = 10_000  # batches queued per notifier (tens of seconds of a flood) before it misses some


class Release:
    """The sockets written engine batches leave by, and what they could not take."""

    def __init__(self, gateways: list[zmq.Socket], ledgers: list[zmq.Socket], notifiers: zmq.Socket,
                 engines: set[str]):
        """``gateways``: a PUSH to each gateway (every one takes every batch: it answers its own
        requests and learns of the others' orders); ``notifiers``: a PUB that every notifier
        subscribes to (the ``RELEASED`` topic)."""
        self.gateways, self.ledgers, self.notifiers, self.engines = gateways, ledgers, notifiers, engines
        self.dropped = {"gateway": 0, "ledger": 0}

    def send(self, written: list) -> None:
        """Pass on the engine batches of one commit (BatchHeaders with their bodies), in order."""
        self.send_bodies([b.body for b in written if b.engine in self.engines])

    def send_again(self, conn: sqlite3.Connection, window_ns: int, now_ns: int) -> int:
        """At a start: pass on again each engine's batches written in the last ``window_ns`` (the
        requests they answer may still wait, if the last start stopped between a commit and passing
        its batches on); the gateway takes each batch once, and a ledger shard settles each once.
        Return how many."""
        bodies = [body for engine in sorted(self.engines)
                  for body in recent_batch_bodies(conn, engine, now_ns - window_ns, RESEND_MAX_BATCHES)]
        self.send_bodies(bodies)
        return len(bodies)

    def send_bodies(self, bodies: list[bytes]) -> None:
        """To the ledger shards first, then the notifiers, then the gateway: a user's next order, sent
        once they have heard of a fill, finds the fill's settlement at their shard before it (the
        shard settles what has come before it holds), and a BOOK asked after an ACK finds the order
        in the notifier's book."""
        for sock in self.ledgers:
            for body in bodies:
                try:
                    sock.send(body, zmq.NOBLOCK)
                except zmq.Again:
                    self._dropped("ledger", "a ledger shard is not reading: released batches not passed on"
                                            " (it reads them from the journal)")
                    break
        for body in bodies:
            self.notifiers.send_multipart([RELEASED, body])  # PUB: never waits, drops for a full queue
        for gateway in self.gateways:
            for body in bodies:
                try:
                    gateway.send_multipart([RELEASED, body], zmq.NOBLOCK)
                except zmq.Again:
                    self._dropped("gateway", "a gateway is not reading: a released batch was not passed on"
                                             " (its requests time out there)")

    def _dropped(self, kind: str, message: str) -> None:
        self.dropped[kind] += 1
        n = self.dropped[kind]
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("%s (%d so far)", message, n)
