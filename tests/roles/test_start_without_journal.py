"""A role that needs the journal's history and cannot see the journal file starts with it all the same.

The journal writer runs where the journal is; engines and the gateway are started as on another
host, with a copy of the config in another folder, where its relative journal path names nothing.
Before epochs came from the journal writer, such an engine started as epoch 1 with an empty book,
and the writer's watermark for the old epoch 1 released its new, unjournaled batches; later such
roles refused to start; now they read the history from the journal writer over the mesh.
"""

from __future__ import annotations

from pathlib import Path

from exchange.config import load_config
from exchange.core.matching import Matcher
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side
from exchange.engine.batches import Engine
from exchange.testing.mesh import Role, loopback_config
from exchange.wire.messages import Decoder, EventBatch, Request, Requests, encode
from exchange.journal.readers import EnginePosition
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer

def relative_journal_config(tmp_path: Path) -> Path:
    path = loopback_config(tmp_path)
    path.write_text(path.read_text().replace(f"path: {tmp_path / 'journal.db'}", "path: journal.db"))
    return path


def journal_with_history(directory: Path, config) -> None:
    """A journal in which engine e1 accepted one order in epoch 1."""
    instruments = [config.instrument_map()[s] for s in config.engine("e1").instruments]
    engine = Engine("e1", Matcher(1, instruments), 1, EnginePosition())
    order = PlaceOrder("alice", "BTC-USD", Side.BUY, 10, 4_300_000, ts_received=1)
    frame = engine.handle_requests([[encode([Request("gw", 1, 1, order)])]], Decoder(Requests))
    db = open_db(directory / "journal.db")
    Writer(db, config.instrument_map()).append([Decoder(EventBatch).decode(frame)])
    db.conn.close()


def test_engine_and_gateway_that_cannot_see_the_journal_start_with_its_history(tmp_path):
    path = relative_journal_config(tmp_path)
    config = load_config(path)
    journal_with_history(tmp_path, config)
    elsewhere = tmp_path / "elsewhere"  # another host: the same config, no journal
    elsewhere.mkdir()
    copy = elsewhere / "mesh.yaml"
    copy.write_text(path.read_text())
    roles = [Role(path, "journal-writer")]
    try:
        roles[0].wait_for("ready: journal")
        engine = Role(copy, "engine", "e1")
        roles.append(engine)
        ready = engine.wait_for(r"ready: engine e1 id 1 epoch (\d+), BTC-USD,ETH-USD from batch 1 seq (\d+)")
        assert int(ready.group(1)) == 2  # 1 made the history
        assert int(ready.group(2)) >= 1
        gateway = Role(copy, "gateway")
        roles.append(gateway)
        gateway.wait_for(r"1 orders known from the journal")
        assert not (elsewhere / "journal.db").exists()
    finally:
        for role in roles:
            role.kill()


def test_an_engine_waits_for_the_journal_writer_and_then_starts(tmp_path):
    path = loopback_config(tmp_path)
    engine = Role(path, "engine", "e2")
    try:
        engine.wait_for("waiting for the journal writer")
        assert "ready" not in engine.text()  # no epoch, no start
        writer = Role(path, "journal-writer")
        try:
            engine.wait_for(r"ready: engine e2 id 2 epoch 1,")
        finally:
            writer.kill()
    finally:
        engine.kill()
