"""Fuzz a running gateway: hostile lines from several connections, beside one honest user.

Used by tests/roles/test_security.py (a short, seeded run) and by ``scripts/fuzz_gateway`` (as
long as you like). The hostile connections send random bytes, binary, truncated, oversized and
almost-valid lines in pipelined batches; some are logged in as fuzzing users, some never log in.
Meanwhile alice places valid orders. The checks (guarantees 5 and 6 of docs/architecture.md):

1. the gateway stays up: at the end a new connection gets PONG and alice's session still works;
2. every line gets exactly one reply, on every connection (pushed FILL/OUT/REDUCED lines aside);
3. every order of alice's is acknowledged, and no one else cancels or replaces any of them;
4. the gateway's resident memory grows by less than ``max_growth_mb``;
5. nothing malformed reaches the journal: each command there is alice's, or that of a line a
   fuzzing user sent that parses to a valid request.
"""

from __future__ import annotations

import random
import re
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from exchange.config import hash_key, load_config
from exchange.core.messages import CancelAll, CancelOrder, PlaceOrder, ReplaceOrder
from exchange.journal.readers import decode_command, wait_for_tables
from exchange.journal.schema import readonly_uri
from exchange.gateway.protocol.grammar import parse_bytes
from exchange.gateway.protocol.messages import CancelAllRequest, CancelRequest, PlaceRequest, ReplaceRequest

HONEST = "alice"
BATCH = 64  # lines per write on a hostile connection
TABLES_WAIT_S = 120.0  # for the journal's tables to catch up with its log before the checks read them
NOISE = b" \t\r\x00\x01\x1b\x7f\xff\xfe\xc3\x28#@-.:=_/0123456789"


def is_pushed(line: str) -> bool:
    """Whether a line answers no request: FILL, REDUCED, and OUT that is not a CANCEL's answer."""
    words = line.split()
    if not words or words[0] in ("FILL", "REDUCED"):
        return bool(words)
    if words[0] != "OUT" or len(words) < 3:
        return False
    rest = words[3:] if words[2].startswith("#") else words[2:]
    return rest != ["CANCELED"]


