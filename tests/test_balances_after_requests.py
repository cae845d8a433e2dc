"""BALANCE right behind a session's own requests: what it shows includes what they did.

The gateway (a real OrderEntry), the ledger shards (real Shards) and the engines (real Matchers) are
wired in memory by ``MemoryMesh``, with a journal that makes every batch durable at once and passes
each engine batch on to the shards and to the gateway, in the order a test chooses: the shards first,
as the journal writer sends it, or the gateway first, as two sockets may deliver all the same. A
BALANCE pipelined behind an order or a cancel is answered after their ACK, FILL and OUT lines, so
its balances must already hold those fills and releases (docs/accounts.md, "Asking").
"""

from __future__ import annotations

import memory_mesh
from memory_mesh import CONFIG

GATEWAY = "gw/1"


class MemoryMesh(memory_mesh.MemoryMesh):
    """One gateway; each engine batch reaches the shards before the gateway (``shards_first``), as the
    journal writer sends it, or after it, as two sockets may deliver all the same."""

    def __init__(self, shards_first: bool = True, max_balance_wait_s: float = 10.0):
        super().__init__((GATEWAY,), max_balance_wait_s)
        self.shards_first = shards_first
        self.entry = self.gateways[GATEWAY]

    def engine_turns(self) -> None:
        super().engine_turns()
        if self.shards_first:
            self.settle()
        self.take_in(GATEWAY)

    def run(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            self.shard_turns()
            self.engine_turns()
            self.shard_turns()  # what the gateway sent on hearing from the engines (it may come first)
            self.settle()
            self.shard_turns()


class Client(memory_mesh.Client):
    def say(self, *lines: str) -> list[str]:
        """The lines in one write; everything runs its course; every line received since the last call."""
        self.send(*lines)
        self.mesh.run()
        return self.take()


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
    mesh.settle()
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
    mesh.settle()
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
