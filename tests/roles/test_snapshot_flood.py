"""A flood of snapshot requests is answered from the notifier's books; matching and the market data go on
(docs/market-data.md)."""

from __future__ import annotations

import time

import msgspec
import zmq

from exchange.wire import sockets as plumbing
from exchange.testing.mesh import role_pid
from exchange.wire.messages import BookSnapshot, Decoder, SnapshotRefused, SnapshotReply, SnapshotRequest

FLOODERS = 4
REQUESTS_EACH = 6_000
DEPTH = 300  # price levels


def flood(sock: zmq.Socket, count: int, deadline: float) -> int:
    """Send up to ``count`` SnapshotRequests without reading a reply; how many went out."""
    # padded to the notifier's size limit (decoders ignore trailing fields): the most a request can weigh
    request = msgspec.msgpack.encode(["SnapshotRequest", "AAPL", "x" * 3900])
    assert Decoder(SnapshotRequest).decode(request) == SnapshotRequest("AAPL")
    sent = 0
    while sent < count and time.monotonic() < deadline:
        try:
            sock.send(request, zmq.NOBLOCK)
            sent += 1
        except zmq.Again:  # our queue towards the notifier is full: wait until it takes more
            sock.poll(100, zmq.POLLOUT)
    return sent


def next_fill(client) -> str:
    """The next FILL line pushed to ``client`` (skipping OUT lines)."""
    while not (line := client.next_pushed()).startswith("FILL"):
        assert line.startswith("OUT"), line
    return line


def test_a_snapshot_flood_is_answered_by_the_notifier_while_matching_goes_on(mesh):
    ctx = plumbing.context()
    # a deep receive queue: a DEALER that lags far behind can trip a libzmq assertion (libzmq #3937)
    flooders = [plumbing.socket(ctx, zmq.DEALER, connect=mesh.config.notifier.snapshots, rcvhwm=FLOODERS * REQUESTS_EACH)
                for _ in range(FLOODERS)]
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            for i in range(DEPTH):  # a deep book makes each snapshot big enough to fill the queues
                assert alice.request(f"SELL AAPL 1 @ {200 + i}.00").startswith("ACK")
            engine_pid = role_pid(mesh.log(), "engine e2")
            notifier_pid = role_pid(mesh.log(), "notifier")
            deadline = time.monotonic() + 60
            sent = sum(flood(sock, REQUESTS_EACH, deadline) for sock in flooders)
            assert sent >= FLOODERS * 1000, f"only {sent} snapshot requests went out"
            for i in range(20):  # the flood is unread and still queued: matching must go on
                sell = alice.request(f"SELL AAPL 1 @ {100 + i}.00")
                assert sell.startswith("ACK"), sell
                buy = bob.request(f"BUY AAPL 1 @ {100 + i}.00")
                assert buy.startswith("ACK"), buy
                assert next_fill(alice) and next_fill(bob)
            replies = Decoder(SnapshotReply)
            kinds: dict[type, int] = {}
            reasons, books = set(), []
            for sock in flooders:
                while sock.poll(1000):
                    for parts in plumbing.drain(sock):
                        reply = replies.decode(parts[-1])
                        kinds[type(reply)] = kinds.get(type(reply), 0) + 1
                        if isinstance(reply, SnapshotRefused):
                            reasons.add(reply.reason)
                        elif len(books) < 100:
                            books.append(reply)
            # the notifier answers from its own book: the whole book, every time; none reaches the engine
            assert set(kinds) == {BookSnapshot} and kinds[BookSnapshot] >= FLOODERS * 1000, (kinds, reasons)
            assert books and all(len(book.asks) >= DEPTH for book in books)
            assert alice.request("PING") == "PONG"
            assert role_pid(mesh.log(), "engine e2") == engine_pid
            assert role_pid(mesh.log(), "notifier") == notifier_pid
    finally:
        for sock in flooders:
            sock.close(linger=0)
        ctx.term()
