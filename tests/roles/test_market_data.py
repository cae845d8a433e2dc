"""Market data on a real mesh: snapshots + deltas, re-sync, heartbeats, private feeds, fan-out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import zmq

from exchange.client.private_feed import PrivateFeed
from exchange.client.text import TextClient
from exchange.marketdata.feed import BookFeed, MarketDataClient
from exchange.core.matching import Matcher
from exchange.core.messages import OrderFilled, Trade
from exchange.core.orders import Side
from exchange.journal.readers import engine_events
from exchange.journal.schema import open_readonly
from exchange.testing.mesh import wait_until
from exchange.wire.security.curve_keys import public_key, server_secret_key

# the demo users' CURVE secret keys (configs/local.yaml lists their public halves)
DEMO_SECRETS = {"alice": b"t1zTwHdR5zUN0xRj@MwtK8C61yhKS3t<l]YwuQ0J", "bob": b"yLky.7YU5%BnZ[hh(K*6BU8R9FW22d7?iMdyyOJl"}


def feed(mesh, symbol: str = "AAPL") -> BookFeed:
    return BookFeed(mesh.config.notifier.publish, mesh.config.notifier.snapshots, symbol)


def wait_synced(book: BookFeed, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not book.synced:
        assert time.monotonic() < deadline, "never synced"
        book.poll(0.2)


def settle(*books: BookFeed, seconds: float = 1.5) -> None:
    """Poll until every book has been synced and quiet (heartbeats only) for a while."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for book in books:
            book.poll(0.05)


def engine_book(mesh, symbol: str = "AAPL"):
    """The book as the journal says it is (all of it is released once the mesh is quiet)."""
    spec = mesh.config.engine_of(symbol)
    instruments = [mesh.config.instrument_map()[s] for s in spec.instruments]
    conn = open_readonly(mesh.config.journal.path)
    try:
        matcher = Matcher.rebuild(spec.id, instruments, engine_events(conn, spec.name))
    finally:
        conn.close()
    book = matcher.books[symbol]
    return (symbol, book.depth(Side.BUY), book.depth(Side.SELL))


def trade_some(alice: TextClient, bob: TextClient, n: int, symbol: str = "AAPL") -> None:
    for i in range(n):
        assert alice.request(f"SELL {symbol} {1 + i % 3} @ {100 + i % 5}.00").startswith("ACK")
        assert bob.request(f"BUY {symbol} 1 @ {100 + (i + 2) % 5}.00").startswith("ACK")


def cross(alice: TextClient, bob: TextClient, n: int, symbol: str = "AAPL") -> None:
    """Exactly ``n`` trades: each sell is met by a buy at its price."""
    for i in range(n):
        assert alice.request(f"SELL {symbol} 1 @ 90.{i % 100:02d}").startswith("ACK")
        assert bob.request(f"BUY {symbol} 1 @ 90.{i % 100:02d}").startswith("ACK")


def wait_joined(alice: TextClient, bob: TextClient, subscribers: list[MarketDataClient], order: str) -> None:
    """Trade ``order`` (e.g. "AAPL 1 @ 80.00") between alice and bob until every subscriber has
    received a trade, i.e. every subscription has reached the notifier (no slow joiner left)."""
    joined: set[int] = set()
    deadline = time.monotonic() + 20
    while len(joined) < len(subscribers):
        assert time.monotonic() < deadline, f"only {len(joined)} of {len(subscribers)} subscribers joined"
        assert alice.request(f"SELL {order}").startswith("ACK")
        assert bob.request(f"BUY {order}").startswith("ACK")
        for n, md in enumerate(subscribers):
            while md.sock.poll(50):
                if any(isinstance(e, Trade) for e in md.receive(0).events):
                    joined.add(n)


def receive_trades(md: MarketDataClient, n: int, timeout: float = 15.0) -> list[Trade]:
    trades: list[Trade] = []
    deadline = time.monotonic() + timeout
    while len(trades) < n:
        assert time.monotonic() < deadline, f"only {len(trades)} of {n} trades arrived"
        trades += [e for e in md.receive(timeout=10).events if isinstance(e, Trade)]
    return trades


