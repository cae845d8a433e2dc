"""BOOK requests, answered from the notifier's snapshot service: the gateway holds no books.

A BOOK becomes a SnapshotRequest to the notifier (``notifier.snapshots``), which answers from the
book it keeps of the batches the journal has released. The journal writer passes each batch to the
notifiers before the gateway, and the notifier reads the batches that have come before the
requests of the same turn: an order whose ACK a client has seen is in every book asked for after it.

The notifier's answer names its symbol, not the request. So at most one request per symbol is on
its way; BOOKs of that symbol that come meanwhile wait for the next one, which leaves when the
answer comes, and every BOOK is answered with a book taken after it was asked. Everything is
bounded before it costs anything: at most MAX_BOOKS_PER_SESSION unanswered BOOKs per session and
MAX_BOOKS_WAITING in all (beyond: BUSY), at most MAX_ASKED requests on their way to the notifier
(other symbols wait their turn), and BOOK_TIMEOUT_S for an answer (then UNAVAILABLE). ``send``
never blocks: when the notifier cannot take a request at once, the BOOKs it was for are answered
UNAVAILABLE. An answer that comes after its timeout may answer the next BOOK of its symbol (it is
still a released book, only an older one).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import NamedTuple

from exchange.core.instruments import Instrument
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.messages import BookRequest, Rej
from exchange.gateway.protocol.translate import book_reply
from exchange.gateway.sessions import Session
from exchange.wire.messages import BookSnapshot, SnapshotRefused

MAX_BOOKS_PER_SESSION = 4  # unanswered BOOKs of one session
MAX_BOOKS_WAITING = 1000  # unanswered BOOKs of all sessions
MAX_ASKED = 4  # requests on their way to the notifier: no more than it takes from one connection
BOOK_TIMEOUT_S = 3.0  # then a BOOK is answered UNAVAILABLE


class Waiter(NamedTuple):
    session: Session
    slot: list
    levels: int


class BookRequests:
    """The BOOKs waiting for the notifier; ``send(symbol)`` → bool hands a SnapshotRequest to it."""

    def __init__(self, instruments: dict[str, Instrument], send: Callable[[str], bool], clock: Callable[[], float]):
        self.instruments = instruments
        self.send = send
        self.clock = clock
        self.asked: dict[str, tuple[float, list[Waiter]]] = {}  # symbol → (when asked, the BOOKs it answers)
        self.queued: dict[str, list[Waiter]] = {}  # symbol → BOOKs for its next request
        self.turns: deque[str] = deque()  # symbols with queued BOOKs and no request on its way
        self.per_session: Counter[int] = Counter()
        self.waiting = 0

    def ask(self, session: Session, slot: list, request: BookRequest) -> None:
        """Ask for the book of a BOOK (of a known symbol); its answer fills ``slot``. ProtocolError BUSY if
        refused at once."""
        if self.per_session[session.id] >= MAX_BOOKS_PER_SESSION:
            raise ProtocolError(RejectCode.BUSY, f"{MAX_BOOKS_PER_SESSION} BOOK requests of this session wait for"
                                " their books; try again once they are answered")
        if self.waiting >= MAX_BOOKS_WAITING:
            raise ProtocolError(RejectCode.BUSY, "too many BOOK requests wait for their books; try again")
        self.per_session[session.id] += 1
        self.waiting += 1
        symbol = request.symbol
        if symbol not in self.queued:
            self.queued[symbol] = []
            if symbol not in self.asked:
                self.turns.append(symbol)
        self.queued[symbol].append(Waiter(session, slot, request.levels))
        self._send_next()

    def answered(self, reply: BookSnapshot | SnapshotRefused) -> None:
        """The notifier's answer for a symbol: it answers the BOOKs of the request on its way."""
        asked = self.asked.pop(reply.symbol, None)
        if asked is None:
            return  # its BOOKs were answered UNAVAILABLE already
        if reply.symbol in self.queued:
            self.turns.append(reply.symbol)
        for waiter in asked[1]:
            self._answer(waiter, reply)
        self._send_next()

    def expire(self) -> int:
        """Answer UNAVAILABLE the BOOKs whose request got no answer in BOOK_TIMEOUT_S; return how many."""
        now = self.clock()
        late = [symbol for symbol, (when, _) in self.asked.items() if now - when > BOOK_TIMEOUT_S]
        answered = 0
        for symbol in late:
            _, waiters = self.asked.pop(symbol)
            if symbol in self.queued:
                self.turns.append(symbol)
            for waiter in waiters:
                self._answer(waiter, SnapshotRefused(symbol, f"no answer from the market data service in"
                                                             f" {BOOK_TIMEOUT_S:g} s; try again"))
            answered += len(waiters)
        self._send_next()
        return answered

    def _send_next(self) -> None:
        while self.turns and len(self.asked) < MAX_ASKED:
            symbol = self.turns.popleft()
            waiters = self.queued.pop(symbol)
            if self.send(symbol):
                self.asked[symbol] = (self.clock(), waiters)
                continue
            for waiter in waiters:
                self._answer(waiter, SnapshotRefused(symbol, "the market data service cannot be reached just now;"
                                                             " try again"))

    def _answer(self, waiter: Waiter, reply: BookSnapshot | SnapshotRefused) -> None:
        self.waiting -= 1
        self.per_session[waiter.session.id] -= 1
        if not self.per_session[waiter.session.id]:
            del self.per_session[waiter.session.id]
        if isinstance(reply, SnapshotRefused):
            waiter.session.fill(waiter.slot, [Rej(RejectCode.UNAVAILABLE, f"no book of {reply.symbol}:"
                                                      f" {reply.reason}")])
        else:
            waiter.session.fill(waiter.slot, [book_reply(reply.symbol, reply.bids, reply.asks,
                                                         self.instruments[reply.symbol], waiter.levels)])
