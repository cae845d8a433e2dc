"""Hostile clients that never read their replies, against a real gateway process: its memory
stays bounded (docs/security.md, "Unanswered requests"). Every wait has a deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import Mesh
from exchange import fuzz
from exchange.client import TextClient
from exchange.soak import role_pid

FLOOD_BYTES = 300_000  # blank lines; each is a request, answered REJ MALFORMED
MAX_GROWTH_MB = 16  # without the limit the gateway grows by ~85 MB (one reply slot per line)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make VmHWM (the peak resident size) start again from the current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def wait_for_log(mesh: Mesh, *texts: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = mesh.log()
        found = [text for text in texts if text in log]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"none of {texts} in the log after {timeout} s:\n{mesh.log()[-3000:]}")


def send_in_background(client: TextClient, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the gateway may stop reading it); a closed connection ends it."""
    def send() -> None:
        try:
            client.sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_flood_behind_a_slow_login_from_a_client_that_never_reads_keeps_memory_bounded(tmp_path):
    path = fuzz.fuzz_config(tmp_path, users=0, login_failure_delay=2, idle_timeout=2,
                                max_failed_logins=1)
    with Mesh(path) as mesh:
        pid = role_pid(mesh.log(), "gateway")
        with TextClient(mesh.host, mesh.port, timeout=10) as probe:
            # from now on alice's LOGINs are throttled: answered after the delay, with no scrypt
            # (16 MiB each, which would hide what the flood costs)
            assert probe.request("LOGIN alice wrong") == "REJ BAD_LOGIN unknown user or wrong key"
        before = status_kb(pid, "VmRSS")
        reset_peak(pid)
        mallory = TextClient(mesh.host, mesh.port, timeout=10)
        try:
            sender = send_in_background(mallory, b"LOGIN alice wrong\n" + b"\n" * FLOOD_BYTES)
            # the session ends: idle once the gateway stopped reading it, or cut off for not reading
            wait_for_log(mesh, "idle for 2 s; closing it", "client does not read its replies")
            grown_mb = (status_kb(pid, "VmHWM") - before) / 1024
            sender.join(10)
        finally:
            mallory.close()
        with TextClient(mesh.host, mesh.port, timeout=10) as honest:
            assert honest.request("PING") == "PONG"
    print(f"the gateway grew by {grown_mb:.1f} MB")
    assert grown_mb < MAX_GROWTH_MB, f"the gateway grew by {grown_mb:.0f} MB"
