"""Who may log in, and how fast anyone may ask: the gateway's bookkeeping for docs/security.md.

No sockets and no clock of its own: callers pass ``now`` (seconds, one monotonic clock) or a
clock, and the means to run scrypt elsewhere and to call back later. Memory is bounded whatever clients do: a throttle remembers at most ``MAX_TRACKED``
addresses and user names, forgetting the oldest first.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping

from exchange.config import DEFAULT_SCRYPT_N, Config, hash_key, verify_key
from exchange.errors import ProtocolError, RejectCode

log = logging.getLogger(__name__)

MAX_TRACKED = 100_000  # addresses and user names with recent failed logins


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; a request takes one."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), now

    def take(self, now: float) -> bool:
        """Take a token if there is one; False means the caller is over its rate."""
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


WIDER = 4  # an address (any user name) or a user name (any address) may fail this many times more


class LoginThrottle:
    """Failed logins within a sliding window of ``window`` seconds, counted three ways.

    - one user name from one address: ``limit`` failures, then that name is refused from that
      address (someone's typos lock out only themselves, not everyone behind the same address);
    - one address, whatever the names: ``WIDER × limit`` (guessing many users' keys from one place);
    - one user name, from anywhere: ``WIDER × limit`` (guessing one key from many places).

    Past a limit, logins are refused without checking the key until the oldest failure leaves the
    window. Unknown user names count like known ones, so the answer never tells whether a user exists.

    ``full`` also counts the key checks still running (``Logins``): a login that would fill a limit
    if they all failed waits for them, so logins sent at once on many connections get no more key
    checks than logins sent one after another.
    """

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.failures: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()

    def _keys(self, address: str, user: str) -> tuple[tuple[tuple[str, ...], int, str], ...]:
        """(what is counted, its limit, how the refusal names it)."""
        return ((("pair", address, user), self.limit, f"for {user} from this address"),
                (("address", address), WIDER * self.limit, "from this address"),
                (("user", user), WIDER * self.limit, f"for {user}"))

    def refusal(self, address: str, user: str, now: float) -> tuple[float, str]:
        """(seconds until a login for ``user`` from ``address`` may be tried, 0 if it may now;
        which limit holds it back)."""
        longest, why = 0.0, ""
        for key, limit, name in self._keys(address, user):
            times = self._recent(key, now)
            if times is not None and len(times) >= limit and times[0] + self.window - now > longest:
                longest, why = times[0] + self.window - now, name
        return longest, why

    def failed(self, address: str, user: str, now: float) -> None:
        """Count a failed login at ``now``."""
        for key, limit, _ in self._keys(address, user):
            times = self._recent(key, now)
            if times is None:
                times = self.failures[key] = deque(maxlen=limit)
            times.append(now)
            self.failures.move_to_end(key)
        while len(self.failures) > MAX_TRACKED:
            self.failures.popitem(last=False)

    def full(self, address: str, user: str, now: float, running: Mapping[tuple[str, ...], int]) -> bool:
        """Whether a limit would be reached if the ``running`` key checks (by what they count
        towards, as ``_keys`` names it) all failed."""
        for key, limit, _ in self._keys(address, user):
            checks = running.get(key, 0)
            if checks:
                times = self._recent(key, now)
                if (len(times) if times is not None else 0) + checks >= limit:
                    return True
        return False

    def counted(self, address: str, user: str) -> tuple[tuple[str, ...], ...]:
        """What a login for ``user`` from ``address`` counts towards."""
        return tuple(key for key, _, _ in self._keys(address, user))

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float] | None:
        times = self.failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failures[key]
            return None
        return times


@functools.cache
def _unknown_user_hash(n: int) -> str:
    """A hash of scrypt cost ``n`` that no key matches: an unknown user's LOGIN costs one scrypt,
    like a known user's. Made once per process and cost."""
    return hash_key(secrets.token_urlsafe(16), n=n)


def _usual_cost(config: Config) -> int:
    """The scrypt cost most of the configured users' key hashes have (the default without users):
    an unknown name is checked at it, so that its answer takes as long as a wrong key's."""
    costs = Counter(int(user.key_hash.split("$")[1]) for user in config.users)
    return costs.most_common(1)[0][0] if costs else DEFAULT_SCRYPT_N


class Logins:
    """LOGIN: the key checked against its scrypt hash off the event loop; failures slow and throttled.

    ``run_blocking(fn, done)`` runs ``fn()`` away from the caller's loop and calls ``done(result)``
    back on it; ``later(delay, fn)`` calls ``fn()`` after ``delay`` seconds. A key that verified
    once is remembered by a digest, so that logging in again costs no scrypt. Keys are never
    logged, and an unknown user costs one scrypt like a known one (the answer is the same).
    """

    def __init__(self, config: Config, run_blocking: Callable[[Callable[[], bool], Callable[[bool], None]], None],
                 later: Callable[[float, Callable[[], None]], None], clock: Callable[[], float]):
        self.config, self.run_blocking, self.later, self.clock = config, run_blocking, later, clock
        gateway = config.gateway
        self.delay = gateway.login_failure_delay
        self.throttle = LoginThrottle(gateway.max_failed_logins, gateway.failed_login_window)
        # made here, before any LOGIN: a first unknown name must not run scrypt on the event loop
        self.unknown_user_hash = _unknown_user_hash(_usual_cost(config))
        self.verified: set[bytes] = set()
        self.checking: dict[bytes, list[Callable[[ProtocolError | None], None]]] = {}  # key digest → its LOGINs
        self.running: Counter[tuple[str, ...]] = Counter()  # key checks running, by what they count towards
        # LOGINs that would fill a limit if the checks running all failed: decided again as each ends
        # (at most one per connection, so bounded by max_connections)
        self.waiting: list[tuple[str, str, str, Callable[[ProtocolError | None], None]]] = []

    def check(self, user: str, key: str, address: str, done: Callable[[ProtocolError | None], None]) -> None:
        """Decide whether ``user`` may log in with ``key`` from ``address``: ``done(None)`` if so,
        else ``done(error)`` — at once, or after the failure delay."""
        now = self.clock()
        wait, why = self.throttle.refusal(address, user, now)
        if wait > 0:
            log.info("login for %r from %s throttled", user, address)
            error = ProtocolError(RejectCode.LOGIN_THROTTLED,
                                  f"too many failed logins {why}; try again in {math.ceil(wait)} s")
            self.later(self.delay, lambda: done(error))
            return
        known = self.config.user(user)
        key_hash = known.key_hash if known is not None else self.unknown_user_hash
        digest = hashlib.sha256(f"{user}\0{key}\0{key_hash}".encode()).digest()
        if known is not None and digest in self.verified:
            done(None)
            return
        same = self.checking.get(digest)
        if same is not None:  # the same key of the same user is being checked: its answer is this one's
            same.append(done)
            return
        if self.throttle.full(address, user, now, self.running):
            self.waiting.append((user, key, address, done))  # until the checks that may fill it end
            return
        self.checking[digest] = [done]
        counted = self.throttle.counted(address, user)
        self.running.update(counted)

        def verified(ok: bool) -> None:
            for each in counted:
                self.running[each] -= 1
                if not self.running[each]:
                    del self.running[each]
            answers = self.checking.pop(digest)
            if ok and known is not None:
                self.verified.add(digest)
                for answer in answers:
                    answer(None)
            else:
                log.info("failed login for %r from %s", user, address)
                self.throttle.failed(address, user, self.clock())  # one guess, however many sent it
                error = ProtocolError(RejectCode.BAD_LOGIN, "unknown user or wrong key")
                for answer in answers:
                    self.later(self.delay, functools.partial(answer, error))
            self._check_waiting()

        def check_key() -> bool:
            try:
                return verify_key(key, key_hash)
            except Exception as e:  # e.g. scrypt refuses the hash's cost: a failed login, not one left unanswered
                log.warning("the key of %r could not be checked, so the login failed: %s: %s; give the user a"
                            " new key_hash (`exchange users remove`, then `users add`)", user, type(e).__name__, e)
                return False

        self.run_blocking(check_key, verified)

    def _check_waiting(self) -> None:
        """Decide again the logins that waited for key checks to end (each may wait again)."""
        waiting, self.waiting = self.waiting, []
        for user, key, address, done in waiting:
            self.check(user, key, address, done)
