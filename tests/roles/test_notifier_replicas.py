"""Notifier replicas (notifier.replicas): more notifier processes serving the same feeds to their own subscribers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from conftest import add_replica, read_available, write_config
from exchange.marketdata.feed import BookFeed, MarketDataClient
from exchange.core.messages import OrderAccepted, Trade
from exchange.marketdata.notifier import NO_TRADES
from exchange.testing.mesh import Mesh, free_ports, wait_until
from exchange.wire.messages import Decoder, NotifierReply, Trades, TradesRequest, encode
from test_market_data import (
    cross, engine_book, private, settle, trade_some, wait_joined, wait_private_joined, wait_synced,
)


def with_replica(tmp_path: Path) -> Path:
    """The loopback test config plus one notifier replica, b, on free ports."""
    publish, private, snapshots = free_ports(3)
    return add_replica(write_config(tmp_path), r"\n  secret_key_file: .*\n", "b", {
        "publish": f"tcp://127.0.0.1:{publish}", "private": f"tcp://127.0.0.1:{private}",
        "snapshots": f"tcp://127.0.0.1:{snapshots}"})


@pytest.fixture
def mesh(tmp_path):
    with Mesh(with_replica(tmp_path)) as running:
        yield running


def trades_by_chan_seq(md: MarketDataClient, n: int) -> dict[int, list[str]]:
    """chan_seq → trade ids of the next messages that carry ``n`` trades in all (heartbeats skipped)."""
    got: dict[int, list[str]] = {}
    deadline = time.monotonic() + 15
    while sum(map(len, got.values())) < n:
        assert time.monotonic() < deadline, f"only {sum(map(len, got.values()))} of {n} trades arrived"
        message = md.receive(timeout=10)
        trades = [e.trade_id for e in message.events if isinstance(e, Trade) and e.price != 8000]
        if trades:
            got[message.chan_seq] = trades
    return got


def test_a_replica_serves_the_same_feed_with_the_same_sequences_and_its_own_snapshots(mesh):
    first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
    assert b.publish != first.publish
    on_first = MarketDataClient(first.publish, ["AAPL"], channels=("trade",))
    on_b = MarketDataClient(b.publish, ["AAPL"], channels=("trade",))
    book_first = BookFeed(first.publish, first.snapshots, "AAPL")
    book_b = BookFeed(b.publish, b.snapshots, "AAPL")
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_joined(alice, bob, [on_first, on_b], "AAPL 1 @ 80.00")
            wait_synced(book_first)
            wait_synced(book_b)
            cross(alice, bob, 20)
            trade_some(alice, bob, 10)  # leaves a book behind
        # the engines number the feed, so both notifiers carry the very same messages
        assert trades_by_chan_seq(on_first, 20) == trades_by_chan_seq(on_b, 20)
        settle(book_first, book_b)
        assert book_first.depth.state() == book_b.depth.state() == engine_book(mesh)
        assert book_first.resyncs == book_b.resyncs == 0
    finally:
        for client in (on_first, on_b, book_first, book_b):
            client.close()


def test_a_replica_serves_private_updates_with_the_same_server_key(mesh):
    mine = private(mesh, "alice", notifier="b")  # the same server key as the first notifier's
    try:
        with mesh.login("alice") as alice:
            wait_private_joined(alice, mine)
            ack = alice.request("SELL AAPL 2 @ 150.00")
        message = mine.receive(timeout=10)
        assert message.user == "alice"
        assert [type(e) for e in message.events] == [OrderAccepted]
        assert message.events[0].order_id == ack.split()[1]
    finally:
        mine.close()


def test_killing_a_replica_leaves_the_other_notifier_serving_and_it_comes_back(mesh):
    first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
    on_first = MarketDataClient(first.publish, ["AAPL"], channels=("trade",))
    book_b = BookFeed(b.publish, b.snapshots, "AAPL")
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_joined(alice, bob, [on_first], "AAPL 1 @ 80.00")
            wait_synced(book_b)
            pid = int(re.findall(r"started notifier b \(pid (\d+)\)", mesh.log())[-1])
            os.kill(pid, signal.SIGKILL)
            cross(alice, bob, 10)  # while b is down
            assert len(trades_by_chan_seq(on_first, 10)) >= 1  # the first notifier did not notice
            deadline = time.monotonic() + 30
            while book_b.resyncs < 1:  # b is restarted by the launcher; its subscriber re-syncs by itself
                assert time.monotonic() < deadline, "the feed on replica b never re-synced"
                book_b.poll(0.2)
            trade_some(alice, bob, 5)
        settle(book_b, seconds=2)
        assert book_b.depth.state() == engine_book(mesh)
        assert re.search(r"notifier b exited with -9; restarting", mesh.log())
    finally:
        on_first.close()
        book_b.close()


def test_exchange_notifier_refuses_an_unknown_replica(mesh):
    done = subprocess.run([sys.executable, "-m", "exchange", "notifier", "--config", str(mesh.config_path),
                           "--name", "nope"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "no notifier replica named 'nope'; the config has b -" in done.stderr


def test_a_feed_on_both_notifiers_loses_neither_messages_nor_sync_when_one_dies(mesh):
    first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
    both = BookFeed([first.publish, b.publish], [first.snapshots, b.snapshots], "AAPL")
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_synced(both)
            trade_some(alice, bob, 5)
            for label, publish in (("notifier b", b.publish), ("notifier", first.publish)):  # one at a time
                pid = int(re.findall(rf"started {label} \(pid (\d+)\)", mesh.log())[-1])
                os.kill(pid, signal.SIGKILL)
                trade_some(alice, bob, 5)  # while it is down, the other line carries everything
                settle(both, seconds=1)
                assert both.depth.state() == engine_book(mesh), label
                # the launcher restarts it; once it forwards trades again (and the feed has had time to
                # reconnect to it), the other notifier may go down in turn
                deadline = time.monotonic() + 30
                while len(re.findall(rf"started {label} \(pid", mesh.log())) < 2:
                    assert time.monotonic() < deadline, f"{label} was not restarted"
                    both.poll(0.2)
                with MarketDataClient(publish, ["AAPL"], channels=("trade",)) as probe:
                    wait_joined(alice, bob, [probe], "AAPL 1 @ 80.00")
                settle(both, seconds=2)
        settle(both, seconds=2)
        assert both.depth.state() == engine_book(mesh)
        assert both.resyncs == 0
    finally:
        both.close()


def numbering(snapshots: str, symbol: str = "AAPL") -> int | None:
    """The epoch ``symbol`` is numbered in by the notifier at ``snapshots`` (None: no answer, or not live)."""
    with zmq.Context.instance().socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(snapshots)
        dealer.send(encode(TradesRequest(symbol, NO_TRADES)))
        if not dealer.poll(2000):
            return None
        reply = Decoder(NotifierReply).decode(dealer.recv())
        return reply.epoch if isinstance(reply, Trades) else None


def test_notifiers_that_began_numberings_of_their_own_end_up_numbering_as_the_oldest(mesh):
    """Notifier b restarts while the first notifier cannot answer it (stopped), so b begins a numbering
    of its own from the engine; once the first notifier answers again, b takes its older numbering,
    and a feed over both lines then stays in sync."""
    first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
    older = numbering(first.snapshots)
    assert older is not None
    wait_until(lambda: numbering(b.snapshots) == older, 20, "notifier b numbering as the first notifier does")
    first_pid = mesh.role_pid("notifier")
    os.kill(first_pid, signal.SIGSTOP)
    try:
        os.kill(mesh.role_pid("notifier b"), signal.SIGKILL)
        # b asks the engine after 10 s without a sibling's books
        wait_until(lambda: numbering(b.snapshots) not in (None, older), 40, "notifier b's own numbering")
    finally:
        os.kill(first_pid, signal.SIGCONT)
    assert numbering(b.snapshots) > older
    wait_until(lambda: numbering(b.snapshots) == older, 30, "notifier b numbering as the first notifier does")
    assert numbering(first.snapshots) == older  # the older numbering never changes
    both = BookFeed([first.publish, b.publish], [first.snapshots, b.snapshots], "AAPL")
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            wait_synced(both)
            trade_some(alice, bob, 10)
        settle(both, seconds=2)
        assert both.depth.state() == engine_book(mesh)
        assert both.resyncs == 0
    finally:
        both.close()


def test_watch_every_notifier_prints_each_trade_once(mesh):
    watch = subprocess.Popen([sys.executable, "-m", "exchange", "watch", "AAPL", "--plain", "--every-notifier",
                              "--config", str(mesh.config_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0)
    try:
        with mesh.login("alice") as alice, mesh.login("bob") as bob:
            def probe_until_watch_sees_the_book(problem: str) -> None:
                seen = ""
                deadline = time.monotonic() + 20
                while "BBO AAPL" not in seen:
                    assert time.monotonic() < deadline, problem
                    ack = alice.request("SELL AAPL 3 @ 200.00")
                    assert alice.request(f"CANCEL {ack.split()[1]}").startswith("OUT")
                    seen = read_available(watch, 0.5)

            probe_until_watch_sees_the_book("watch never saw the book")
            # both lines joined, not just the faster one: with each notifier stopped in turn, the
            # book's changes still reach watch, so they came over the other one's line
            for stopped in ("notifier", "notifier b"):
                pid = mesh.role_pid(stopped)
                os.kill(pid, signal.SIGSTOP)
                try:
                    probe_until_watch_sees_the_book(f"watch never saw the book with {stopped} stopped")
                finally:
                    os.kill(pid, signal.SIGCONT)
            for price in ("201.00", "202.00", "203.00"):
                assert alice.request(f"SELL AAPL 1 @ {price}").startswith("ACK")
                assert bob.request(f"BUY AAPL 1 @ {price}").startswith("ACK")
            out = ""
            deadline = time.monotonic() + 10
            while out.count("TRADE AAPL") < 3 and time.monotonic() < deadline:
                out += read_available(watch, 0.5)
            out += read_available(watch, 1.0)  # a second copy of any trade would show up by now
        trades = re.findall(r"TRADE AAPL 1 @ (20[123]\.00)", out)
        assert trades == ["201.00", "202.00", "203.00"], out
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=10)
    first, b = mesh.config.notifier.replica(None), mesh.config.notifier.replica("b")
    assert f"watching AAPL on {first.publish}, {b.publish}" in err.decode()
