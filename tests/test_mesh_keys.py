"""Mesh CURVE keys: `exchange keys mesh` makes them, the config checks them, each role loads its own."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.errors import ConfigError
from exchange.wire.security.mesh_keys import MeshSecurity, secret_key_path

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"
ROLES = ["journal-writer", "engine-e1", "engine-e2", "ledger-0", "ledger-1", "notifier", "gateway", "web"]  # the demo has a web page


def make_keys(tmp_path: Path, *options: str):
    return CliRunner().invoke(cli, ["keys", "mesh", "--config", str(LOCAL), "--dir", str(tmp_path / "keys"), *options])


@pytest.fixture
def keyed(tmp_path) -> tuple[Path, str]:
    """configs/local.yaml with the mesh_curve section the command printed; (its path, the section)."""
    result = make_keys(tmp_path)
    assert result.exit_code == 0, result.output
    path = tmp_path / "mesh.yaml"
    path.write_text(local_text(tmp_path) + result.stdout)
    return path, result.stdout


def local_text(tmp_path: Path) -> str:
    return LOCAL.read_text().replace("var_dir: ../var", f"var_dir: {tmp_path / 'var'}")


def test_keys_mesh_writes_one_owner_only_secret_per_role_and_prints_their_public_keys(tmp_path, keyed):
    path, section = keyed
    config = load_config(path)
    assert config.mesh_curve.secret_key_dir == str(tmp_path / "keys")
    assert sorted(config.mesh_curve.public_keys) == sorted(ROLES)
    for role in ROLES:
        file = secret_key_path(tmp_path / "keys", role)
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        secret = file.read_bytes().strip()
        assert zmq.curve_public(secret).decode() == config.mesh_curve.public_keys[role]
        assert secret.decode() not in section
    assert len(set(config.mesh_curve.public_keys.values())) == len(ROLES)


def test_keys_mesh_never_overwrites_a_secret_key_without_force(tmp_path, keyed):
    _, first = keyed
    before = {role: secret_key_path(tmp_path / "keys", role).read_bytes() for role in ROLES}
    again = make_keys(tmp_path)
    assert again.exit_code == 0 and again.stdout == first
    assert "kept the secret keys of journal-writer, engine-e1, engine-e2, ledger-0, ledger-1, notifier, gateway, web" in again.stderr
    assert {role: secret_key_path(tmp_path / "keys", role).read_bytes() for role in ROLES} == before
    forced = make_keys(tmp_path, "--force")
    assert forced.exit_code == 0
    after = {role: secret_key_path(tmp_path / "keys", role).read_bytes() for role in ROLES}
    assert all(after[role] != before[role] for role in ROLES)
    assert set(re.findall(r"'(.{40})'", forced.stdout)).isdisjoint(re.findall(r"'(.{40})'", first))


def test_keys_mesh_makes_only_the_missing_secret_keys(tmp_path, keyed):
    _, first = keyed
    kept = secret_key_path(tmp_path / "keys", "gateway").read_bytes()
    secret_key_path(tmp_path / "keys", "engine-e2").unlink()
    again = make_keys(tmp_path)
    assert again.exit_code == 0 and "wrote secret keys of engine-e2 " in again.stderr
    assert secret_key_path(tmp_path / "keys", "gateway").read_bytes() == kept
    changed = [line for line, old in zip(again.stdout.splitlines(), first.splitlines()) if line != old]
    assert [line.split(":")[0].strip() for line in changed] == ["engine-e2"]


def test_keys_mesh_refuses_a_secret_key_file_that_is_not_one(tmp_path):
    (tmp_path / "keys").mkdir()
    secret_key_path(tmp_path / "keys", "notifier").write_text("not a key\n")
    result = make_keys(tmp_path)
    assert result.exit_code == 1
    assert "notifier.key_secret: not a Z85 CURVE secret key; remove it or use --force" in result.output


def section_with(keyed, old: str, new: str) -> Path:
    path, section = keyed
    assert old in section
    path.write_text(local_text(path.parent) + section.replace(old, new, 1))
    return path


def replace_key(section: str, role: str, key: str) -> tuple[str, str]:
    line = next(line for line in section.splitlines() if line.strip().startswith(f"{role}:"))
    return line, f"    {role}: '{key}'"


ALICE_PUBLIC = "A%OPA(0>$F&sAZ-4aRiHaF1]8-OG}CaKzcYCpXjZ"  # a user's key in configs/local.yaml


@pytest.mark.parametrize("change, message", [
    (lambda s: replace_key(s, "engine-e2", "#" * 40),
     "the key of engine-e2 is not a valid Z85 CURVE key - at `$.mesh_curve.public_keys.engine-e2`"),
    (lambda s: replace_key(s, "engine-e2", "short"), "at `$.mesh_curve.public_keys"),
    (lambda s: replace_key(s, "gateway", ALICE_PUBLIC),
     "gateway has the same key as user alice; each role needs its own key pair"),
    (lambda s: replace_key(s, "gateway", s.split("notifier: '")[1][:40]),
     "has the same key as notifier; each role needs its own key pair"),
    (lambda s: (s.splitlines()[4] + "\n", ""),
     "no public key for engine-e1; `exchange keys mesh` makes one per role - at `$.mesh_curve.public_keys`"),
    (lambda s: ("    gateway:", "    engine-e9: 'ch7R=hefhCNGAy8gEM[7R(]eGb!+By8Y^4mDI!S*'\n    gateway:"),
     "engine-e9 is not a role of this mesh; the roles are journal-writer, engine-e1, engine-e2, ledger-0, ledger-1, notifier,"
     " gateway, web - at `$.mesh_curve.public_keys`"),
    (lambda s: ("  secret_key_dir:", "  secret_key_file:"), "unknown field `secret_key_file` - at `$.mesh_curve`"),
])
def test_a_bad_mesh_curve_section_names_file_key_and_problem(keyed, change, message):
    old, new = change(keyed[1])
    path = section_with(keyed, old, new)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_without_the_section_the_mesh_is_plain():
    assert load_config(LOCAL).mesh_curve is None
    assert MeshSecurity.for_role(load_config(LOCAL), "gateway") is None


def test_each_role_loads_its_own_secret_and_every_role_key(tmp_path, keyed):
    config = load_config(keyed[0])
    security = MeshSecurity.for_role(config, "engine-e1")
    assert security.public == config.mesh_curve.public_keys["engine-e1"].encode()
    assert sorted(security.role_keys().values()) == sorted(ROLES)
    assert security.secret.decode() not in repr(security)  # a log line that names it shows no secret


def test_a_role_without_its_secret_or_with_another_roles_fails_to_start(tmp_path, keyed):
    config = load_config(keyed[0])
    missing = secret_key_path(tmp_path / "keys", "notifier")
    missing.unlink()
    with pytest.raises(ConfigError, match=rf"{re.escape(str(missing))}: cannot read the mesh secret key of"
                                          r" notifier: .*`exchange keys mesh`"):
        MeshSecurity.for_role(config, "notifier")
    secret_key_path(tmp_path / "keys", "gateway").rename(missing)
    with pytest.raises(ConfigError, match=r"does not belong to the public key the config lists for notifier"):
        MeshSecurity.for_role(config, "notifier")


def test_a_role_that_cannot_start_says_why_in_one_line(tmp_path, keyed):
    secret_key_path(tmp_path / "keys", "engine-e1").unlink()
    result = CliRunner().invoke(cli, ["engine", "--config", str(keyed[0]), "--name", "e1"])
    assert result.exit_code == 1
    assert "cannot read the mesh secret key of engine-e1" in result.output
    assert "Traceback" not in result.output
