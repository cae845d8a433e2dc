"""`exchange watch SYMBOL --mine USER` as a user runs it: a real subprocess against a real mesh."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

import zmq
from test_market_data import DEMO_SECRETS

from exchange.wire.security.curve_keys import public_key, server_secret_key

WATCH_EXIT_S = 20  # --mine waits up to 10 s for the notifier's answer to its key


def start_watch(mesh, symbol: str, user: str, secret: bytes, config_path=None, *more: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "exchange", "watch", symbol, "--plain", "--config",
         str(config_path or mesh.config_path), "--mine", user, *more],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        env={**os.environ, "EXCHANGE_CURVE_SECRET": secret.decode()})


def read_until(watch: subprocess.Popen, wanted: bytes, out: bytes = b"", probe=None, timeout: float = 20) -> bytes:
    """``out`` plus what watch prints until ``wanted`` is in it; ``probe()`` runs before each read."""
    deadline = time.monotonic() + timeout
    while wanted not in out:
        assert time.monotonic() < deadline, out[-800:]
        if probe is not None:
            probe()
        if select.select([watch.stdout], [], [], 0.5)[0]:
            out += os.read(watch.stdout.fileno(), 65536)
    return out


def probe_with(client, order: str):
    """A probe that places ``order`` and cancels it: a private update for watch, once it has joined."""
    def probe() -> None:
        ack = client.request(order)
        client.request(f"CANCEL {ack.split()[1]}")
    return probe


def refusal(watch: subprocess.Popen) -> tuple[int, str]:
    """(exit code, stderr) of a watch that must stop by itself."""
    try:
        _, err = watch.communicate(timeout=WATCH_EXIT_S)
    except subprocess.TimeoutExpired:
        watch.kill()
        _, err = watch.communicate()
        raise AssertionError(f"watch --mine kept running with a refused key; stderr: {err[-500:]!r}") from None
    return watch.returncode, err.decode()


def test_watch_mine_shows_the_users_own_order_updates(module_mesh):
    watch = start_watch(module_mesh, "AAPL", "alice", DEMO_SECRETS["alice"])
    try:
        with module_mesh.login("alice") as alice:
            out = read_until(watch, b"MINE ACK", probe=probe_with(alice, "SELL AAPL 3 @ 200.00"))  # joined
            out = read_until(watch, b" GTC\n", out)  # the rest of that line
            order = re.search(rb"MINE ACK (2-\d+) SELL AAPL 3 @ 200.00 GTC\n", out)
            assert order, out[-800:]
            out = read_until(watch, b"MINE OUT %s CANCELED" % order[1], out)
            assert b"BBO AAPL" in read_until(watch, b"BBO AAPL", out)
    finally:
        watch.terminate()
        watch.wait(10)


def test_watch_mine_shows_each_order_in_its_own_instrument_and_says_when_it_is_filled(module_mesh):
    watch = start_watch(module_mesh, "ETH-USD", "alice", DEMO_SECRETS["alice"])
    try:
        with module_mesh.login("alice") as alice, module_mesh.login("bob") as bob:
            out = read_until(watch, b"MINE ACK", probe=probe_with(alice, "BUY AAPL 1 @ 1.00"))  # joined
            buy = alice.request("BUY BTC-USD 0.5 @ 43000.10 #w1")  # not the watched instrument
            assert buy.startswith("ACK"), buy
            order = buy.split()[1]
            assert bob.request("SELL BTC-USD 0.2 @ 43000.10").startswith("ACK")
            assert bob.request("SELL BTC-USD 0.3 @ 43000.10").startswith("ACK")
            text = read_until(watch, f"OUT {order}".encode(), out).decode()
        assert f"MINE ACK {order} #w1 BUY BTC-USD 0.5000 @ 43000.10 GTC" in text
        assert re.search(rf"MINE FILL {order} #w1 0.2000 @ 43000.10 LEAVES 0.3000 TRADE \S+", text)
        assert re.search(rf"MINE FILL {order} #w1 0.3000 @ 43000.10 LEAVES 0.0000 TRADE \S+", text)
        assert f"MINE OUT {order} #w1 FILLED" in text
    finally:
        watch.terminate()
        watch.wait(10)


def test_watch_mine_with_another_users_key_stops_with_an_error(module_mesh):
    code, err = refusal(start_watch(module_mesh, "AAPL", "alice", DEMO_SECRETS["bob"]))
    assert code != 0
    assert re.search(r"^Error: the CURVE secret key given is not alice's", err, re.M), err


def test_watch_mine_with_a_key_the_notifier_does_not_know_stops_with_an_error(module_mesh, tmp_path):
    public, secret = zmq.curve_keypair()  # alice's new key: in watch's config, not yet in the notifier's
    config = module_mesh.config_path.read_text()
    alice_public = module_mesh.config.user("alice").curve_public_key
    config_path = tmp_path / "newer.yaml"
    config_path.write_text(config.replace(alice_public, public.decode()))
    code, err = refusal(start_watch(module_mesh, "AAPL", "alice", secret, config_path))
    assert code != 0
    assert re.search(r"^Error: the notifier refused alice's CURVE key", err, re.M), err
    assert not re.search(r"Traceback", err)


def test_watch_mine_on_a_machine_without_the_notifiers_key_file_takes_its_public_key(module_mesh, tmp_path):
    """A client machine has the config but not the feed host's key file (docs/deployment.md): given
    the notifier's public key, as `exchange keys notifier` prints it there, --mine works, and no key
    file is made here."""
    config = module_mesh.config_path.read_text()
    key_file = module_mesh.config.notifier.secret_key_file
    elsewhere = tmp_path / "not-here" / "notifier.key"
    config_path = tmp_path / "client.yaml"
    config_path.write_text(config.replace(f"secret_key_file: {key_file}", f"secret_key_file: {elsewhere}"))
    server = public_key(server_secret_key(key_file)).decode()  # what `exchange keys notifier` prints
    watch = start_watch(module_mesh, "AAPL", "alice", DEMO_SECRETS["alice"], config_path, "--notifier-key", server)
    try:
        with module_mesh.login("alice") as alice:
            read_until(watch, b"MINE ACK", probe=probe_with(alice, "SELL AAPL 3 @ 201.00"))
    finally:
        watch.terminate()
        watch.wait(10)
    assert not elsewhere.parent.exists()
