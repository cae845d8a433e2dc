"""Which way a gateway's command leaves: straight to its engine, or through its user's ledger shard.

Without accounts a command goes to the engine that owns it. With accounts on, every command of a
user goes to that user's ledger shard (``config.ledger_of(user)``), one way per user, so that the
user's commands keep their order: a placement as a HoldOrder and a replace as a HoldReplace (the
shard holds funds, then passes them on), cancels as they are, each naming the ``engine`` the
shard passes it to; the shard's own requests (balances, deposits, withdrawals) name none. Their
in-flight count is kept under the shard's name (``ledger-<n>``), which no engine may have.
"""

from __future__ import annotations

from exchange.config import Config
from exchange.core.ledger_messages import HoldOrder, HoldReplace
from exchange.wire.messages import Request

LEDGER_PREFIX = "ledger-"  # the config refuses engine names that start with it


def way_name(way: str) -> str:
    """How a BUSY names a way: "ledger shard 1" for ``ledger-1``, else "engine e1"."""
    if way.startswith(LEDGER_PREFIX):
        return f"ledger shard {way[len(LEDGER_PREFIX):]}"
    return f"engine {way}"


def user_of(command) -> str:
    """The user a command (or a ledger shard's wrapping of one) is for."""
    match command:
        case HoldOrder():
            return command.order.user
        case HoldReplace():
            return command.replace.user
    return command.user


class Routes:
    """Where each command goes, and the Request that carries it there."""

    def __init__(self, config: Config):
        self.accounts = config.accounts
        self._config = config
        self._shards: dict[str, str] = {}  # user → their shard's name (users are the config's: bounded)

    def shard(self, user: str) -> str:
        """The name of ``user``'s ledger shard (``ledger-<n>``); accounts on only."""
        name = self._shards.get(user)
        if name is None:
            name = self._shards[user] = self._config.ledger_of(user).name
        return name

    def ways(self) -> list[tuple[str, str, str]]:
        """(way, endpoint, role) of every PUSH the gateway needs: the shards with accounts on, else the engines."""
        if self.accounts:
            return [(s.name, s.commands, s.role) for s in self._config.ledgers]
        return [(e.name, e.commands, e.role) for e in self._config.engines]

    def route(self, gateway: str, engine: str, command, session_id: int, request_id: int) -> tuple[str, Request]:
        """(the way, the Request) for ``command`` on its way to ``engine`` (a shard's name: to the shard itself)."""
        if not self.accounts:
            return engine, Request(gateway, session_id, request_id, command)
        shard = self.shard(user_of(command))
        target = "" if engine.startswith(LEDGER_PREFIX) else engine
        return shard, Request(gateway, session_id, request_id, command, target)

    def busy(self, engine: str, command) -> str:
        """Why a command for ``engine`` could not leave: "ledger shard 1 is busy" or "engine e1 is busy"."""
        way = self.shard(user_of(command)) if self.accounts else engine
        return f"{way_name(way)} is busy"
