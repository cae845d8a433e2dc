"""A real mesh for each test: `python -m exchange up` on 127.0.0.1 with free ports, in tmp_path."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_config(tmp_path: Path) -> Path:
    """configs/local.yaml with every port replaced by a free one and every path inside tmp_path."""
    text = (ROOT / "configs" / "local.yaml").read_text()
    for old, new in zip((7001, 7002, 7003, 7010, 7011, 7012, 7020, 7021, 7022, 7030, 7031, 7032),
                        free_ports(12)):
        text = text.replace(f":{old}", f":{new}")
    text = text.replace("var/journal.db", str(tmp_path / "journal.db"))
    text = text.replace("var_dir: var", f"var_dir: {tmp_path / 'var'}")
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return path


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the launcher exited with {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


class Mesh:
    """A running mesh: its config, the launcher process and where to connect."""

    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        host, port = self.config.gateway.text.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.log_path = config_path.parent / "launcher.stderr"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exchange", "up", str(config_path)], cwd=config_path.parent,
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def wait_ready(self) -> None:
        wait_for_port(self.host, self.port, self.process, START_TIMEOUT_S)
        # the gateway listens last; engines and journal are up once a PING round trip
        # through an engine works, which the tests do by themselves

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the launcher; SIGKILL the whole process group if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise
        return self.process.returncode

    def leftovers(self) -> bool:
        """Whether any process of this mesh is still running."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill_leftovers(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def mesh(tmp_path: Path):
    running = Mesh(write_config(tmp_path))
    try:
        running.wait_ready()
        yield running
    finally:
        try:
            running.stop()
        finally:
            running.kill_leftovers()  # nothing of this mesh may outlive the test
