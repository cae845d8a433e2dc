"""Requests on their way to engines, until each is answered, refused or given up on.

Every request sent to an engine (with accounts on, through its user's ledger shard:
exchange.gateway.ledger_routes) waits here, by request id, for the engine's released answer
(or the shard's, when it refuses a hold or answers a request of its own);
a placement with a client order id is also found by (user, client order id), so that a cancel,
a replace or a resend of it finds it before its ACK. Each engine takes at most
``gateway.max_in_flight`` unanswered requests (a CANCEL always passes): beyond that, or when the
way to the engine (or to the user's ledger shard) is full, the request is refused BUSY rather than queued. A request left
unanswered for ``request_timeout`` is answered UNAVAILABLE: its outcome is unknown; if the engine
accepted the order all the same, the order is still its session's, for cancel on disconnect.

With accounts on, a placement may be refused by its user's ledger shard for a client order id on
hold for an order this gateway has not taken in yet (placed on another gateway: docs/configuration.md).
It then waits here too (``resends``), for that order's acceptance or refusal in a released batch, still
counted against its engine, and is answered UNAVAILABLE if none comes within ``request_timeout`` of
its sending.

The gateway's own requests (cancels of a session that ended) have no session waiting for them;
one an engine had no room for is sent again at the next ``expire``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from exchange.config import Config
from exchange.core.messages import CancelAll, CancelOrder, Command, OrderCanceled, OrderRejected, PlaceOrder
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.ledger_routes import LEDGER_PREFIX, Routes, way_name
from exchange.gateway.protocol.messages import ClientReply, Rej
from exchange.gateway.sessions import Session
from exchange.wire.messages import GetBalances, Reply

MAX_TIMED_OUT = 10_000  # timed-out placements remembered for their sessions (see ``InFlight.timed_out``)

class Pending:
    """A request sent to engines whose answer has not been released yet."""

    __slots__ = ("session", "slot", "command", "waiting", "count", "key", "sent", "also", "engine", "lines",
                 "counted", "unreached", "refusal", "awaited")

    def __init__(self, session: Session, slot: list, command: Command, waiting: int = 1, key=None,
                 sent: float = 0.0):
        self.session, self.slot, self.command, self.waiting, self.key, self.sent = (
            session, slot, command, waiting, key, sent)
        self.count = 0  # orders canceled so far, for CANCELALL
        self.also: list[tuple[Session, list]] = []  # resends of the same order, answered alike
        self.engine: str | None = None  # the one engine asked, if only one
        self.counted: list[str] = []  # the engines whose in-flight count this request holds
        self.lines: list[ClientReply] = []  # CANCELALL: the requester's OUT lines, until all engines answer
        self.unreached: list[str] = []  # CANCELALL: engines it could not be sent to (their orders stay)
        # a placement waiting in ``InFlight.resends``: its reply if it is not the order that holds its client
        # order id (the shard's DUPLICATE_ID), and that order's id if the shard named it
        self.refusal: list[ClientReply] = []
        self.awaited = ""

    def answer(self, replies: list[ClientReply]) -> None:
        """Give the requester, and whoever resent the same order, these replies."""
        for session, slot in [(self.session, self.slot), *self.also]:
            session.fill(slot, replies)

    def refused_as_duplicate(self, answer) -> bool:
        """Whether ``answer`` refuses this placement for a client order id the engine already holds (a resend)."""
        return bool(self.key and isinstance(answer, OrderRejected) and answer.code is RejectCode.DUPLICATE_ID
                    and answer.order_id)


def engines_are_busy(engines: list[str]) -> str:
    """ "engine e2 is busy", or "engines e1, e2 are busy"."""
    if len(engines) == 1:
        return f"engine {engines[0]} is busy"
    return f"engines {', '.join(engines)} are busy"


class InFlight:
    """The requests engines have not answered; ``send(engine_name, command, session_id, request_id)`` → bool."""

    def __init__(self, config: Config, send: Callable[[str, Command, int, int], bool], clock: Callable[[], float],
                 routes: Routes | None = None):
        self.max_in_flight = config.gateway.max_in_flight
        self.routes = routes or Routes(config)
        self.send = send
        self.clock = clock
        self.pending: dict[int, Pending] = {}
        self.waiting_on: Counter[str] = Counter()  # requests in flight per engine
        self.placements: dict[tuple[str, str], Pending] = {}  # (user, client order id) → its placement
        self.unsent: list[tuple[str, CancelAll]] = []  # disconnect cancels an engine had no room for
        self.nobody = Session(0, lambda replies: None)  # answers to the gateway's own requests
        self.last_id = 0  # the id of the last request sent
        # placements answered UNAVAILABLE (timed out): request id → the session that sent it, so that
        # an order the engine accepted all the same is still its session's (cancel on disconnect);
        # the oldest are forgotten past MAX_TIMED_OUT
        self.timed_out: dict[int, Session] = {}
        # placements refused by their ledger shard for a client order id held by an order not taken in here
        # yet: (user, client order id) → those waiting for that order's acceptance or refusal
        self.resends: dict[tuple[str, str], list[Pending]] = {}

    def forward(self, session: Session, slot: list, engine: str, command: Command, key=None, sent=None) -> None:
        """Send ``command`` to ``engine`` (``sent`` in its place, if given: the ledger shard's wrapping of
        it); its answer fills ``slot``. ProtocolError BUSY if it may not. ``engine`` may be a ledger
        shard's name, for the shard's own requests."""
        if self.waiting_on[engine] >= self.max_in_flight and not isinstance(command, CancelOrder):
            # the engine (or the journal behind it) is not keeping up: refuse rather than queue
            raise ProtocolError(RejectCode.BUSY, f"{way_name(engine)} is busy; try again")
        self.last_id += 1
        if not self.send(engine, command if sent is None else sent, session.id, self.last_id):
            raise ProtocolError(RejectCode.BUSY, f"{self.routes.busy(engine, command)}; try again")
        pending = self.pending[self.last_id] = Pending(session, slot, command, 1, key, self.clock())
        pending.engine = engine
        pending.counted.append(engine)
        self.waiting_on[engine] += 1
        if key:
            self.placements[key] = pending

    def forward_to_all(self, session: Session, slot: list, engines: list[str], command: CancelAll) -> None:
        """Send a CANCELALL to each of ``engines``; ProtocolError BUSY if none may take it."""
        busy = [e for e in engines if self.waiting_on[e] >= self.max_in_flight]
        if busy:  # it waits in line like any order (and costs like one per engine)
            raise ProtocolError(RejectCode.BUSY, f"{engines_are_busy(busy)}; try again")
        self.last_id += 1
        pending = self.pending[self.last_id] = Pending(session, slot, command, len(engines), sent=self.clock())
        for engine in engines:
            if self.send(engine, command, session.id, self.last_id):
                self.waiting_on[engine] += 1
                pending.counted.append(engine)
            else:
                pending.waiting -= 1  # that engine is busy: its orders stay, and the answer says so
                pending.unreached.append(engine)
        if pending.waiting == 0:
            del self.pending[self.last_id]
            # with accounts on, every engine's share goes through the user's one ledger shard
            busy = self.routes.busy(engines[0], command) if self.routes.accounts else engines_are_busy(engines)
            raise ProtocolError(RejectCode.BUSY, f"{busy}; try again")

    def send_own(self, engine: str, command: CancelAll) -> None:
        """Send a request of the gateway's own (no session waits for it); retried if the engine is busy."""
        self.last_id += 1
        if not self.send(engine, command, 0, self.last_id):
            self.unsent.append((engine, command))
            return
        self.pending[self.last_id] = Pending(self.nobody, self.nobody.reserve(), command, sent=self.clock())

    def answered(self, reply: Reply) -> Pending | None:
        """The request that an engine's reply answers, if it still waits: it is done, unless it is a
        CANCELALL that other engines have not answered yet."""
        pending = self.pending.get(reply.request_id)
        if pending is None:
            return None
        if isinstance(pending.command, CancelAll):
            pending.count += sum(isinstance(e, OrderCanceled) for e in reply.events)
            pending.waiting -= 1
        else:
            self.done(reply.request_id)
        return pending

    def done(self, request_id: int) -> None:
        """The request is answered: it no longer counts against its engines, nor holds its client order id."""
        pending = self.pending.pop(request_id)
        for engine in pending.counted:
            self.waiting_on[engine] -= 1
        if pending.key:
            self.placements.pop(pending.key, None)

    def wait_for_order(self, pending: Pending, refusal: list[ClientReply], order_id: str = "") -> None:
        """``pending`` (a placement with a client order id, answered by its shard) waits for the order that
        holds its id (``order_id``, if the shard named it) to be taken in; it counts as in flight meanwhile."""
        pending.refusal, pending.awaited = refusal, order_id
        for engine in pending.counted:
            self.waiting_on[engine] += 1
        self.resends.setdefault(pending.key, []).append(pending)

    def heard(self, key: tuple[str, str]) -> list[Pending]:
        """The placements that waited for the order with this (user, client order id): they wait no more."""
        waiting = self.resends.pop(key, None)
        if not waiting:
            return []
        for pending in waiting:
            for engine in pending.counted:
                self.waiting_on[engine] -= 1
        return waiting

    def stop_waiting(self, which: Callable[[Pending], bool]) -> list[Pending]:
        """The placements waiting in ``resends`` for which ``which(pending)``: they wait no more."""
        stopped: list[Pending] = []
        for key, waiting in list(self.resends.items()):
            kept: list[Pending] = []
            for pending in waiting:
                (stopped if which(pending) else kept).append(pending)
            if not kept:
                del self.resends[key]
            elif len(kept) < len(waiting):
                self.resends[key] = kept
        for pending in stopped:
            for engine in pending.counted:
                self.waiting_on[engine] -= 1
        return stopped

    def not_sent(self, engine: str, request_id: int) -> None:
        """The gateway could not hand this request to its engine after all: answer BUSY now, or keep
        a cancel-on-disconnect for the next retry. A request to several engines (CANCELALL) is
        left to its timeout: the other engines may have acted on it."""
        pending = self.pending.get(request_id)
        if pending is None:
            return
        if pending.session is self.nobody:
            del self.pending[request_id]
            self.nobody.fill(pending.slot, [])  # its slot, or every later own answer would queue behind it
            self.unsent.append((engine, pending.command))
            return
        if pending.engine is None:
            return
        self.done(request_id)
        cid = getattr(pending.command, "client_order_id", "")
        pending.answer([Rej(RejectCode.BUSY, f"{self.routes.busy(pending.engine, pending.command)}; try again", cid)])

    def expire(self, timeout: float) -> int:
        """Answer requests an engine has not answered within ``timeout`` seconds; return how many.

        The outcome is unknown (the engine may have died with the command in its queue, or be
        slow); the client resends a placement with the same client order id to learn it.
        """
        unsent, self.unsent = self.unsent, []
        for engine, command in unsent:
            self.send_own(engine, command)
        now = self.clock()
        late = [(request_id, p) for request_id, p in self.pending.items() if now - p.sent > timeout]
        for request_id, pending in late:
            self.done(request_id)
            if isinstance(pending.command, PlaceOrder) and pending.session is not self.nobody:
                self.timed_out[request_id] = pending.session
                if len(self.timed_out) > MAX_TIMED_OUT:
                    del self.timed_out[next(iter(self.timed_out))]
            reason = (f"no answer from the engine in {timeout:.0f} s; the outcome is unknown: send the same"
                      " order again with its #client-order-id, or ask STATUS")
            if isinstance(pending.command, GetBalances):  # nothing was done: only the answer is missing
                reason = f"no answer from {way_name(pending.engine)} in {timeout:.0f} s; ask BALANCE again"
            elif pending.engine and pending.engine.startswith(LEDGER_PREFIX):  # a shard's own request
                reason = (f"no answer from {way_name(pending.engine)} in {timeout:.0f} s; the outcome is unknown:"
                          " send the same transfer again with its reference, or ask BALANCE")
            # a CANCELALL's OUT lines from the engines that did answer still follow
            pending.answer([Rej(RejectCode.UNAVAILABLE, reason, getattr(pending.command, "client_order_id", "")),
                            *pending.lines])
        unheard = self.stop_waiting(lambda pending: now - pending.sent > timeout) if self.resends else []
        for pending in unheard:  # the order that holds its client order id never reached this gateway
            cid = pending.command.client_order_id
            pending.answer([Rej(RejectCode.UNAVAILABLE, f"client order id #{cid} is held by an order this gateway"
                                f" has not heard of in {timeout:.0f} s; the outcome is unknown: send the same order"
                                " again with its #client-order-id, or ask STATUS", cid)])
        return len(late) + len(unheard)