class HostileLines:
    """Lines (without ``\\n``) meant to break a parser; a few are valid."""

    def __init__(self, rng: random.Random, max_line: int, user: str):
        self.rng, self.max_line, self.user = rng, max_line, user
        self.count = 0
        self.kinds = [self.random_bytes, self.binary, self.oversized, self.truncated, self.almost_valid,
                      self.almost_valid, self.almost_valid, self.unicode, self.valid, self.login]

    def __next__(self) -> bytes:
        return self.rng.choice(self.kinds)().replace(b"\n", b"")

    def random_bytes(self) -> bytes:
        return bytes(self.rng.choice(NOISE) for _ in range(self.rng.randrange(0, 80)))

    def binary(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(1, 300))

    def oversized(self) -> bytes:
        size = self.rng.randrange(self.max_line + 1, 3 * self.max_line)
        return (self.valid() + b" ") * (size // 20) + self.rng.randbytes(size % 97)

    def truncated(self) -> bytes:
        line = self.valid()
        return line[:self.rng.randrange(0, len(line))]

    def almost_valid(self) -> bytes:
        words = self.valid().split(b" ")
        for _ in range(self.rng.randint(1, 3)):
            i = self.rng.randrange(len(words))
            match self.rng.randrange(7):
                case 0:
                    words[i] = words[i][:-1]
                case 1:
                    words.insert(i, self.rng.choice([b"@", b"#", b"GTC", b"STP=", b"1-1", b"0", b"-1", b"1e9"]))
                case 2:
                    words[i] = words[i].swapcase()
                case 3:
                    words[i] = self.rng.choice([b"NaN", b"-0.5", b"1" * 30, b"0.0000000000001", b"1,5", b"\xff"])
                case 4:
                    words.append(words[i])
                case 5:
                    del words[i]
                    if not words:
                        words = [b"PING"]
                case _:
                    words[i] = words[i] + bytes([self.rng.choice(NOISE)])
        return b" ".join(words)

    def unicode(self) -> bytes:
        text = "".join(chr(self.rng.choice([self.rng.randrange(32, 127), self.rng.randrange(0x80, 0x3000),
                                            0x2028, 0x85, 0xA0, 0xFEFF, 0xD7FF]))
                       for _ in range(self.rng.randrange(1, 40)))
        return self.rng.choice([b"BUY ", b"CANCEL ", b"", b"LOGIN "]) + text.encode()

    def login(self) -> bytes:
        name = self.rng.choice([HONEST, self.user, "root", "x" * 40, "bob"])
        return f"LOGIN {name} {self.rng.randbytes(8).hex()}".encode()

    def valid(self) -> bytes:
        rng = self.rng
        self.count += 1
        symbol, price = rng.choice([("AAPL", f"{rng.randint(9000, 11000) / 100:.2f}"),
                                    ("BTC-USD", f"{rng.randint(4200000, 4400000) / 100:.2f}"),
                                    ("ETH-USD", f"{rng.randint(240000, 260000) / 100:.2f}")])
        qty = {"AAPL": str(rng.randint(1, 5)), "BTC-USD": "0.01", "ETH-USD": "0.1"}[symbol]
        order_id = f"{rng.randint(1, 2)}-{rng.randint(1, 300)}"
        return rng.choice([
            f"{rng.choice(['BUY', 'SELL'])} {symbol} {qty} @ {price} {rng.choice(['GTC', 'IOC', 'POST'])}"
            f" #{self.user}-{self.count}",
            f"{rng.choice(['BUY', 'SELL'])} {symbol} {qty} IOC", f"CANCEL {order_id}",
            f"CANCEL #{self.user}-{rng.randint(1, self.count)}", f"REPLACE {order_id} {qty} @ {price}",
            f"STATUS {order_id}", f"CANCELALL {symbol}", "CANCELALL", "PING",
        ]).encode()


@dataclass
class Report:
    lines: int = 0
    replies: int = 0
    pushed: int = 0
    codes: Counter = field(default_factory=Counter)
    honest_orders: int = 0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    journaled: int = 0
    faults: list[str] = field(default_factory=list)

    def summary(self) -> str:
        top = ", ".join(f"{code} {n}" for code, n in self.codes.most_common(6))
        return (f"{self.lines} hostile lines, {self.replies} replies, {self.pushed} pushed, {self.honest_orders}"
                f" honest orders, {self.journaled} commands journaled, gateway RSS {self.rss_start_mb:.0f} →"
                f" {self.rss_peak_mb:.0f} MB; replies: {top}; {'OK' if not self.faults else 'FAULTS'}")


class Line:
    """A socket read line by line, with a deadline."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer, self.timeout = b"", timeout

    def read(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no line in {self.timeout} s; have {self.buffer[:60]!r}")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def close(self) -> None:
        self.sock.close()


class Hostile(threading.Thread):
    """One hostile connection: ``lines`` lines in batches, counting one reply per line."""

    def __init__(self, host: str, port: int, user: str | None, lines: int, seed: int, max_line: int,
                 stop: threading.Event, report: Report, lock: threading.Lock):
        super().__init__(daemon=True, name=f"hostile-{user or 'anonymous'}-{seed}")
        self.host, self.port, self.user, self.lines, self.stop = host, port, user, lines, stop
        self.generate = HostileLines(random.Random(seed), max_line, user or "anonymous")
        self.report, self.lock = report, lock
        self.valid: list = []  # the requests among the lines sent, as parsed
        self.max_line = max_line
        self.error: BaseException | None = None
        self.connection = Line(host, port)
        if user:  # before any hostile line, which may get the address throttled
            self.connection.sock.sendall(f"LOGIN {user} {user}-key\n".encode())
            answer = self.connection.read()
            if answer != f"OK LOGIN {user}":
                raise RuntimeError(f"{user} could not log in: {answer}")

    def run(self) -> None:
        connection = self.connection
        try:
            sent = 0
            while sent < self.lines and not self.stop.is_set():
                batch = [next(self.generate) for _ in range(min(BATCH, self.lines - sent))]
                for raw in batch:
                    request = parse_bytes(raw, self.max_line)
                    if not hasattr(request, "code"):
                        self.valid.append(request)
                connection.sock.sendall(b"\n".join(batch) + b"\n")
                sent += len(batch)
                self.count_replies(connection, len(batch))
        except BaseException as e:  # reported by the caller
            self.error = e
        finally:
            connection.close()

    def count_replies(self, connection: Line, expected: int) -> None:
        replies = pushed = 0
        codes: Counter = Counter()
        while replies < expected:
            line = connection.read()
            if is_pushed(line):
                pushed += 1
                continue
            replies += 1
            words = line.split()
            codes[words[2] if len(words) > 2 and words[0] == "REJ" and words[1].startswith("#")
                  else words[1] if words[0] == "REJ" else words[0]] += 1
        with self.lock:
            self.report.lines += expected
            self.report.replies += replies
            self.report.pushed += pushed
            self.report.codes.update(codes)


class Honest(threading.Thread):
    """alice: valid resting orders, pipelined ten at a time, each of which must be acknowledged."""

    def __init__(self, host: str, port: int, stop: threading.Event):
        super().__init__(daemon=True, name="honest")
        self.stop = stop
        self.acked: list[str] = []
        self.error: BaseException | None = None
        self.connection = Line(host, port)
        self.connection.sock.sendall(f"LOGIN {HONEST} {HONEST}-key\n".encode())
        answer = self.connection.read()
        if answer != f"OK LOGIN {HONEST}":
            raise RuntimeError(f"{HONEST} could not log in: {answer}")

    def run(self) -> None:
        connection = self.connection
        try:
            n = 0
            while not self.stop.is_set():
                lines = []
                for _ in range(10):
                    n += 1
                    lines.append(f"BUY AAPL 1 @ {1 + n % 90 / 100:.2f} #honest-{n}")
                connection.sock.sendall(("\n".join(lines) + "\n").encode())
                for line in lines:
                    reply = connection.read()
                    while is_pushed(reply):
                        reply = connection.read()
                    if not reply.startswith("ACK ") or line.split()[-1] not in reply:
                        raise AssertionError(f"alice's {line!r} was answered {reply!r}")
                    self.acked.append(reply.split()[1])
                time.sleep(0.05)
            connection.sock.sendall(b"PING\n")
            while (reply := connection.read()) != "PONG":
                assert is_pushed(reply), reply
        except BaseException as e:
            self.error = e
        finally:
            connection.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(config_path: Path, gateway_pid: int, lines_per_connection: int, seed: int = 1, users: int = 2,
        anonymous: int = 2, duration: float | None = None, max_growth_mb: float = 64.0) -> Report:
    """Fuzz the mesh of ``config_path`` (running; its users ``fuzz1``… exist) and check it."""
    config = load_config(config_path)
    host, port = config.gateway.text.rsplit(":", 1)
    report, lock, stop = Report(), threading.Lock(), threading.Event()
    wait_for_tables(config.journal.path, TABLES_WAIT_S)  # commands counted from here on
    first_command = _journaled_commands(config.journal.path)
    honest = Honest(host, int(port), stop)
    hostile = [Hostile(host, int(port), f"fuzz{n + 1}" if n < users else None, lines_per_connection,
                       seed * 1000 + n, config.gateway.max_line, stop, report, lock)
               for n in range(users + anonymous)]
    report.rss_start_mb = report.rss_peak_mb = rss_mb(gateway_pid)
    honest.start()
    for thread in hostile:
        thread.start()
    started = time.monotonic()
    while any(t.is_alive() for t in hostile):
        report.rss_peak_mb = max(report.rss_peak_mb, rss_mb(gateway_pid))
        if duration is not None and time.monotonic() - started > duration:
            stop.set()
        time.sleep(0.2)
    stop.set()
    honest.join(60)
    report.faults += [f"{t.name}: {t.error!r}" for t in (*hostile, honest) if t.error is not None]
    report.faults += [f"{t.name} did not finish" for t in (*hostile, honest) if t.is_alive()]
    if report.replies != report.lines:
        report.faults.append(f"{report.lines} lines got {report.replies} replies")
    report.honest_orders = len(honest.acked)
    if not honest.acked:
        report.faults.append("alice placed no order")
    if report.rss_peak_mb - report.rss_start_mb > max_growth_mb:
        report.faults.append(f"the gateway grew by {report.rss_peak_mb - report.rss_start_mb:.0f} MB")
    report.faults += _still_up(host, int(port))
    wait_for_tables(config.journal.path, TABLES_WAIT_S)
    faults, report.journaled = _journal_faults(config.journal.path, first_command, honest.acked, hostile,
                                               config.instrument_map())
    report.faults += faults
    return report


def _journaled_commands(path: str) -> int:
    if not Path(path).exists():
        return 0
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        return conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM commands").fetchone()[0]
    finally:
        conn.close()


def _still_up(host: str, port: int) -> list[str]:
    try:
        probe = Line(host, port, timeout=10)
        probe.sock.sendall(b"PING\n")
        answer = probe.read()
        probe.close()
    except OSError as e:
        return [f"the gateway does not answer after the fuzzing: {e!r}"]
    return [] if answer == "PONG" else [f"PING after the fuzzing → {answer!r}"]


def _journal_faults(path: str, after: int, acked: list[str], hostile: list[Hostile],
                    instruments) -> tuple[list[str], int]:
    faults = []
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        commands = [(user, decode_command(body)) for user, body in conn.execute(
            "SELECT user, body FROM commands WHERE rowid > ?", (after,))]
        accepted = {order_id for (order_id,) in conn.execute(
            "SELECT order_id FROM events WHERE kind='OrderAccepted' AND user=?", (HONEST,))}
        touched = conn.execute("SELECT kind, order_id FROM events WHERE user=? AND kind IN"
                               " ('OrderCanceled', 'OrderReplaced', 'OrderReduced')", (HONEST,)).fetchall()
    finally:
        conn.close()
    faults += [f"alice's ACK {order_id} is not journaled" for order_id in set(acked) - accepted]
    report_journaled = len(commands)
    faults += [f"someone changed alice's order: {kind} {order_id}" for kind, order_id in touched]
    allowed = {t.user: {_shape(r, instruments) for r in t.valid} for t in hostile if t.user}
    for user, command in commands:
        if user == HONEST and isinstance(command, PlaceOrder):
            continue
        shape = _shape(command, instruments)
        if user not in allowed or shape not in allowed[user]:
            faults.append(f"journaled a command no valid line asked for: {command!r}")
    return faults[:20], report_journaled


def _shape(message, instruments) -> tuple:
    """What a request and the command made of it have in common (grids applied, ids aside)."""
    match message:
        case PlaceRequest():
            instrument = instruments.get(message.symbol)
            if instrument is None:
                return ("unknown",)
            try:
                price = instrument.to_ticks(message.price) if message.price else None
                return ("place", message.symbol, message.side, instrument.to_lots(message.qty), price,
                        message.client_order_id)
            except ValueError:
                return ("off-grid",)
        case PlaceOrder():
            return ("place", message.symbol, message.side, message.qty, message.price, message.client_order_id)
        case CancelRequest() | CancelOrder():
            # a cancel by client order id reaches the engine with the order id filled in, if known
            return ("cancel", "#" + message.client_order_id if message.client_order_id else message.order_id)
        case ReplaceRequest():
            try:
                return ("replace", Decimal(message.qty).normalize(),
                        Decimal(message.price).normalize() if message.price is not None else None)
            except ArithmeticError:
                return ("bad",)
        case ReplaceOrder():
            instrument = instruments[message.symbol]
            price = Decimal(instrument.format_price(message.price)).normalize() if message.price is not None else None
            return ("replace", Decimal(instrument.format_qty(message.qty)).normalize(), price)
        case CancelAllRequest() | CancelAll():
            return ("cancel-all", message.symbol)
    return (type(message).__name__,)


def fuzz_config(directory: Path, users: int = 2, **gateway) -> Path:
    """configs/local.yaml on free loopback ports with users ``fuzz1``… (keys ``fuzz1-key``…) and
    some gateway settings changed; returns its path."""
    from exchange.testing.mesh import loopback_config

    path = loopback_config(directory)
    settings = {"login_failure_delay": 0, **gateway}  # failed logins answered at once: more lines
    text = set_gateway(path.read_text(), settings)
    for n in range(1, users + 1):
        text += f"  - name: fuzz{n}\n    key_hash: {hash_key(f'fuzz{n}-key', n=2**10)}\n"
    path.write_text(text)
    return path


def set_gateway(text: str, settings: dict) -> str:
    """A config's text with these ``gateway:`` settings (replaced, or added after ``replies:``)."""
    start = re.search(r"^gateway:$", text, flags=re.M).end()
    end = next((m.start() for m in re.finditer(r"^\S", text[start:], flags=re.M)), len(text) - start) + start
    section = text[start:end]
    for key, value in settings.items():
        line = f"  {key}: {value}"
        if re.search(rf"^  {key}: .*$", section, flags=re.M):
            section = re.sub(rf"^  {key}: .*$", line, section, count=1, flags=re.M)
        else:
            section = re.sub(r"^(  replies: \S+)$", lambda m: f"{m.group(1)}\n{line}", section, count=1, flags=re.M)
    return text[:start] + section + text[end:]


def main(argv: list[str] | None = None) -> int:
    """`scripts/fuzz_gateway`: fuzz a fresh loopback mesh; print a report; exit 1 on any fault."""
    import argparse
    import tempfile

    from exchange.testing.mesh import Mesh

    parser = argparse.ArgumentParser(prog="scripts/fuzz_gateway", description=main.__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="hostile lines per connection")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--users", type=int, default=3, help="hostile connections logged in")
    parser.add_argument("--anonymous", type=int, default=3, help="hostile connections never logged in")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-growth-mb", type=float, default=128.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="exchange-fuzz-") as tmp:
        mesh = Mesh(fuzz_config(Path(tmp), args.users), log_path=Path(tmp) / "launcher.log")
        try:
            mesh.wait_ready()
            report = run(mesh.config_path, mesh.role_pid("gateway"), args.count, args.seed,
                         args.users, args.anonymous, args.duration, args.max_growth_mb)
        finally:
            mesh.close(20)
    print(report.summary())
    for fault in report.faults:
        print(f"  {fault}")
    return 1 if report.faults else 0


if __name__ == "__main__":
    sys.exit(main())