def test_a_late_joiner_gets_the_engines_book_and_follows_it(mesh):
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        early = feed(mesh)
        wait_synced(early)
        trade_some(alice, bob, 15)
        late = feed(mesh)
        wait_synced(late)
        trade_some(alice, bob, 10)
        settle(early, late)
        expected = engine_book(mesh)
        assert expected[1] and expected[2], "the session should leave both sides of the book"
        assert early.depth.state() == late.depth.state() == expected
        assert early.depth.last_trade == late.depth.last_trade and isinstance(late.depth.last_trade, Trade)
        assert early.resyncs == late.resyncs == 0
        early.close()
        late.close()


def test_the_order_by_order_channel_gives_late_joiners_every_resting_order_in_time_priority(mesh):
    spec = mesh.config.engine_of("AAPL")
    instruments = [mesh.config.instrument_map()[s] for s in spec.instruments]
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        early = BookFeed(mesh.config.notifier.publish, mesh.config.notifier.snapshots, "AAPL", orders=True)
        wait_synced(early)
        trade_some(alice, bob, 12)
        assert alice.request("SELL AAPL 2 @ 104.00 #keep").startswith("ACK")
        assert alice.request("REPLACE #keep 1").startswith("ACK")  # less, same price: keeps its place
        late = BookFeed(mesh.config.notifier.publish, mesh.config.notifier.snapshots, "AAPL", orders=True)
        wait_synced(late)
        trade_some(alice, bob, 8)
        settle(early, late)
        conn = open_readonly(mesh.config.journal.path)
        try:
            book = Matcher.rebuild(spec.id, instruments, engine_events(conn, spec.name)).books["AAPL"]
        finally:
            conn.close()
        expected = [(o.order_id, side, level.price, o.leaves_qty) for side in Side
                    for level in book.levels(side) for o in level.orders()]
        assert expected, "the session should leave orders resting"
        assert early.depth.resting() == late.depth.resting() == expected
        assert early.depth.state() == late.depth.state() == engine_book(mesh)
        early.close()
        late.close()


def test_a_subscriber_resyncs_by_itself_when_the_notifier_restarts(mesh):
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        book = feed(mesh)
        wait_synced(book)
        trade_some(alice, bob, 5)
        pid = int(re.findall(r"started notifier \(pid (\d+)\)", mesh.log())[-1])
        os.kill(pid, signal.SIGKILL)
        trade_some(alice, bob, 5)  # published while the notifier is down: lost to the feed
        deadline = time.monotonic() + 30
        while book.resyncs < 1:
            assert time.monotonic() < deadline, "the feed never re-synced"
            book.poll(0.2)
        trade_some(alice, bob, 5)
        settle(book, seconds=2)
        assert book.depth.state() == engine_book(mesh)
        book.close()


def test_an_engine_that_restarts_costs_subscribers_no_resync(mesh):
    """The notifier keeps the books from what the journal has released; an engine that restarts
    rebuilds the same books from the journal, so its subscribers see no gap, no new epoch, and
    heartbeats all along."""
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        book = feed(mesh)
        wait_synced(book)
        trade_some(alice, bob, 5)
        settle(book)
        epoch = book.epoch
        old_pid = mesh.role_pid("engine e2")
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while re.search(r"engine-e2 INFO ready: engine e2 id 2 epoch 2", mesh.log()) is None:
            assert time.monotonic() < deadline, "engine e2 was not restarted"
            book.poll(0.2)
        while not alice.request("BUY AAPL 1 @ 1.00 IOC").startswith("ACK"):  # BUSY while the gateway reconnects
            assert time.monotonic() < deadline, "engine e2 never took orders again"
            book.poll(0.2)
        trade_some(alice, bob, 5)
        settle(book, seconds=2)
        assert book.depth.state() == engine_book(mesh)
        assert book.resyncs == 0 and book.epoch == epoch
        book.close()


