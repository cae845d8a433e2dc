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

from exchange.config import Config, Name, UserConfig, load_config
from exchange.errors import ConfigError

_USERS_KEY = re.compile(r"^users:[ \t]*(\[[ \t]*\])?[ \t]*(#.*)?$", re.MULTILINE)  # users: [ ] is empty too
_TOP_LEVEL = re.compile(r"^[A-Za-z_]", re.MULTILINE)
_NEXT_ITEM = re.compile(r"^  - |^[A-Za-z_]", re.MULTILINE)
_CONTENT_LINE = re.compile(r"^[ \t]*[^\s#].*$", re.MULTILINE)  # a line with more than blanks and a comment


def check_name(name: str) -> None:
    """Raise ConfigError unless ``name`` is a valid user name."""
    try:
        msgspec.convert(name, Name)
    except msgspec.ValidationError:
        raise ConfigError(f"{name!r} is not a user name: 1 to 32 letters, digits, '_', '.' or '-',"
                          " starting with a letter or digit") from None


def user_block(name: str, key_hash: str, curve_public_key: str) -> str:
    # quoted: a name such as no, null, 123 or 2024-01-01 reads as a boolean, null, number or date otherwise
    return f"  - name: '{name}'\n    key_hash: {key_hash}\n    curve_public_key: '{curve_public_key}'\n"


def add_user(path: str | Path, name: str, block: str) -> Config:
    """Append ``block`` (a user's lines, from ``user_block``) to the file's users; return the new config.

    The block goes after the last user's lines, before the blank and comment lines that lead to
    the next section."""
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
        at = _after_line(text, _content_end(text, found.end(), _section_end(text, found.end())))
        head = text[:found.start()] + _users_line(found, empty=False) + text[found.end():at]
        text = head + ("" if head.endswith("\n") else "\n") + block + text[at:]
    return _replace(path, text, config, config.users, name)


def remove_user(path: str | Path, name: str) -> Config:
    """Remove the user ``name`` (its lines) from the file; return the new config.

    The blank and comment lines after the user's last line stay: they lead to what follows."""
    path = Path(path)
    config = load_config(path)
    if config.user(name) is None:
        raise ConfigError(f"{path}: no user {name}; there are {', '.join(u.name for u in config.users) or 'none'}")
    text = path.read_text()
    found = _USERS_KEY.search(text)
    section_end = _section_end(text, found.end()) if found else 0
    written = f"({re.escape(name)}|'{re.escape(name)}'|\"{re.escape(name)}\")"  # bare, '…' or "…"
    start = re.compile(rf"^  - name:[ \t]*{written}([ \t]+#.*)?[ \t]*$", re.MULTILINE).search(
        text, found.end() if found else 0, section_end)
    if found is None or start is None:
        raise ConfigError(f"{path}: user {name} is not written as `  - name: {name}` under `users:`; edit the"
                          " file by hand")
    following = _NEXT_ITEM.search(text, start.end(), section_end)
    end = _after_line(text, _content_end(text, start.end(), following.start() if following else section_end))
    text = text[:start.start()] + text[end:]
    if len(config.users) == 1:  # the last one: an empty section would read as null, not as no users
        text = text[:found.start()] + _users_line(found, empty=True) + text[found.end():]
    return _replace(path, text, config, [u for u in config.users if u.name != name], None)


def _section_end(text: str, after: int) -> int:
    """Where the top-level section that starts before ``after`` ends (the next top-level key, or the end)."""
    following = _TOP_LEVEL.search(text, after + 1)
    return following.start() if following else len(text)


def _content_end(text: str, start: int, end: int) -> int:
    """Where the last line of ``text[start:end]`` that holds more than a comment ends (``start`` if none):
    the blank and comment lines after it belong to what follows."""
    last = start
    for line in _CONTENT_LINE.finditer(text, start, end):
        last = line.end()
    return last


def _after_line(text: str, at: int) -> int:
    """The start of the line after the one that ``at`` ends."""
    return at + 1 if text.startswith("\n", at) else at


def _users_line(found: re.Match, empty: bool) -> str:
    """The ``users:`` line, as ``users: []`` if ``empty``, keeping its comment."""
    if bool(found.group(1)) == empty:
        return found.group(0)
    return "users:" + (" []" if empty else "") + (f"  {found.group(2)}" if found.group(2) else "")


def _replace(path: Path, text: str, before: Config, kept: list[UserConfig], added: str | None) -> Config:
    """Write ``text`` to ``path`` if it loads as ``before`` with exactly the users ``kept`` (whole, in
    order) followed by the new user ``added`` (if any), and nothing else changed; the old file stays otherwise.

    A symlinked ``path`` stays a symlink: the file it points to is the one replaced."""
    target = Path(os.path.realpath(path))
    elsewhere = target.parent != Path(os.path.abspath(path)).parent  # a symlink to a file in another folder
    if elsewhere:  # whose relative paths the draft, next to the file, reads from that folder: compare alike
        before = load_config(target)
    fd, draft = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".yaml", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            config = load_config(draft)
        except ConfigError as e:
            detail = str(e).removeprefix(f"{draft}: ")
            raise ConfigError(f"{path}: the edited file would not load ({detail}), so it was left as it was;"
                              " edit the file by hand") from None
        if config.users[:len(kept)] != kept or [u.name for u in config.users[len(kept):]] != \
                ([added] if added else []) or \
                msgspec.structs.replace(config, users=[]) != msgspec.structs.replace(before, users=[]):
            raise ConfigError(f"{path}: its users are not written as a list of `  - name: …` entries under"
                              " `users:`, so this change could not be made safely; edit the file by hand")
        os.chmod(draft, target.stat().st_mode & 0o777)
        os.replace(draft, target)
    except BaseException:
        os.unlink(draft)
        raise
    return load_config(path) if elsewhere else config
