"""One client session of the gateway, whatever its transport: who it is, and its replies in order.

exchange.gateway.session_table.SessionTable holds the open sessions and the limits on them,
exchange.gateway.order_entry.OrderEntry answers their requests; the transports (text_server,
zmq_server) give each one a ``write`` (and a ``disconnect``) for its TCP connection or ZMQ peer.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable

from exchange.errors import RejectCode
from exchange.gateway.access import TokenBucket
from exchange.gateway.protocol.grammar import format_reply
from exchange.gateway.protocol.messages import Bye, ClientReply, ClientRequest

log = logging.getLogger(__name__)


def text_size(replies: list[ClientReply]) -> int:
    """The bytes ``replies`` take as text lines: what a session holding them back costs, roughly."""
    return sum(len(format_reply(reply)) + 1 for reply in replies)


class Session:
    """One client connection. ``write`` takes a list of replies, in order.

    Replies leave in request order: each request reserves a slot in ``queue``, and a slot that is
    not answered yet holds back everything behind it. A pushed update (FILL, OUT, REDUCED) waits
    in the queue only while a line about the same order is still queued (so an order's ACK always
    comes before its fills); otherwise it leaves at once, so an order's lines stay in the order
    things happened to it even when a request about it (a CANCEL, say) is still unanswered.

    The queue is bounded: ``has_room`` is False once ``max_unanswered`` request slots wait (pushed
    lines held back are no requests), and the transport then stops reading the client; ``resume`` is
    called when half of them are gone. Pushed lines held back are bounded on their own: once more
    than ``max_pushed_bytes`` of them (as text) would wait, the session ends with a BYE instead.

    A request may also wait to be *sent* until the requests before it are answered (a BALANCE, whose
    answer must include what they did): ``await_answer`` marks a request whose answer later ones
    wait for, ``when_awaited_answered`` runs what waits once all those taken before it are answered.
    """

    def __init__(self, session_id: int, write: Callable[[list[ClientReply]], None],
                 disconnect: Callable[[], None] = lambda: None, address: str = "",
                 bucket: TokenBucket | None = None, now: float = 0.0, max_unanswered: int = 1 << 30,
                 resume: Callable[[], None] = lambda: None, max_pushed_bytes: int = 1 << 30):
        self.id = session_id
        self.user: str | None = None
        self.write = write
        self.disconnect = disconnect  # ends the connection; the transport then calls OrderEntry.close
        self.address = address  # the peer, for login throttling and logs
        # [ready, replies, pushed] entries, flushed from the head: a request's slot (``pushed`` None) or
        # pushed lines held back (``pushed`` their text size)
        self.queue: deque[list] = deque()
        self.unanswered = 0  # request slots in ``queue``, answered or not: what max_unanswered bounds
        self.max_unanswered = max_unanswered
        self.pushed_bytes = 0  # the text size of the pushed lines held back in ``queue``
        self.max_pushed_bytes = max_pushed_bytes
        self.resume = resume  # the transport reads the client again
        self.stopped = False  # has_room said no: resume when its requests are down to half
        self.login_timeout = 0.0  # if set: the idle timeout while nobody is logged in on the session
        self.held: Counter[str] = Counter()  # order id → queued lines about it
        self.bucket = bucket
        self.last_request = now
        self.closed = False
        self.keyed = False  # logged in by its connection's CURVE key (ZMQ), not by a LOGIN
        self.front_end = False  # a trusted front end's (the web role's): its LOGIN may say the user's address
        self.ending: Callable[[], None] | None = None  # LOGOUT: ends the session once its answer is written
        self.logging_out = False  # a LOGOUT was taken (it may wait behind a LOGIN): nothing after it is answered
        self.after_answers: Callable[[], None] | None = None  # no more requests come: ends it once all are answered
        self.login_seen = False
        self.cancel_on_disconnect = False
        self.max_open_orders = 0  # the user's own limit, copied into each PlaceOrder
        self.own_orders: dict[str, None] = {}  # open orders this session placed, oldest first
        self.waiting: deque[tuple[ClientRequest, list]] | None = None  # requests behind a LOGIN being checked
        # requests whose answers what comes after them waits for: id of their slot → their number, oldest
        # first, until answered; and what waits: (the number of the last such request before it, what to do)
        self.awaited: dict[int, int] = {}
        self.awaited_taken = 0
        self.after_awaited: deque[tuple[int, Callable[[], None]]] = deque()

    def has_room(self) -> bool:
        """Whether the session may take one more request now; if not, ``resume`` says when."""
        if self.unanswered < self.max_unanswered:
            return True
        self.stopped = True
        return False

    def reserve(self) -> list:
        slot = [False, [], None]
        self.queue.append(slot)
        self.unanswered += 1
        return slot

    def end_once_answered(self, end: Callable[[], None]) -> None:
        """The client sends no more requests: ``end()`` once every one it sent is answered (now, if
        none waits). Unlike after a LOGOUT, requests waiting behind a LOGIN are answered too."""
        if self.queue:
            self.after_answers = end
        else:
            end()

    def fill(self, slot: list, replies: list[ClientReply] | Callable[[], list[ClientReply]]) -> None:
        """Complete a reserved slot; a callable is called only when the slot's turn comes."""
        slot[0] = True
        if callable(replies):
            slot[1] = replies
            self.flush()
        elif self.queue and self.queue[0] is slot and not slot[1]:
            # its turn has come (the common case): the lines leave now, so ``held`` need not count them
            self.queue.popleft()
            self.unanswered -= 1
            self.flush(replies)
        else:
            slot[1].extend(replies)
            self._count(replies, +1)
            self.flush()
        if self.awaited and self.awaited.pop(id(slot), None) is not None and self.after_awaited:
            self._awaited_answered()

    def await_answer(self, slot: list) -> None:
        """What ``when_awaited_answered`` is given from now on waits for the answer that fills ``slot``."""
        self.awaited_taken += 1
        self.awaited[id(slot)] = self.awaited_taken

    def when_awaited_answered(self, then: Callable[[], None]) -> None:
        """``then()`` once every request awaited so far is answered (now, if none waits), whatever
        is taken after it."""
        if self.awaited:
            self.after_awaited.append((self.awaited_taken, then))
        else:
            then()

    def _awaited_answered(self) -> None:
        oldest = next(iter(self.awaited.values()), None)  # the oldest awaited request not yet answered
        after = self.after_awaited
        while after and not self.closed and (oldest is None or after[0][0] < oldest):
            after.popleft()[1]()

    def push(self, replies: list[ClientReply]) -> None:
        if self.closed:
            return
        if self.held and any(self.held[getattr(r, "order_id", "")] for r in replies):  # held: lines queued
            size = text_size(replies)
            if self.pushed_bytes + size > self.max_pushed_bytes:
                self.too_many_pushed()
                return
            self.queue.append([True, replies, size])
            self.pushed_bytes += size
            self._count(replies, +1)
            self.flush()
        else:
            self.write(replies)

    def too_many_pushed(self) -> None:
        """Holding back one more pushed line would cost more than the session may: end it, with a reason
        (the transport then closes it); keeping the lines in order is what the client was promised."""
        log.warning("session %d: more than %d bytes of pushed lines held back; closing it", self.id,
                    self.max_pushed_bytes)
        self.write([Bye(RejectCode.RATE_LIMITED, f"more than {self.max_pushed_bytes} bytes of pushed lines wait"
                                                 " behind unanswered requests; closing the session")])
        self.disconnect()

    def flush(self, ready: list[ClientReply] | None = None) -> None:
        """Write the lines whose turn has come: ``ready`` (a slot's, just taken off the head), then those
        of the slots at the head of the queue that are filled."""
        if self.closed:
            return
        parts = [ready] if ready else []
        queue = self.queue
        while queue and queue[0][0]:
            _, replies, pushed = queue.popleft()
            if pushed is None:
                self.unanswered -= 1
            else:
                self.pushed_bytes -= pushed
            if callable(replies):
                replies = replies()
            else:
                self._count(replies, -1)
            if replies:
                parts.append(replies)
        if len(parts) == 1:
            self.write(parts[0])  # as it is: nobody changes a list of replies once it is handed over
        elif parts:
            self.write([reply for part in parts for reply in part])
        end = self.ending or self.after_answers
        if end is not None and not queue:  # the last answer (a LOGOUT's, or to the last request) is written
            self.ending = self.after_answers = None
            end()
            return
        if self.stopped and self.unanswered <= self.max_unanswered // 2:
            self.stopped = False
            self.resume()

    def _count(self, replies: list[ClientReply], step: int) -> None:
        for reply in replies:
            order_id = getattr(reply, "order_id", None)
            if order_id:
                self.held[order_id] += step
                if not self.held[order_id]:
                    del self.held[order_id]
