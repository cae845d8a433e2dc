"""Notifier lanes (notifier.lanes): the public feed on more endpoints, a different lane first each time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import write_config
from exchange.config import load_config
from exchange.core.messages import Trade
from exchange.errors import ConfigError
from exchange.marketdata.feed import BookFeed, MarketDataClient
from exchange.marketdata.notifier import in_turn
from exchange.testing.mesh import Mesh, free_ports
from test_market_data import cross, engine_book, settle, trade_some, wait_joined, wait_synced


def with_lanes(tmp_path: Path) -> Path:
    """The loopback test config with two more lanes on the notifier, and a replica b with one more lane."""
    path = write_config(tmp_path)
    text = path.read_text()
    lane2, lane3, publish, private, snapshots, b_lane2 = free_ports(6)
    anchor = re.search(r"\n  secret_key_file: .*\n", text).group(0)
    path.write_text(text.replace(anchor, anchor + (
        f"  lanes: [tcp://127.0.0.1:{lane2}, tcp://127.0.0.1:{lane3}]\n"
        "  replicas:\n"
        "    - name: b\n"
        f"      publish: tcp://127.0.0.1:{publish}\n"
        f"      private: tcp://127.0.0.1:{private}\n"
        f"      snapshots: tcp://127.0.0.1:{snapshots}\n"
        f"      lanes: [tcp://127.0.0.1:{b_lane2}]\n"), 1))
    return path


def messages_with_trades(md: MarketDataClient, n: int) -> list[tuple[int, list[str]]]:
    """(chan_seq, trade ids) of the next messages, in arrival order, until they carry ``n`` test trades."""
    got: list[tuple[int, list[str]]] = []
    deadline = time.monotonic() + 15
    while sum(len(ids) for _, ids in got) < n:
        assert time.monotonic() < deadline, f"only {sum(len(ids) for _, ids in got)} of {n} trades arrived"
        message = md.receive(timeout=10)
        trades = [e.trade_id for e in message.events if isinstance(e, Trade) and e.price != 8000]
        if trades:
            got.append((message.chan_seq, trades))
    return got


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_in_turn_puts_each_item_first_once_in_k_turns_and_keeps_their_cycle(k):
    items = list("abcde"[:k])
    turns = [in_turn(items, n) for n in range(k)]
    assert sorted(t[0] for t in turns) == items
    for n, t in enumerate(turns):
        assert t == items[n:] + items[:n]
    assert in_turn(items, k) == items


def test_every_lane_and_every_replica_lane_carries_every_message_once_in_order(tmp_path):
    with Mesh(with_lanes(tmp_path)) as mesh:
        notifier, b = mesh.config.notifier, mesh.config.notifier.replica("b")
        endpoints = [notifier.publish, *notifier.lanes, b.publish, *b.lanes]
        assert len(set(endpoints)) == 5
        clients = [MarketDataClient(e, ["AAPL"], channels=("trade",)) for e in endpoints]
        book_on_lane = BookFeed(notifier.lanes[1], notifier.snapshots, "AAPL")
        try:
            with mesh.login("alice") as alice, mesh.login("bob") as bob:
                wait_joined(alice, bob, clients, "AAPL 1 @ 80.00")
                wait_synced(book_on_lane)
                cross(alice, bob, 30)
                trade_some(alice, bob, 10)  # leaves a book behind
            feeds = [messages_with_trades(md, 30) for md in clients]
            first = feeds[0]
            seqs = [seq for seq, _ in first]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none lost, none twice
            assert sorted(i for _, ids in first for i in ids) == sorted(set(i for _, ids in first for i in ids))
            for feed in feeds[1:]:  # the same messages with the same chan_seqs on every lane of every notifier
                assert feed == first
            settle(book_on_lane)
            assert book_on_lane.depth.state() == engine_book(mesh)
            assert book_on_lane.resyncs == 0
        finally:
            for client in (*clients, book_on_lane):
                client.close()


def test_a_lane_that_repeats_an_endpoint_is_refused(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text()
    publish = re.search(r"\nnotifier:\n  publish: (\S+)", text).group(1)
    anchor = re.search(r"\n  secret_key_file: .*\n", text).group(0)
    path.write_text(text.replace(anchor, anchor + f"  lanes: [{publish}]\n", 1))
    with pytest.raises(ConfigError, match="used twice"):
        load_config(path)
