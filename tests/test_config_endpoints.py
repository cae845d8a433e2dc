"""What a config binds must be bindable, by every role at once: each port 1-65535 and bound once per
machine, whatever the spelling of its address (the web page's listen too), and with several hosts
each host's address one the others can reach. `exchange config check` refuses the rest, naming file,
keys and problem, instead of a role failing to bind at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import canonical_address, load_config
from exchange.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LOCAL, THREE_HOSTS = CONFIGS / "local.yaml", CONFIGS / "three-hosts.yaml"


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def local(tmp_path: Path, old: str, new: str) -> Path:
    """configs/local.yaml with ``old`` (once) replaced by ``new``."""
    text = LOCAL.read_text()
    assert old in text
    return written(tmp_path, text.replace(old, new, 1))


def refused(path: Path, mesh_keys: bool = True) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path, mesh_keys=mesh_keys)
    assert str(error.value).startswith(f"{path}: ")
    return str(error.value)


def checked(path: Path):
    """`exchange config check PATH`."""
    return CliRunner().invoke(cli, ["config", "check", str(path)])


def test_web_listen_on_another_roles_port_is_refused(tmp_path):
    path = local(tmp_path, "listen: 127.0.0.1:8080", "listen: 127.0.0.1:7001")
    result = checked(path)
    assert result.exit_code == 1, result.output
    assert "endpoint tcp://127.0.0.1:7001 is used twice - at `$.gateway.text` and `$.web.listen`" in result.output


def test_web_listen_is_one_of_the_endpoints():
    assert "tcp://127.0.0.1:8080" in load_config(LOCAL).endpoints()


@pytest.mark.parametrize("spelling, message", [
    ("0.0.0.0", "tcp://0.0.0.0:7001 binds port 7001 on every address of its machine, tcp://127.0.0.1:7001 too"),
    ("localhost", "tcp://localhost:7001 and tcp://127.0.0.1:7001 bind the same address and port"),
])
def test_a_port_bound_twice_under_another_spelling_is_refused(tmp_path, spelling, message):
    path = local(tmp_path, "publish: tcp://127.0.0.1:7003", f"publish: tcp://{spelling}:7001")
    result = checked(path)
    assert result.exit_code == 1, result.output
    assert message in result.output and "- at `$.notifier.publish` and `$.gateway.text`" in result.output


def test_a_wildcard_address_refuses_the_port_on_every_address(tmp_path):
    path = local(tmp_path, "text: 127.0.0.1:7001", "text: 0.0.0.0:7003")
    assert ("tcp://0.0.0.0:7003 binds port 7003 on every address of its machine, tcp://127.0.0.1:7003 too"
            " - at `$.gateway.text` and `$.notifier.publish`") in refused(path)


@pytest.mark.parametrize("spelling, address", [
    ("localhost", "127.0.0.1"), ("LocalHost", "127.0.0.1"), ("*", "0.0.0.0"), ("0", "0.0.0.0"),
    ("127.1", "127.0.0.1"), ("10.0.0.1", "10.0.0.1"), ("Core.Example", "core.example")])
def test_an_address_is_compared_as_bind_reads_it(spelling, address):
    assert canonical_address(spelling) == address


def test_the_same_port_on_two_addresses_of_one_machine_is_fine(tmp_path):
    config = load_config(local(tmp_path, "publish: tcp://127.0.0.1:7003", "publish: tcp://127.0.0.2:7001"))
    assert config.notifier.publish == "tcp://127.0.0.2:7001"


@pytest.mark.parametrize("old, new, message", [
    ("publish: tcp://127.0.0.1:7003", "publish: tcp://127.0.0.1:70003",
     "port 70003 of tcp://127.0.0.1:70003 is not between 1 and 65535 - at `$.notifier.publish`"),
    ("text: 127.0.0.1:7001", "text: 127.0.0.1:0", "port 0 of tcp://127.0.0.1:0 is not between 1 and 65535"
                                                  " - at `$.gateway.text`"),
    ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:65536", "port 65536 of tcp://127.0.0.1:65536 is not between"
                                                          " 1 and 65535 - at `$.web.listen`"),
])
def test_a_port_out_of_range_is_refused(tmp_path, old, new, message):
    path = local(tmp_path, old, new)
    assert message in refused(path)
    assert checked(path).exit_code == 1


# -- several hosts: each host's address is one the other hosts reach it at -----------------------

def three_hosts(tmp_path: Path, **addresses: str) -> Path:
    """configs/three-hosts.yaml with hosts core, match and feed (10.0.0.1-3) at other addresses; its
    roles bind on their host's new address."""
    text = THREE_HOSTS.read_text()
    for host, old in (("core", "10.0.0.1"), ("match", "10.0.0.2"), ("feed", "10.0.0.3")):
        text = text.replace(old, addresses.get(host, old))
    return written(tmp_path, text)


