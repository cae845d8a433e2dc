"""Balances on the private feed across restarts: a ledger shard is asked again, by every notifier
that follows users at it, for each of them, and answers each with the user's balances as they are;
so what a shard settled while it started (the fills of the time it was down) reaches the feed."""

from __future__ import annotations

import os
import re
import signal
import time

import zmq

from exchange.config import load_config
from exchange.core.ledger import shard_of
from exchange.testing.mesh import Mesh, Role, loopback_config, wait_until
from exchange.wire import sockets
from exchange.wire.messages import Balances, private_topic
from exchange.wire.security.curve_keys import make_client, public_key, server_secret_key
from test_accounts import accounts_config
from test_market_data import private, wait_private_joined
from test_private_balances import StandIn


def balances_seen(feed, seconds: float) -> list[Balances]:
    """Every Balances that comes on ``feed`` within ``seconds``."""
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if feed.sub.poll(int(left * 1000) + 1):
            got += [e for e in feed.receive(0).events if isinstance(e, Balances)]
    return got


def btc(b: Balances) -> tuple[int, int]:
    row = next(r for r in b.balances if r.asset == "BTC")
    return row.available, row.held


def feed_shows(feed, wanted: tuple[int, int], what: str) -> None:
    """Until ``feed`` carries a Balances whose BTC is ``wanted`` (available, held)."""
    got: list[Balances] = []
    wait_until(lambda: got.extend(balances_seen(feed, 0.2)) or any(btc(b) == wanted for b in got), 20,
               f"{what} on the private feed (BTC seen: {[btc(b) for b in got][-5:]})")


def settles_to(client, asset: str, expected: tuple[str, str]) -> None:
    """Until the gateway's BALANCE shows ``expected`` for ``asset`` (asked again while the shard starts)."""
    seen: list = []

    def settled() -> bool:
        lines = client.request_block(f"BALANCE {asset}")
        seen.append(lines)
        words = lines[0].split()
        return lines[-1] == "END BALANCE 1" and (words[3], words[5]) == expected

    wait_until(settled, 30, f"{asset} balance {expected} (last seen {seen[-1:]})")


def kill_and_wait_for_restart(mesh, label: str) -> None:
    os.kill(mesh.role_pid(label), signal.SIGKILL)
    wait_until(lambda: len(re.findall(rf"started {label} \(pid", mesh.log())) >= 2, 30,
               f"the launcher restarting {label}")


def test_fills_settled_while_a_shard_was_down_reach_the_private_feed_when_it_is_back(tmp_path):
    """Defect: the shard settled them as it started, before any notifier had asked it for anyone's
    balances, and sent them to nobody."""
    assert shard_of("alice", 2) != shard_of("bob", 2)
    with Mesh(accounts_config(tmp_path)) as mesh:
        mine = private(mesh, "alice")
        try:
            with mesh.login("alice") as alice, mesh.login("bob") as bob:
                wait_private_joined(alice, mine)
                assert alice.request("SELL BTC-USD 0.01 @ 40000 #s1").startswith("ACK ")
                feed_shows(mine, (99_000_000, 1_000_000), "alice's hold")
                kill_and_wait_for_restart(mesh, f"ledger {shard_of('alice', 2)}")
                # meanwhile bob took her order: her shard settles the fill as it comes back
                assert bob.request("BUY BTC-USD 0.01 @ 40000 #b1").startswith("ACK ")
                settles_to(alice, "BTC", ("0.99000000", "0.00000000"))
                feed_shows(mine, (99_000_000, 0), "the settled fill")
        finally:
            mine.close()


