"""Importing a benchmark script of scripts/ as a module, for the tests of its pure parts."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def import_script(*names: str) -> ModuleType:
    """Import ``names`` from scripts/ in order (a script imports its neighbours from its own
    folder, so the folder is on the path meanwhile); return the last."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return [importlib.import_module(name) for name in names][-1]
    finally:
        sys.path.remove(str(SCRIPTS))
