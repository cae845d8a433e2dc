"""A real mesh for each test: `python -m exchange up` on 127.0.0.1 with free ports, in tmp_path
(the harness is exchange.testing.mesh; the fixtures and test-only helpers are here)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from exchange.testing.mesh import Mesh, loopback_config

__all__ = ["Mesh", "write_config", "read_available"]


def write_config(tmp_path: Path) -> Path:
    """configs/local.yaml with every port replaced by a free one and every path inside tmp_path."""
    return loopback_config(tmp_path)


def add_replica(path: Path, after: str, name: str, endpoints: dict[str, str]) -> Path:
    """Give the config at ``path`` one replica, ``name`` with ``endpoints`` (key → value), as a
    ``replicas:`` list right after the first line matching the regex ``after`` (a line of the section
    it belongs to); return ``path``."""
    text = path.read_text()
    anchor = re.search(after, text).group(0)
    entry = "".join(f"      {key}: {value}\n" for key, value in endpoints.items())
    path.write_text(text.replace(anchor, f"{anchor}  replicas:\n    - name: {name}\n{entry}", 1))
    return path


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


@pytest.fixture
def mesh(tmp_path: Path):
    with Mesh(write_config(tmp_path)) as running:
        yield running


@pytest.fixture
def demo_mesh(tmp_path: Path):
    """The demo as shipped (price bands, accounts and all), on free ports."""
    with Mesh(loopback_config(tmp_path, price_bands=True, accounts=True)) as running:
        yield running


@pytest.fixture(scope="module")
def module_mesh(tmp_path_factory):
    """One mesh shared by the tests of a module, for tests that do not need a fresh one."""
    with Mesh(write_config(tmp_path_factory.mktemp("mesh"))) as running:
        yield running
