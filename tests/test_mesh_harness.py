"""The test harness's own promises: a mesh that does not start says why, in the test's report."""

from __future__ import annotations

from types import SimpleNamespace

from exchange.testing.mesh import Mesh


def test_a_failed_start_reports_the_end_of_the_launchers_log_and_of_each_roles(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (tmp_path / "launcher.stderr").write_text("".join(f"launcher line {n}\n" for n in range(30)))
    (var / "ledger-0.log").write_text("ready\nsettle: engine e1 is not in the journal yet\n")
    (var / "gateway.log").write_text("ready\n")
    mesh = object.__new__(Mesh)
    mesh.log_path, mesh.config = tmp_path / "launcher.stderr", SimpleNamespace(var_dir=str(var))
    words = mesh.last_words(lines=5).splitlines()
    assert words[:6] == ["--- the end of launcher.stderr", *(f"launcher line {n}" for n in range(25, 30))]
    assert words[6:] == ["--- the end of gateway.log", "ready", "--- the end of ledger-0.log", "ready",
                         "settle: engine e1 is not in the journal yet"]
