"""The `hosts:` section and each role's `host:`: what the config accepts, what it refuses (naming
file, key and problem), and what `exchange up` does with it before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config, placed_roles, roles_on
from exchange.errors import ConfigError
from exchange.testing.placed import placed_config

LOCAL = Path(__file__).resolve().parents[2] / "configs" / "local.yaml"


@pytest.fixture(scope="module")
def placed(tmp_path_factory) -> Path:
    """Two hosts (a: 127.0.0.2 with journal writer, notifier, gateway; b: 127.0.0.3 with the engines), CURVE on."""
    return placed_config(tmp_path_factory.mktemp("placed"))


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    return str(error.value)


def test_a_config_without_hosts_places_nothing_and_means_what_it_meant():
    config = load_config(LOCAL)
    assert config.hosts == {}
    assert {p.role for p in placed_roles(config)} == {*config.roles(), "web"}  # the demo has a web page
    assert all(p.host is None for p in placed_roles(config))


def test_each_role_is_on_its_host_and_binds_there(placed):
    config = load_config(placed)
    assert roles_on(config, "a") == ["journal-writer", "notifier", "gateway"]
    assert roles_on(config, "b") == ["engine-e1", "engine-e2"]
    for role in placed_roles(config):
        address = config.hosts[role.host].address
        assert all(address in endpoint for _, endpoint, _ in role.bound), role


@pytest.mark.parametrize("old, new, message", [
    ("  host: b\n", "  host: c\n", "engine-e1 is placed on host c, which `hosts:` does not name (a, b)"
                                   " - at `$.engines[0].host`"),
    ("  host: b\n", "", "engine-e1 names no host; with `hosts:` every role names one (a, b) - at `$.engines[0].host`"),
    ("commands: tcp://127.0.0.3:", "commands: tcp://127.0.0.2:",
     "engine-e1 is on host b (127.0.0.3) but binds tcp://127.0.0.2:"),
    ("address: 127.0.0.3", "address: 127.0.0.2", "host b has the address 127.0.0.2 of host a; each host has its own - at `$.hosts.b.address`"),
])
def test_a_bad_placement_names_file_key_and_problem(tmp_path, placed, old, new, message):
    text = placed.read_text()
    assert old in text
    assert message in refused(tmp_path, text.replace(old, new, 1))


def test_the_mismatched_endpoint_is_named_by_its_key(tmp_path, placed):
    text = placed.read_text().replace("replies: tcp://127.0.0.2:", "replies: tcp://127.0.0.3:", 1)
    assert refused(tmp_path, text).endswith("- at `$.gateway.replies`")


def test_roles_on_two_hosts_need_mesh_curve(tmp_path):
    path = placed_config(tmp_path, curve=False)
    message = refused(tmp_path, path.read_text())
    assert "roles are placed on 2 hosts (a, b)" in message and "add a `mesh_curve` section" in message
    assert message.endswith("- at `$.mesh_curve`")


def test_all_roles_on_one_host_need_no_curve(tmp_path):
    path = placed_config(tmp_path, hosts={"a": "127.0.0.2"}, curve=False,
                         placement={"journal-writer": "a", "notifier": "a", "gateway": "a",
                                    "engine-e1": "a", "engine-e2": "a"})
    assert roles_on(load_config(path), "a")[-1] == "gateway"


def test_a_host_without_a_hosts_section_is_refused(tmp_path):
    text = LOCAL.read_text().replace("    replay: tcp://127.0.0.1:7022\n", "    replay: tcp://127.0.0.1:7022\n    host: b\n")
    assert "engine-e1 names host b, but the config has no `hosts:` section - at `$.engines[0].host`" in refused(
        tmp_path, text)


def test_client_facing_endpoints_may_use_the_hosts_public_address_and_mesh_endpoints_may_not(tmp_path, placed):
    text = placed.read_text().replace("address: 127.0.0.2\n", "address: 127.0.0.2\n    public: 127.0.0.4\n", 1)
    public = tmp_path / "public.yaml"
    public.write_text(text.replace("text: 127.0.0.2:", "text: 127.0.0.4:", 1))
    assert load_config(public).gateway.text.startswith("127.0.0.4:")
    message = refused(tmp_path, text.replace("replies: tcp://127.0.0.2:", "replies: tcp://127.0.0.4:", 1))
    assert "gateway is on host a (127.0.0.2) but binds tcp://127.0.0.4:" in message


def test_ipc_endpoints_are_refused_when_roles_span_hosts(tmp_path, placed):
    text = placed.read_text()
    start = text.index("replies: tcp://127.0.0.2:")
    end = text.index("\n", start)
    message = refused(tmp_path, text[:start] + f"replies: ipc://{tmp_path}/replies" + text[end:])
    assert "ipc:// reaches only its own machine and the roles are on 2 hosts" in message


def up(*args: str):
    return CliRunner().invoke(cli, ["up", *args])


def test_up_without_host_on_a_placed_config_says_what_to_do_and_starts_nothing(placed):
    result = up(str(placed))
    assert result.exit_code == 1
    assert "places its roles on hosts a (127.0.0.2), b (127.0.0.3)" in result.output
    assert "exchange up CONFIG --host NAME" in result.output


def test_up_refuses_an_unknown_host_a_host_of_another_machine_and_host_without_hosts(tmp_path, placed):
    assert "no host 'c' in the config's `hosts:`; there are a (127.0.0.2), b (127.0.0.3)" in up(
        str(placed), "--host", "c").output
    elsewhere = tmp_path / "elsewhere.yaml"
    # two documentation networks (TEST-NET-3 and TEST-NET-2): no machine's; not loopback beside another machine's
    elsewhere.write_text(placed.read_text().replace("127.0.0.2", "203.0.113.1").replace("127.0.0.3", "198.51.100.1"))
    result = up(str(elsewhere), "--host", "b")
    assert result.exit_code == 1 and "this machine has no address of host b (198.51.100.1)" in result.output
    result = up(str(LOCAL), "--host", "a")
    assert result.exit_code == 1 and "no `hosts:` section" in result.output
