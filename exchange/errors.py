"""The exception tree and the reject codes every client sees.

    ExchangeError                 anything this package raises on purpose
     ├── ConfigError              the YAML file is wrong: names file, key path, problem
     ├── ProtocolError            a client line or message is wrong: carries code + reason
     ├── WireError                a frame from the mesh could not be decoded
     └── JournalError             the journal file is missing, corrupt or inconsistent

Client mistakes that depend on book state are not exceptions: the matcher answers them
with an ``OrderRejected`` event carrying the same ``RejectCode``.
"""

from __future__ import annotations

import enum


class RejectCode(enum.Enum):
    """Why a request was refused; grouped by the stage that refuses it. Values are stable."""

    # protocol: the line itself
    MALFORMED = "MALFORMED"  # the line does not follow the grammar of its verb
    UNKNOWN_VERB = "UNKNOWN_VERB"  # the first word is not a verb we know
    TOO_LARGE = "TOO_LARGE"  # the line is longer than the session's cap
    NOT_LOGGED_IN = "NOT_LOGGED_IN"  # an order verb before a successful LOGIN
    BAD_LOGIN = "BAD_LOGIN"  # unknown user or wrong key
    ALREADY_LOGGED_IN = "ALREADY_LOGGED_IN"  # a second LOGIN on one session
    LOGIN_THROTTLED = "LOGIN_THROTTLED"  # too many failed logins from this address or for this user
    # session limits: the gateway's, per user and per connection
    RATE_LIMITED = "RATE_LIMITED"  # the session sends faster than it may (its token bucket is empty)
    MAX_SESSIONS = "MAX_SESSIONS"  # the user already has as many sessions as allowed
    MAX_CONNECTIONS = "MAX_CONNECTIONS"  # the gateway has all the connections it takes (sent with BYE)
    IDLE_TIMEOUT = "IDLE_TIMEOUT"  # no request for too long; the session is closed (sent with BYE)
    # validation: the values, before any book is looked at
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"  # no instrument with this symbol
    BAD_PRICE = "BAD_PRICE"  # off the tick grid, not positive, too many digits or out of range
    BAD_QTY = "BAD_QTY"  # off the lot grid, not positive, or outside the instrument's limits
    BAD_TIF = "BAD_TIF"  # a time in force that this order type cannot have
    DUPLICATE_ID = "DUPLICATE_ID"  # the user already used this client order id
    # book: depends on the state of the book
    NOT_YOUR_ORDER = "NOT_YOUR_ORDER"  # no open order of the user has this id (or none at all: same answer)
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # no longer sent (NOT_YOUR_ORDER replaced it); old journals have it
    WOULD_CROSS = "WOULD_CROSS"  # a post-only order would take liquidity
    NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order met an empty opposite side
    # risk limits: the instrument's and the user's, checked by the engine
    MAX_NOTIONAL = "MAX_NOTIONAL"  # price × quantity is above the instrument's max_notional
    PRICE_BAND = "PRICE_BAND"  # the price is too far from the last trade (or the reference price)
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"  # the user already has as many open orders as allowed
    # funds: the user's ledger shard, before the engine
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # the order, replace or withdrawal needs more than is available
    NOT_ALLOWED = "NOT_ALLOWED"  # not for this user or exchange: transfers need an admin, admins do not trade, no accounts
    # system: the exchange, not the request
    BUSY = "BUSY"  # the engine is waiting for the journal; try again shortly
    UNAVAILABLE = "UNAVAILABLE"  # the engine owning the instrument does not answer
    INTERNAL = "INTERNAL"  # a bug in the gateway; the session is closed after this reply


def not_your_order(name: str, user: str) -> str:
    """The one reason for NOT_YOUR_ORDER (``name``: an order id or ``#client-order-id``), whoever says
    it: someone else's order, a finished one and none at all read the same, so nobody learns which."""
    return f"no open order {name} of user {user}"


class ExchangeError(Exception):
    """Anything this package raises on purpose."""


class ConfigError(ExchangeError):
    """The configuration file is wrong; the message names the file, the key path and the problem."""


class ProtocolError(ExchangeError):
    """A client request is wrong; ``code`` and ``reason`` become the reply."""

    def __init__(self, code: RejectCode, reason: str):
        super().__init__(f"{code.value} {reason}")
        self.code = code
        self.reason = reason


class WireError(ExchangeError):
    """A frame from another role could not be decoded."""


class JournalError(ExchangeError):
    """The journal is missing, corrupt or inconsistent."""
