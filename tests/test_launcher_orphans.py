"""No role outlives its launcher: whether `exchange up` is stopped, hung up on or killed, and also when
starting the roles fails half-way, every role it started goes (else the next `exchange up` cannot bind)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from exchange import launcher
from exchange.config import load_config
from exchange.testing.mesh import Mesh, loopback_config, wait_until

DEADLINE_S = 60.0  # for roles to go, on a slow shared machine


def processes_of(config_path: Path, but: int | None = None) -> dict[int, str]:
    """pid → command line of every live (not zombie) process whose command line names ``config_path``,
    except ``but``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == but:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # it exited meanwhile
        if state != "Z" and str(config_path) in cmdline:
            found[int(entry)] = cmdline.strip()
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the roles in /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_the_roles_go_when_the_launcher_is_killed_or_hung_up_on(tmp_path, how):
    path = loopback_config(tmp_path)
    mesh = Mesh(path, wait_for_engines=False)
    try:
        wait_until(lambda: "exchange is up" in mesh.log(), DEADLINE_S, "every role ready")
        roles = processes_of(path, but=mesh.process.pid)
        assert len(roles) == len(load_config(path).roles()), roles
        os.kill(mesh.process.pid, how)
        mesh.process.wait(DEADLINE_S)
        wait_until(lambda: not processes_of(path), DEADLINE_S, f"no role left after {how.name} to the launcher")
    finally:
        mesh.kill_leftovers()  # the launcher's own process group: its roles, whatever happened
        mesh.process.wait()


def test_roles_already_started_are_stopped_when_starting_another_fails(tmp_path, monkeypatch):
    path = loopback_config(tmp_path)
    config = load_config(path)
    started: list[launcher.Child] = []
    real_start = launcher.Child.start

    def start(child: launcher.Child) -> None:
        if len(started) == 2:
            raise OSError(24, "Too many open files")
        real_start(child)
        started.append(child)

    monkeypatch.setattr(launcher.Child, "start", start)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(OSError, match="Too many open files"):
            launcher.run(config, str(path))
        assert [child.label for child in started] == ["journal-writer", "engine e1"]
        assert all(child.process.poll() is not None for child in started), "a started role was left running"
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for child in started:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()


def test_a_hang_up_of_the_whole_process_group_stops_every_role_in_order(tmp_path):
    """A closing terminal or ssh session sends SIGHUP to the whole process group, roles included: they
    ignore it, and the launcher stops each with SIGTERM, so each ends as it should ("stopped" in its log)."""
    path = loopback_config(tmp_path)
    mesh = Mesh(path, wait_for_engines=False)
    try:
        wait_until(lambda: "exchange is up" in mesh.log(), 60, "every role ready")
        os.killpg(mesh.process.pid, signal.SIGHUP)
        mesh.process.wait(60)
        logs = {p.name: p.read_text() for p in (tmp_path / "var").glob("*.log") if not p.name.startswith("launcher")}
        assert logs and [name for name, text in logs.items() if "stopped" not in text] == []
    finally:
        mesh.kill_leftovers()
        mesh.process.wait()
