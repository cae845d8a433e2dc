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

import pytest

import memory_mesh
from memory_mesh import CONFIG, Client

TIMEOUT = CONFIG.gateway.request_timeout
A, B = "gw/a", "gw/b"
ORDER = "SELL AAPL 1 @ 200.00 #c1"
ACK = "ACK 2-1 #c1 SELL AAPL 1 @ 200.00 GTC"
IN_USE = "REJ #c1 DUPLICATE_ID client order id #c1 is in use"
UNKNOWN = (f"REJ #c1 UNAVAILABLE client order id #c1 is held by an order this gateway has not heard of in"
           f" {TIMEOUT:.0f} s; the outcome is unknown: send the same order again with its #client-order-id,"
           " or ask STATUS")


class TwoGateways(memory_mesh.MemoryMesh):
    """Gateways A and B; the shards take their turn as soon as they settle the engines' batches."""

    def __init__(self):
        super().__init__((A, B))

    def settle(self) -> None:
        super().settle()
        self.shard_turns()

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


@pytest.fixture
def mesh() -> TwoGateways:
    mesh = TwoGateways()
    mesh.deposit("alice", "AAPL", "100")
    mesh.deposit("alice", "USD", "100000")
    mesh.deposit("bob", "USD", "100000")
    return mesh


def sessions(mesh: TwoGateways) -> tuple[Client, Client]:
    return Client(mesh, "alice", A), Client(mesh, "alice", B)


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
    bob = Client(mesh, "bob", A)
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
