"""Adding and removing users in a config file, in place, and never leaving a file that does not load.

The file is edited as text, so its comments and layout stay; the new text is loaded with
``load_config`` (every check a start-up makes) before it replaces the old one, atomically.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import msgspec

from exchange.config import Config, Name, load_config
from exchange.errors import ConfigError

_USERS_KEY = re.compile(r"^users:[ \t]*(\[\])?[ \t]*(#.*)?$", re.MULTILINE)
_TOP_LEVEL = re.compile(r"^[A-Za-z_]", re.MULTILINE)


def check_name(name: str) -> None:
    """Raise ConfigError unless ``name`` is a valid user name."""
    try:
        msgspec.convert(name, Name)
    except msgspec.ValidationError:
        raise ConfigError(f"{name!r} is not a user name: 1 to 32 letters, digits, '_', '.' or '-',"
                          " starting with a letter or digit") from None


def user_block(name: str, key_hash: str, curve_public_key: str) -> str:
    return f"  - name: {name}\n    key_hash: {key_hash}\n    curve_public_key: '{curve_public_key}'\n"


def add_user(path: str | Path, name: str, block: str) -> Config:
    """Append ``block`` (a user's lines, from ``user_block``) to the file's users; return the new config."""
    path = Path(path)
    check_name(name)
    config = load_config(path)
    if config.user(name) is not None:
        raise ConfigError(f"{path}: user {name} exists already; `exchange users remove {name}` first")
    text = path.read_text()
    found = _USERS_KEY.search(text)
    if found is None:
        text = text.rstrip("\n") + "\n\nusers:\n" + block
    else:
        end = _section_end(text, found.end())
        head = text[:found.start()] + "users:" + text[found.end():end].rstrip("\n") + "\n"
        text = head + block + text[end:]
    return _replace(path, text, config, [*(u.name for u in config.users), name])


def remove_user(path: str | Path, name: str) -> Config:
    """Remove the user ``name`` (its lines) from the file; return the new config."""
    path = Path(path)
    config = load_config(path)
    if config.user(name) is None:
        raise ConfigError(f"{path}: no user {name}; there are {', '.join(u.name for u in config.users) or 'none'}")
    text = path.read_text()
    found = _USERS_KEY.search(text)
    section_end = _section_end(text, found.end()) if found else 0
    start = re.compile(rf"^  - name: {re.escape(name)}[ \t]*$", re.MULTILINE).search(
        text, found.end() if found else 0, section_end)
    if found is None or start is None:
        raise ConfigError(f"{path}: user {name} is not written as `  - name: {name}` under `users:`; edit the"
                          " file by hand")
    end = re.compile(r"^  - |^[A-Za-z_]", re.MULTILINE).search(text, start.end())
    text = text[:start.start()] + (text[end.start():] if end else "")
    if len(config.users) == 1:  # the last one: an empty section would read as null, not as no users
        text = text[:found.start()] + "users: []" + text[found.end():]
    return _replace(path, text, config, [u.name for u in config.users if u.name != name])


def _section_end(text: str, after: int) -> int:
    """Where the top-level section that starts before ``after`` ends (the next top-level key, or the end)."""
    following = _TOP_LEVEL.search(text, after + 1)
    return following.start() if following else len(text)


def _replace(path: Path, text: str, before: Config, users: list[str]) -> Config:
    """Write ``text`` to ``path`` if it loads as ``before`` with exactly ``users`` (names, in order)
    and nothing else changed; the old file stays otherwise."""
    fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        config = load_config(draft)
        if [u.name for u in config.users] != users or \
                msgspec.structs.replace(config, users=[]) != msgspec.structs.replace(before, users=[]):
            raise ConfigError(f"{path}: its users are not written as a list of `  - name: …` entries under"
                              " `users:`, so this change could not be made safely; edit the file by hand")
        os.chmod(draft, path.stat().st_mode & 0o777)
        os.replace(draft, path)
    except BaseException:
        os.unlink(draft)
        raise
    return config