def test_after_a_shard_restart_later_changes_reach_the_private_feed(tmp_path):
    with Mesh(accounts_config(tmp_path)) as mesh:
        mine = private(mesh, "alice")
        try:
            with mesh.login("alice") as alice:
                wait_private_joined(alice, mine)
                kill_and_wait_for_restart(mesh, f"ledger {shard_of('alice', 2)}")
                settles_to(alice, "BTC", ("1.00000000", "0.00000000"))  # her shard answers again
                assert alice.request("SELL BTC-USD 0.01 @ 40000 #s2").startswith("ACK ")
                feed_shows(mine, (99_000_000, 1_000_000), "alice's hold")
        finally:
            mine.close()


USERS = 1100  # more than a socket's default limit of 1,000 queued messages


def config_with_users(tmp_path, n: int):
    """The loopback config with ``n`` more users (with CURVE keys for the private feed); their secrets."""
    path = loopback_config(tmp_path, accounts=True)
    text = path.read_text()
    key_hash = re.search(r"key_hash: (\S+)", text).group(1)
    secrets, entries = {}, []
    for i in range(n):
        public, secret = zmq.curve_keypair()
        name = f"u{i:05d}"
        secrets[name] = secret
        entries.append(f"  - name: {name}\n    key_hash: {key_hash}\n    curve_public_key: '{public.decode()}'\n")
    path.write_text(text.replace("\nusers:\n", "\nusers:\n" + "".join(entries), 1))
    return path, secrets


def asked_for(stand_in: StandIn, wanted: set[bytes], seconds: float) -> set[bytes]:
    """The topics subscribed at ``stand_in`` once all of ``wanted`` are, or after ``seconds``."""
    got: set[bytes] = set()
    deadline = time.monotonic() + seconds
    while not wanted <= got and time.monotonic() < deadline:
        if stand_in.pub.poll(100):
            for data, in sockets.drain(stand_in.pub):
                if data[:1] == b"\x01":
                    got.add(data[1:])
                elif data[:1] == b"\x00":
                    got.discard(data[1:])
    return got & wanted


def test_a_restarted_shard_is_asked_again_for_every_user_the_notifier_follows(tmp_path):
    """Defect: on reconnecting, the notifier's XSUB sends every followed user at once, and libzmq
    dropped what passed the socket's limit of 1,000 queued messages, silently and for good."""
    path, secrets = config_with_users(tmp_path, USERS)
    config = load_config(path)
    shard = config.ledgers[0]
    stand_in = StandIn(config, shard.role, shard.publish, kind=zmq.XPUB)
    others = [StandIn(config, s.role, s.publish, kind=zmq.XPUB) for s in config.ledgers[1:]]
    notifier = Role(path, "notifier")
    ctx = zmq.Context()
    ctx.max_sockets = 4 * USERS
    subs = []
    try:
        notifier.wait_for(r"notifier ready")
        server = public_key(server_secret_key(config.notifier.secret_key_file))
        for name, secret in secrets.items():
            sub = ctx.socket(zmq.SUB)
            sub.linger = 0
            make_client(sub, server, zmq.curve_public(secret), secret)
            sub.setsockopt(zmq.SUBSCRIBE, private_topic(name))
            sub.connect(config.notifier.private)
            subs.append(sub)
        wanted = {private_topic(name) for name in secrets}
        before = asked_for(stand_in, wanted, 60)
        assert before == wanted, f"before the restart the shard was asked for {len(before)} of {USERS} users"
        stand_in.close()  # the shard restarts: a new XPUB at the same endpoint
        stand_in = StandIn(config, shard.role, shard.publish, kind=zmq.XPUB)
        after = asked_for(stand_in, wanted, 30)
        assert after == wanted, f"after the restart the shard was asked for {len(after)} of {USERS} users"
    finally:
        for sub in subs:
            sub.close()
        ctx.term()
        # the stand-ins close before the notifier stops: an XPUB whose peer goes away while the
        # subscriptions it sent wait unread can abort in libzmq 4.3.5 as it closes
        # ("Assertion failed: !_io_error (src/stream_engine_base.cpp:310)")
        for s in (stand_in, *others):
            s.close()
        notifier.stop()