def recent_trades(mesh, symbol: str = "AAPL"):
    """The notifier's answer to a TradesRequest, asked until it has its books (not "try again")."""
    from exchange.wire.messages import Decoder, NotifierReply, Trades, TradesRequest, encode

    replies = []

    def ask() -> bool:
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.linger = 0
        try:
            dealer.connect(mesh.config.notifier.snapshots)
            dealer.send(encode(TradesRequest(symbol)))
            replies.append(Decoder(NotifierReply).decode(dealer.recv()) if dealer.poll(2000) else None)
        finally:
            dealer.close()
        return isinstance(replies[-1], Trades)

    wait_until(ask, 30, "the notifier's recent trades")
    return replies[-1]


def test_the_notifier_answers_the_recent_trades_and_after_a_restart_still_has_them(mesh):
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        cross(alice, bob, 3)
        book = feed(mesh)
        wait_synced(book)
        answer = recent_trades(mesh)
        assert [(t.price, t.qty) for t in answer.trades] == [(9000, 1), (9001, 1), (9002, 1)]
        assert answer.chan_seq == book.chan_seq["trade"] and answer.epoch == book.epoch
        book.close()
        pid = mesh.role_pid("notifier")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: mesh.role_pid("notifier") != pid, 30, "the notifier restarted")
        again = recent_trades(mesh)  # from the journal, read at its start
        assert [t.trade_id for t in again.trades] == [t.trade_id for t in answer.trades]


def test_heartbeats_carry_the_last_sequence_of_every_channel(mesh):
    with MarketDataClient(mesh.config.notifier.publish, ["ETH-USD"]) as md:
        seen = {}
        deadline = time.monotonic() + 10
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"heartbeats seen only on {sorted(seen)}"
            message = md.receive(timeout=5)
            if not message.events:
                seen[message.channel] = message.chan_seq
        assert seen == {"trade": 0, "bbo": 0, "l2": 0}  # nothing traded yet on ETH-USD


