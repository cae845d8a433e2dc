"""The requests about accounts: BALANCE, an admin's DEPOSIT and WITHDRAW, and who may trade.

With accounts on, each goes to a ledger shard (exchange.gateway.ledger_routes): BALANCE to the
session user's, a transfer to its target user's. An admin user (``users[].admin``) moves funds for
any user and does not trade; nobody else may move funds. With accounts off the exchange keeps no
balances, and these requests are refused NOT_ALLOWED.

A BALANCE shows what the session's earlier requests did: it leaves once the orders and cancels
before it are answered, naming how far this gateway has taken in each engine (``GetBalances.seen``:
their answers, and every fill pushed to the session before, among it), and the shard answers once
it has settled the engines that far. A BALANCE waits for no request after it, nor for another BALANCE.
"""

from __future__ import annotations

from collections.abc import Callable

from exchange.config import Config
from exchange.core.assets import Asset
from exchange.core.ledger_messages import (
    DepositFunds, FundsDeposited, FundsWithdrawn, HoldRejected, TransferRejected, TransferRepeated, WithdrawFunds,
)
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.in_flight import InFlight, Pending
from exchange.gateway.protocol.accounts import balances_reply, ledger_reply, units
from exchange.gateway.protocol.messages import BalanceRequest, ClientReply, DepositRequest, Rej, WithdrawRequest
from exchange.gateway.sessions import Session
from exchange.wire.messages import Balances, GetBalances

LEDGER_ANSWERS = (HoldRejected, FundsDeposited, FundsWithdrawn, TransferRejected, TransferRepeated,
                  Balances)  # a shard's own replies


class AccountRequests:
    """Sends the account requests of logged-in users to their ledger shards, and words the answers."""

    def __init__(self, config: Config, in_flight: InFlight,
                 guarded: Callable = lambda session, fn, *args: fn(*args)):
        """``guarded(session, fn)`` runs ``fn`` for ``session`` (a bug in it ends that session only)."""
        self.accounts = config.accounts
        self.assets = config.asset_map()
        self.users = {u.name for u in config.users}
        self.admins = {u.name for u in config.users if u.admin}
        self.in_flight = in_flight
        self.routes = in_flight.routes
        self.guarded = guarded
        self.owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        self.seen: dict[str, int] = {}  # engine → the last seq of its events this gateway has taken in

    def taken(self, event) -> None:
        """The gateway has taken in an engine's ``event`` (the last of an answer): a BALANCE asked from
        now on is answered once its shard has settled that engine this far."""
        engine = self.owner.get(event.symbol)  # a refused cancel may name none: it moved no funds
        if engine is not None and event.seq > self.seen.get(engine, 0):
            self.seen[engine] = event.seq

    def check_trader(self, user: str) -> None:
        """ProtocolError NOT_ALLOWED if ``user`` may not place, change or cancel orders (an admin)."""
        if user in self.admins:
            raise ProtocolError(RejectCode.NOT_ALLOWED, f"{user} is an admin user: it deposits and withdraws for"
                                " others and does not trade")

    def dispatch(self, session: Session, user: str, request: BalanceRequest | DepositRequest | WithdrawRequest,
                 slot: list, ts: int) -> None:
        """Send ``user``'s request to its ledger shard; ProtocolError if it is refused here."""
        if not self.accounts:
            raise ProtocolError(RejectCode.NOT_ALLOWED, "accounts are off: this exchange keeps no balances")
        if isinstance(request, BalanceRequest):
            if request.asset is not None:
                self.asset(request.asset)
            shard = self.routes.shard(user)

            def ask() -> None:  # the session's earlier orders and cancels are answered: ``seen`` holds them
                try:
                    self.in_flight.forward(session, slot, shard, GetBalances(user, request.asset, dict(self.seen)))
                except ProtocolError as e:
                    session.fill(slot, [Rej(e.code, e.reason)])

            return session.when_awaited_answered(lambda: self.guarded(session, ask))
        verb = "DEPOSIT" if isinstance(request, DepositRequest) else "WITHDRAW"
        if user not in self.admins:
            raise ProtocolError(RejectCode.NOT_ALLOWED, f"{verb} is for admin users; {user} is not one")
        if request.user not in self.users:
            raise ProtocolError(RejectCode.MALFORMED, f"no user {request.user}")
        asset = self.asset(request.asset)
        kind = DepositFunds if verb == "DEPOSIT" else WithdrawFunds
        command = kind(request.user, asset.name, units(asset, request.amount), request.ref, ts)
        return self.in_flight.forward(session, slot, self.routes.shard(request.user), command)

    def asset(self, name: str) -> Asset:
        asset = self.assets.get(name)
        if asset is None:
            raise ProtocolError(RejectCode.MALFORMED, f"no asset {name}; there are {', '.join(self.assets)}")
        return asset

    def answer(self, event, pending: Pending) -> list[ClientReply]:
        """The requester's reply to a shard's answer (one of LEDGER_ANSWERS)."""
        if isinstance(event, Balances):
            return [balances_reply(event.balances, self.assets)]
        return [ledger_reply(event, self.assets, getattr(pending.command, "client_order_id", ""))]
