"""Running a real mesh for tests, tools and scripts: configs on free loopback ports, starting
`exchange up`, waiting for it and stopping it, whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from exchange.client.text import TextClient
from exchange.config import Config, load_config


LOCAL_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "local.yaml"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def without_price_bands(text: str) -> str:
    """A config's text without its instruments' price bands (and their reference prices)."""
    return re.sub(r"\n    (price_band|reference_price): \"[0-9.]+\"", "", text)


def toy_config(source: Path = LOCAL_CONFIG) -> Config:
    """configs/local.yaml as a Config without the demo's price bands: for tests in memory that
    trade at whatever prices they like."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / source.name
        path.write_text(without_price_bands(source.read_text()))
        return load_config(path)


def loopback_config(directory: Path, source: Path = LOCAL_CONFIG, request_timeout: float | None = None,
                    checkpoint_every: int | None = None, max_undurable_events: int | None = None,
                    price_bands: bool = False) -> Path:
    """A copy of ``source`` (configs/local.yaml) in ``directory`` with free ports on 127.0.0.1 and
    the journal and logs inside ``directory``; returns its path.

    Without ``price_bands`` the copy drops the demo's price bands, so that tests may trade at any
    price they like (10.00 BTC-USD, say); the demo as shipped keeps them.
    """
    text = source.read_text()
    if not price_bands:
        text = without_price_bands(text)
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


def stop_mesh(launcher: subprocess.Popen | None, grace: float = 20.0) -> None:
    """SIGTERM a launcher started in its own session, then SIGKILL whatever of its group is left."""
    if launcher is None:
        return
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(launcher.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def role_pid(log_text: str, label: str) -> int:
    pids = re.findall(rf"started {label} \(pid (\d+)\)", log_text)
    if not pids:
        raise RuntimeError(f"the launcher never started {label}")
    return int(pids[-1])


def wait_for_mesh(host: str, port: int, launcher: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError("the mesh did not start")
        try:
            with TextClient(host, port, timeout=2) as probe:
                if probe.request("LOGIN carol carol-key") == "OK LOGIN carol" and probe.request(
                        "CANCELALL", timeout=5).startswith("OK CANCELALL"):
                    return  # the gateway, both engines and the journal writer answer
        except (OSError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError("the mesh did not come up")
