"""Partitions between the hosts of a three-host mesh with CURVE and two gateways, under load from
several sessions, and the checks of what must hold afterwards. tests/hosts/test_partition.py runs
one fault per test; ``scripts/partition_soak`` runs many, each on a link and of a kind chosen at
random.

Host a (127.0.0.2): journal writer, gateway; host b (127.0.0.3): engines e1 (BTC-USD, ETH-USD) and
e2 (AAPL); host c (127.0.0.4): notifier, gateway-g2. Each host runs its own `exchange up --host
NAME` in a folder of its own holding its copy of the config and its roles' secret keys, nothing
else (the journal file is in a's). A fault proxy sits on each link of LINKS, and the copy of the
host that connects there names the proxy instead, as a machine sees another through a port forward:

    gateway-engine    gateway (a) → engine e1's commands (b); gateway-g2 reaches e1 directly
    journal-gateway   journal writer (a) → gateway-g2's replies (c): the written batches that
                      answer g2's requests and tell it of the orders placed on the gateway
    journal-notifier  notifier (c) → the journal writer's watermarks (a): the batches for the feed
    engine-journal    both engines (b) → the journal writer's events (a)

A fault is "reset" (connections reset, new ones refused), "stall" (connections kept, nothing
forwarded, as through a black hole) or "delay-drop" (DELAY_S added each way, then every connection
dropped). It lasts the seconds asked, and longer until each gateway whose links it spares (the
link's ``kept``; every gateway for a delay) has had PROGRESS more ACKs. Two sessions per gateway
(SESSIONS) trade BTC-USD and AAPL throughout (exchange.testing.soak's Trader), and a subscriber
follows the feed (exchange.testing.partition_feed).

The checks (``Report.faults``):

1-5. exchange.testing.soak's five (every ACK and FILL journaled, every trade on the feed journaled,
     each engine's seqs 1..N, its live book digest equal to the journal's replay, no client order
     placed twice), and `exchange journal verify`;
6.   the feed showed every journaled trade, and nothing else, or, after a fault on the notifier's
     link, each trade it did not show is covered by a gap it saw (``chan_seq`` or ``epoch``);
7.   the feed's books (BookFeed) equal the books the journal rebuilds (the engines', by 4);
8.   during each fault, each gateway it spares got PROGRESS ACKs; after it, every gateway got ACKS
     more and the feed heard every symbol again (the mesh resumed without an operator);
9.   STATUS of orders placed through one gateway (those ACKed from a fault's start until the mesh
     resumed, and others, at most STATUS_SAMPLE of each) is answered alike through the other;
10.  a session that stayed connected was pushed a FILL for each journaled fill of its orders.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import Config, load_config
from exchange.journal.readers import wait_for_tables
from exchange.testing.fault_proxy import FaultProxy
from exchange.testing.mesh import free_ports, wait_until
from exchange.testing.partition_checks import feed_faults, fill_faults, gateway_addresses, status_faults
from exchange.testing.partition_feed import Feed
from exchange.testing.placed import host_folder, hosts_up, placed_config
from exchange.testing.soak import SYMBOLS, TABLES_WAIT_S, Observed, Trader, check

HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
PLACEMENT = {"journal-writer": "a", "gateway": "a", "engine-e1": "b", "engine-e2": "b", "notifier": "c",
             "gateway-g2": "c"}
SESSIONS = {"gateway": ("alice", "bob"), "gateway-g2": ("carol", "alice")}  # gateway → its sessions' users
FAULTS = ("reset", "stall", "delay-drop")
ACKS = 40  # ACKs every gateway gets before the first fault, and again after each
PROGRESS = 20  # ACKs each gateway a fault spares gets while it lasts
DELAY_S = 0.3  # each way, less than the gateway's request_timeout
REQUEST_TIMEOUT_S = 1.0  # the gateways', shorter than a partition
RATE = 25.0  # requests per second per session
WAIT_S = 60.0  # at most, for ACKS or PROGRESS ACKs, or the feed, on a slow shared machine


class Link(NamedTuple):
    host: str  # the host that connects
    key: str  # the config key of the endpoint it connects to
    endpoint: Callable[[Config], str]
    kept: tuple[str, ...]  # the gateways whose links it is not


LINKS = {
    "gateway-engine": Link("a", "commands", lambda c: c.engine("e1").commands, ("gateway-g2",)),
    "journal-gateway": Link("a", "replies", lambda c: c.gateway.replica("g2").replies, ("gateway",)),
    "journal-notifier": Link("c", "watermarks", lambda c: c.journal.watermarks, ("gateway", "gateway-g2")),
    "engine-journal": Link("b", "events", lambda c: c.journal.events, ()),
}


@dataclass
class Cycle:
    """One fault and what came of it."""

    link: str
    fault: str
    seconds: float  # how long it lasted
    acks: dict[str, int] = field(default_factory=dict)  # gateway → ACKs its sessions got meanwhile
    felt: dict[str, int] = field(default_factory=dict)  # gateway → BUSY and UNAVAILABLE answers, until resumed
    placed: dict[str, list[str]] = field(default_factory=dict)  # gateway → the order ids ACKed until resumed
    before: dict[str, int] = field(default_factory=dict)  # gateway → its ACKs when the fault began
    refused_before: dict[str, int] = field(default_factory=dict)  # gateway → its BUSY and UNAVAILABLE then
    resumed: bool = False

    def __str__(self) -> str:
        gateways = ", ".join(f"{g} {self.acks[g]} acks {self.felt[g]} refused" for g in self.acks)
        return (f"{self.fault} on {self.link} for {self.seconds:.1f} s: {gateways};"
                f" {'resumed' if self.resumed else 'DID NOT RESUME'}")


@dataclass
class Report:
    """What a run left: the host a config, what each gateway's clients saw, the faults, the feed."""

    config: Config
    observed: dict[str, Observed]
    cycles: list[Cycle]
    accepted: dict[str, int]  # link → connections its proxy accepted
    feed_trades: int = 0
    feed_missed: int = 0
    feed_resyncs: int = 0
    faults: list[str] = field(default_factory=list)

    def summary(self) -> str:
        acks = sum(len(o.acks) for o in self.observed.values())
        fills = sum(len(o.fills) for o in self.observed.values())
        rejects = sum((o.rejects for o in self.observed.values()), Counter())
        return (f"{len(self.cycles)} faults, {acks} acks, {fills} fills, {self.feed_trades} trades on the feed"
                f" ({self.feed_missed} missed, {self.feed_resyncs} book re-syncs), rejects {dict(rejects)}:"
                f" {'OK' if not self.faults else f'{len(self.faults)} FAULTS'}")


