"""docs/deployment.md's three-machine layout, followed step by step on one machine.

configs/three-hosts.yaml with its addresses 10.0.0.1-3 played by 127.0.0.2-4 (and free ports); the
steps of the guide run in an "admin" folder; each host then gets a folder of its own holding only
the files the guide's table lists for it, and its own `exchange up three-hosts.yaml --host NAME`.
An order placed on core's gateway trades on match's engine, and the trade reaches a subscriber of
feed's notifier. Neither match nor feed holds a journal file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from exchange.config import load_config, roles_on
from exchange.core.messages import Trade
from exchange.marketdata.feed import MarketDataClient
from exchange.testing.mesh import free_ports, login, wait_until
from exchange.testing.placed import hosts_up

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deployment.md"
ADDRESSES = {"10.0.0.1": "127.0.0.2", "10.0.0.2": "127.0.0.3", "10.0.0.3": "127.0.0.4"}


def on_this_machine(text: str) -> str:
    """The layout's addresses as loopback ones, each (address, port) on a free port."""
    pairs = sorted(set(re.findall(r"10\.0\.0\.\d:\d+", text)))
    for pair, port in zip(pairs, free_ports(len(pairs))):
        text = re.sub(rf"{re.escape(pair)}\b", f"{pair.split(':')[0]}:{port}", text)
    for old, new in ADDRESSES.items():
        text = text.replace(old, new)
    return text


def guide_table() -> dict[str, tuple[list[str], list[str]]]:
    """host → (its roles, the files it needs), from the guide's table."""
    rows = re.findall(r"^\| (\S+) \| 10\.0\.0\.\d \| ([^|]+) \| ([^|]+) \|$", GUIDE.read_text(), re.M)
    return {host: ([r.strip() for r in roles.split(",")], re.findall(r"`([^`]+)`", files))
            for host, roles, files in rows}


def exchange(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "exchange", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_three_machine_layout_runs_as_the_guide_says(tmp_path):
    admin = tmp_path / "admin"
    admin.mkdir()
    config = admin / "three-hosts.yaml"
    config.write_text(on_this_machine((ROOT / "configs" / "three-hosts.yaml").read_text()))
    section = exchange("keys", "mesh", "--config", config.name, "--dir", "keys", cwd=admin)  # step 1
    config.write_text(config.read_text() + section)
    exchange("keys", "notifier", "--config", config.name, "--create", cwd=admin)  # step 2
    checked = exchange("config", "check", config.name, cwd=admin)  # step 3
    assert checked.startswith("OK") and "mesh links CURVE; hosts core (journal-writer, ledger-0" in checked

    table = guide_table()
    placed = load_config(config)
    assert sorted(table) == sorted(placed.hosts) == ["core", "feed", "match"]
    launchers = []
    for host, (roles, files) in table.items():  # step 4: each host's folder holds only its files
        assert roles == roles_on(placed, host)
        assert sorted(f"keys/{role}.key_secret" for role in roles) == sorted(f for f in files if f.startswith("keys/"))
        folder = tmp_path / host
        for name in files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(admin / name, folder / name)
        launchers.append((folder / config.name, host))
    with hosts_up(*launchers) as (core, match, feed):  # step 5
        subscribers = [MarketDataClient(placed.notifier.publish, ["AAPL"], channels=("trade",))]
        try:
            with login(core.host, core.port, "alice") as alice, login(core.host, core.port, "bob") as bob:
                seen: list[set[str]] = [set()]
                trade_ids: list[str] = []
                deadline = time.monotonic() + 30
                while not (trade_ids and all(trade_ids[-1] in s for s in seen)):  # PUB/SUB: retry until joined
                    assert time.monotonic() < deadline, f"the trades never reached both feeds: {seen}"
                    n = len(trade_ids) + 1
                    assert alice.request(f"SELL AAPL 1 @ 190.00 #s{n}").startswith("ACK")
                    ack = bob.request(f"BUY AAPL 1 @ 190.00 #b{n}")
                    assert ack.startswith("ACK"), ack
                    trade_ids.append(bob.next_pushed(timeout=10).split()[-1])
                    for subscriber, ids in zip(subscribers, seen):
                        ids |= _trades(subscriber, 1.0)
        finally:
            for subscriber in subscribers:
                subscriber.close()
        wait_until(lambda: "exchange is up" in match.log(), 30, "match's banner")
        assert "host match (127.0.0.3): engine-e1, engine-e2" in match.log()
    assert [p.name for p in tmp_path.glob("*/**/journal.db")] == ["journal.db"]
    assert (tmp_path / "core" / "var" / "journal.db").exists()


def _trades(subscriber: MarketDataClient, timeout: float) -> set[str]:
    """The trade ids the subscriber hears until it has been quiet for ``timeout``."""
    ids = set()
    while True:
        try:
            message = subscriber.receive(timeout=timeout)
        except TimeoutError:
            return ids
        ids |= {e.trade_id for e in message.events if isinstance(e, Trade)}