def test_a_stopped_subscriber_slows_nobody_and_catches_up_after(mesh, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(  # reports its book each time the control file asks, until told to stop
        "import sys, time\n"
        "from exchange.marketdata.feed import BookFeed\n"
        "book = BookFeed(sys.argv[1], sys.argv[2], 'AAPL')\n"
        "print('ready', flush=True)\n"
        "end, asked = time.monotonic() + 90, ''\n"
        "while time.monotonic() < end:\n"
        "    book.poll(0.2)\n"
        "    ask = open(sys.argv[3]).read()\n"
        "    if ask == 'stop':\n"
        "        break\n"
        "    if ask != asked:\n"
        "        asked = ask\n"
        "        print('state', repr(book.depth.state()), 'resyncs', book.resyncs, flush=True)\n")
    control = tmp_path / "control"
    control.write_text("")
    slow = subprocess.Popen([sys.executable, str(script), mesh.config.notifier.publish,
                             mesh.config.notifier.snapshots, str(control)], stdout=subprocess.PIPE, text=True)
    others = []
    try:
        assert slow.stdout.readline().strip() == "ready"
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            others = [MarketDataClient(mesh.config.notifier.publish, ["AAPL"], channels=("trade",))
                      for _ in range(3)]
            wait_joined(alice, bob, others, "AAPL 1 @ 80.00")
            os.kill(slow.pid, signal.SIGSTOP)
            cross(alice, bob, 30)
            # and the book changes while it is stopped, so catching up shows in its book
            assert alice.request("SELL AAPL 5 @ 95.00").startswith("ACK")
            assert bob.request("BUY AAPL 2 @ 85.00").startswith("ACK")
            for md in others:
                trades = []
                deadline = time.monotonic() + 15
                while len(trades) < 30:
                    assert time.monotonic() < deadline, f"only {len(trades)} of 30 trades arrived"
                    trades += [e.trade_id for e in md.receive(timeout=10).events
                               if isinstance(e, Trade) and e.price != 8000]
                assert len(trades) == 30 and trades == sorted(trades, key=lambda t: int(t.split("-")[1]))
            os.kill(slow.pid, signal.SIGCONT)
        expected = f"state {engine_book(mesh)!r}"
        deadline = time.monotonic() + 30
        for attempt in range(1000):  # it notices the gap (or the silence) and re-syncs by itself
            control.write_text(f"report {attempt}")
            line = slow.stdout.readline()
            assert line.startswith("state "), line
            if line.split(" resyncs ")[0] == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert line.split(" resyncs ")[0] == expected
    finally:
        control.write_text("stop")
        for md in others:
            md.close()
        os.kill(slow.pid, signal.SIGCONT)
        slow.kill()
        slow.wait()


def test_fifty_subscribers_each_get_every_trade_in_order(mesh):
    subscribers = [MarketDataClient(mesh.config.notifier.publish, ["BTC-USD"], channels=("trade",))
                   for _ in range(55)]
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_joined(alice, bob, subscribers, "BTC-USD 0.01 @ 42000.00")
            for i in range(20):
                assert alice.request(f"SELL BTC-USD 0.01 @ {43000 + i}.00").startswith("ACK")
                assert bob.request(f"BUY BTC-USD 0.01 @ {43000 + i}.00").startswith("ACK")
        for md in subscribers:
            got, seqs = [], []
            deadline = time.monotonic() + 15
            while len(got) < 20:
                assert time.monotonic() < deadline, f"only {len(got)} of 20 trades arrived"
                message = md.receive(timeout=10)
                real = [e.price for e in message.events if isinstance(e, Trade) and e.price != 4200000]
                if real:  # not a heartbeat, not a late probe
                    seqs.append(message.chan_seq)
                    got += real
            assert got == [4300000 + 100 * i for i in range(20)]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        for md in subscribers:
            md.close()


def private(mesh, user: str, as_user: str | None = None, secret: bytes | None = None,
            notifier: str | None = None) -> PrivateFeed:
    """``user``'s private feed from the first notifier (or the replica ``notifier``), with the
    CURVE key of ``as_user`` (default: ``user``) or ``secret``."""
    section = mesh.config.notifier.replica(notifier)
    server = public_key(server_secret_key(section.secret_key_file))
    secret = secret or DEMO_SECRETS[as_user or user]
    return PrivateFeed(section.private, server, user, zmq.curve_public(secret), secret)


def wait_private_joined(client: TextClient, feed: PrivateFeed) -> None:
    """Probe with orders of the feed's user until the feed gets an update (its subscription has
    reached the notifier), then drain what the probes made."""
    deadline = time.monotonic() + 15
    while not feed.sub.poll(200):
        assert time.monotonic() < deadline, "the private feed never joined"
        probe = client.request("BUY AAPL 1 @ 1.00")
        client.request(f"CANCEL {probe.split()[1]}")
    while feed.sub.poll(300):
        feed.receive(0)


def test_users_get_their_own_order_updates_and_nobody_elses(mesh):
    mine = private(mesh, "alice")
    prying = private(mesh, "bob", as_user="alice")  # alice's valid key asking for bob's topic
    mallory_secret = zmq.curve_keypair()[1]
    stranger = private(mesh, "bob", secret=mallory_secret)  # a key the config does not know
    plain = zmq.Context()
    no_key = plain.socket(zmq.SUB)
    no_key.setsockopt(zmq.SUBSCRIBE, b"")  # everything, without CURVE
    no_key.connect(mesh.config.notifier.private)
    everything = private(mesh, "", as_user="alice")
    everything.sub.setsockopt(zmq.SUBSCRIBE, b"")
    everything.sub.setsockopt(zmq.SUBSCRIBE, b"priv.")
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_private_joined(alice, mine)
            ack = alice.request("SELL AAPL 4 @ 150.00 #p1")
            assert bob.request("BUY AAPL 4 @ 150.00 #p2").startswith("ACK")
        updates = []
        deadline = time.monotonic() + 10
        while not any(isinstance(e, OrderFilled) for e in updates):
            assert time.monotonic() < deadline
            message = mine.receive(timeout=10)
            assert message.user == "alice"
            updates += message.events
        assert {e.user for e in updates} == {"alice"}
        assert updates[0].order_id == ack.split()[1]
        for sock in (prying.sub, stranger.sub, everything.sub, no_key):
            assert not sock.poll(1000), "private data reached someone else"
    finally:
        for f in (mine, prying, stranger, everything):
            f.close()
        no_key.close(linger=0)
        plain.term()
    assert re.search(r"refused private subscription b'priv.bob\|' for user alice", mesh.log())

