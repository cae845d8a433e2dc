"""Configs whose roles are placed on "hosts" that are loopback addresses of this machine (127.0.0.2,
127.0.0.3, …: Linux answers on all of 127.0.0.0/8), and running each host's launcher."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import roles_on
from exchange.testing.mesh import Mesh, loopback_config

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


def placed_config(directory: Path, hosts: dict[str, str] = HOSTS, placement: dict[str, str] = PLACEMENT,
                  curve: bool = True, **options) -> Path:
    """configs/local.yaml on free ports (``loopback_config(directory, **options)``) with a `hosts:`
    section and every role placed as ``placement`` says (role → host), its endpoints moved to its
    host's address; with ``curve``, the mesh keys `exchange keys mesh` makes (in directory/keys)."""
    path = loopback_config(directory, **options)
    data = msgspec.yaml.decode(path.read_bytes())
    data["hosts"] = {name: {"address": address} for name, address in hosts.items()}

    def place(section: dict, role: str) -> dict:
        host = placement[role]
        return {**_moved(section, hosts[host]), "host": host}

    data["journal"] = place(data["journal"], "journal-writer")
    data["gateway"] = place(data["gateway"], "gateway")
    data["engines"] = [place(e, f"engine-{e['name']}") for e in data["engines"]]
    data["ledgers"] = [place(s, f"ledger-{s['shard']}") for s in data.get("ledgers", [])]
    data["notifier"] = place(data["notifier"], "notifier")
    data["notifier"]["replicas"] = [place(r, f"notifier-{r['name']}") for r in data["notifier"].get("replicas", [])]
    path.write_bytes(msgspec.yaml.encode(data))
    if curve:
        made = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(path), "--dir", str(directory / "keys")])
        assert made.exit_code == 0, made.output
        path.write_text(path.read_text() + made.stdout)
    return path


def copy_with(path: Path, name: str, old: str, new: str) -> Path:
    """A copy of the config at ``path``, named ``name`` beside it, with the endpoint ``old`` written ``new``
    (what another host may see: a proxy, a port forward)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old} is in {path} {text.count(old)} times"
    copy = path.with_name(name)
    copy.write_text(text.replace(old, new))
    return copy


@contextlib.contextmanager
def hosts_up(*launchers: tuple[Path, str]):
    """One `exchange up CONFIG --host NAME` per (config path, host), all started before any is waited
    for (the gateway waits for engines on another host); ready once every engine answers the gateway.
    Stopped whatever happens; a block that passed also fails if a launcher did not stop in time or a
    role crashed. Yields the Meshes in order."""
    with contextlib.ExitStack() as stack:
        meshes = []
        for path, host in launchers:
            mesh = Mesh(path, hosts=(host,))
            stack.callback(mesh.close)
            meshes.append(mesh)
        for mesh in meshes:
            if "gateway" in roles_on(mesh.config, mesh.hosts[0]):
                mesh.wait_ready()
        yield meshes
        for mesh in meshes:
            assert mesh.close(), f"the launcher of host {mesh.hosts[0]} did not stop in time:\n{mesh.log()[-3000:]}"
            assert "Traceback" not in mesh.log(), f"a role crashed:\n{mesh.log()[-3000:]}"
