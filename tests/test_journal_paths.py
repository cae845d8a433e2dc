"""A journal is opened read-only by its path, whatever characters the path's folders have."""

from __future__ import annotations

import sqlite3

import pytest

from exchange.journal.schema import open_db, open_readonly


@pytest.mark.parametrize("folder", ["run#2", "what?", "100%25", "with space"])
def test_a_journal_in_a_folder_of_any_name_is_opened_read_only_and_no_other_file(tmp_path, folder):
    path = tmp_path / folder / "journal.db"
    open_db(path).conn.close()
    decoy = tmp_path / folder.split("#")[0].split("?")[0]  # where a cut-off path would point
    conn = open_readonly(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM batches").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE mischief (x)")
    finally:
        conn.close()
    assert decoy == tmp_path / folder or not decoy.is_file()
