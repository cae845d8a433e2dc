"""BALANCE right behind a session's own requests: what it shows includes what they did.

The gateway (a real OrderEntry), the ledger shards (real Shards) and the engines (real Matchers) are
wired in memory by ``MemoryMesh``, with a journal that makes every batch durable at once and passes
each engine batch on to the shards and to the gateway, in the order a test chooses: the shards first,
as the journal writer sends it, or the gateway first, as two sockets may deliver all the same. A
BALANCE pipelined behind an order or a cancel is answered after their ACK, FILL and OUT lines, so
its balances must already hold those fills and releases (docs/accounts.md, "Asking").
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

CONFIG = toy_config(accounts=True)  # alice on ledger-1, bob on ledger-0
GATEWAY = "gw/1"


class MemoryMesh:
    """One gateway, every shard and every engine of CONFIG, turned by hand (``run``, or the steps)."""

    def __init__(self, shards_first: bool = True, max_balance_wait_s: float = 10.0):
        self.shards_first = shards_first  # engine batches reach the shards before the gateway
        self.now = 0.0  # the gateway's clock
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
        self.on_the_way: list[EventBatch] = []  # engine batches the shards have not got yet
        self.lost: set[str] = set()  # engines whose batches never reach the shards
        self.entry = OrderEntry(CONFIG, self.send, GATEWAY, clock=lambda: self.now)

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        way, request = self.routes.route(GATEWAY, engine, command, session_id, request_id)
        self.to_shard[way].append(request)
        return True

    def deposit(self, user: str, asset: str, amount: str) -> None:
        shard = self.shards[CONFIG.ledger_of(user).name]
        shard.handle_own(DepositFunds(user, asset, CONFIG.asset_map()[asset].to_units(amount), f"d-{user}-{asset}"))
        self.shard_turns()

    def shard_turns(self) -> None:
        """A turn of every shard: its requests, its batch (durable at once), what that releases."""
        for shard in self.shards.values():
            requests, self.to_shard[shard.name] = self.to_shard[shard.name], []
            if requests:
                shard.handle_requests([[encode(requests)]])
            shard.settle_pending(everything=True)
            _, now = shard.seal()
            self.deliver(now)
            self.deliver(shard.on_durable(Durable(shard.name, shard.epoch, shard.batch, shard.ledger.seq)))

    def deliver(self, released: Released | None) -> None:
        if released is None:
            return
        for engine, requests in released.forwards.items():
            self.to_engine[engine].extend(requests)
        for reply in released.replies:
            self.entry.on_reply(reply)

    def engine_turns(self) -> None:
        """A turn of every engine with requests; its batch goes to the shards first (``shards_first``),
        else to the gateway now and to the shards at ``batches_reach_the_shards``."""
        for engine, matcher in self.matchers.items():
            requests, self.to_engine[engine] = self.to_engine[engine], []
            if not requests:
                continue
            first = matcher.seq + 1
            entries = [Entry(r.gateway, r.session, r.request_id, r.command, matcher.handle(r.command))
                       for r in requests]
            self.engine_batch[engine] += 1
            batch = EventBatch(engine, 1, self.engine_batch[engine], first, matcher.seq, entries, b"", time.time_ns())
            self.on_the_way.append(batch)
            if self.shards_first:
                self.batches_reach_the_shards()
            for reply in batch.replies():
                self.entry.on_reply(reply)

    def batches_reach_the_shards(self) -> None:
        """Every batch on its way reaches the shards, but those of the ``lost`` engines (they come later)."""
        batches, self.on_the_way = self.on_the_way, []
        for batch in batches:
            if batch.engine in self.lost:
                self.on_the_way.append(batch)
                continue
            for shard in self.shards.values():
                assert shard.settle(batch)

    def run(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            self.shard_turns()
            self.engine_turns()
            self.shard_turns()  # what the gateway sent on hearing from the engines (it may come first)
            self.batches_reach_the_shards()
            self.shard_turns()


class Client:
    def __init__(self, mesh: MemoryMesh, user: str):
        self.mesh = mesh
        self.lines: list[str] = []
        self.session = mesh.entry.open(self.write, lambda: None, "10.0.0.1", None)
        assert self.say(f"LOGIN {user} {user}-key") == [f"OK LOGIN {user}"]

    def write(self, replies) -> None:
        for reply in replies:
            self.lines.extend(format_reply(reply).split("\n"))

    def send(self, *lines: str) -> None:
        """The lines in one write, without waiting for anything."""
        for line in lines:
            request = parse_bytes(line.encode(), CONFIG.gateway.max_line)
            if isinstance(request, Rej):
                self.mesh.entry.on_error(self.session, request)
            else:
                self.mesh.entry.on_request(self.session, request)

    def say(self, *lines: str) -> list[str]:
        self.send(*lines)
        self.mesh.run()
        return self.take()

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def traders(mesh: MemoryMesh) -> tuple[Client, Client]:
    """alice with 100,000 USD; bob with 10 BTC, half a BTC of it offered at 43,000.10."""
    mesh.deposit("alice", "USD", "100000")
    mesh.deposit("bob", "BTC", "10")
    alice, bob = Client(mesh, "alice"), Client(mesh, "bob")
    assert bob.say("SELL BTC-USD 0.5 @ 43000.10 #s1") == ["ACK 1-1 #s1 SELL BTC-USD 0.5000 @ 43000.10 GTC"]
    return alice, bob


FILLED = ["ACK 1-2 #a1 BUY BTC-USD 0.5000 @ 43000.10 IOC", "FILL 1-2 #a1 0.5000 @ 43000.10 LEAVES 0.0000 TRADE 1-1",
          "OUT 1-2 #a1 FILLED"]
# 0.5 BTC at 43,000.10 is 21,500.05 USD, plus the 2.5 bps taker fee (5.375013 rounded up)
AFTER_THE_FILL = ["BALANCE BTC AVAILABLE 0.50000000 HELD 0.00000000",
                  "BALANCE USD AVAILABLE 78494.574987 HELD 0.000000", "END BALANCE 2"]


def test_a_balance_right_behind_a_filled_order_shows_the_fill():
    alice, _ = traders(MemoryMesh())
    # not the hold of the order just reported filled, without its BTC
    assert alice.say("BUY BTC-USD 0.5 @ 43000.10 IOC #a1", "BALANCE") == FILLED + AFTER_THE_FILL


def test_a_balance_right_behind_a_cancel_shows_the_hold_released():
    alice, _ = traders(MemoryMesh())
    assert alice.say("BUY BTC-USD 0.5 @ 40000 #a2") == ["ACK 1-2 #a2 BUY BTC-USD 0.5000 @ 40000.00 GTC"]
    assert alice.say("CANCEL #a2", "BALANCE USD") == [
        "OUT 1-2 #a2 CANCELED", "BALANCE USD AVAILABLE 100000.000000 HELD 0.000000", "END BALANCE 1"]


def test_the_shard_waits_for_the_engine_batch_when_the_gateway_hears_of_it_first():
    """The journal writer passes a batch to the shards before the gateway, but over two sockets: the
    gateway's BALANCE may reach the shard before the batch does. The shard then holds it."""
    mesh = MemoryMesh(shards_first=False)
    alice, _ = traders(mesh)
    alice.send("BUY BTC-USD 0.5 @ 43000.10 IOC #a1", "BALANCE")
    mesh.shard_turns()
    mesh.engine_turns()  # the gateway hears of the fill and asks alice's shard, which has not got it yet
    mesh.shard_turns()
    assert alice.take() == FILLED
    mesh.batches_reach_the_shards()
    mesh.shard_turns()
    assert alice.take() == AFTER_THE_FILL


