"""A role whose port another process holds says so in one `Error:` line naming the address and the
config's key (not a traceback), and exits with the status that tells the launcher a restart cannot
help: `exchange up` then stops every role and ends with that error shown, instead of restarting the
role forever while saying only "not up yet"."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from exchange.config import load_config
from exchange.launcher import CANNOT_START_EXIT
from exchange.testing.mesh import Mesh, loopback_config, wait_until

DEADLINE_S = 60.0  # a slow shared machine


def _taken() -> socket.socket:
    """A listening socket on a free loopback port: the other process that holds it."""
    return socket.create_server(("127.0.0.1", 0))


def _bind_at(path: Path, pattern: str, replacement: str) -> None:
    text, found = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
    assert found == 1, pattern
    path.write_text(text)


def _role(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchange", *args, "--config", str(path)], cwd=path.parent,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE_S,
                          start_new_session=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _one_error_line(stderr: str, line: str) -> None:
    assert "Traceback" not in stderr, stderr[-2000:]
    assert stderr.count("Error:") == 1 and re.search(rf"(?m)^{re.escape(line)}", stderr), stderr[-2000:]


def test_a_notifier_whose_zmq_port_is_taken_names_the_address_and_its_key(tmp_path):
    path = loopback_config(tmp_path)
    with _taken() as taken:
        port = taken.getsockname()[1]
        _bind_at(path, r"^  publish: tcp://127\.0\.0\.1:\d+$", f"  publish: tcp://127.0.0.1:{port}")
        run = _role(path, "notifier")
    assert run.returncode == CANNOT_START_EXIT, run.stderr[-2000:]
    _one_error_line(run.stderr, f"Error: tcp://127.0.0.1:{port} is already in use (`$.notifier.publish`)")


def test_a_gateway_whose_text_port_is_taken_names_the_address_and_its_key(tmp_path):
    """The text port is not ZMQ's: asyncio's create_server names it another way."""
    path = loopback_config(tmp_path)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    journal = subprocess.Popen([sys.executable, "-m", "exchange", "journal-writer", "--config", str(path)],
                               cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # the gateway reads its orders from the journal writer before it opens the text port
        log = Path(config.var_dir) / "journal-writer.log"
        wait_until(lambda: log.exists() and " ready: " in log.read_text(), DEADLINE_S, "the journal writer ready")
        with socket.create_server((host, int(port))):
            run = _role(path, "gateway")
    finally:
        os.killpg(journal.pid, signal.SIGKILL)
        journal.wait()
    assert run.returncode == CANNOT_START_EXIT, run.stderr[-2000:]
    _one_error_line(run.stderr, f"Error: 127.0.0.1:{port} is already in use (`$.gateway.text`)")


def test_up_stops_with_the_error_when_a_roles_port_is_taken_instead_of_restarting_it(tmp_path):
    path = loopback_config(tmp_path)
    with _taken() as taken:
        port = taken.getsockname()[1]
        _bind_at(path, r"^  publish: tcp://127\.0\.0\.1:\d+$", f"  publish: tcp://127.0.0.1:{port}")
        mesh = Mesh(path, wait_for_engines=False)
        try:
            wait_until(lambda: mesh.process.poll() is not None, DEADLINE_S, "`exchange up` stopping by itself")
            assert mesh.process.returncode == 1
            assert not mesh.leftovers(), "a role outlived the launcher"
        finally:
            mesh.kill_leftovers()
            mesh.process.wait()
    log = mesh.log()
    assert "Traceback" not in log, log[-3000:]
    assert re.search(rf"(?m)^Error: tcp://127\.0\.0\.1:{port} is already in use \(`\$\.notifier\.publish`\)", log)
    assert re.search(r"(?m)^Error: the notifier cannot start, and starting it again would not help", log), log[-3000:]
    assert len(re.findall(r"started notifier \(pid", log)) == 1, "the notifier was started again"
    assert "exchange is up" not in log


def test_once_up_a_role_whose_port_is_taken_is_restarted_until_it_is_free_again(tmp_path):
    """After the start, one role's trouble must not stop the exchange: the launcher keeps
    restarting it, the others run on, and it serves again once the address is free."""
    path = loopback_config(tmp_path)
    port = int(load_config(path).notifier.publish.rsplit(":", 1)[1])
    with Mesh(path) as mesh:
        notifier = mesh.role_pid("notifier")
        os.kill(notifier, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{notifier}").exists(), DEADLINE_S, "the notifier gone")
        with socket.create_server(("127.0.0.1", port)):  # another process takes its port meanwhile
            wait_until(lambda: "is already in use (`$.notifier.publish`)" in mesh.log(), DEADLINE_S,
                       "the restarted notifier refused its port")
            assert mesh.process.poll() is None, "the launcher stopped the exchange"
        wait_until(lambda: _listening(port), DEADLINE_S, "the notifier serving again")  # nobody else listens there
        assert mesh.process.poll() is None and mesh.role_pid("notifier") != notifier
        with mesh.login("alice") as alice:  # the rest ran on
            assert alice.request("PING") == "PONG"


def test_a_web_role_whose_port_is_taken_names_the_address_and_its_key(tmp_path):
    """Its socket is bound before anything else: uvicorn, binding it itself, logged the error and
    exited with a status the launcher restarted forever."""
    path = loopback_config(tmp_path, web=True)
    host, port = load_config(path).web.listen.rsplit(":", 1)
    with socket.create_server((host, int(port))):
        run = _role(path, "web")
    assert run.returncode == CANNOT_START_EXIT, run.stderr[-2000:]
    _one_error_line(run.stderr, f"Error: 127.0.0.1:{port} is already in use (`$.web.listen`)")
