"""Meshes whose roles are placed on "hosts" that are loopback addresses of this machine (127.0.0.2,
127.0.0.3, …: Linux answers on all of 127.0.0.0/8): their configs, a folder of its own for each
host, and each host's launcher. Used by tests/hosts and by the partition soak
(exchange.testing.partition).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import msgspec
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config, roles_on
from exchange.testing.mesh import Mesh, free_ports, loopback_config, wait_for_mesh

HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3"}
# host a: what faces clients, and the journal; host b: the engines
PLACEMENT = {"journal-writer": "a", "notifier": "a", "gateway": "a", "engine-e1": "b", "engine-e2": "b"}


def _moved(section: dict, address: str) -> dict:
    """``section`` with every endpoint it binds on 127.0.0.1 moved to ``address`` (not its replicas')."""
    def move(value):
        if isinstance(value, str) and value.startswith(("tcp://127.0.0.1:", "127.0.0.1:")):
            return value.replace("127.0.0.1:", f"{address}:", 1)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [move(v) for v in value]
        return value

    return {key: value if key == "replicas" else move(value) for key, value in section.items()}


def _gateway_replicas(placement: dict[str, str]) -> list[dict]:
    """A gateway replica on free ports for each ``gateway-<name>`` the placement names."""
    names = [role.removeprefix("gateway-") for role in placement if role.startswith("gateway-")]
    ports = iter(free_ports(3 * len(names)))
    return [{"name": name, "text": f"127.0.0.1:{next(ports)}", "zmq": f"tcp://127.0.0.1:{next(ports)}",
             "replies": f"tcp://127.0.0.1:{next(ports)}"} for name in names]


def placed_config(directory: Path, hosts: dict[str, str] = HOSTS, placement: dict[str, str] = PLACEMENT,
                  curve: bool = True, **options) -> Path:
    """configs/local.yaml on free ports (``loopback_config(directory, **options)``) with a `hosts:`
    section and every role placed as ``placement`` says (role → host), its endpoints moved to its
    host's address; a ``gateway-<name>`` in the placement is a gateway replica. With ``curve``, the
    mesh keys `exchange keys mesh` makes (in directory/keys)."""
    path = loopback_config(directory, **options)
    data = msgspec.yaml.decode(path.read_bytes())
    data["hosts"] = {name: {"address": address} for name, address in hosts.items()}

    def place(section: dict, role: str) -> dict:
        host = placement[role]
        return {**_moved(section, hosts[host]), "host": host}

    data["journal"] = place(data["journal"], "journal-writer")
    data["gateway"] = place(data["gateway"], "gateway")
    data["gateway"]["replicas"] = [place(r, f"gateway-{r['name']}") for r in _gateway_replicas(placement)]
    data["engines"] = [place(e, f"engine-{e['name']}") for e in data["engines"]]
    data["ledgers"] = [place(s, f"ledger-{s['shard']}") for s in data.get("ledgers", [])]
    data["notifier"] = place(data["notifier"], "notifier")
    data["notifier"]["replicas"] = [place(r, f"notifier-{r['name']}") for r in data["notifier"].get("replicas", [])]
    path.write_bytes(msgspec.yaml.encode(data))
    if curve:
        made = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(path), "--dir", str(directory / "keys")])
        if made.exit_code != 0:
            raise RuntimeError(f"exchange keys mesh failed:\n{made.output}")
        path.write_text(path.read_text() + made.stdout)
    return path


def host_folder(path: Path, host: str, seen: dict[str, str] | None = None) -> Path:
    """A folder of host ``host``'s own beside the config at ``path`` (``host-NAME``), as a machine of
    its own would have it: a copy of the config whose files (journal, var, keys) are in that folder,
    and the secret keys of the host's roles only. Each endpoint ``old`` of ``seen`` is written
    ``new`` in the copy: what this host sees of another (a proxy, a port forward). Returns the
    copy's path."""
    folder = path.parent / f"host-{host}"
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    text = path.read_text().replace(f"{path.parent}/", f"{folder}/")
    for old, new in (seen or {}).items():
        if text.count(old) != 1:
            raise ValueError(f"{old} is in {path} {text.count(old)} times, not once")
        text = text.replace(old, new)
    for role in roles_on(load_config(path), host):
        key = path.parent / "keys" / f"{role}.key_secret"
        if key.exists():
            shutil.copy2(key, folder / "keys" / key.name)
    copy = folder / path.name
    copy.write_text(text)
    return copy


def wait_for_gateways(mesh: Mesh) -> None:
    """Until every gateway of the mesh's host answers for every engine."""
    for role, section in mesh.config.gateway.all():
        if role in roles_on(mesh.config, mesh.hosts[0]):
            wait_for_mesh(mesh.config, mesh.process, mesh.timeout, mesh.user, text=section.text)


@contextlib.contextmanager
def hosts_up(*launchers: tuple[Path, str]):
    """One `exchange up CONFIG --host NAME` per (config path, host), all started before any is waited
    for (a gateway waits for engines on another host); ready once every engine answers every
    gateway. Stopped whatever happens; a block that passed also fails if a launcher did not stop in
    time or a role crashed. Yields the Meshes in order."""
    with contextlib.ExitStack() as stack:
        meshes = []
        for path, host in launchers:
            mesh = Mesh(path, hosts=(host,))
            stack.callback(mesh.close)
            meshes.append(mesh)
        for mesh in meshes:
            wait_for_gateways(mesh)
        yield meshes
        for mesh in meshes:
            if not mesh.close():
                raise AssertionError(f"the launcher of host {mesh.hosts[0]} did not stop in time:\n{mesh.log()[-3000:]}")
            if "Traceback" in mesh.log():
                raise AssertionError(f"a role crashed:\n{mesh.log()[-3000:]}")