def test_a_balance_asked_after_a_pushed_fill_shows_it():
    """Bob's resting sell is filled by alice's order; his BALANCE, sent on reading the FILL, comes to his
    shard before the engine's batch."""
    mesh = MemoryMesh(shards_first=False)
    alice, bob = traders(mesh)
    alice.send("BUY BTC-USD 0.5 @ 43000.10 IOC #a1")
    mesh.shard_turns()
    mesh.engine_turns()
    assert bob.take() == ["FILL 1-1 #s1 0.5000 @ 43000.10 LEAVES 0.0000 TRADE 1-1", "OUT 1-1 #s1 FILLED"]
    bob.send("BALANCE")
    mesh.shard_turns()
    mesh.batches_reach_the_shards()
    mesh.shard_turns()
    # 21,500.05 USD less the 1 bps maker fee (2.150005 rounded up)
    assert bob.take() == ["BALANCE BTC AVAILABLE 9.50000000 HELD 0.00000000",
                          "BALANCE USD AVAILABLE 21497.899995 HELD 0.000000", "END BALANCE 2"]


def test_a_balance_whose_settlement_never_comes_is_answered_unavailable_once():
    """The shard gives up on a balance question once its wait is over (the gateway's request_timeout):
    the gateway has answered it UNAVAILABLE by then; nobody hears two answers, nor stale balances."""
    mesh = MemoryMesh(shards_first=False, max_balance_wait_s=0.0)
    alice, _ = traders(mesh)
    mesh.lost.add("e1")  # e1's batches do not reach the shards (as if they came from the journal later)
    assert alice.say("BUY BTC-USD 0.5 @ 43000.10 IOC #a1", "BALANCE") == FILLED
    shard = mesh.shards["ledger-1"]
    assert not shard.asking  # given up
    mesh.now = 11.0
    mesh.entry.expire(CONFIG.gateway.request_timeout)
    assert alice.take() == ["REJ UNAVAILABLE no answer from ledger shard 1 in 10 s; ask BALANCE again"]
    mesh.lost.clear()
    mesh.run()
    assert alice.take() == []
    assert alice.say("BALANCE") == AFTER_THE_FILL  # asked again, once the shard has settled the fill
