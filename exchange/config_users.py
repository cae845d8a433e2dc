"""Adding and removing users in a config file, in place, and never leaving a file that does not load.

The file is edited as text, so its comments and layout stay; the new text is loaded with
``load_config`` (every check a start-up makes) before it replaces the old one, atomically.

Two edits at once would each write the file as it was plus their own change, and the first would be
lost: an edit holds an exclusive flock on ``.<name>.lock`` beside the file (the file a symlink points
to) from its first read until the file is replaced, and another waits for it (``_locked``). The lock
file is there only while an edit runs.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from exchange.config import Config, Name, UserConfig, load_config
from exchange.errors import ConfigError

_USERS_KEY = re.compile(r"^users:[ \t]*(\[[ \t]*\])?[ \t]*(#.*)?$", re.MULTILINE)  # users: [ ] is empty too
_TOP_LEVEL = re.compile(r"^[A-Za-z_]", re.MULTILINE)
_NEXT_ITEM = re.compile(r"^  - |^[A-Za-z_]", re.MULTILINE)
_CONTENT_LINE = re.compile(r"^[ \t]*[^\s#].*$", re.MULTILINE)  # a line with more than blanks and a comment

LOCK_WAIT_S = 10.0  # an edit waits this long for another one's lock, then gives up
_LOCK_POLL_S = 0.05
_EDIT_TRIES = 3  # an edit that finds the file changed since it read it makes its change again, this often


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


def add_user(path: str | Path, name: str, block: str, dry_run: bool = False) -> Config:
    """Append ``block`` (a user's lines, from ``user_block``) to the file's users; return the new config.
    ``dry_run``: make every check of the edit (the edited file loads, with the users it should have)
    but leave the file as it is.

    The block goes after the last user's lines, before the blank and comment lines that lead to
    the next section."""
    path = Path(path)
    check_name(name)
    return _edit(path, functools.partial(_add_user, path, name, block, dry_run))


def _add_user(path: Path, name: str, block: str, dry_run: bool) -> Config:
    config = load_config(path)
    if config.user(name) is not None:
        raise ConfigError(f"{path}: user {name} exists already; `exchange users remove {name}` first")
    text = read = path.read_text()
    found = _USERS_KEY.search(text)
    if found is None:
        text = text.rstrip("\n") + "\n\nusers:\n" + block
    else:
        at = _after_line(text, _content_end(text, found.end(), _section_end(text, found.end())))
        head = text[:found.start()] + _users_line(found, empty=False) + text[found.end():at]
        text = head + ("" if head.endswith("\n") else "\n") + block + text[at:]
    return _replace(path, read, text, config, config.users, name, dry_run)


def remove_user(path: str | Path, name: str) -> Config:
    """Remove the user ``name`` (its lines) from the file; return the new config.

    The blank and comment lines after the user's last line stay: they lead to what follows."""
    path = Path(path)
    return _edit(path, functools.partial(_remove_user, path, name))


def _remove_user(path: Path, name: str) -> Config:
    config = load_config(path)
    if config.user(name) is None:
        raise ConfigError(f"{path}: no user {name}; there are {', '.join(u.name for u in config.users) or 'none'}")
    text = read = path.read_text()
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
    return _replace(path, read, text, config, [u for u in config.users if u.name != name], None)


class _Changed(Exception):
    """The file is no longer the text the edit read: the edit is made again on what it is now."""


def _edit(path: Path, edit: Callable[[], Config]) -> Config:
    """``edit()`` (which reads the file, changes it and replaces it) under the file's lock; again if
    the file changed before it was replaced (an editor that takes no lock)."""
    with _locked(path):
        for _ in range(_EDIT_TRIES):
            try:
                return edit()
            except _Changed:
                continue
    raise ConfigError(f"{path}: the file changed while this command edited it, {_EDIT_TRIES} times; nothing"
                      " was changed: try again")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the config at ``path``, waiting at most LOCK_WAIT_S for another
    edit's.

    The lock file is removed by its holder, while it still holds it: an edit that waited on the
    removed file finds it is no longer the one at the path, and locks the one that is."""
    target = Path(os.path.realpath(path))
    if not target.is_file():
        load_config(path)  # nothing to edit: the error every command gives, and no lock file beside nothing
    lock = target.parent / f".{target.name}.lock"
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"{path}: cannot open its lock file {lock}: {e.strerror}") from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigError(f"{path}: another `exchange users` command has been editing it for"
                                          f" {LOCK_WAIT_S:g} s (it holds {lock}); nothing was changed: try"
                                          " again when it is done") from None
                    _wait_for_lock()
            try:
                current = os.stat(lock)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the edit that held it removed it: lock the one at the path now
    try:
        yield
    finally:
        try:
            os.unlink(lock)  # before letting go of it, so that a waiter on this file tries again
        except OSError:
            pass  # left in place: the next edit locks it as it is
        os.close(fd)


def _wait_for_lock() -> None:
    """A moment before trying the lock again: flock cannot wait with a time limit."""
    time.sleep(_LOCK_POLL_S)


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


def _replace(path: Path, read: str, text: str, before: Config, kept: list[UserConfig], added: str | None,
             dry_run: bool = False) -> Config:
    """Write ``text`` to ``path`` if it loads as ``before`` with exactly the users ``kept`` (whole, in
    order) followed by the new user ``added`` (if any), and nothing else changed; the old file stays otherwise.
    Raise _Changed if the file is no longer ``read``, the text the edit started from. ``dry_run``:
    every check, and no write.

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
        if target.read_text() != read:
            raise _Changed
        if dry_run:
            os.unlink(draft)
            return config
        os.chmod(draft, target.stat().st_mode & 0o777)
        os.replace(draft, target)
    except BaseException:
        os.unlink(draft)
        raise
    return load_config(path) if elsewhere else config