def merged(observed: Iterable[Observed]) -> Observed:
    """What every gateway's clients saw, as one (soak's checks take one)."""
    total = Observed()
    for one in observed:
        total.acks.update(one.acks)
        total.replaced |= one.replaced
        total.fills += one.fills
        total.sent += one.sent
        total.rejects += one.rejects
        total.reconnects += one.reconnects
    return total


class _Load:
    """The sessions on both gateways and the feed subscriber of a running mesh."""

    def __init__(self, config: Config, seed: int, rate: float):
        self.config = config
        self.observed = {gateway: Observed() for gateway in SESSIONS}
        self.stop = threading.Event()
        addresses = gateway_addresses(config)
        sessions = [(gateway, user) for gateway, users in SESSIONS.items() for user in users]
        self.traders = [Trader(*addresses[gateway], user, f"{gateway.replace('gateway', 'gw')}-{user}-{seed}",
                               rate, seed * 100 + n, self.observed[gateway], self.stop)
                        for n, (gateway, user) in enumerate(sessions)]
        self.feed = Feed(config, list(SYMBOLS))

    def start(self) -> None:
        self.feed.start()
        wait_until(lambda: set(self.feed.heard_at) == set(SYMBOLS), WAIT_S, "the feed hearing of every symbol")
        for trader in self.traders:
            trader.start()

    def acks(self) -> dict[str, int]:
        return {gateway: len(observed.acks) for gateway, observed in self.observed.items()}

    def refused(self) -> dict[str, int]:
        return {gateway: o.rejects["BUSY"] + o.rejects["UNAVAILABLE"] for gateway, o in self.observed.items()}

    def wait_for_acks(self, n: int, gateways: Iterable[str], at_least_s: float = 0.0) -> bool:
        """Until each of ``gateways`` has had ``n`` more ACKs and ``at_least_s`` have passed (False
        after WAIT_S more)."""
        start, before = time.monotonic(), self.acks()
        try:
            wait_until(lambda: time.monotonic() - start >= at_least_s and all(
                self.acks()[g] - before[g] >= n for g in gateways), at_least_s + WAIT_S, f"{n} ACKs")
        except TimeoutError:
            return False
        return True

    def finish(self) -> list[str]:
        """Stop the sessions (each reads what is still pushed to it); the faults they met."""
        self.stop.set()
        for trader in self.traders:
            trader.join(90)
        return ([f"{t.name}: {t.error!r}" for t in self.traders if t.error]
                + [f"{t.name} did not finish" for t in self.traders if t.is_alive()])


