"""A partition between the gateway and one engine, on a two-host mesh with CURVE, under load.

Host a (127.0.0.2): journal writer, notifier, gateway; host b (127.0.0.3): engines e1 (BTC-USD,
ETH-USD) and e2 (AAPL). A fault proxy on 127.0.0.3 sits in front of e1's command endpoint, and host
a's copy of the config names the proxy as e1's `commands` (what host a sees of host b, as through a
port forward); host b's copy names e1's own endpoint. Two sessions (alice, bob) trade BTC-USD and
AAPL while the link from the gateway to e1 is cut for 2 s (connections reset and refused, or
stalled: kept open and silent), then heals by itself; the load goes on after it.

Afterwards: every ACK and FILL is journaled, every order once; the engines' sequences have no gap and
their live books equal the journal's replay (exchange.testing.soak's checks); `exchange journal
verify` passes; and the feed's trades are exactly the journal's. Both launchers share one working
directory, and so the journal file, until recovery moves onto the mesh.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.core.messages import Trade
from exchange.journal.readers import decode_event, wait_for_tables
from exchange.marketdata.feed import MarketDataClient
from exchange.testing.fault_proxy import FaultProxy
from exchange.testing.mesh import login, wait_until
from exchange.testing.soak import SYMBOLS, Observed, Trader, check
from placed_mesh import copy_with, hosts_up, placed_config

ACKS = 50  # orders placed before the partition, and again after it heals (about 1.5 s of load each)
PARTITION_S = 2.0
RATE = 40.0  # requests per second per session


class Feed(threading.Thread):
    """A market data subscriber that records every trade it sees, and says when it has joined."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True, name="feed")
        self.md = MarketDataClient(endpoint, list(SYMBOLS), channels=("trade", "bbo"))
        self.trades: dict[str, tuple[int, int]] = {}
        self.heard = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.md.receive(timeout=0.2)
            except TimeoutError:
                continue
            self.heard.set()
            for event in message.events:
                if isinstance(event, Trade):
                    self.trades[event.trade_id] = (event.price, event.qty)

    def close(self) -> None:
        self.stop.set()
        self.join(10)
        self.md.close()


def join_feed(feed: Feed, host: str, port: int) -> None:
    """Until the feed hears a book change carol makes on each engine (PUB/SUB drops until it has joined)."""
    with login(host, port, "carol") as carol:
        deadline = time.monotonic() + 20
        while not feed.heard.is_set():
            assert time.monotonic() < deadline, "the feed never joined"
            for symbol in SYMBOLS:
                ack = carol.request(f"BUY {symbol} 1 @ 0.01")
                if ack.startswith("ACK"):
                    assert carol.request(f"CANCEL {ack.split()[1]}", timeout=10).startswith("OUT")
            feed.heard.wait(0.5)


def journaled_trades(path: str) -> dict[str, tuple[int, int]]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT trade_id, body FROM events WHERE kind='Trade'").fetchall()
    return {trade_id: (e.price, e.qty) for trade_id, body in rows for e in [decode_event(body)]}


@pytest.mark.parametrize("stall", [False, True], ids=["reset", "stall"])
def test_a_partition_between_gateway_and_engine_loses_nothing_and_heals_by_itself(tmp_path, stall):
    path = placed_config(tmp_path, request_timeout=1.0)  # shorter than the partition
    config = load_config(path)
    e1 = config.engine("e1").commands
    address, port = e1[len("tcp://"):].rsplit(":", 1)
    with FaultProxy((address, int(port)), host=address) as proxy:
        seen_from_a = copy_with(path, "mesh-a.yaml", f"commands: {e1}", f"commands: {proxy.endpoint}")
        with hosts_up((seen_from_a, "a"), (path, "b")) as (a, b):
            feed = Feed(config.notifier.publish)
            feed.start()
            try:
                join_feed(feed, a.host, a.port)
                observed, stop = Observed(), threading.Event()
                traders = [Trader(a.host, a.port, user, f"{user}-{n}", RATE, n, observed, stop)
                           for n, user in enumerate(["alice", "bob"])]
                for trader in traders:
                    trader.start()
                wait_until(lambda: len(observed.acks) >= ACKS, 30, f"{ACKS} ACKs before the partition")
                before = len(observed.acks)
                proxy.partition(PARTITION_S, stall=stall)
                wait_until(lambda: not proxy.partitioned, PARTITION_S + 10, "the partition's end")
                wait_until(lambda: len(observed.acks) >= before + ACKS, 30, f"{ACKS} ACKs after healing")
                stop.set()
                for trader in traders:
                    trader.join(90)
                assert [t.error for t in traders] == [None, None] and not any(t.is_alive() for t in traders)
                wait_for_tables(config.journal.path, 60)
                journal = journaled_trades(config.journal.path)
                wait_until(lambda: set(feed.trades) >= set(journal), 15, "the feed's last trades")
            finally:
                feed.close()
    assert observed.fills, "no order crossed: the load is too thin to prove anything"
    assert observed.rejects["BUSY"] + observed.rejects["UNAVAILABLE"] > 0, "the partition was felt"
    if not stall:
        assert proxy.accepted >= 2, "the gateway reconnected through the proxy"
    assert check(config, observed, a.log() + b.log()) == []
    verified = CliRunner().invoke(cli, ["journal", "verify", "--config", str(path)])
    assert verified.exit_code == 0, verified.output
    assert feed.trades == journal
