"""Two gateways with accounts on: an order placed on one and resent (same #client-order-id) on the other.

docs/protocol.md: the same order sent again with its client order id is a resend, not a new order: it
is not placed twice, and the reply is the original ACK; DUPLICATE_ID is for a *different* order with
the id. docs/configuration.md: that holds whichever gateway the order was placed on.

With accounts on, the resend on gateway B meets the order's hold on the user's ledger shard, which
refuses it DUPLICATE_ID naming the order it holds: with no order id while the shard has not settled
the engine's acceptance, and with one that B may not have taken in yet (the shard's answer and the
journal writer's batch reach B from different peers, in no fixed order). B then waits for the
order's acceptance (or refusal) in a released batch, and answers as a resend is answered; if none
comes within ``gateway.request_timeout``, the outcome is unknown: UNAVAILABLE.

``TwoGateways`` wires two real OrderEntry objects, the real ledger Shards and the real Matchers in
memory; each step (shards' turns, engines' turns, the shards settling the engines' batches, each
gateway taking them in) runs when a test says so.
"""

from __future__ import annotations

import time

import pytest

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

CONFIG = toy_config(accounts=True)  # alice on ledger-1; AAPL on engine e2 (order ids 2-n)
TIMEOUT = CONFIG.gateway.request_timeout
A, B = "gw/a", "gw/b"
ORDER = "SELL AAPL 1 @ 200.00 #c1"
ACK = "ACK 2-1 #c1 SELL AAPL 1 @ 200.00 GTC"
IN_USE = "REJ #c1 DUPLICATE_ID client order id #c1 is in use"
UNKNOWN = (f"REJ #c1 UNAVAILABLE client order id #c1 is held by an order this gateway has not heard of in"
           f" {TIMEOUT:.0f} s; the outcome is unknown: send the same order again with its #client-order-id,"
           " or ask STATUS")


class TwoGateways:
    """Gateways A and B, every shard and every engine of CONFIG, turned by hand."""

    def __init__(self):
        self.now = 0.0  # both gateways' clock
        self.routes = Routes(CONFIG)
        instruments = CONFIG.instrument_map()
        self.matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments],
                                         round(e.client_order_id_window * 1e9)) for e in CONFIG.engines}
        self.engine_batch = {e.name: 0 for e in CONFIG.engines}
        owner = {symbol: e.name for e in CONFIG.engines for symbol in e.instruments}
        terms, assets = list(CONFIG.terms().values()), list(CONFIG.asset_map().values())
        self.shards = {s.name: Shard(Ledger(s.shard, len(CONFIG.ledgers), terms, assets), 1, EnginePosition(), owner)
                       for s in CONFIG.ledgers}
        self.to_shard: dict[str, list[Request]] = {name: [] for name in self.shards}
        self.to_engine: dict[str, list[Request]] = {name: [] for name in self.matchers}
        self.unsettled: list[EventBatch] = []  # engine batches the shards have not got yet
        self.untaken: dict[str, list[EventBatch]] = {A: [], B: []}  # ... each gateway has not taken in yet
        self.journal: list = []  # every engine event, for the gateways' journal look-ups
        self.gateways = {name: OrderEntry(CONFIG, self.sender(name), name, clock=lambda: self.now,
                                          history=self.history)
                         for name in (A, B)}

    def sender(self, gateway: str):
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
        """A turn of every shard: the gateways' requests, its batch (durable at once), what that releases:
        held orders to the engines, refusals to the gateway asked."""
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
            self.gateways[reply.gateway].on_reply(reply)

    def engine_turns(self) -> None:
        """A turn of every engine with requests; its batch is on its way to the shards and to both gateways."""
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
        """The shards settle every engine batch on its way to them."""
        batches, self.unsettled = self.unsettled, []
        for batch in batches:
            for shard in self.shards.values():
                assert shard.settle(batch)
        self.shard_turns()

    def take_in(self, gateway: str) -> None:
        """``gateway`` takes in the engine batches on their way to it."""
        batches, self.untaken[gateway] = self.untaken[gateway], []
        for batch in batches:
            for reply in batch.replies():
                self.gateways[gateway].on_reply(reply)

    def lose(self, gateway: str) -> None:
        """The engine batches on their way to ``gateway`` never reach it."""
        self.untaken[gateway] = []

    def run(self) -> None:
        """Everything goes its way, the shards first, then A, then B."""
        for _ in range(3):
            self.shard_turns()
            self.engine_turns()
            self.settle()
            self.take_in(A)
            self.take_in(B)

    def expire(self) -> list[int]:
        return [self.gateways[name].expire(TIMEOUT) for name in (A, B)]