def inflict(load: _Load, proxy: FaultProxy, link: str, fault: str, seconds: float) -> Cycle:
    """Break ``link`` as ``fault`` says for ``seconds`` at least (see the module docstring), and
    return once its proxy forwards normally again."""
    spared = tuple(SESSIONS) if fault == "delay-drop" else LINKS[link].kept
    before, refused, start = load.acks(), load.refused(), time.monotonic()
    if fault == "delay-drop":
        proxy.delay(DELAY_S)
    else:
        proxy.partition(None, stall=fault == "stall")
    try:
        load.wait_for_acks(PROGRESS, spared, seconds)  # short of it: Cycle.acks shows who stalled
    finally:
        if fault == "delay-drop":
            proxy.drop()
            proxy.delay(0)
        else:
            proxy.heal()
    after = load.acks()
    return Cycle(link, fault, time.monotonic() - start, {g: after[g] - before[g] for g in after}, before=before,
                 refused_before=refused)


def resume(load: _Load, cycle: Cycle, load_s: float) -> None:
    """After a fault: until the feed hears every symbol again (each channel beats once a second) and
    every gateway has had ACKS more ACKs, and ``load_s`` have passed."""
    healed = time.monotonic()
    try:
        wait_until(lambda: all(load.feed.heard_at.get(s, 0) > healed for s in SYMBOLS), WAIT_S,
                   "the feed hearing every engine again")
    except TimeoutError:
        pass
    else:
        cycle.resumed = load.wait_for_acks(ACKS, SESSIONS, max(0.0, load_s - (time.monotonic() - healed)))
    cycle.felt = {g: n - cycle.refused_before[g] for g, n in load.refused().items()}
    for gateway, observed in load.observed.items():
        with observed.lock:
            cycle.placed[gateway] = list(observed.acks)[cycle.before[gateway]:]

def run(directory: Path, cycles: Iterable[tuple[str, str, float]], load_s: float = 0.0, seed: int = 1,
        rate: float = RATE, say: Callable[[str], None] = lambda line: None) -> Report:
    """Start the mesh in ``directory`` with a proxy on every link, trade until every gateway has had
    ACKS, inflict each (link, fault, seconds) of ``cycles`` in turn, each followed by ``resume``
    (at least ``load_s`` of load), stop the mesh and check. ``say`` gets a line per fault."""
    path = placed_config(directory, HOSTS, PLACEMENT, request_timeout=REQUEST_TIMEOUT_S)
    real = load_config(path)
    with contextlib.ExitStack() as stack:
        proxies = {}
        ports = iter(free_ports(len(LINKS)))  # not any port of the config, not yet bound by its roles
        for name, link in LINKS.items():
            address, port = link.endpoint(real).removeprefix("tcp://").rsplit(":", 1)
            proxies[name] = stack.enter_context(FaultProxy((address, int(port)), host=address, port=next(ports)))
        seen = {host: {f"{link.key}: {link.endpoint(real)}": f"{link.key}: {proxies[name].endpoint}"
                       for name, link in LINKS.items() if link.host == host} for host in HOSTS}
        launchers = [(host_folder(path, host, seen[host]), host) for host in HOSTS]
        config = load_config(launchers[0][0])  # host a's: the journal's
        load = _Load(config, seed, rate)
        report = Report(config, load.observed, [], {})
        meshes = []
        try:
            with hosts_up(*launchers) as meshes:
                try:
                    _trade(load, proxies, cycles, load_s, say, report)
                finally:
                    load.stop.set()
                    load.feed.close()
        except AssertionError as e:  # hosts_up's: a launcher did not stop in time, or a role crashed
            report.faults.append(str(e))
        report.accepted = {name: proxy.accepted for name, proxy in proxies.items()}
    report.feed_trades, report.feed_missed, report.feed_resyncs = len(load.feed.trades), load.feed.missed, load.feed.resyncs
    observed = merged(load.observed.values())
    observed.trades = dict(load.feed.trades)
    report.faults += check(config, observed, "".join(mesh.log() for mesh in meshes))
    verified = CliRunner().invoke(cli, ["journal", "verify", "--config", str(launchers[0][0])])
    if verified.exit_code != 0:
        report.faults.append(f"exchange journal verify failed: {verified.output}")
    return report


