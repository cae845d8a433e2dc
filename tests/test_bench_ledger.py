"""scripts/bench_ledger.py: the ledger core's work per command is measured on a venue that adds up.

A figure taken over holds that were refused, or over settlement that went wrong, would measure
something else; so the script checks the shards after every run, and these tests check that it
does (and that its figures say what they claim).
"""

from __future__ import annotations

import json

import pytest

from script_modules import import_script


@pytest.fixture(scope="module")
def bench():
    return import_script("bench_core", "bench_ledger")


def test_a_run_holds_every_placement_settles_every_order_and_leaves_the_shards_consistent(bench):
    commands, kinds = bench.make_stream(4_000, 42)
    result = bench.run_once(commands, shards=2, settle_every=40)
    assert result["problems"] == []
    placements = sum(1 for c in commands if type(c) is bench.PlaceOrder)
    assert result["held"] == placements
    # every held order has at least its acceptance settled, and fills settle both of their orders
    assert result["settled"] > placements
    assert all(seconds > 0 for seconds in result["seconds"].values())


def test_a_shard_that_settles_wrongly_fails_the_run(bench, monkeypatch):
    commands, _ = bench.make_stream(2_000, 42)
    real = bench._settle

    def forgetful(ledgers, events):  # the second shard never hears of anything
        return real(ledgers[:1], events)

    monkeypatch.setattr(bench, "_settle", forgetful)
    problems = bench.run_once(commands, shards=2, settle_every=40)["problems"]
    assert any("holds" in p or "nets to" in p for p in problems), problems


def test_main_reports_per_command_figures_and_writes_them(bench, tmp_path, capsys):
    out = tmp_path / "ledger.json"
    assert bench.main(["--commands", "3000", "--runs", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    per_command = figures["us_per_command"]
    assert set(per_command) == {"hold", "match", "settle", "ledger"}
    ledger = per_command["ledger"]
    assert ledger["min"] <= ledger["median"] <= ledger["max"]
    assert ledger["median"] == pytest.approx(per_command["hold"]["median"] + per_command["settle"]["median"],
                                             rel=0.5)
    assert 0.5 < figures["holds_per_command"] < 1 and figures["settled_events_per_command"] > 1
    assert "hold + settle" in capsys.readouterr().out


def test_main_refuses_nonsense_arguments(bench):
    with pytest.raises(SystemExit):
        bench.main(["--settle-every", "0"])


def test_the_shards_on_the_wire_hold_and_settle_everything_and_a_lost_batch_fails_the_run(bench, monkeypatch):
    commands, _ = bench.make_stream(3_000, 42)
    result = bench.run_on_the_wire(commands, shards=2, settle_every=40)
    assert result["problems"] == [] and result["seconds"] > 0
    real = bench.Shard.settle

    def deaf(shard, batch):  # shard 1 never hears of the engine's batches: its holds are never released
        return real(shard, batch) if shard.ledger.shard == 0 else True

    monkeypatch.setattr(bench.Shard, "settle", deaf)
    problems = bench.run_on_the_wire(commands, shards=2, settle_every=40)["problems"]
    assert any("nets to" in p for p in problems), problems


def test_main_with_wire_reports_the_shards_on_the_wire(bench, tmp_path, capsys):
    out = tmp_path / "ledger.json"
    assert bench.main(["--commands", "2000", "--runs", "1", "--wire", "--json", str(out)]) == 0
    per_command = json.loads(out.read_text())["us_per_command"]
    assert 0 < per_command["codec"]["median"] < per_command["wire"]["median"]
    printed = capsys.readouterr().out
    assert "shards on the wire" in printed and "the codec alone" in printed


def test_the_codec_alone_decodes_what_was_taken_and_encodes_what_was_sent(bench, monkeypatch):
    """The shards' frames are all handed to the codec measurement: 10 turns of 40 commands, each two
    gateway frames and one engine batch decoded by both shards; and what they sent, encoded again
    from its decoded form, is what they sent."""
    commands, _ = bench.make_stream(400, 42)
    frames = {}
    monkeypatch.setattr(bench, "codec_seconds", lambda taken, sent: frames.update(taken=taken, sent=sent) or 0.0)
    bench.run_on_the_wire(commands, shards=2, settle_every=40)
    monkeypatch.undo()
    assert len(frames["taken"]) == 10 * (2 + 2)
    encoded = []
    real_encode = bench.encode
    monkeypatch.setattr(bench, "encode", lambda message: encoded.append(real_encode(message)) or encoded[-1])
    assert bench.codec_seconds(frames["taken"], frames["sent"]) > 0
    assert encoded == frames["sent"] and len(encoded) > 20
