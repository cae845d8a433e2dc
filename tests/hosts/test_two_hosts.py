"""A mesh on two "hosts", each started by its own `exchange up CONFIG --host NAME`, with mesh CURVE.

Host a (127.0.0.2) runs the journal writer, the notifier and the gateway; host b (127.0.0.3) runs
both engines. Every endpoint binds on its host's address, so each link between the hosts really
crosses from one address to the other. Each launcher runs in a folder of its own holding its copy
of the config and its roles' secret keys, nothing else: no role but the journal writer opens the
journal file, and the engines read their history over the mesh.
"""

from __future__ import annotations

import re
import time

from exchange.marketdata.feed import MarketDataClient
from exchange.core.messages import Trade
from exchange.testing.mesh import login, wait_until
from exchange.testing.placed import HOSTS, host_folder, hosts_up, placed_config


def test_each_host_starts_only_its_roles_and_an_order_fills_across_them(tmp_path):
    path = placed_config(tmp_path)
    with hosts_up((host_folder(path, "a"), "a"), (host_folder(path, "b"), "b")) as (a, b):
        assert set(a.pids()) == {"journal-writer", "notifier", "gateway"}
        assert set(b.pids()) == {"engine e1", "engine e2"}
        config = a.config
        assert config.gateway.text.startswith("127.0.0.2:") and config.engine("e1").commands.startswith("tcp://127.0.0.3:")
        with MarketDataClient(config.notifier.publish, ["AAPL"], channels=("trade",)) as md, \
                login(a.host, a.port, "alice") as alice, login(a.host, a.port, "bob") as bob:
            assert md  # subscribed before the trade; PUB/SUB may still drop the first messages, so retry below
            traded = None
            deadline = time.monotonic() + 20
            n = 0
            while traded is None and time.monotonic() < deadline:
                n += 1
                assert alice.request(f"SELL AAPL 1 @ 10.00 #s{n}").startswith("ACK")
                ack = bob.request(f"BUY AAPL 1 @ 10.00 #b{n}")
                assert ack.startswith("ACK"), ack
                fill = bob.next_pushed(timeout=10)
                assert fill.startswith(f"FILL {ack.split()[1]} #b{n} 1 @ 10.00 LEAVES 0 TRADE 2-"), fill
                trade_id = fill.split()[-1]
                traded = _seen(md, trade_id, timeout=2)
            assert traded is not None, "no trade reached the subscriber"
            assert (traded.price, traded.qty) == (1000, 1)
        for mesh, here in ((a, "a"), (b, "b")):  # once every role of the host said it is ready
            wait_until(lambda: "exchange is up" in mesh.log(), 30, f"host {here}'s banner")
            assert re.search(rf"host {here} \({HOSTS[here]}\): ", mesh.log()), "the banner names the host's roles"
    assert sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.glob("host-*/**/journal.db")) == ["host-a"]
    assert sorted(p.name for p in (tmp_path / "host-b" / "keys").iterdir()) == ["engine-e1.key_secret", "engine-e2.key_secret"]


def _seen(md: MarketDataClient, trade_id: str, timeout: float) -> Trade | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = md.receive(timeout=left)
        except TimeoutError:
            return None
        for event in message.events:
            if isinstance(event, Trade) and event.trade_id == trade_id:
                return event
    return None
