"""scripts/bench_indexer.py: it rebuilds a journal's tables from its log, and says so only if they
come out equal to the journal's own (a figure of other work would be no figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange.journal import indexer as indexer_module
from ledger_journal import INSTRUMENTS, session
from script_modules import import_script

LOCAL_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local.yaml"


@pytest.fixture(scope="module")
def bench():
    return import_script("bench_indexer")


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    built = session(tmp_path_factory.mktemp("indexer") / "journal.db")  # engines and ledger shards, indexed
    built.close()
    return built.path


def test_a_rebuild_of_a_journal_with_accounts_gives_its_tables_and_times_every_part(bench, journal):
    result = bench.rebuild(journal, INSTRUMENTS, chunk=5)
    assert result["same_tables"]
    assert all(result["rows"][table] > 0 for table in ("commands", "events", "entries")), result["rows"]
    assert result["engine_commands"] > 0 and result["batches"] > 0
    assert {"commands", "events", "entries", "indexed", "commit", "the rest"} <= set(result["parts"])
    assert sum(result["parts"].values()) == pytest.approx(result["seconds"])


def test_main_reports_each_part_per_engine_command(bench, journal, tmp_path, capsys):
    out = tmp_path / "indexer.json"
    assert bench.main([str(journal), "--config", str(LOCAL_CONFIG), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["same_tables"] and figures["seconds"] > 0
    printed = capsys.readouterr().out
    assert "µs per engine command" in printed and "the rebuilt tables equal the journal's" in printed


def test_a_rebuild_that_loses_rows_is_refused(bench, journal, monkeypatch, capsys):
    real = indexer_module.ledger_rows

    def forgetful(b, command_rows, event_rows, entry_rows):  # the last entry row of each ledger batch goes missing
        real(b, command_rows, event_rows, entry_rows)
        if entry_rows:
            entry_rows.pop()

    monkeypatch.setattr(indexer_module, "ledger_rows", forgetful)
    assert not bench.rebuild(journal, INSTRUMENTS)["same_tables"]
    assert bench.main([str(journal), "--config", str(LOCAL_CONFIG)]) == 1
    assert "differ" in capsys.readouterr().out
