"""Running a real mesh for tests, tools and scripts: configs on free loopback ports, starting
`exchange up` (``Mesh``) or one role by hand (``Role``), waiting for it and stopping it, whatever
happens: each runs in its own process group, SIGTERM first, SIGKILL for whatever is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from exchange.client.text import TextClient
from exchange.config import Config, load_config


LOCAL_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "local.yaml"
START_TIMEOUT_S = 60.0  # for a mesh to answer, on a slow shared machine


_HANDED_OUT: set[int] = set()  # every port free_ports gave this process


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago and that this
    process was never given before: ports taken for one config (not bound until its mesh starts)
    are never given again for a second config or a proxy beside it."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            if len(socks) >= n + 1000:
                raise RuntimeError(f"no {n} TCP ports left that this process was not given before")
            s = socket.socket()
            s.bind(("127.0.0.1", 0))  # the others stay bound meanwhile: each bind gets a new port
            socks.append(s)
            port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    _HANDED_OUT.update(ports)
    return ports


def without_price_bands(text: str) -> str:
    """A config's text without its instruments' price bands (and their reference prices)."""
    return re.sub(r"\n    (price_band|reference_price): \"[0-9.]+\"", "", text)


_ACCOUNT_SECTIONS = re.compile(r"^(assets|fees|ledgers):.*?(?=^[a-z_]+:|\Z)", re.S | re.M)
_ACCOUNT_KEYS = re.compile(r"\n    (base|quote|opening_balances): .*")


_WEB_SECTION = re.compile(r"^web:\n(?:  .*\n)+", re.M)


def without_accounts(text: str) -> str:
    """A config's text with accounts off: no assets, fees, ledger shards, bases, quotes or opening balances."""
    return _ACCOUNT_KEYS.sub("", _ACCOUNT_SECTIONS.sub("", text))


def toy_config(source: Path = LOCAL_CONFIG, accounts: bool = False) -> Config:
    """configs/local.yaml as a Config without the demo's price bands (and, unless ``accounts``,
    with accounts off): for tests in memory that trade at whatever prices they like."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / source.name
        text = without_price_bands(source.read_text())
        path.write_text(text if accounts else without_accounts(text))
        return load_config(path)


def loopback_config(directory: Path, source: Path = LOCAL_CONFIG, request_timeout: float | None = None,
                    checkpoint_every: int | None = None, max_undurable_events: int | None = None,
                    price_bands: bool = False, accounts: bool = False, web: bool = False) -> Path:
    """A copy of ``source`` (configs/local.yaml) in ``directory`` with free ports on 127.0.0.1 and
    the journal and logs inside ``directory``; returns its path.

    Without ``price_bands`` the copy drops the demo's price bands, so that tests may trade at any
    price they like (10.00 BTC-USD, say); the demo as shipped keeps them. Without ``accounts`` it
    runs pure matching (no ledger shards), as most tests of matching and order entry want; without
    ``web``, no web role.
    """
    text = source.read_text()
    if not web:
        text = _WEB_SECTION.sub("", text)
    if not price_bands:
        text = without_price_bands(text)
    if not accounts:
        text = without_accounts(text)
    ports = re.findall(r"127\.0\.0\.1:(\d+)", text)
    for old, new in zip(sorted(set(ports)), free_ports(len(set(ports)))):
        text = re.sub(rf"127\.0\.0\.1:{old}\b", f"127.0.0.1:{new}", text)
    text = text.replace("path: ../var/journal.db", f"path: {directory / 'journal.db'}")
    text = text.replace("var_dir: ../var", f"var_dir: {directory / 'var'}")
    text = text.replace("secret_key_file: ../var/notifier.key", f"secret_key_file: {directory / 'notifier.key'}")
    engine_options = ""
    if checkpoint_every is not None:
        engine_options += f"\n    checkpoint_every: {checkpoint_every}"
    if max_undurable_events is not None:
        engine_options += f"\n    max_undurable_events: {max_undurable_events}"
    text = re.sub(r"(\n    replay: tcp://[0-9.:]+)", lambda m: m.group(1) + engine_options, text)
    if request_timeout is not None:
        text = text.replace("  replies: tcp", f"  request_timeout: {request_timeout}\n  replies: tcp", 1)
    path = directory / "mesh.yaml"
    path.write_text(text)
    return path


def role_pids(log_text: str) -> dict[str, int]:
    """The pid the launcher last reported for each of its roles ("engine e2", "journal-writer"…)."""
    found = re.findall(r"started ([\w-]+(?: [\w-]+)?) \(pid (\d+)\)", log_text)
    return {label: int(pid) for label, pid in found}


def role_pid(log_text: str, label: str) -> int:
    """The pid the launcher last reported for ``label`` (e.g. "engine e2")."""
    pids = role_pids(log_text)
    if label not in pids:
        raise RuntimeError(f"the launcher never started {label}")
    return pids[label]


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    """Until ``predicate()`` is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


