"""The mesh under load: the config of a fresh one for the bench (started by exchange.testing.mesh),
or find the running one; CPU readings.

CPU use comes from /proc (per process and for the whole machine), so it covers every role,
the bench's own processes and what else the machine was doing.
"""

from __future__ import annotations

import os
import platform
import re
import sqlite3
from pathlib import Path

import yaml

from exchange.config import hash_key, new_key
from exchange.testing.mesh import free_ports, without_accounts


BENCH_FUNDS = "1000000000"  # of every asset, for each bench user with accounts on: never the limit


def bench_config(source: str, directory: Path, sessions: int, accounts: bool = True, gateways: int = 1
                 ) -> tuple[Path, list[tuple[str, str]]]:
    """A copy of the config at ``source`` for a fresh mesh in ``directory``: free loopback ports,
    its journal and logs inside ``directory``, no web page, ``gateways`` gateways (the first and
    replicas g2, g3, …), and one new user per session (so that no session
    receives another session's fills), each funded with BENCH_FUNDS of every asset if accounts
    are on. Without ``accounts`` the copy runs pure matching. Returns the new file and the (user,
    key) pairs."""
    text = Path(source).read_text()
    if not accounts:
        text = without_accounts(text)
    ports = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", text)))
    new_ports = free_ports(len(ports) + 3 * (gateways - 1))
    fresh = dict(zip(ports, map(str, new_ports)))  # one pass: a new port may be an old one
    more = new_ports[len(ports):]  # for the gateways beyond the first
    text = re.sub(r"127\.0\.0\.1:(\d+)\b", lambda m: f"127.0.0.1:{fresh[m.group(1)]}", text)
    data = yaml.safe_load(text)
    data.pop("web", None)  # the browser view is no part of the order flow measured here
    data["gateway"]["replicas"] = [
        {"name": f"g{n + 2}", "text": f"127.0.0.1:{more[3 * n]}", "zmq": f"tcp://127.0.0.1:{more[3 * n + 1]}",
         "replies": f"tcp://127.0.0.1:{more[3 * n + 2]}"} for n in range(gateways - 1)]
    data["journal"]["path"] = str(directory / "journal.db")
    data["var_dir"] = str(directory / "var")
    if "secret_key_file" in data.get("notifier", {}):
        data["notifier"]["secret_key_file"] = str(directory / "notifier.key")
    users = [(f"bench{n + 1}", new_key()) for n in range(sessions)]
    funds = {asset["name"]: BENCH_FUNDS for asset in data.get("assets") or []}
    data["users"] = list(data.get("users") or []) + [
        {"name": u, "key_hash": hash_key(k, n=2**10), **({"opening_balances": funds} if funds else {})}
        for u, k in users]
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, users


ROLES = ("gateway", "engine", "ledger", "journal-writer", "notifier")  # the role commands a bench measures


def running_roles(config_path: str) -> dict[str, int]:
    """Pids of the roles running with ``config_path`` (``exchange ROLE --config PATH [--name N]``)."""
    wanted = os.path.realpath(config_path)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for role in ROLES:  # a replica: "gateway g2"
            if role in args and "--config" in args:
                i = args.index("--config")
                if i + 1 < len(args) and os.path.realpath(args[i + 1]) == wanted:
                    name = args[args.index("--name") + 1] if "--name" in args else ""
                    found[f"{role} {name}".strip()] = int(entry.name)
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float | None:
    """Seconds ``pid``'s main thread has spent runnable but waiting for a CPU (the kernel's
    schedstat), so far; None if it is gone or the kernel does not keep schedstat."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # (busy, total) jiffies


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import zmq
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "sqlite": sqlite3.sqlite_version}
