"""Fault soak: run a mesh under a steady order flow, SIGKILL one role, and prove nothing was lost.

Used by tests/faults (a few seconds per role) and by ``scripts/soak`` (as long as you like). The
checks are the guarantees 2-4 of docs/architecture.md, read back from the journal after a clean stop:

1. every ACK a client received is in the journal, and every FILL it saw is a journaled fill;
2. every trade a market data subscriber saw is a journaled trade (no phantom trades);
3. each engine's events are numbered 1..N without a gap;
4. each engine's live book (its digest, logged when it stops) equals the book rebuilt from the journal;
5. no client order was placed twice (one OrderAccepted per user and client order id).

With accounts on, also (docs/accounts.md):

6. every order an engine accepted had its hold journaled by its user's ledger shard first;
7. each ledger shard's live state (its digest, logged when it stops) equals the ledger rebuilt from
   its journaled events, and `exchange journal verify`'s ledger checks pass: entries balance, no
   balance below zero, every asset sums to zero across the shards, holds match the open orders.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from exchange.client.text import TextClient
from exchange.marketdata.feed import MarketDataClient
from exchange.config import Config, load_config
from exchange.core.matching import Matcher
from exchange.core.messages import Trade
from exchange.testing.mesh import Mesh, loopback_config, login
from exchange.core.ledger import Ledger
from exchange.journal.ledger_readers import decode_ledger_event
from exchange.journal.readers import decode_event, engine_events, log_events, wait_for_tables
from exchange.journal.verify_ledger import verify_ledgers


ROLES = ("engine", "journal-writer", "gateway", "notifier", "ledger")
TABLES_WAIT_S = 120.0  # for the journal's tables to catch up with its log before the checks read them


SYMBOLS = {"AAPL": (100.00, "0.01", 10), "BTC-USD": (43000.00, "0.01", "0.0001")}


@dataclass
class Observed:
    """What the clients were told, to be checked against the journal."""

    acks: dict[str, str] = field(default_factory=dict)  # order_id → user (placement ACKs)
    replaced: set[str] = field(default_factory=set)  # order ids with a REPLACED ACK
    fills: list[tuple[str, str, str]] = field(default_factory=list)  # (order_id, trade_id, qty text)
    trades: dict[str, tuple[int, int]] = field(default_factory=dict)  # trade_id → (price, qty)
    sent: int = 0
    rejects: Counter = field(default_factory=Counter)
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Trader(threading.Thread):
    """One session sending a seeded mix of limit orders, cancels and replaces at ``rate`` per second.

    It survives a gateway restart: it reconnects, logs in again and resends the request whose
    answer it never got; a placement is resent with the same client order id, so it is never
    placed twice, and an UNAVAILABLE answer (outcome unknown) is resent the same way.
    """

    def __init__(self, host: str, port: int, user: str, tag: str, rate: float, seed: int,
                 observed: Observed, stop: threading.Event):
        super().__init__(daemon=True, name=f"trader-{tag}")
        self.host, self.port, self.user, self.tag = host, port, user, tag
        self.interval = 1.0 / rate
        self.random = random.Random(seed)
        self.observed, self.stop = observed, stop
        self.resting: list[str] = []
        self.client: TextClient | None = None
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.connect()
            next_at = time.monotonic()
            while not self.stop.is_set():
                next_at += self.interval
                self.exchange(self.next_request())
                self.collect_pushed()
                time.sleep(max(0.0, next_at - time.monotonic()))
            self.drain()
        except BaseException as e:  # reported by the caller
            self.error = e

    def next_request(self) -> str:
        roll = self.random.random()
        if self.resting and roll < 0.2:
            return f"CANCEL {self.resting.pop(self.random.randrange(len(self.resting)))}"
        symbol = self.random.choice(list(SYMBOLS))
        mid, tick, lot = SYMBOLS[symbol]
        if self.resting and roll < 0.3:
            order_id = self.random.choice(self.resting)
            return f"REPLACE {order_id} {self.random.randint(1, 5) * float(lot):g}"
        self.count += 1
        side = self.random.choice(("BUY", "SELL"))
        price = mid + self.random.randint(-3, 3) * float(tick)
        qty = self.random.randint(1, 5) * float(lot)
        return f"{side} {symbol} {qty:g} @ {price:.2f} #{self.tag}-{self.count}"

    def exchange(self, line: str) -> None:
        """Send ``line`` until it has a definite answer, across reconnects and engine restarts."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with self.observed.lock:
                    self.observed.sent += 1
                reply = self.client.request(line, timeout=15)
            except (OSError, TimeoutError):
                self.reconnect()
                continue
            code = reply.split()[1] if reply.startswith("REJ") else ""
            if code.startswith("#"):
                code = reply.split()[2]
            if code in ("UNAVAILABLE", "BUSY"):
                with self.observed.lock:
                    self.observed.rejects[code] += 1
                time.sleep(0.2)
                continue
            self.record(line, reply, code)
            return
        raise TimeoutError(f"{self.name}: no definite answer to {line!r} in 60 s")

    def record(self, line: str, reply: str, code: str) -> None:
        words = reply.split()
        with self.observed.lock:
            if code:
                self.observed.rejects[code] += 1
            elif words[0] == "ACK" and "REPLACED" in words:
                self.observed.replaced.add(words[1])
            elif words[0] == "ACK":
                self.observed.acks[words[1]] = self.user
                if not line.split()[-2].endswith(("IOC", "FOK")):
                    self.resting.append(words[1])

    def collect_pushed(self) -> None:
        while self.client.pushed:
            line = self.client.pushed.popleft()
            words = line.split()
            if words[0] == "FILL":
                i = 3 if words[2].startswith("#") else 2
                with self.observed.lock:
                    self.observed.fills.append((words[1], words[-1], words[i]))

    def drain(self) -> None:
        """Read pushed lines until the session has been quiet for a second."""
        try:
            while True:
                line = self.client.read_line(timeout=1.0)
                self.client.pushed.append(line)
                self.collect_pushed()
        except (TimeoutError, OSError):
            self.collect_pushed()

    def connect(self) -> None:
        self.client = login(self.host, self.port, self.user, timeout=15)

    def reconnect(self) -> None:
        if self.client is not None:
            self.collect_pushed()
            self.client.close()
        with self.observed.lock:
            self.observed.reconnects += 1
        deadline = time.monotonic() + 30
        while True:
            try:
                self.connect()
                return
            except (OSError, TimeoutError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class TradeWatcher(threading.Thread):
    """A market data subscriber recording every trade it sees."""

    def __init__(self, endpoint: str, observed: Observed, stop: threading.Event):
        super().__init__(daemon=True, name="trade-watcher")
        self.endpoint, self.observed, self.stop = endpoint, observed, stop

    def run(self) -> None:
        with MarketDataClient(self.endpoint, list(SYMBOLS), channels=("trade",)) as md:
            while not self.stop.is_set():
                try:
                    message = md.receive(timeout=0.2)
                except TimeoutError:
                    continue
                with self.observed.lock:
                    for event in message.events:
                        if isinstance(event, Trade):
                            self.observed.trades[event.trade_id] = (event.price, event.qty)


def check(config: Config, observed: Observed, log_text: str) -> list[str]:
    """The five checks of the module docstring; returns the faults found (empty: all good)."""
    faults = []
    conn = sqlite3.connect(config.journal.path)
    accepted = {o: u for o, u in conn.execute("SELECT order_id, user FROM events WHERE kind='OrderAccepted'")}
    for order_id, user in observed.acks.items():
        if accepted.get(order_id) != user:
            faults.append(f"ACK {order_id} to {user} is not in the journal")
    replaced = {o for (o,) in conn.execute("SELECT order_id FROM events WHERE kind='OrderReplaced'")}
    faults += [f"REPLACED ACK {o} is not in the journal" for o in observed.replaced - replaced]
    fills = set(conn.execute("SELECT order_id, trade_id, qty FROM events WHERE kind='OrderFilled'"))
    faults += [f"FILL {f} is not in the journal" for f in observed.fills if f not in fills]
    trades = {t: (b) for t, b in conn.execute("SELECT trade_id, body FROM events WHERE kind='Trade'")}
    for trade_id, (price, qty) in observed.trades.items():
        body = trades.get(trade_id)
        event = decode_event(body) if body else None
        if event is None or (event.price, event.qty) != (price, qty):
            faults.append(f"trade {trade_id} on the feed is not in the journal")
    instruments = config.instrument_map()
    for spec in config.engines:
        seqs = [s for (s,) in conn.execute("SELECT seq FROM events WHERE engine=? ORDER BY seq", (spec.name,))]
        if seqs != list(range(1, len(seqs) + 1)):
            faults.append(f"{spec.name}: journaled seqs are not 1..{len(seqs)}")
        faults += _same_as_journal(f"engine {spec.name}", "book", log_text, lambda seq: Matcher.rebuild(
            spec.id, [instruments[s] for s in spec.instruments],
            [e for e in engine_events(conn, spec.name) if e.seq <= seq]))
    twice = conn.execute("SELECT user, body FROM events WHERE kind='OrderAccepted'").fetchall()
    ids = Counter((user, decode_event(body).client_order_id) for user, body in twice)
    faults += [f"{user} #{cid} was placed {n} times" for (user, cid), n in ids.items() if cid and n > 1]
    if config.accounts:
        faults += _ledger_faults(conn, config, set(ids), log_text)
    conn.close()
    return faults


def _ledger_faults(conn: sqlite3.Connection, config: Config, accepted: set[tuple[str, str]], log_text: str
                   ) -> list[str]:
    """Checks 6 and 7: holds before acceptance, live ledgers equal to the journal's, verify's ledger checks."""
    held = {(user, decode_ledger_event(body).hold.client_order_id)
            for user, body in conn.execute("SELECT user, body FROM events WHERE kind='OrderHeld'")}
    faults = [f"{user} #{cid} was accepted without a journaled hold" for user, cid in sorted(accepted - held)]
    for spec in config.ledgers:
        faults += _same_as_journal(spec.name, "ledger", log_text, lambda seq: Ledger.rebuild(
            spec.shard, len(config.ledgers), config.terms().values(),
            [e for e in log_events(conn, spec.name) if e.seq <= seq], config.asset_map().values()))
    return faults + verify_ledgers(conn, config)[0]


def _same_as_journal(label: str, what: str, log_text: str, rebuild) -> list[str]:
    """Whether the state ``label`` logged when it stopped ("stopped: <label> at seq N digest D") is
    what its journaled events rebuild (``rebuild(N)``)."""
    stops = re.findall(rf"stopped: {label} at seq (\d+) digest (\w+)", log_text)
    if not stops:
        return [f"{label}: no clean stop with a digest in the log"]
    seq, digest = int(stops[-1][0]), stops[-1][1]
    rebuilt = rebuild(seq)
    if rebuilt.seq != seq or rebuilt.digest() != digest:
        return [f"{label}: live {what} at seq {seq} ({digest}) differs from the journal's"
                f" (seq {rebuilt.seq}, {rebuilt.digest()})"]
    return []


def soak(config_path: Path, kill: str | None, duration: float, seed: int = 1, sessions: int = 4,
         rate: float = 40.0, kills: int = 1) -> tuple[Observed, list[str], str]:
    """Start a mesh from ``config_path``, trade for ``duration`` seconds while SIGKILLing ``kill``
    (a role name, "engine" meaning a random engine) ``kills`` times, stop it, and check.

    Returns (what clients observed, the faults found, the mesh's log).
    """
    config = load_config(config_path)
    rng = random.Random(seed)
    mesh = Mesh(config_path, log_path=Path(config.var_dir) / "soak-launcher.log")
    try:
        mesh.wait_ready()
        host, port = mesh.host, mesh.port
        observed, stop = Observed(), threading.Event()
        users = ["alice", "bob", "carol"]
        threads: list[threading.Thread] = [TradeWatcher(config.notifier.publish, observed, stop)]
        threads += [Trader(host, port, users[i % 3], f"s{seed}-{i}", rate, seed * 100 + i, observed, stop)
                    for i in range(sessions)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        for n in range(kills if kill else 0):
            time.sleep(max(0.0, started + duration * (n + rng.uniform(0.3, 0.7)) / kills - time.monotonic()))
            label = {"engine": f"engine {rng.choice(config.engines).name}",
                     "ledger": f"ledger {rng.choice(config.ledgers).shard}" if config.ledgers else "ledger"
                     }.get(kill, kill)
            os.kill(mesh.role_pid(label), signal.SIGKILL)
        time.sleep(max(0.0, started + duration - time.monotonic()))
        stop.set()
        for thread in threads:
            thread.join(90)
        errors = [f"{t.name}: {t.error!r}" for t in threads if getattr(t, "error", None)]
        errors += [f"{t.name} did not finish" for t in threads if t.is_alive()]
        wait_for_tables(config.journal.path, TABLES_WAIT_S)  # the checks read them
    finally:
        mesh.close(20)
    log_text = mesh.log()
    return observed, errors + check(config, observed, log_text), log_text


def soak_config(directory: Path, role: str, accounts: bool = False) -> Path:
    """The loopback mesh a soak of ``role`` runs, in ``directory``: with accounts (two ledger shards) if
    asked, and always to kill a ledger shard."""
    return loopback_config(directory, request_timeout=2.0, checkpoint_every=5000,
                           accounts=accounts or role == "ledger")


def main(argv: list[str] | None = None) -> int:
    """`scripts/soak`: repeat soaks and print one line per run; exit 1 if any run found a fault."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="scripts/soak", description=main.__doc__)
    parser.add_argument("--role", choices=[*ROLES, "all"], default="all")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per run")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per run")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second per session")
    parser.add_argument("--count", type=int, default=1, help="runs per role")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", action="store_true",
                        help="run every role's soak with accounts on (the ledger's always is: it needs them)")
    args = parser.parse_args(argv)
    failed = 0
    for run in range(args.count):
        for role in ROLES if args.role == "all" else [args.role]:
            with tempfile.TemporaryDirectory(prefix="exchange-soak-") as tmp:
                seed = args.seed + run
                config = soak_config(Path(tmp), role, args.accounts)
                observed, faults, _ = soak(config, role, args.duration,
                                           seed, args.sessions, args.rate, args.kills)
                print(f"run {run + 1} kill {role} x{args.kills} seed {seed}: {len(observed.acks)} acks,"
                      f" {len(observed.fills)} fills, {len(observed.trades)} trades seen,"
                      f" {observed.reconnects} reconnects, rejects {dict(observed.rejects)}:"
                      f" {'OK' if not faults else f'{len(faults)} FAULTS'}", flush=True)
                for fault in faults:
                    print(f"  {fault}")
                failed += bool(faults)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
