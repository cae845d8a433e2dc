"""The gateway's open sessions, and the limits that bound them (docs/security.md).

Each session has a token bucket (RATE_LIMITED) and a bound on its unanswered requests
(``max_unanswered``), each user a session cap (MAX_SESSIONS), the gateway a connection cap
(MAX_CONNECTIONS), and a session that sends nothing for ``idle_timeout`` is closed. The user of a
session is set once, by a LOGIN whose key verified or by the connection's CURVE key, with the
user's own limits from the config.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from exchange.config import Config, plain
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.access import TokenBucket
from exchange.gateway.protocol.messages import Bye, ClientReply, LoginRequest, Rej
from exchange.gateway.sessions import Session

log = logging.getLogger(__name__)

# A front end's session (one signed-in browser's, on the web role) without a request for this long is
# closed, whatever ``gateway.idle_timeout`` says: the web role pings each of its sessions three times as
# often (exchange.web.sessions.PING_EVERY_S), so only the sessions of a front end that died (the
# gateway cannot see a DEALER go) end this way, and they do within this time.
FRONT_END_IDLE_S = 30.0


class SessionTable:
    """Every open session, by id and by user; ``ended(session)`` is called when one closes."""

    def __init__(self, config: Config, clock: Callable[[], float], ended: Callable[[Session], None]):
        self.config = config
        self.clock = clock
        self.ended = ended
        self.sessions: dict[int, Session] = {}
        self.by_user: dict[str, set[Session]] = {}
        self._next_session = 0

    def open(self, write: Callable[[list[ClientReply]], None], disconnect: Callable[[], None] = lambda: None,
             address: str = "", user: str | None = None, resume: Callable[[], None] = lambda: None,
             login_timeout: float = 0.0, front_end: bool = False) -> Session:
        """A new session; ``user`` when the connection itself proved it (a CURVE key); ``front_end``
        when it came by the gateway's endpoint for trusted front ends (its LOGIN may carry the
        user's address). ``resume``
        is called when a session that had no room (``Session.has_room``) has room again; a session
        nobody logged in on ends after ``login_timeout`` seconds without a request, if given.

        Raises ProtocolError MAX_CONNECTIONS (or MAX_SESSIONS for ``user``): no session is made.
        """
        gateway = self.config.gateway
        if len(self.sessions) >= gateway.max_connections:
            raise ProtocolError(RejectCode.MAX_CONNECTIONS, f"the gateway has {gateway.max_connections}"
                                " connections, the most it takes; try again later")
        if user is not None:
            self.check(user)
        now = self.clock()
        self._next_session += 1
        session = Session(self._next_session, write, disconnect, address,
                          TokenBucket(gateway.max_rate, gateway.max_burst, now), now, gateway.max_unanswered, resume,
                          max_pushed_bytes=gateway.max_write_buffer)
        session.login_timeout = login_timeout
        session.front_end = front_end
        self.sessions[session.id] = session
        if user is not None:
            session.keyed = True
            self.logged_in(session, user, None)
        return session

    def close(self, session: Session) -> None:
        """The session ended (closed by either side, or expired)."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        if session.user:
            self.by_user.get(session.user, set()).discard(session)
        self.ended(session)

    def expire_idle(self) -> int:
        """Close every session that sent nothing for ``gateway.idle_timeout`` seconds, or for its
        ``login_timeout`` while nobody is logged in on it; return how many.

        A session with a request still unanswered is not idle: it waits on the exchange (a deposit
        on a slow ledger shard, say), and a BYE then would leave its client not knowing the outcome.
        It counts as seen now, so the whole timeout runs again from its last answer (or so)."""
        now = self.clock()
        idle = []
        for session in self.sessions.values():
            if session.unanswered:
                session.last_request = now
            elif (timeout := self._idle_timeout(session)) and now - session.last_request > timeout:
                idle.append((session, timeout))
        for session, timeout in idle:
            log.info("session %d: idle for %g s; closing it", session.id, timeout)
            session.write([Bye(RejectCode.IDLE_TIMEOUT, f"no request in {plain(timeout)} s; send PING to stay"
                                                        " connected")])
            session.disconnect()
            self.close(session)
        return len(idle)

    def _idle_timeout(self, session: Session) -> float:
        timeout = self.config.gateway.idle_timeout
        if session.front_end and session.user is not None:  # the front end pings: only one that died stops
            return min(timeout, FRONT_END_IDLE_S) if timeout else FRONT_END_IDLE_S
        if session.login_timeout and session.user is None and session.waiting is None:  # no LOGIN being checked
            return min(timeout, session.login_timeout) if timeout else session.login_timeout
        return timeout

    def check(self, user: str) -> None:
        """ProtocolError MAX_SESSIONS if ``user`` may not have one more session."""
        known = self.config.user(user)
        limit = (known.max_sessions if known is not None else None) or self.config.gateway.max_sessions_per_user
        if len(self.by_user.get(user, ())) >= limit:
            raise ProtocolError(RejectCode.MAX_SESSIONS, f"user {user} has {limit} sessions, the most"
                                " allowed; close one first")

    def logged_in(self, session: Session, user: str, request: LoginRequest | None) -> None:
        """``user`` is the session's user from now on, with that user's limits and options."""
        known = self.config.user(user)
        session.user = user
        session.cancel_on_disconnect = known is not None and known.cancel_on_disconnect
        if request is not None and request.cancel_on_disconnect is not None:
            session.cancel_on_disconnect = request.cancel_on_disconnect
        if known is not None:
            session.max_open_orders = known.max_open_orders or 0
            if known.max_rate is not None:
                gateway = self.config.gateway
                burst = max(1, math.ceil(gateway.max_burst * known.max_rate / gateway.max_rate))
                session.bucket = TokenBucket(known.max_rate, burst, self.clock())
        self.by_user.setdefault(user, set()).add(session)
        log.info("session %d: %s logged in%s%s", session.id, user, " by CURVE key" if session.keyed else "",
                 ", cancel on disconnect" if session.cancel_on_disconnect else "")

    def admit(self, session: Session, client_order_id: str) -> list | None:
        """The slot for one more request of the session; None if it is answered RATE_LIMITED, or
        ended because it has ``max_unanswered`` requests already (a transport that stops reading
        at ``Session.has_room`` never gets there; a ZMQ client, which cannot be left unread, may)."""
        if session.closed or session.logging_out:  # after a LOGOUT, nothing more is answered
            return None
        if not session.has_room():
            limit = session.max_unanswered
            log.warning("session %d: %d requests wait for their answers; closing it", session.id, limit)
            session.write([Bye(RejectCode.RATE_LIMITED, f"more than {limit} requests wait for their answers;"
                                                        " closing the session")])
            session.disconnect()
            self.close(session)
            return None
        now = self.clock()
        session.last_request = now
        if session.bucket is not None and not session.bucket.take(now):
            session.fill(session.reserve(), [Rej(RejectCode.RATE_LIMITED, f"more than {plain(session.bucket.rate)}"
                                                 " requests per second; slow down", client_order_id)])
            return None
        return session.reserve()
