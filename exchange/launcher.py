"""Launcher role: `exchange up CONFIG` starts every role as a child process, watches and stops them.

It creates no ZMQ context (children create their own after the exec). Each child gets the write
end of a pipe and says "ready" on it once it serves (exchange.wire.sockets.report_ready); the banner that
says the exchange is up comes only when every child has, and a child that exits before it is ready
is reported as such, with where its log is. A child that dies is restarted with a growing backoff
(0.5 s doubling to 10 s, reset once it has run for 30 s). One that exits with CANNOT_START_EXIT
(an address it binds is another process's) before the exchange is up stops the start: restarting it
would fail the same way, so the launcher stops every role and raises RoleCannotStart. Once the
exchange is up, it is restarted like any other (the rest of the exchange keeps running, and the
address may be free again). On SIGINT, SIGTERM or SIGHUP (its terminal
or ssh session went away) every child gets SIGTERM, and SIGKILL if it has not exited after a few
seconds. On Linux each child also asks the kernel for SIGTERM when the launcher dies
(PR_SET_PDEATHSIG), so that no role outlives a launcher that was killed (SIGKILL, the OOM killer)
and holds the mesh's ports against the next `exchange up`.

With a `hosts:` section (docs/deployment.md) a launcher runs on each machine and starts only the
roles the config places on the hosts it is given (`exchange up CONFIG --host NAME`).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from exchange.config import Config, roles_on
from exchange.errors import ExchangeError
from exchange.wire.sockets import READY_FD_ENV

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_AFTER_S = 0.5, 10.0, 30.0
WAITING_NOTE_S = 10.0  # while not every role is ready, say which are not this often
# the exit status of a role that cannot start in a way a restart cannot fix (an address it binds is
# another process's); it has said why on stderr. 78 is EX_CONFIG of sysexits.h: no other exit uses it
CANNOT_START_EXIT = 78


class RoleCannotStart(ExchangeError):
    """A role exited with CANNOT_START_EXIT: the launcher stopped every role instead of restarting it."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl():
    """libc's prctl, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the C library this Python runs on
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up here, not in the forked child


def _child_setup(parent: int):
    """The preexec_fn of a child of process ``parent``.

    - A hang-up is ignored (and stays so across the exec): a closing terminal or ssh session sends
      SIGHUP to the whole process group, and the roles share the launcher's; the launcher alone
      takes it and stops them in order, with SIGTERM.
    - Until its exec the child has SIGTERM's default action, not the launcher's handler (which
      would only note it, in the child).
    - Where prctl is available: SIGTERM for the child when the launcher dies; a launcher that died
      before the prctl was made is no longer the parent, and the child then exits at once.
    """
    def preexec() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)

    return preexec


class Child:
    """One role process and its restart bookkeeping."""

    def __init__(self, role: str, name: str | None, config_path: str):
        self.role, self.name = role, name
        self.args = [sys.executable, "-m", "exchange", role, "--config", config_path]
        if name:
            self.args += ["--name", name]
        self.label = f"{role} {name}" if name else role
        self.log_name = f"{role}-{name}" if name else role
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.backoff = BACKOFF_FIRST_S
        self.restart_at: float | None = None
        self.ready = False
        self.ready_pipe: int | None = None  # read end; the child writes "ready" on the other

    def start(self) -> None:
        self.close_pipe()
        read, write = os.pipe()
        os.set_blocking(read, False)
        env = {**os.environ, READY_FD_ENV: str(write)}
        try:
            self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, pass_fds=(write,), env=env,
                                            preexec_fn=_child_setup(os.getpid()))
        finally:
            os.close(write)
        self.ready_pipe, self.ready = read, False
        self.started = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %d)", self.label, self.process.pid)

    def check_ready(self) -> bool:
        """Whether the child has said it is ready (read without blocking)."""
        if not self.ready and self.ready_pipe is not None:
            try:
                said = os.read(self.ready_pipe, 64)
            except BlockingIOError:
                return False
            self.ready = said.startswith(b"ready")
            self.close_pipe()  # said it, or closed the pipe without saying it (it exited)
        return self.ready

    def close_pipe(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None


def roles(config: Config, config_path: str, hosts: list[str] | None = None) -> list[Child]:
    """The children of a mesh, in start order: journal writer, engines, ledger shards, notifiers, gateway,
    and the web role when the config has a `web:` section; with ``hosts``, only those the config
    places on them."""
    children = ([Child("journal-writer", None, config_path)]
                + [Child("engine", e.name, config_path) for e in config.engines]
                + [Child("ledger", str(s.shard), config_path) for s in config.ledgers]
                + [Child("notifier", None, config_path)]
                + [Child("notifier", r.name, config_path) for r in config.notifier.replicas]
                + [Child("gateway", None, config_path)]
                + [Child("gateway", r.name, config_path) for r in config.gateway.replicas]
                + ([Child("web", None, config_path)] if config.web is not None else []))
    if hosts is None:
        return children
    here = {role for host in hosts for role in roles_on(config, host)}
    return [child for child in children if child.log_name in here]


def not_here(config: Config, hosts: list[str]) -> list[str]:
    """Which of ``hosts`` this machine is not: their address is none of its own (binding it fails).
    An unspecified address (0.0.0.0) binds on any machine; the config refuses it for one of several hosts."""
    strangers = []
    for host in hosts:
        address = config.hosts[host].address
        try:
            with socket.create_server((address, 0)):
                pass
        except OSError as e:
            if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
                strangers.append(f"{host} ({address})")
    return strangers


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def banner(config: Config, config_path: str, hosts: list[str] | None = None) -> str:
    """What `exchange up` prints once the roles are started: where to connect, and how to try it
    (with ``hosts``, only what runs here, after the list of those roles). The commands it suggests
    name ``config_path`` unless they would load it anyway."""
    notifier = config.notifier
    given = _config_option(config_path)
    here = {role for host in hosts for role in roles_on(config, host)} if hosts is not None else None
    lines = ["exchange is up (Ctrl-C stops):"]
    if hosts is not None:
        lines += [f"  host {host} ({config.hosts[host].address}): {', '.join(roles_on(config, host))}"
                  for host in hosts]
    if here is None or "gateway" in here:
        lines += [
            f"  orders, text protocol   {config.gateway.text}   (try: nc {config.gateway.text.replace(':', ' ')})",
            f"  orders, ZMQ DEALER      {config.gateway.zmq}"]
    if here is None or "notifier" in here:
        # load_config refuses a config without instruments; the banner still names one only if there is one
        watch = f"   (try: exchange watch {config.instruments[0].symbol}{given})" if config.instruments else ""
        lines += [
            f"  market data, ZMQ SUB    {notifier.publish}{watch}",
            f"  book snapshots, DEALER  {notifier.snapshots}",
            f"  private updates, CURVE  {notifier.private}   (server key: exchange keys notifier{given})"]
    for replica in config.gateway.replicas:
        if here is None or f"gateway-{replica.name}" in here:
            lines.append(f"  gateway {replica.name}: text protocol {replica.text}, ZMQ DEALER {replica.zmq}")
    for replica in notifier.replicas:
        if here is None or f"notifier-{replica.name}" in here:
            lines.append(f"  notifier {replica.name}: market data {replica.publish}, snapshots {replica.snapshots},"
                         f" private {replica.private}")
    if config.web is not None and (here is None or "web" in here):
        lines.append(f"  web page                http://{config.web.listen}/   (open it in a browser)")
    if here is None or "journal-writer" in here:
        lines.append(f"  journal                 {config.journal.path}   (try: exchange journal trades{given})")
    lines.append(f"  logs                    {config.var_dir}/")
    return "\n".join(lines)


def _config_option(config_path: str) -> str:
    """`` --config PATH`` for a command typed to read ``config_path``; nothing if the command reads that
    file without it: it is $EXCHANGE_CONFIG, or configs/local.yaml of this folder."""
    from exchange.cli.common import CONFIG_ENV, DEFAULT_CONFIG

    default = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    if Path(config_path).resolve() == Path(default).resolve():
        return ""
    return f" --config {shlex.quote(config_path)}"


def run(config: Config, config_path: str, hosts: list[str] | None = None) -> None:
    """Start the mesh described by ``config`` (with ``hosts``, only the roles placed on them) and keep
    it running until SIGINT, SIGTERM or SIGHUP. Whatever ends it, exceptions included, stops every
    child it started."""
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    raise_fd_limit()
    Path(config.var_dir).mkdir(parents=True, exist_ok=True)
    children = roles(config, config_path, hosts)
    up = False
    next_waiting_note = time.monotonic() + WAITING_NOTE_S
    try:
        for child in children:
            if stopping:
                break
            child.start()
        while True:
            time.sleep(0.2)
            if stopping:
                break
            now = time.monotonic()
            for child in children:
                if child.restart_at is not None:
                    if now >= child.restart_at and not stopping:
                        child.start()
                    continue
                ready = child.check_ready()
                code = child.process.poll()
                if code is None:
                    if now - child.started > STABLE_AFTER_S:
                        child.backoff = BACKOFF_FIRST_S
                    continue
                child.close_pipe()
                if code == CANNOT_START_EXIT and not up:  # once up, a restart may find the address free again
                    raise RoleCannotStart(f"the {child.label} cannot start, and starting it again would not help"
                                          " (it said why above); every role is stopped")
                how = "" if ready else " before it was ready"
                log.warning("%s exited with %s%s; restarting in %.1f s (its log: %s/%s.log)", child.label, code,
                            how, child.backoff, config.var_dir, child.log_name)
                child.restart_at = now + child.backoff
                child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
            if not up and all(child.ready for child in children):
                up = True
                print(banner(config, config_path, hosts), file=sys.stderr, flush=True)
            elif not up and now >= next_waiting_note:
                next_waiting_note = now + WAITING_NOTE_S
                log.warning("not up yet: waiting for %s", ", ".join(c.label for c in children if not c.ready))
    finally:
        stop_all(children)
        for child in children:
            child.close_pipe()


def stop_all(children: list[Child]) -> None:
    """SIGTERM every child (gateway first), then SIGKILL whatever is still running after the grace."""
    running = [c for c in reversed(children) if c.process and c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", child.label, STOP_GRACE_S)
            child.process.kill()
            child.process.wait()
    log.info("stopped")