def login(host: str, port: int, user: str, option: str = "", key: str | None = None, timeout: float = 10.0,
          source: str | None = None) -> TextClient:
    """A text session logged in as ``user`` (with the demo's key ``<user>-key`` unless ``key``), from
    another loopback address if ``source``; RuntimeError if the gateway refuses the login."""
    client = TextClient(host, port, timeout=timeout, source=source)
    reply = client.request(f"LOGIN {user} {key or f'{user}-key'} {option}".strip())
    if not reply.startswith(f"OK LOGIN {user}"):
        client.close()
        raise RuntimeError(f"login as {user} failed: {reply}")
    return client


def wait_for_mesh(config: Config, process: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S,
                  user: tuple[str, str] = ("carol", "carol-key"), engines: bool = True, books: bool = True,
                  text: str | None = None) -> None:
    """Until the gateway of ``config`` (the one whose text endpoint is ``text``, if given) listens and, with ``engines``, a session of ``user`` (name,
    key) logs in and every engine answers it: a CANCELALL of one instrument of each (the gateway
    refuses it, BUSY, while it cannot reach that engine; a CANCELALL of every instrument would
    not tell, as the engines it reached answer it), and, with ``books``, the notifier has the books
    of each (a BOOK of that instrument is answered, not refused while the notifier takes its books). RuntimeError
    at once if ``process`` (the launcher, or the gateway) exits."""
    host, port = (text or config.gateway.text).rsplit(":", 1)
    name, key = user
    symbols = [engine.instruments[0] for engine in config.engines]
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the mesh did not start: pid {process.pid} exited with {process.returncode}")
        try:
            with TextClient(host, int(port), timeout=2) as probe:
                if not engines or (probe.request(f"LOGIN {name} {key}") == f"OK LOGIN {name}" and all(
                        probe.request(f"CANCELALL {symbol}", timeout=5).startswith("OK CANCELALL")
                        for symbol in symbols) and (not books or all(
                        probe.request_block(f"BOOK {symbol} 1", timeout=5)[0] == f"BOOK {symbol}"
                        for symbol in symbols))):
                    return
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the mesh on {host}:{port} did not answer in {timeout:.0f} s")
        time.sleep(0.1)


