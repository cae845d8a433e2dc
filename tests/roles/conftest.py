"""A real mesh for each test: `python -m exchange up` on 127.0.0.1 with free ports, in tmp_path."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.client.text import TextClient
from exchange.config import Config, load_config
from exchange.testing.mesh import loopback_config

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30


def write_config(tmp_path: Path) -> Path:
    """configs/local.yaml with every port replaced by a free one and every path inside tmp_path."""
    return loopback_config(tmp_path)


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


def read_available(process: subprocess.Popen, seconds: float) -> str:
    """Whatever the process writes to stdout within ``seconds`` (unbuffered, so nothing hides)."""
    out = b""
    fd = process.stdout.fileno()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out.decode()


class Mesh:
    """A running mesh: its config, the launcher process and where to connect."""

    def __init__(self, config_path: Path, wait_for_engines: bool = True):
        self.config_path = config_path
        self.wait_for_engines = wait_for_engines
        self.config: Config = load_config(config_path)
        host, port = self.config.gateway.text.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.log_path = config_path.parent / "launcher.stderr"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exchange", "up", str(config_path)], cwd=config_path.parent,
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def wait_ready(self) -> None:
        """Until the gateway listens and every engine answers it (the gateway refuses orders for
        an engine it is not connected to yet, BUSY, rather than keep them)."""
        wait_for_port(self.host, self.port, self.process, START_TIMEOUT_S)
        if not self.wait_for_engines:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        with TextClient(self.host, self.port, timeout=START_TIMEOUT_S) as carol:
            assert carol.request("LOGIN carol carol-key") == "OK LOGIN carol"
            for engine in self.config.engines:
                while not carol.request(f"CANCELALL {engine.instruments[0]}").startswith("OK CANCELALL"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"engine {engine.name} does not answer the gateway")
                    time.sleep(0.1)

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

    def close(self) -> None:
        """Stop the mesh, and kill whatever did not stop: nothing of it may outlive the test."""
        try:
            self.stop()
        finally:
            self.kill_leftovers()

    def __enter__(self) -> Mesh:
        """``with Mesh(path) as mesh``: ready when the block starts, closed when it ends."""
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close()
        if kind is None:  # the test passed: no role may have crashed on the way (the launcher hides it)
            assert "Traceback" not in self.log(), f"a role crashed during the test:\n{self.log()[-3000:]}"


@pytest.fixture
def mesh(tmp_path: Path):
    with Mesh(write_config(tmp_path)) as running:
        yield running


@pytest.fixture
def demo_mesh(tmp_path: Path):
    """The demo as shipped (price bands and all), on free ports."""
    with Mesh(loopback_config(tmp_path, price_bands=True)) as running:
        yield running


@pytest.fixture(scope="module")
def module_mesh(tmp_path_factory):
    """One mesh shared by the tests of a module, for tests that do not need a fresh one."""
    with Mesh(write_config(tmp_path_factory.mktemp("mesh"))) as running:
        yield running
