"""An exchange with accounts on, in memory, turned by hand: real gateways (OrderEntry), ledger shards
(Shard) and engines (Matcher) of the demo config, and a journal that makes every batch durable at
once. Each step runs when a test says so: the shards' turns (the gateways' requests, their batch,
what it releases), the engines' turns (their batch goes on its way to the shards and to every
gateway), the shards settling the batches on their way (``settle``), and each gateway taking them in
(``take_in``), so a test can deliver them in any order two sockets might.
"""

from __future__ import annotations

import time

from exchange.core.ledger import Ledger
from exchange.core.ledger_messages import DepositFunds
from exchange.core.matching import Matcher
from exchange.gateway.ledger_routes import Routes
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.protocol.grammar import format_reply, parse_bytes
from exchange.gateway.protocol.messages import Rej
from exchange.journal.readers import EnginePosition
from exchange.ledger.shard import Released, Shard
from exchange.testing.mesh import toy_config
from exchange.wire.messages import Durable, Entry, EventBatch, Request, encode

CONFIG = toy_config(accounts=True)  # alice on ledger-1, bob on ledger-0; BTC-USD on e1, AAPL on e2


class MemoryMesh:
    """The ``gateways`` named, every shard and every engine of CONFIG."""

    def __init__(self, gateways: tuple[str, ...] = ("gw/1",), max_balance_wait_s: float = 10.0):
        self.now = 0.0  # the gateways' clock
        self.routes = Routes(CONFIG)
        instruments = CONFIG.instrument_map()
        self.matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments],
                                         round(e.client_order_id_window * 1e9)) for e in CONFIG.engines}
        self.engine_batch = {e.name: 0 for e in CONFIG.engines}
        owner = {symbol: e.name for e in CONFIG.engines for symbol in e.instruments}
        terms, assets = list(CONFIG.terms().values()), list(CONFIG.asset_map().values())
        self.shards = {s.name: Shard(Ledger(s.shard, len(CONFIG.ledgers), terms, assets), 1, EnginePosition(), owner,
                                     max_balance_wait_s=max_balance_wait_s)
                       for s in CONFIG.ledgers}
        self.to_shard: dict[str, list[Request]] = {name: [] for name in self.shards}
        self.to_engine: dict[str, list[Request]] = {name: [] for name in self.matchers}
        self.unsettled: list[EventBatch] = []  # engine batches on their way to the shards
        self.lost: set[str] = set()  # engines whose batches do not reach the shards (they stay on their way)
        self.untaken: dict[str, list[EventBatch]] = {name: [] for name in gateways}  # ... to each gateway
        self.journal: list = []  # every engine event, for the gateways' journal look-ups
        self.gateways = {name: OrderEntry(CONFIG, self._sender(name), name, clock=lambda: self.now,
                                          history=self.history)
                         for name in gateways}

    def _sender(self, gateway: str):
        def send(engine: str, command, session_id: int, request_id: int) -> bool:
            way, request = self.routes.route(gateway, engine, command, session_id, request_id)
            self.to_shard[way].append(request)
            return True
        return send

    def history(self, order_id: str) -> list:
        return [e for e in self.journal if getattr(e, "order_id", "") == order_id]

    def deposit(self, user: str, asset: str, amount: str) -> None:
        shard = self.shards[CONFIG.ledger_of(user).name]
        shard.handle_own(DepositFunds(user, asset, CONFIG.asset_map()[asset].to_units(amount), f"d-{user}-{asset}"))
        self.shard_turns()

    def shard_turns(self) -> None:
        """A turn of every shard: its requests, its batch (durable at once), what that releases: held
        orders to the engines, answers to the gateway that asked."""
        for shard in self.shards.values():
            requests, self.to_shard[shard.name] = self.to_shard[shard.name], []
            if requests:
                shard.handle_requests([[encode(requests)]])
            shard.settle_pending(everything=True)
            _, now = shard.seal()
            self._deliver(now)
            self._deliver(shard.on_durable(Durable(shard.name, shard.epoch, shard.batch, shard.ledger.seq)))

    def _deliver(self, released: Released | None) -> None:
        if released is None:
            return
        for engine, requests in released.forwards.items():
            self.to_engine[engine].extend(requests)
        for reply in released.replies:
            self.gateways[reply.gateway].on_reply(reply)

    def engine_turns(self) -> None:
        """A turn of every engine with requests: its batch goes on its way to the shards and to every gateway."""
        for engine, matcher in self.matchers.items():
            requests, self.to_engine[engine] = self.to_engine[engine], []
            if not requests:
                continue
            first = matcher.seq + 1
            entries = [Entry(r.gateway, r.session, r.request_id, r.command, matcher.handle(r.command))
                       for r in requests]
            self.engine_batch[engine] += 1
            batch = EventBatch(engine, 1, self.engine_batch[engine], first, matcher.seq, entries, b"", time.time_ns())
            self.journal.extend(e for entry in entries for e in entry.events)
            self.unsettled.append(batch)
            for batches in self.untaken.values():
                batches.append(batch)

    def settle(self) -> None:
        """The shards take the engine batches on their way to them, but those of the ``lost`` engines."""
        batches, self.unsettled = self.unsettled, []
        for batch in batches:
            if batch.engine in self.lost:
                self.unsettled.append(batch)
                continue
            for shard in self.shards.values():
                assert shard.settle(batch)

    def take_in(self, gateway: str) -> None:
        """``gateway`` takes in the engine batches on their way to it."""
        batches, self.untaken[gateway] = self.untaken[gateway], []
        for batch in batches:
            for reply in batch.replies():
                self.gateways[gateway].on_reply(reply)

    def lose(self, gateway: str) -> None:
        """The engine batches on their way to ``gateway`` never reach it."""
        self.untaken[gateway] = []


class Client:
    """A session of ``user`` on ``gateway`` (the mesh's first, unless named), logged in."""

    def __init__(self, mesh: MemoryMesh, user: str, gateway: str | None = None):
        self.mesh = mesh
        self.entry = mesh.gateways[gateway or next(iter(mesh.gateways))]
        self.lines: list[str] = []
        self.session = self.entry.open(self.write, lambda: None, "10.0.0.1", None)
        self.send(f"LOGIN {user} {user}-key")
        assert self.take() == [f"OK LOGIN {user}"]

    def write(self, replies) -> None:
        for reply in replies:
            self.lines.extend(format_reply(reply).split("\n"))

    def send(self, *lines: str) -> None:
        """The lines in one write, without waiting for anything."""
        for line in lines:
            request = parse_bytes(line.encode(), CONFIG.gateway.max_line)
            if isinstance(request, Rej):
                self.entry.on_error(self.session, request)
            else:
                self.entry.on_request(self.session, request)

    def take(self) -> list[str]:
        """Every line received since the last call."""
        lines, self.lines = self.lines, []
        return lines
