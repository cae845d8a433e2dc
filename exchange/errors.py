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
    # validation: the values, before any book is looked at
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"  # no instrument with this symbol
    BAD_PRICE = "BAD_PRICE"  # off the tick grid, not positive, too many digits or out of range
    BAD_QTY = "BAD_QTY"  # off the lot grid, not positive, or outside the instrument's limits
    BAD_TIF = "BAD_TIF"  # a time in force that this order type cannot have
    DUPLICATE_ID = "DUPLICATE_ID"  # the user already used this client order id
    # book: depends on the state of the book
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # no open order with this id belongs to the user
    WOULD_CROSS = "WOULD_CROSS"  # a post-only order would take liquidity
    NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order met an empty opposite side
    # system: the exchange, not the request
    BUSY = "BUSY"  # the engine is waiting for the journal; try again shortly
    UNAVAILABLE = "UNAVAILABLE"  # the engine owning the instrument does not answer
    RATE_LIMITED = "RATE_LIMITED"  # the session sends faster than it may
    INTERNAL = "INTERNAL"  # a bug in the gateway; the session is closed after this reply


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