class Client:
    def __init__(self, mesh: TwoGateways, gateway: str, user: str):
        self.entry = mesh.gateways[gateway]
        self.lines: list[str] = []
        self.session = self.entry.open(self.write, lambda: None, "10.0.0.1", None)
        self.send(f"LOGIN {user} {user}-key")
        assert self.take() == [f"OK LOGIN {user}"]

    def write(self, replies) -> None:
        for reply in replies:
            self.lines.extend(format_reply(reply).split("\n"))

    def send(self, *lines: str) -> None:
        for line in lines:
            request = parse_bytes(line.encode(), CONFIG.gateway.max_line)
            if isinstance(request, Rej):
                self.entry.on_error(self.session, request)
            else:
                self.entry.on_request(self.session, request)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@pytest.fixture
def mesh() -> TwoGateways:
    mesh = TwoGateways()
    mesh.deposit("alice", "AAPL", "100")
    mesh.deposit("alice", "USD", "100000")
    mesh.deposit("bob", "USD", "100000")
    return mesh


def sessions(mesh: TwoGateways) -> tuple[Client, Client]:
    return Client(mesh, A, "alice"), Client(mesh, B, "alice")


def nothing_waits(mesh: TwoGateways) -> bool:
    flights = [entry.in_flight for entry in mesh.gateways.values()]
    return all(not f.pending and not f.resends and not +f.waiting_on for f in flights)


