"""The README's nc transcript works as written, and `exchange watch` shows the trade."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_available
from exchange.client.text import TextClient

README = Path(__file__).resolve().parents[2] / "README.md"


def transcript(text: str) -> list[tuple[str, str, str]]:
    """(user, direction, line) for each `user> …` / `user< …` line of the first text block."""
    block = re.search(r"```text\n(.*?)```", text, re.S).group(1)
    return [(m.group(1), m.group(2), m.group(3)) for m in re.finditer(r"^(\w+)([<>]) (.*)$", block, re.M)]


def test_the_readme_transcript_works_as_written(demo_mesh):
    mesh = demo_mesh
    steps = transcript(README.read_text())
    assert len(steps) >= 10
    clients: dict[str, TextClient] = {}
    try:
        for user, direction, line in steps:
            client = clients.get(user) or clients.setdefault(user, TextClient(mesh.host, mesh.port))
            if direction == ">":
                client.send_line(line)
            else:
                assert client.read_line() == line
        for client in clients.values():  # nothing more than the README shows
            client.send_line("PING")
            assert client.read_line() == "PONG"
    finally:
        for client in clients.values():
            client.close()


def test_watch_prints_the_trade(mesh):
    watch = subprocess.Popen([sys.executable, "-m", "exchange", "watch", "AAPL", "--config",
                              str(mesh.config_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             bufsize=0)
    try:
        with TextClient(mesh.host, mesh.port) as alice, TextClient(mesh.host, mesh.port) as bob:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
            deadline = time.monotonic() + 20
            seen = ""
            while "BBO AAPL" not in seen:  # probe until watch's subscription has arrived
                assert time.monotonic() < deadline, "watch never saw the book"
                ack = alice.request("SELL AAPL 3 @ 200.00")
                assert ack.startswith("ACK"), ack
                assert alice.request(f"CANCEL {ack.split()[1]}").startswith("OUT")
                time.sleep(0.3)
                seen = read_available(watch, 0.5)
            assert alice.request("SELL AAPL 3 @ 200.00").startswith("ACK")
            assert bob.request("BUY AAPL 2 @ 200.00").startswith("ACK")
            trade = ""
            deadline = time.monotonic() + 10
            while "TRADE" not in trade and time.monotonic() < deadline:
                trade += read_available(watch, 0.5)
            # each line starts with when it happened (the event's ts_event, UTC)
            assert re.search(r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z TRADE AAPL 2 @ 200\.00 BUY trade 2-1 seq \d+$",
                             trade, re.M), trade
    finally:
        watch.terminate()
        watch.wait(10)


def test_the_demo_refuses_a_price_far_from_the_market(demo_mesh):
    with TextClient(demo_mesh.host, demo_mesh.port) as alice:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        reply = alice.request("BUY BTC-USD 0.001 @ 99999.99")  # 2.3 times the reference price: funds enough
        assert reply.startswith("REJ PRICE_BAND "), reply
        assert alice.request("BUY BTC-USD 0.1 @ 43000.00").startswith("ACK")


def test_the_exchange_command_the_readme_names_is_in_the_venv():
    text = README.read_text()
    assert "source .venv/bin/activate" in text and ".venv/bin/exchange" in text
    exchange = Path(sys.prefix) / "bin" / "exchange"  # the venv scripts/test made and runs in
    assert exchange.is_file()
    for command in (["--help"], ["watch", "--help"], ["journal", "trades", "--help"], ["config", "check"]):
        done = subprocess.run([str(exchange), *command], capture_output=True, text=True, timeout=60,
                              cwd=README.parent)
        assert done.returncode == 0, (command, done.stderr)