def _exchange(args: list[str], cwd: Path, log_path: Path, mode: str = "wb") -> subprocess.Popen:
    """``python -m exchange ARGS`` in its own session (a group to kill), its stderr in ``log_path``
    (opened with ``mode``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, mode) as log:
        return subprocess.Popen([sys.executable, "-m", "exchange", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group ``process`` leads."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stop_group(process: subprocess.Popen, grace: float) -> bool:
    """SIGTERM ``process``, wait up to ``grace`` s, then SIGKILL whatever of its group is left.
    Returns whether it stopped on its own in time."""
    stopped = True
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            stopped = False
    _kill_group(process)
    process.wait()
    return stopped


class Mesh:
    """A real mesh: ``python -m exchange up CONFIG`` in its own session, its stderr in ``log_path``
    (``launcher.stderr`` beside the config unless given).

    With ``hosts`` it runs ``exchange up CONFIG --host NAME …``: only those hosts' roles, and its log is
    ``launcher-NAME….stderr`` by default.

    ``with Mesh(path) as mesh`` waits until it is ready (``wait_for_engines``: until every engine
    answers the gateway; otherwise until the gateway listens) and closes it in the end, whatever
    happens; a block that passed also fails if the launcher did not stop in time or its log holds
    a Traceback (a role crashed: the launcher restarts it, which would hide it). Tools call
    ``wait_ready()`` and ``close()`` themselves.
    """

    def __init__(self, config_path: Path, wait_for_engines: bool = True, log_path: Path | None = None,
                 user: tuple[str, str] = ("carol", "carol-key"), timeout: float = START_TIMEOUT_S,
                 hosts: tuple[str, ...] = ()):
        self.config_path = Path(config_path)
        self.wait_for_engines, self.user, self.timeout, self.hosts = wait_for_engines, user, timeout, hosts
        self.config: Config = load_config(self.config_path)
        host, port = self.config.gateway.text.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.log_path = log_path or self.config_path.parent / f"{'-'.join(['launcher', *hosts])}.stderr"
        args = ["up", str(self.config_path), *(arg for host in hosts for arg in ("--host", host))]
        self.process = _exchange(args, self.config_path.parent, self.log_path)

    def wait_ready(self) -> None:
        wait_for_mesh(self.config, self.process, self.timeout, self.user, self.wait_for_engines)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The pid of each role, as the launcher last reported it."""
        return role_pids(self.log())

    def role_pid(self, label: str) -> int:
        return role_pid(self.log(), label)

    def login(self, user: str, option: str = "", source: str | None = None, timeout: float = 10.0) -> TextClient:
        return login(self.host, self.port, user, option, timeout=timeout, source=source)

    def leftovers(self) -> bool:
        """Whether any process of this mesh is still running."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill_leftovers(self) -> None:
        _kill_group(self.process)

    def close(self, grace: float = 10.0) -> bool:
        """SIGTERM the launcher (which stops every role); SIGKILL whatever of the mesh is left after
        ``grace`` seconds: nothing of it outlives this. Returns whether it stopped on its own."""
        return _stop_group(self.process, grace)

    def __enter__(self) -> Mesh:
        try:
            self.wait_ready()
        except BaseException as e:
            self.close()
            e.add_note(self.last_words())  # a start that failed says why, in the test's report
            raise
        return self

    def last_words(self, lines: int = 20) -> str:
        """The end of the launcher's log and of each role's."""
        parts = []
        for path in [self.log_path, *sorted(Path(self.config.var_dir).glob("*.log"))]:
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append("\n".join([f"--- the end of {path.name}", *tail]))
        return "\n".join(parts)

    def __exit__(self, kind, value, traceback) -> None:
        stopped = self.close()
        if kind is None:  # the block passed: the mesh must also have stopped cleanly, and no role crashed
            assert stopped, f"the launcher did not stop within 10 s of SIGTERM:\n{self.log()[-3000:]}"
            assert "Traceback" not in self.log(), f"a role crashed during the test:\n{self.log()[-3000:]}"


class Role:
    """One role started by hand, without the launcher (which would restart it):
    ``python -m exchange ROLE --config PATH [--name NAME]`` in its own session, in ``cwd`` (the
    config's folder unless given), its stderr appended to ``ROLE[-NAME].stderr`` there."""

    def __init__(self, config_path: Path, role: str, name: str | None = None, cwd: Path | None = None):
        cwd = cwd or Path(config_path).parent
        cwd.mkdir(parents=True, exist_ok=True)
        self.err = cwd / f"{role}{f'-{name}' if name else ''}.stderr"
        args = [role, "--config", str(config_path)] + (["--name", name] if name else [])
        self.process = _exchange(args, cwd, self.err, "ab")  # a restart adds to it

    def text(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first match of ``pattern`` in the role's stderr, once it is there; AssertionError with
        the stderr if the role exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.text())):
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{self.text()}"
            time.sleep(0.05)
        return found

    def exit_code(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        _kill_group(self.process)
        self.process.wait()

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM; SIGKILL if it has not stopped after ``grace`` seconds."""
        return _stop_group(self.process, grace)