def test_a_resend_on_b_before_the_shard_settled_the_order_gets_the_ack_once_b_hears_of_it(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    on_b.send(ORDER, "PING")  # the client, not sure A took it, sends it again on B; then a PING
    mesh.shard_turns()  # A's order is held; B's meets the hold, whose order id the shard does not know yet
    assert on_b.take() == []  # not DUPLICATE_ID: B cannot tell yet whether it is the same order
    assert mesh.gateways[B].in_flight.waiting_on["e2"] == 1  # it still counts as in flight
    mesh.engine_turns()
    mesh.take_in(B)  # B hears of the acceptance before A, and before the shard settles it
    assert on_b.take() == [ACK, "PONG"]
    mesh.take_in(A)
    assert on_a.take() == [ACK]
    mesh.settle()
    assert on_a.take() == on_b.take() == []  # answered once
    assert nothing_waits(mesh)


def test_a_resend_on_b_after_the_shard_settled_the_order_but_before_b_took_in_its_batch_gets_the_ack(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    mesh.shard_turns()
    mesh.engine_turns()
    mesh.settle()  # the shard binds the hold to order 2-1
    mesh.take_in(A)
    assert on_a.take() == [ACK]
    on_b.send(ORDER)  # B has not taken in the batch yet
    mesh.shard_turns()  # the shard names 2-1, which B has not seen
    assert on_b.take() == []
    mesh.take_in(B)
    assert on_b.take() == [ACK]
    assert nothing_waits(mesh)


def test_b_taking_in_the_acceptance_before_the_shards_refusal_answers_at_once(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    mesh.shard_turns()
    mesh.engine_turns()
    on_b.send(ORDER)  # B sends it to the shard, not knowing the order yet
    mesh.take_in(B)  # the acceptance reaches B now, the shard's refusal (no order id yet) after it
    assert on_b.take() == []
    mesh.shard_turns()
    assert on_b.take() == [ACK]
    mesh.take_in(A)
    assert on_a.take() == [ACK]
    assert nothing_waits(mesh)


@pytest.mark.parametrize("settled", [False, True], ids=["shard-unsettled", "shard-settled"])
def test_a_different_order_with_the_id_on_b_is_still_a_duplicate(mesh, settled):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    mesh.shard_turns()
    mesh.engine_turns()
    if settled:
        mesh.settle()
    on_b.send("SELL AAPL 2 @ 200.00 #c1")
    mesh.shard_turns()
    mesh.take_in(B)
    assert on_b.take() == [IN_USE]
    mesh.take_in(A)
    mesh.settle()
    assert on_a.take() == [ACK] and on_b.take() == []
    assert nothing_waits(mesh)


def test_an_acceptance_that_never_reaches_b_is_unavailable_at_the_timeout_answered_once(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    on_b.send(ORDER, "PING")
    mesh.shard_turns()
    mesh.engine_turns()
    mesh.settle()
    mesh.take_in(A)
    assert on_a.take() == [ACK]
    mesh.now = TIMEOUT - 0.1  # the batch does not reach B (its link from the journal writer stalls)
    assert mesh.expire() == [0, 0] and on_b.take() == []
    mesh.now = TIMEOUT + 0.1
    assert mesh.expire() == [0, 1]
    assert on_b.take() == [UNKNOWN, "PONG"]
    assert nothing_waits(mesh)
    mesh.take_in(B)  # it comes after all: nothing more for that request
    assert mesh.expire() == [0, 0]
    on_b.send("PING")
    assert on_b.take() == ["PONG"]
    on_b.send(ORDER)  # sent again, now that B knows the order: the original ACK
    assert on_b.take() == [ACK]


def test_a_waiting_resend_whose_session_closed_is_answered_to_nobody_and_forgotten(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    on_b.send(ORDER)
    mesh.shard_turns()
    mesh.gateways[B].close(on_b.session)
    mesh.now = TIMEOUT + 0.1
    assert mesh.expire() == [1, 1]  # A's order was never answered either: no engine turn
    assert on_b.take() == []
    mesh.engine_turns()
    mesh.take_in(B)
    assert on_b.take() == []
    assert nothing_waits(mesh)


def test_a_resend_on_b_of_an_order_the_engine_refused_gets_the_same_refusal(mesh):
    bob = Client(mesh, A, "bob")
    bob.send("BUY AAPL 1 @ 250.00 #b1")
    mesh.run()
    assert bob.take() == ["ACK 2-1 #b1 BUY AAPL 1 @ 250.00 GTC"]
    on_a, on_b = sessions(mesh)
    on_a.send("SELL AAPL 1 @ 200.00 POST #p1")  # post only, and it would cross: the engine refuses it
    on_b.send("SELL AAPL 1 @ 200.00 POST #p1")
    mesh.shard_turns()
    assert on_b.take() == []
    mesh.engine_turns()
    mesh.take_in(A)
    mesh.take_in(B)
    refused = "REJ #p1 WOULD_CROSS post-only order at 200.00 would take liquidity at 250.00"
    assert on_a.take() == [refused]
    assert on_b.take() == [refused]
    assert nothing_waits(mesh)


def test_a_resend_of_an_order_b_never_took_in_nor_will_is_read_from_the_journal(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    mesh.shard_turns()
    mesh.engine_turns()
    mesh.settle()
    mesh.take_in(A)
    mesh.lose(B)  # B never takes in the batch with 2-1 (its link dropped it, and the journal could not give it)
    on_a.send("SELL AAPL 1 @ 201.00 #c2")
    mesh.run()  # B takes in 2-2: 2-1 will not come any more
    assert on_a.take() == [ACK, "ACK 2-2 #c2 SELL AAPL 1 @ 201.00 GTC"]
    on_b.send(ORDER)
    mesh.shard_turns()  # the shard names 2-1
    assert on_b.take() == [ACK]
    assert nothing_waits(mesh)


def test_a_resend_waiting_for_an_order_b_then_learns_it_missed_is_read_from_the_journal(mesh):
    on_a, on_b = sessions(mesh)
    on_a.send(ORDER)
    mesh.shard_turns()
    mesh.engine_turns()
    mesh.settle()
    mesh.lose(B)
    on_b.send(ORDER)
    mesh.shard_turns()  # the shard names 2-1, which B has not seen: it waits for it
    assert on_b.take() == []
    on_a.send("SELL AAPL 1 @ 201.00 #c2")
    mesh.run()  # B takes in 2-2 and not 2-1: 2-1 will not come
    assert on_b.take() == [ACK]
    assert nothing_waits(mesh)
