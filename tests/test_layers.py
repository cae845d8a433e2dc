"""The architecture, tested: exchange.core imports nothing that does I/O, reads a clock or draws at random.

The core may import only the modules of CORE_ALLOWED (pure computation), whatever else exists: a
new import has to be added there on purpose, where a reviewer sees it. The check parses the source
with ``ast`` instead of importing it, so it cannot be fooled by what happens to be in ``sys.modules``
already. It follows imports of other ``exchange`` modules, so the core cannot reach anything else
through a module outside ``core`` either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exchange"
CORE = PACKAGE / "core"
# top-level modules the core (and any exchange module it imports) may import: no I/O, clock or randomness
CORE_ALLOWED = {"__future__", "abc", "bisect", "collections", "dataclasses", "decimal", "enum", "exchange",
                "functools", "hashlib", "heapq", "itertools", "math", "msgspec", "operator", "re",
                "sortedcontainers", "typing"}
# a few that must never be allowed, to test the check itself
IO_MODULES = {"zmq", "sqlite3", "sqlite_utils", "socket", "asyncio", "time", "os", "random", "logging",
              "threading", "subprocess"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(module: str) -> Path | None:
    """The file of an ``exchange`` module, or None if there is none (e.g. a name inside a module)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[str]:
    """Every module a source file names in an import, ``__import__`` or ``importlib.import_module``."""
    package = module_name(path) if path.is_relative_to(ROOT) else ""
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]  # relative imports start from the file's package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # may name a submodule
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def reachable_from(paths: list[Path]) -> dict[Path, set[str]]:
    """The files reachable from ``paths`` through imports of ``exchange`` modules, with their imports."""
    seen: dict[Path, set[str]] = {}
    todo = list(paths)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = imports(path)
        for module in seen[path]:
            if module == "exchange" or module.startswith("exchange."):
                # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
                parts = module.split(".")
                for end in range(1, len(parts) + 1):
                    source = source_of(".".join(parts[:end]))
                    if source is not None:
                        todo.append(source)
    return seen


def io_imports(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] in IO_MODULES}


def not_allowed(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] not in CORE_ALLOWED}


CORE_FILES = sorted(CORE.glob("*.py"))


def test_the_core_is_where_the_layout_says():
    assert {path.name for path in CORE_FILES} >= {"__init__.py", "instruments.py", "orders.py", "messages.py",
                                                   "book.py", "matching.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: path.name)
def test_core_module_imports_only_allowed_modules(path):
    assert not_allowed(imports(path)) == set()


def test_modules_the_core_reaches_import_only_allowed_modules():
    reached = reachable_from(CORE_FILES)
    assert PACKAGE / "errors.py" in reached  # the walk does follow exchange imports
    offenders = {module_name(path): sorted(not_allowed(names)) for path, names in reached.items()
                 if not_allowed(names)}
    assert offenders == {}


def test_the_allow_list_has_no_io_module():
    assert CORE_ALLOWED & IO_MODULES == set()


def test_an_import_outside_the_allow_list_is_caught(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import json\nfrom pathlib import Path\nimport urllib.request\nfrom decimal import Decimal\n")
    assert not_allowed(imports(source)) == {"json", "pathlib", "pathlib.Path", "urllib.request"}


def test_the_check_sees_every_form_of_import(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "import os.path\n"
        "from time import monotonic\n"
        "import json, socket as s\n"
        "def later():\n"
        "    import threading\n"
        "    __import__('random')\n"
        "    importlib.import_module('sqlite3')\n"
        "    try:\n"
        "        import zmq\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    assert io_imports(imports(source)) == {"os.path", "time", "time.monotonic", "socket", "threading", "random",
                                           "sqlite3", "zmq"}


# -- the parts of the mesh, and what each may import ----------------------------------------------
# Roles talk to each other only through exchange.wire (messages on sockets); what one part takes from
# another is a pure helper, named here one by one: never another role's process or state.
BASE = {"exchange.core", "exchange.config", "exchange.errors", "exchange.wire"}
PARTS = {
    "exchange.wire": {"exchange.core", "exchange.config", "exchange.errors"},
    "exchange.gateway": BASE | {"exchange.journal.handshake"},  # the journal over the mesh, never its file
    "exchange.engine": BASE | {"exchange.journal.readers", "exchange.journal.schema", "exchange.journal.handshake",
                               "exchange.marketdata.depth", "exchange.marketdata.levels"},
    "exchange.journal": BASE | {"exchange.cli.common"},  # its `exchange journal` commands
    "exchange.marketdata": BASE | {"exchange.client.private_feed", "exchange.gateway.protocol",
                                   "exchange.journal.queries", "exchange.journal.handshake"},
    "exchange.client": BASE | {"exchange.gateway.protocol"},
    "exchange.web": BASE | {"exchange.marketdata.feed", "exchange.marketdata.depth", "exchange.gateway.protocol"},
    "exchange.gateway.protocol": {"exchange.core", "exchange.errors"},  # pure: what a client may reuse
}


def _part_files(part: str) -> list[Path]:
    return sorted((ROOT / part.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_of_the_mesh_imports_only_what_it_may(part):
    allowed = PARTS[part] | {part}
    offenders = {}
    for path in _part_files(part):
        bad = sorted(m for m in imports(path) if (m == "exchange" or m.startswith("exchange."))
                     and not any(m == a or m.startswith(a + ".") or a.startswith(m + ".") for a in allowed))
        if bad:
            offenders[module_name(path)] = bad
    assert offenders == {}


def test_nothing_that_runs_in_a_role_imports_the_test_harness():
    for part in [*PARTS, "exchange.core"]:
        for path in _part_files(part):
            assert not any(m.startswith("exchange.testing") for m in imports(path)), module_name(path)


def test_the_folder_listing_shows_the_mesh():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders >= {"core", "wire", "gateway", "engine", "journal", "marketdata", "client", "cli", "testing", "web"}
    for folder in folders:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "import" in doc, f"exchange/{folder}/__init__.py must say what it is and what it may import"


# -- no role but the journal writer opens the journal file -----------------------------------------
# Roles read what they need of the journal from the journal writer's history service
# (exchange.journal.history), so each can run on a host without the journal's disk.
OPENS_THE_JOURNAL = {"read_snapshot", "open_readonly", "open_db", "read_positions", "recover_all", "recover",
                     "recover_ledger", "released_batches", "open_and_recent_order_events", "order_history",
                     "wait_for_tables"}
ROLE_PROCESSES = ["exchange/engine/role.py", "exchange/engine/batches.py", "exchange/ledger/role.py",
                  "exchange/ledger/shard.py", "exchange/marketdata/notifier.py", *sorted(
                      str(p.relative_to(ROOT)) for folder in ("gateway", "web")
                      for p in (ROOT / "exchange" / folder).rglob("*.py"))]


@pytest.mark.parametrize("path", ROLE_PROCESSES)
def test_no_role_but_the_journal_writer_opens_the_journal_file(path):
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("exchange.") for alias in node.names}
    assert not imported & OPENS_THE_JOURNAL, path
    assert "journal.path" not in source and "sqlite3" not in source, path
