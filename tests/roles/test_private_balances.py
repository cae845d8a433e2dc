"""Balances on the private feed: a real notifier, real PUB sockets standing in for the ledger shards
(and the journal writer, passing on engine batches) at the config's endpoints, and real CURVE
subscribers, with the mesh plain or encrypted."""

from __future__ import annotations

import time

import pytest
import zmq
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.client.private_feed import PrivateFeed
from exchange.config import load_config
from exchange.core.ledger import shard_of
from exchange.core.messages import OrderAccepted, PlaceOrder
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.testing.mesh import Role, loopback_config
from exchange.wire import sockets
from exchange.wire.messages import (
    RELEASED, Balance, Balances, Entry, EventBatch, PrivateData, encode, private_topic,
)
from exchange.wire.security.curve_keys import public_key, server_secret_key
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.security.zap import start_authenticator
from test_market_data import DEMO_SECRETS

JOIN_S = 15  # for the subscriptions and the notifier's upstream connections to be in place


@pytest.fixture(params=["plain", "mesh_curve"])
def config_path(request, tmp_path):
    """A loopback config with accounts on (two ledger shards), its mesh plain or encrypted."""
    path = loopback_config(tmp_path, accounts=True)
    if request.param == "mesh_curve":
        made = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(path), "--dir", str(tmp_path / "keys")])
        assert made.exit_code == 0, made.output
        path.write_text(path.read_text() + made.stdout)
    return path


class StandIn:
    """A PUB bound where a role of the config publishes, with that role's mesh security (and, as a
    role has, a context of its own for its ZAP handler)."""

    def __init__(self, config, role: str, endpoint: str, kind: int = zmq.PUB):
        self.ctx = zmq.Context()
        security = MeshSecurity.for_role(config, role)
        self.auth = start_authenticator(self.ctx, roles=security.role_keys()) if security else None
        self.pub = sockets.socket(self.ctx, kind, bind=endpoint, security=security)

    def send(self, data: PrivateData) -> None:
        self.pub.send_multipart([private_topic(data.user), encode(data)])

    def release(self, batch: EventBatch) -> None:
        """As the journal writer passes on an engine batch it has written."""
        self.pub.send_multipart([RELEASED, encode(batch)])

    def close(self) -> None:
        self.pub.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def feed(config, user: str) -> PrivateFeed:
    section = config.notifier
    server = public_key(server_secret_key(section.secret_key_file))
    secret = DEMO_SECRETS[user]
    return PrivateFeed(section.private, server, user, zmq.curve_public(secret), secret, admitted_within=10)


def balances(user: str, usd_held: int) -> Balances:
    return Balances(user, [Balance("BTC", 150_000_000, 0), Balance("USD", 9_999_990_000 - usd_held, usd_held)])


def accepted(user: str, seq: int) -> OrderAccepted:
    return OrderAccepted(seq, time.time_ns(), "BTC-USD", f"1-{seq}", user, Side.BUY, 1, 100, TimeInForce.GTC,
                         SelfTradePrevention.CANCEL_NEWEST, "#b1")


