"""The repository's docs and code stand on their own: they never send a reader to files outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"DESIGN\.md|ZEROMQ\.md|STYLE\.md|\.\./shared")


def test_no_doc_or_module_cites_a_file_outside_the_repository():
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("exchange/**/*.py"),
             *ROOT.glob("tests/**/*.py"), *ROOT.glob("scripts/*"), *ROOT.glob("examples/**/*")]
    found = [f"{path.relative_to(ROOT)}:{n}" for path in files if path.is_file() and path != Path(__file__)
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert found == []
