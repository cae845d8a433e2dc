"""A notifier starts from a sibling's book at batch 0: on an idle, freshly started exchange the first
notifier goes live from the engines' books before any batch, and its snapshots say ``batch`` 0. Such
a start used to be taken for a sibling saying no batch (an older version's snapshot, which has no
``batch``), so a replica never copied the first notifier while the exchange stayed idle: after
REPLICA_ENGINE_AFTER_S it began a numbering of its own, NUMBERING_CHECK_S later found the older one
and started over (refusing snapshots again), and so on until the first order."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgpack
import zmq

from exchange.marketdata.feed import MarketDataClient
from exchange.marketdata.notifier import HEARTBEAT_S, NUMBERING_CHECK_S, REPLICA_ENGINE_AFTER_S, Notifier
from exchange.testing.mesh import Mesh, free_ports, loopback_config, wait_until
from exchange.wire.messages import BookSnapshot, Decoder, NotifierReply, SnapshotReply, SnapshotRequest, encode
from notifier_stub import stub_notifier




def notifier() -> Notifier:
    return stub_notifier("e2")


def idle_snapshot() -> BookSnapshot:
    """A sibling's snapshot of a book that no batch has touched yet, in its numbering 7."""
    return BookSnapshot("AAPL", 7, 0, {"trade": 0, "bbo": 0, "l2": 0, "l3": 0}, [], [], None, None, [], batch=0)


def test_a_siblings_book_at_batch_0_is_a_start():
    n = notifier()
    n.on_start(encode(idle_snapshot()), n.sibling_answers, now=0.0)
    assert n.followers["e2"].live and n.publisher.epoch["AAPL"] == 7
    assert n.publisher.snapshot("AAPL").batch == 0  # and says so to the next notifier


def test_a_snapshot_that_says_no_batch_is_no_start():
    """An older version's snapshot, without the ``batch`` field (appended since): its book may be at
    any batch, so it cannot be followed."""
    fields = msgpack.unpackb(encode(idle_snapshot()))
    older = msgpack.packb(fields[:-1])
    assert Decoder(SnapshotReply).decode(older).batch is None
    n = notifier()
    n.on_start(older, n.sibling_answers, now=0.0)
    assert not n.followers["e2"].live and n.followers["e2"].missing() == ["AAPL"]


def with_replica(directory: Path) -> Path:
    """The loopback test config plus one notifier replica, b, on free ports."""
    path = loopback_config(directory)
    publish, private, snapshots = free_ports(3)
    text = path.read_text()
    anchor = re.search(r"\n  secret_key_file: .*\n", text).group(0)
    entry = (f"  replicas:\n    - name: b\n      publish: tcp://127.0.0.1:{publish}\n"
             f"      private: tcp://127.0.0.1:{private}\n      snapshots: tcp://127.0.0.1:{snapshots}\n")
    path.write_text(text.replace(anchor, anchor + entry, 1))
    return path


def snapshot(ctx: zmq.Context, endpoint: str, symbol: str = "AAPL"):
    """The notifier's answer to a SnapshotRequest (None: no answer within 2 s)."""
    with ctx.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(endpoint)
        dealer.send(encode(SnapshotRequest(symbol)))
        if not dealer.poll(2000):
            return None
        return Decoder(NotifierReply).decode(dealer.recv())


def test_on_an_idle_exchange_a_replica_copies_the_first_notifiers_numbering_and_keeps_it(tmp_path: Path):
    # no command is sent (wait_for_engines would send some): every engine stays at batch 0
    with Mesh(with_replica(tmp_path), wait_for_engines=False) as mesh, zmq.Context() as ctx:
        first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
        wait_until(lambda: isinstance(snapshot(ctx, first.snapshots), BookSnapshot), 30, "the first notifier live")
        theirs = snapshot(ctx, first.snapshots)
        assert theirs.batch == 0  # the case at hand: the first notifier went live before any batch

        def b_numbers_as_first():
            ours = snapshot(ctx, b.snapshots)
            return isinstance(ours, BookSnapshot) and ours.epoch == theirs.epoch and ours.batch == 0

        # b asks its sibling every half second: it copies the first notifier long before it would
        # turn to the engine (REPLICA_ENGINE_AFTER_S after its start) and begin a numbering of its own
        wait_until(b_numbers_as_first, REPLICA_ENGINE_AFTER_S, "replica b numbering as the first notifier does")
        # and keeps it: its subscribers hear every heartbeat, in that numbering, through a numbering
        # check of both notifiers (one that found an older numbering than its own would start over,
        # and fall silent while it took its books again)
        with MarketDataClient(b.publish, ["AAPL"], channels=("trade",)) as feed:
            heard = feed.receive(timeout=5)
            until = time.monotonic() + NUMBERING_CHECK_S + HEARTBEAT_S
            while time.monotonic() < until:
                assert (heard.epoch, heard.chan_seq, heard.events) == (theirs.epoch, 0, [])
                heard = feed.receive(timeout=2 * HEARTBEAT_S)
        assert b_numbers_as_first()