def test_each_user_gets_their_balances_from_their_ledger_shard_and_nobody_elses(config_path):
    config = load_config(config_path)
    assert {shard_of("alice", 2), shard_of("bob", 2)} == {0, 1}, "the test wants alice and bob on two shards"
    notifier = Role(config_path, "notifier")
    stand_ins = {shard.shard: StandIn(config, shard.role, shard.publish) for shard in config.ledgers}
    journal = StandIn(config, "journal-writer", config.journal.watermarks)
    feeds = {}
    try:
        notifier.wait_for(r"notifier ready")
        feeds = {user: feed(config, user) for user in ("alice", "bob")}
        got: dict[str, list[PrivateData]] = {user: [] for user in feeds}
        deadline = time.monotonic() + JOIN_S
        seq = 0
        # publish until each user has had a balance update and an order event (PUB drops until joined)
        def kinds(user: str) -> set[str]:
            return {type(e).__name__ for d in got[user] for e in d.events}

        while not all({"Balances", "OrderAccepted"} <= kinds(u) for u in feeds):
            assert time.monotonic() < deadline, f"in {JOIN_S} s, each user got only {({u: kinds(u) for u in feeds})}"
            seq += 1
            for user in feeds:
                shard = shard_of(user, len(config.ledgers))
                stand_ins[shard].send(PrivateData(user, f"ledger-{shard}", 3, [balances(user, usd_held=10_000)]))
            entries = [Entry("gateway", 1, seq, PlaceOrder(user, "BTC-USD", Side.BUY, 1, 100), [accepted(user, seq)])
                       for user in feeds]
            journal.release(EventBatch(config.engines[0].name, 5, seq, seq, seq, entries))
            for user, private in feeds.items():
                while private.sub.poll(100):
                    got[user].append(private.receive(0))
        for user, received in got.items():
            assert {d.user for d in received} == {user}, f"{user} got someone else's private data"
            ledger = [d for d in received if d.engine.startswith("ledger-")]
            shard = shard_of(user, len(config.ledgers))
            assert {(d.engine, d.epoch) for d in ledger} == {(f"ledger-{shard}", 3)}
            assert all(d.events == [balances(user, usd_held=10_000)] for d in ledger)
            orders = [e for d in received if d.engine == config.engines[0].name for e in d.events]
            assert orders and all(isinstance(e, OrderAccepted) and e.user == user for e in orders)
    finally:
        for private in feeds.values():
            private.close()
        for stand_in in (*stand_ins.values(), journal):
            stand_in.close()
        notifier.stop()


def test_the_notifier_asks_the_ledger_shards_for_the_balances_of_the_users_who_follow_their_feed_only(config_path):
    """A shard builds and sends no balances that nobody follows: the notifier subscribes to a user's
    topic at the shards once that user follows their private feed, and to nothing else."""
    config = load_config(config_path)
    notifier = Role(config_path, "notifier")
    stand_ins = {shard.shard: StandIn(config, shard.role, shard.publish, kind=zmq.XPUB) for shard in config.ledgers}
    alice = None
    try:
        notifier.wait_for(r"notifier ready")
        alice = feed(config, "alice")
        asked: dict[int, list[bytes]] = {shard: [] for shard in stand_ins}
        wanted = b"\x01" + private_topic("alice")
        deadline = time.monotonic() + JOIN_S
        while not all(wanted in got for got in asked.values()):
            assert time.monotonic() < deadline, f"in {JOIN_S} s the shards were asked for {asked}"
            for shard, stand_in in stand_ins.items():
                if stand_in.pub.poll(100):
                    asked[shard].extend(frame for frame, in sockets.drain(stand_in.pub))
        for got in asked.values():
            assert got == [wanted], "asked for something besides alice's balances (everything, or someone else's)"
    finally:
        if alice is not None:
            alice.close()
        for stand_in in stand_ins.values():
            stand_in.close()
        notifier.stop()


def test_each_subscription_of_a_user_asks_the_shards_again_so_it_gets_the_balances_as_they_are(config_path):
    """A second `watch --mine` (or the first, restarted) must get the balances at once too, not only
    when they next change: the shard answers each subscription it is passed (its XPUB is verbose)
    with the balances as they are, so the notifier passes on each one it admits."""
    config = load_config(config_path)
    notifier = Role(config_path, "notifier")
    stand_ins = {shard.shard: StandIn(config, shard.role, shard.publish, kind=zmq.XPUB) for shard in config.ledgers}
    for stand_in in stand_ins.values():
        stand_in.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # as a ledger shard's
    wanted = b"\x01" + private_topic("alice")
    asked: dict[int, list[bytes]] = {shard: [] for shard in stand_ins}

    def asked_times(times: int) -> None:
        deadline = time.monotonic() + JOIN_S
        while not all(got.count(wanted) >= times for got in asked.values()):
            assert time.monotonic() < deadline, f"in {JOIN_S} s the shards were asked for {asked}"
            for shard, stand_in in stand_ins.items():
                if stand_in.pub.poll(100):
                    asked[shard].extend(frame for frame, in sockets.drain(stand_in.pub))

    try:
        notifier.wait_for(r"notifier ready")
        first = feed(config, "alice")
        asked_times(1)
        first.close()
        again = feed(config, "alice")
        try:
            asked_times(2)
        finally:
            again.close()
    finally:
        for stand_in in stand_ins.values():
            stand_in.close()
        notifier.stop()