@pytest.mark.parametrize("address", ["0.0.0.0"])
def test_an_unspecified_host_address_is_refused_with_several_hosts(tmp_path, address):
    path = three_hosts(tmp_path, core=address)
    assert (f"host core's address {address} is every address of its machine, not one the other hosts can"
            " reach it at; give the address they reach it at (its `public:` may be 0.0.0.0)"
            " - at `$.hosts.core.address`") in refused(path, mesh_keys=False)
    result = checked(path)  # before anything else, such as the missing mesh_curve section
    assert result.exit_code == 1 and "host core's address" in result.output, result.output


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_a_loopback_host_address_is_refused_beside_hosts_elsewhere(tmp_path, address):
    path = three_hosts(tmp_path, core=address)
    assert (f"host core's address {address} is a loopback address, which only its own machine reaches,"
            " but host match (10.0.0.2) is elsewhere: loopback addresses only if every host has one"
            " - at `$.hosts.core.address`") in refused(path, mesh_keys=False)


def test_hosts_that_are_all_loopback_addresses_of_one_machine_are_fine(tmp_path):
    config = load_config(three_hosts(tmp_path, core="127.0.0.2", match="127.0.0.3", feed="127.0.0.4"),
                         mesh_keys=False)
    assert [host.address for host in config.hosts.values()] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_one_host_may_bind_every_address(tmp_path):
    text = three_hosts(tmp_path, core="0.0.0.0", match="0.0.0.0", feed="0.0.0.0").read_text()
    text = text.replace("host: match", "host: core").replace("host: feed", "host: core")
    text = text.replace("  match:\n    address: 0.0.0.0\n", "").replace("  feed:\n    address: 0.0.0.0\n", "")
    config = load_config(written(tmp_path, text), mesh_keys=False)
    assert list(config.hosts) == ["core"] and config.gateway.text == "0.0.0.0:7001"


def test_two_hosts_with_one_address_under_two_spellings_are_refused(tmp_path):
    path = three_hosts(tmp_path, core="127.0.0.1", match="localhost", feed="127.0.0.4")
    assert "host match has the address localhost of host core; each host has its own - at `$.hosts.match.address`" \
        in refused(path, mesh_keys=False)


def test_the_same_port_on_two_hosts_is_fine_and_a_wildcard_clashes_only_on_its_own_host(tmp_path):
    text = three_hosts(tmp_path).read_text()
    public = text.replace("    address: 10.0.0.1\n", "    address: 10.0.0.1\n    public: 0.0.0.0\n", 1)
    public = public.replace("    address: 10.0.0.3\n", "    address: 10.0.0.3\n    public: 0.0.0.0\n", 1)
    elsewhere = public.replace("publish: tcp://10.0.0.3:7003", "publish: tcp://0.0.0.0:7001", 1)
    assert load_config(written(tmp_path, elsewhere), mesh_keys=False).notifier.publish == "tcp://0.0.0.0:7001"
    here = public.replace("zmq: tcp://10.0.0.1:7002", "zmq: tcp://0.0.0.0:7001", 1)
    assert ("tcp://0.0.0.0:7001 binds port 7001 on every address of its machine, tcp://10.0.0.1:7001 too"
            " - at `$.gateway.zmq` and `$.gateway.text`") in refused(written(tmp_path, here), mesh_keys=False)