def _trade(load: _Load, proxies: dict[str, FaultProxy], cycles: Iterable[tuple[str, str, float]], load_s: float,
           say: Callable[[str], None], report: Report) -> None:
    """The load and the faults on a running mesh, then the checks that need it running (6, 7, 9)."""
    load.start()
    if not load.wait_for_acks(ACKS, SESSIONS):
        report.faults.append(f"the gateways did not get {ACKS} ACKs each before the first fault: {load.acks()}")
    for link, fault, seconds in cycles:
        cycle = inflict(load, proxies[link], link, fault, seconds)
        resume(load, cycle, load_s)
        report.cycles.append(cycle)
        say(str(cycle))
        spared = tuple(SESSIONS) if fault == "delay-drop" else LINKS[link].kept
        report.faults += [f"{gateway} got {cycle.acks[gateway]} ACKs (fewer than {PROGRESS}) during the"
                          f" {fault} of {link}, which spared it" for gateway in spared if cycle.acks[gateway] < PROGRESS]
        if not cycle.resumed:
            report.faults.append(f"the mesh did not resume after the {fault} of {link}: {load.acks()} ACKs"
                                 f" in all, feed last heard {load.feed.heard_at}")
    report.faults += load.finish()
    wait_for_tables(load.config.journal.path, TABLES_WAIT_S)
    report.faults += feed_faults(load.config, load.feed, any(c.link == "journal-notifier" for c in report.cycles))
    during = {gateway: [o for cycle in report.cycles for o in cycle.placed[gateway]] for gateway in SESSIONS}
    report.faults += status_faults(load.config, load.observed, during, seed=len(report.cycles))
    report.faults += fill_faults(load.config, load.observed)


def main(argv: list[str] | None = None) -> int:
    """`scripts/partition_soak`: one run of many faults, each on a link and of a kind chosen at random
    from the seed; prints a line per fault and the checks' result; exit 1 if a check failed."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="scripts/partition_soak", description=main.__doc__)
    parser.add_argument("--cycles", type=int, default=10, help="faults, one after the other")
    parser.add_argument("--partition-seconds", type=float, default=5.0, help="how long each fault lasts, at least")
    parser.add_argument("--load-seconds", type=float, default=30.0, help="load after each fault, at least")
    parser.add_argument("--links", nargs="+", choices=list(LINKS), default=list(LINKS))
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second per session")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    cycles = [(rng.choice(args.links), rng.choice(args.faults), args.partition_seconds) for _ in range(args.cycles)]
    print(f"seed {args.seed}: {args.cycles} faults of {args.partition_seconds:g} s at least, {args.load_seconds:g} s"
          f" of load after each, {len(SESSIONS)} gateways x 2 sessions at {args.rate:g} requests/s", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="exchange-partition-") as tmp:
        report = run(Path(tmp), cycles, args.load_seconds, args.seed, args.rate, say=lambda line: print(line, flush=True))
    print(f"{time.monotonic() - started:.0f} s: {report.summary()}")
    for fault in report.faults:
        print(f"  {fault}")
    return 1 if report.faults else 0


if __name__ == "__main__":
    sys.exit(main())
