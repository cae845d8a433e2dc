"""`exchange keys mesh --dir DIR` prints a `secret_key_dir` that names DIR as the config reads it: relative
to the config's folder (DIR was given relative to the current one), and quoted whatever its name."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.wire.security.mesh_keys import MeshSecurity

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def config_in(folder: Path, var: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mesh.yaml"
    path.write_text(LOCAL.read_text().replace("var_dir: ../var", f"var_dir: {var}"))
    return path


def keys_mesh(config: Path, directory: str) -> str:
    """The section `exchange keys mesh` prints, appended to ``config``."""
    result = CliRunner().invoke(cli, ["keys", "mesh", "--config", str(config), "--dir", directory])
    assert result.exit_code == 0, result.output
    config.write_text(config.read_text() + result.stdout)
    return result.stdout.splitlines()[1]


def test_a_relative_dir_given_from_another_folder_is_printed_from_the_configs_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the folder above the config's, as `exchange up configs/mesh.yaml` is run
    config = config_in(tmp_path / "configs", tmp_path / "var")
    assert keys_mesh(Path("configs/mesh.yaml"), "keys") == '  secret_key_dir: "../keys"'
    loaded = load_config(config)
    assert loaded.mesh_curve.secret_key_dir == str(tmp_path / "keys")
    assert MeshSecurity.for_role(loaded, "engine-e1").role == "engine-e1"  # it reads the file made


def test_a_relative_dir_given_from_the_configs_folder_stays_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that the folder, copied to another host, still finds its keys
    config = config_in(tmp_path, tmp_path / "var")
    assert keys_mesh(config, "keys") == '  secret_key_dir: "keys"'
    assert load_config(config).mesh_curve.secret_key_dir == str(tmp_path / "keys")


def test_an_absolute_dir_is_printed_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_in(tmp_path / "configs", tmp_path / "var")
    assert keys_mesh(config, str(tmp_path / "keys")) == f'  secret_key_dir: "{tmp_path / "keys"}"'
    assert load_config(config).mesh_curve.secret_key_dir == str(tmp_path / "keys")


@pytest.mark.parametrize("directory", ["null", "no", "123", "2024-01-01", "keys #1", "keys-\U0001f511", "clés"])
def test_a_dir_whose_name_yaml_reads_as_something_else_is_quoted(tmp_path, monkeypatch, directory):
    monkeypatch.chdir(tmp_path)
    config = config_in(tmp_path, tmp_path / "var")
    keys_mesh(config, directory)
    assert load_config(config).mesh_curve.secret_key_dir == str(tmp_path / directory)
