"""Values the roles cannot run with are refused when the config is loaded, with the file, the key
and the problem, not found later as a role that crash-loops or a login that is never answered:
a key_hash whose scrypt cost cannot be computed, an engine that owns no instruments, a duration
too long to become nanoseconds, one ipc:// file under two spellings. And a relative ipc:// lane
is relative to the config's folder, like every other relative path in the file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from exchange import launcher
from exchange.config import hash_key, load_config, verify_key
from exchange.errors import ConfigError

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def _write(tmp_path: Path, text: str, name: str = "mesh.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    return message


# -- key_hash: a scrypt cost the gateway can compute --------------------------------------------------

def _with_bob_hash(tmp_path: Path, key_hash: str) -> Path:
    text = LOCAL.read_text()
    start = text.index("key_hash: ", text.index("name: bob"))
    end = text.index("\n", start)
    return _write(tmp_path, text[:start] + f"key_hash: {key_hash}" + text[end:])


@pytest.mark.parametrize("n", ["1000", "0", "1", "3", str(2**15), str(2**20), "9" * 5000])
def test_a_key_hash_whose_scrypt_cost_cannot_be_computed_is_refused(tmp_path, n):
    # 1000 and 3 are not powers of two; scrypt needs n > 1; from 2**15 on (r=8) hashlib's memory
    # limit refuses it; 5000 digits are too many for int(). Each would fail every LOGIN of bob.
    good = hash_key("bob-key", n=2)
    _, _, salt, digest = good.split("$")
    message = _refused(_with_bob_hash(tmp_path, f"scrypt${n}${salt}${digest}"))
    assert "key_hash of bob" in message and "power of two" in message
    assert message.endswith("- at `$.users[1].key_hash`")


@pytest.mark.parametrize("n", [2, 2**10, 2**14])
def test_every_scrypt_cost_the_config_accepts_verifies_a_key(tmp_path, n):
    config = load_config(_with_bob_hash(tmp_path, hash_key("bob-key", n=n)))
    assert verify_key("bob-key", config.key_hash("bob"))
    assert not verify_key("alice-key", config.key_hash("bob"))


# -- instruments: every engine owns one -----------------------------------------------------------------

def test_an_engine_that_owns_no_instrument_is_refused(tmp_path):
    text = LOCAL.read_text()
    text = text.replace("instruments: [BTC-USD, ETH-USD]", "instruments: [BTC-USD, ETH-USD, AAPL]", 1)
    text = text.replace("instruments: [AAPL]", "instruments: []", 1)  # e2 kept as a spare
    message = _refused(_write(tmp_path, text))
    assert "engine e2 owns no instruments" in message
    assert message.endswith("- at `$.engines[1].instruments`")


def test_a_config_without_instruments_is_refused(tmp_path):
    text = LOCAL.read_text()
    text = re.sub(r"(?m)^instruments:\n(?:(?:  .*|\s*)\n)*", "instruments: []\n\n", text, count=1)
    text = re.sub(r"instruments: \[[A-Z, -]+\]", "instruments: []", text)
    message = _refused(_write(tmp_path, text))
    assert "no instruments" in message and message.endswith("- at `$.instruments`")


def test_the_banner_of_a_config_without_instruments_does_not_name_one(tmp_path):
    config = load_config(LOCAL)
    msgspec.structs.force_setattr(config, "instruments", [])  # load_config no longer makes one
    text = launcher.banner(config, str(LOCAL))
    assert f"market data, ZMQ SUB    {config.notifier.publish}\n" in text
    assert "exchange watch" not in text


# -- durations: finite, and short enough to become nanoseconds ----------------------------------------

@pytest.mark.parametrize("key, value, at", [
    ("request_timeout", ".inf", "$.gateway.request_timeout"),
    ("request_timeout", "1.0e+300", "$.gateway.request_timeout"),
    ("request_timeout", "3601", "$.gateway.request_timeout"),
    ("idle_timeout", ".inf", "$.gateway.idle_timeout"),
    ("zmq_login_timeout", ".inf", "$.gateway.zmq_login_timeout"),
    ("failed_login_window", "1.0e+300", "$.gateway.failed_login_window"),
    ("session_expiry", ".inf", "$.web.session_expiry"),
])
def test_a_duration_without_a_sane_bound_is_refused_naming_its_key(tmp_path, key, value, at):
    text = LOCAL.read_text()
    section = "web:\n  listen: 127.0.0.1:8080\n" if at.startswith("$.web") else "gateway:\n"
    assert section in text
    message = _refused(_write(tmp_path, text.replace(section, f"{section}  {key}: {value}\n", 1)))
    assert message.endswith(f"- at `{at}`")


def test_the_longest_request_timeout_becomes_nanoseconds(tmp_path):
    text = LOCAL.read_text().replace("gateway:\n", "gateway:\n  request_timeout: 3600\n", 1)
    config = load_config(_write(tmp_path, text))
    assert int(config.gateway.request_timeout * 1e9) == 3600 * 10**9  # what the engines and the journal writer do


# -- ipc:// endpoints: anchored to the config's folder, compared after -----------------------------------

def _one_ipc_file_twice(tmp_path: Path, second: str) -> Path:
    text = LOCAL.read_text()
    text = text.replace("replies: tcp://127.0.0.1:7012", "replies: ipc://mesh.sock", 1)
    text = text.replace("commands: tcp://127.0.0.1:7020", f"commands: {second}", 1)
    return _write(tmp_path, text)


@pytest.mark.parametrize("second", ["ipc://./mesh.sock", "ipc://{dir}/mesh.sock", "ipc://{dir}/x/../mesh.sock"])
def test_one_ipc_file_under_two_spellings_is_a_config_error(tmp_path, second):
    message = _refused(_one_ipc_file_twice(tmp_path, second.format(dir=tmp_path)))
    assert message == (f"{tmp_path / 'mesh.yaml'}: endpoint ipc://{tmp_path / 'mesh.sock'} is used twice"
                       f" - at `$.engines[0].commands` and `$.gateway.replies`")


def test_config_check_of_one_ipc_file_under_two_spellings_prints_one_error_line(tmp_path):
    path = _one_ipc_file_twice(tmp_path, "ipc://./mesh.sock")
    run = subprocess.run([sys.executable, "-m", "exchange", "config", "check", str(path)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: {path}: endpoint ipc://") and "Traceback" not in run.stderr, run.stderr


def test_relative_ipc_lanes_are_relative_to_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    replica = ("  replicas:\n    - name: b\n      publish: tcp://127.0.0.1:7103\n      private: tcp://127.0.0.1:7104\n"
               "      snapshots: tcp://127.0.0.1:7105\n      lanes: [ipc://b-lane.sock, tcp://127.0.0.1:7106]\n")
    text = LOCAL.read_text().replace(
        "  publish: tcp://127.0.0.1:7003\n",
        f"  publish: ipc://public.sock\n  lanes: [ipc://lane.sock, 'ipc://{tmp_path}/abs.sock']\n{replica}", 1)
    path = _write(folder, text)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    notifier = load_config(path).notifier
    assert notifier.publish == f"ipc://{folder}/public.sock"
    assert notifier.lanes == [f"ipc://{folder}/lane.sock", f"ipc://{tmp_path}/abs.sock"]
    assert notifier.replica("b").lanes == [f"ipc://{folder}/b-lane.sock", "tcp://127.0.0.1:7106"]


def test_two_lanes_naming_one_ipc_file_are_refused(tmp_path):
    lanes = f"  lanes: [ipc://lane.sock, 'ipc://{tmp_path}/lane.sock']\n"  # one file, two spellings
    text = LOCAL.read_text().replace("  publish: tcp://127.0.0.1:7003\n", f"  publish: tcp://127.0.0.1:7003\n{lanes}", 1)
    message = _refused(_write(tmp_path, text))
    assert message.endswith(f"endpoint ipc://{tmp_path / 'lane.sock'} is used twice"
                            f" - at `$.notifier.lanes[0]` and `$.notifier.lanes[1]`")


@pytest.mark.parametrize("value", [".inf", "1.0e+300", "1000001"])
def test_a_rate_without_a_bound_is_refused_naming_its_key(tmp_path, value):
    """A rate of .inf passed, and the gateway's token bucket failed on it (math.ceil of infinity)."""
    text = LOCAL.read_text()
    assert "  max_rate: 100000\n" in text
    gateway = _write(tmp_path, text.replace("  max_rate: 100000\n", f"  max_rate: {value}\n", 1))
    assert _refused(gateway).endswith("- at `$.gateway.max_rate`")
    user = _write(tmp_path, text.replace("  - name: alice\n", f"  - name: alice\n    max_rate: {value}\n", 1),
                  "user.yaml")
    assert _refused(user).endswith("- at `$.users[0].max_rate`")
    web = _write(tmp_path, text.replace("web:\n  listen: 127.0.0.1:8080\n",
                                        f"web:\n  listen: 127.0.0.1:8080\n  max_rate: {value}\n", 1), "web.yaml")
    assert _refused(web).endswith("- at `$.web.max_rate`")
