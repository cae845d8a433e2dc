"""What the gateway reads of the journal, from the journal writer's history service (exchange.journal.history).

At its start the gateway loads the order events of the orders it must know (every open order, and
every order recent enough that its client order id still counts), a chunk at a time; later it
looks up the history of one order that a client resends and that it never saw answered, and the
engine batches that the journal writer passed on to it but that never arrived. It never opens the
journal file, so it may run on another host than the journal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from exchange.errors import JournalError
from exchange.journal.handshake import START_WAIT_S, JournalClient
from exchange.wire.messages import HistoryReply, LoggedBatchesRequest, OrderEventsRequest, OrderHistoryRequest
from exchange.wire.security.mesh_keys import MeshSecurity

LOOKUP_WAIT_S = 5.0  # one order's history, all its answers: then the resend is answered UNAVAILABLE
# events of one order read at most (the history service sends them 5,000 an answer): an order's fills
# have no bound but its quantity, and the gateway holds them all to judge it, so beyond this the lookup
# fails (the resend is answered UNAVAILABLE) rather than judge the order from part of its history
MAX_ORDER_EVENTS = 100_000
MISSED_EVENTS = 5_000  # events of missed batches asked for at a time
BUSY_RETRY_S = 1.0  # the history service has too many readings under way: ask again after this


class JournalReads:
    def __init__(self, endpoint: str, security: MeshSecurity | None):
        self.endpoint, self.security = endpoint, security
        self.local = threading.local()  # one client per thread: lookups run on the gateway's thread pool
        self.clients: list[JournalClient] = []
        self.lock = threading.Lock()

    def known_orders(self, since_ns: int) -> Iterator:
        """The order events of every open order and of every order accepted at or after ``since_ns``,
        per engine in order. JournalError if the journal writer does not answer in time."""
        client = self._client()
        deadline = time.monotonic() + START_WAIT_S
        cursor = 0
        while True:
            try:
                chunk = client.ask(OrderEventsRequest(time.time_ns(), since_ns, cursor), deadline - time.monotonic())
            except JournalError as e:
                if cursor or "try again" not in str(e) or time.monotonic() + BUSY_RETRY_S > deadline:
                    raise
                time.sleep(BUSY_RETRY_S)
                continue
            yield from chunk.events
            if chunk.last:
                return
            cursor = chunk.cursor

    def order_history(self, order_id: str) -> list:
        """The journaled order events of one order, in order (empty if none), over as many answers as
        they take. JournalError if the journal writer does not answer them all within LOOKUP_WAIT_S, or
        the order has more than MAX_ORDER_EVENTS events."""
        client = self._client()
        deadline = time.monotonic() + LOOKUP_WAIT_S
        events: list = []
        while True:
            after = events[-1].seq if events else 0
            chunk = client.ask(OrderHistoryRequest(time.time_ns(), order_id, after), deadline - time.monotonic())
            events += chunk.events
            if chunk.last:
                return events
            if len(events) >= MAX_ORDER_EVENTS:  # before asking for more
                raise JournalError(f"order {order_id} has more than {MAX_ORDER_EVENTS:,} events in the journal;"
                                   " a gateway reads at most that many of one order")

    def logged_batches(self, engine: str, after_batch: int, before_batch: int) -> list[bytes]:
        """The next of ``engine``'s batches numbered after ``after_batch`` and before ``before_batch``,
        as the journal logged them, in order: a chunk of about MISSED_EVENTS events (at least one
        batch). JournalError if the journal writer does not answer in time or holds none of them."""
        bodies = self._client().ask(LoggedBatchesRequest(time.time_ns(), engine, after_batch, before_batch,
                                                         MISSED_EVENTS), LOOKUP_WAIT_S).bodies
        if not bodies:
            raise JournalError(f"the journal holds no batch of {engine} after {after_batch} and before {before_batch}")
        return bodies

    def _client(self) -> JournalClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = JournalClient(self.endpoint, self.security, HistoryReply)
            with self.lock:
                self.clients.append(client)
        return client

    def close(self) -> None:
        with self.lock:
            for client in self.clients:
                client.close()
            self.clients.clear()
