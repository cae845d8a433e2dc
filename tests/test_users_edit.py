"""`exchange users add/remove` edit the config in place: any valid name, every way a name is written,
the file's comments where they were, a symlinked config stays a symlink, the other users untouched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.config_users import add_user
from exchange.errors import ConfigError

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"
WEB = "# The browser view"  # the comment above the web section


def copy_of_local(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(LOCAL.read_text() if text is None else text)
    return path


def users(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["users", *args])
    return result.exit_code, result.output


def users_in_the_middle() -> str:
    """configs/local.yaml with the web section (and its comment) after the users, as many configs have it."""
    text = LOCAL.read_text()
    web = text[text.index(WEB):text.index("# DEMO USERS ONLY")]
    return text.replace(web, "") + "\n" + web


@pytest.mark.parametrize("name", ["no", "on", "null", "true", "123", "0x1F", "1_000", "2024-01-01"])
def test_a_name_yaml_reads_as_something_else_is_added_and_removed(tmp_path, name):
    path = copy_of_local(tmp_path)
    code, output = users("add", name, "--config", str(path))
    assert code == 0, output
    assert [u.name for u in load_config(path).users] == ["alice", "bob", "carol", "ops", name]
    code, output = users("remove", name, "--config", str(path))
    assert code == 0, output
    assert path.read_text() == LOCAL.read_text()


@pytest.mark.parametrize("written", ["bob", "'bob'", '"bob"', "'bob'  # the market maker"])
def test_remove_finds_a_name_written_bare_or_quoted(tmp_path, written):
    path = copy_of_local(tmp_path, LOCAL.read_text().replace("  - name: bob\n", f"  - name: {written}\n"))
    code, output = users("remove", "bob", "--config", str(path))
    assert code == 0, output
    assert [u.name for u in load_config(path).users] == ["alice", "carol", "ops"]


def test_an_edit_that_would_not_load_names_the_config_not_a_draft(tmp_path):
    text = LOCAL.read_text()
    head, listed = text.split("users:\n", 1)
    indented = "".join(f"  {line}" for line in listed.splitlines(keepends=True))  # items at four spaces: valid
    path = copy_of_local(tmp_path, head + "users:\n" + indented)
    assert len(load_config(path).users) == 4
    code, output = users("add", "dave", "--config", str(path))
    assert code == 1 and output.startswith(f"Error: {path}: the edited file would not load ("), output
    assert "edit the file by hand" in output and ".mesh.yaml." not in output and "API key" not in output
    assert path.read_text() == head + "users:\n" + indented
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.yaml"]  # no draft left behind


def test_remove_keeps_the_comments_between_users_and_of_the_next_section(tmp_path):
    text = users_in_the_middle().replace("  - name: ops\n", "# admins\n  # ops deposits for others\n  - name: ops\n")
    path = copy_of_local(tmp_path, text)
    for name in ("carol", "ops"):
        code, output = users("remove", name, "--config", str(path))
        assert code == 0, output
    after = path.read_text()
    assert "# admins\n  # ops deposits for others\n\n" + WEB in after, after[after.index("name: bob"):]
    assert [u.name for u in load_config(path).users] == ["alice", "bob"]


def test_removing_the_last_user_keeps_the_next_sections_comment(tmp_path):
    path = copy_of_local(tmp_path, users_in_the_middle())
    for name in ("alice", "bob", "carol", "ops"):
        assert users("remove", name, "--config", str(path))[0] == 0
    after = path.read_text()
    assert "\nusers: []\n\n" + WEB in after
    assert load_config(path).users == []


def test_add_puts_the_user_before_the_next_sections_comment(tmp_path):
    path = copy_of_local(tmp_path, users_in_the_middle())
    code, output = users("add", "dave", "--config", str(path))
    assert code == 0, output
    after = path.read_text()
    assert after.index("dave") < after.index(WEB), after[after.index("name: ops"):]
    assert after.replace(after[after.rindex("  - name: ", 0, after.index("dave")):after.index("\n\n" + WEB) + 1],
                         "") == users_in_the_middle()  # the user's lines, and nothing else, went in


def test_a_symlinked_config_stays_a_symlink_and_the_file_it_points_to_gets_the_change(tmp_path):
    (tmp_path / "configs").mkdir()
    real = copy_of_local(tmp_path / "configs")  # var_dir: ../var, read from configs/
    (tmp_path / "deploy" / "current").mkdir(parents=True)
    link = tmp_path / "deploy" / "current" / "mesh.yaml"
    link.symlink_to(real)
    for args in (["add", "dave"], ["remove", "bob"]):
        code, output = users(*args, "--config", str(link))
        assert code == 0, output
        assert link.is_symlink(), "the symlink was replaced by a regular file"
    assert [u.name for u in load_config(real).users] == ["alice", "carol", "ops", "dave"]
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == ["mesh.yaml"]  # no draft left behind
    assert list((tmp_path / "deploy" / "current").iterdir()) == [link]


def test_an_edit_that_would_change_another_user_is_refused(tmp_path):
    path = copy_of_local(tmp_path)
    before = path.read_text()
    block = "    max_rate: 5\n  - name: 'dave'\n    key_hash: " + load_config(path).user("bob").key_hash + "\n"
    with pytest.raises(ConfigError, match="could not be made safely"):
        add_user(path, "dave", block)  # max_rate: 5 would go to ops, the user above
    assert path.read_text() == before


@pytest.mark.parametrize("empty", ["[]", "[ ]", "[  ]  # nobody yet"])
def test_a_user_added_to_an_empty_users_section_goes_into_it(tmp_path, empty):
    text = LOCAL.read_text()
    start = text.index("users:\n")
    following = re.compile(r"^[A-Za-z_]", re.MULTILINE).search(text, start + len("users:\n"))
    end = following.start() if following else len(text)
    path = copy_of_local(tmp_path, text[:start] + f"users: {empty}\n" + text[end:])
    assert load_config(path).users == []
    code, output = users("add", "dave", "--config", str(path))
    assert code == 0, output
    after = path.read_text()
    assert after.count("\nusers:") == 1 and [u.name for u in load_config(path).users] == ["dave"]
