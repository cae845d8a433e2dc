"""The history service's bounds: what an answer may read and hold, however it is asked, and how long
a gateway's abandoned reading may hold the journal."""

from __future__ import annotations

import sqlite3
import threading
import tracemalloc

import pytest
import zmq

import exchange.journal.history
from exchange.core.messages import Trade
from exchange.journal.handshake import JournalClient
from exchange.journal.history import Cursors, HistoryService, answer
from exchange.journal.schema import open_readonly
from exchange.wire.messages import (
    CheckpointPart, CheckpointPartRequest, EngineHistoryRequest, HistoryReply, JournalRefused, LoggedBatchesRequest,
    OrderEventsRequest, RecentTradesRequest, ReleasedBatchesRequest,
)
from test_journal_cli import BUY, SELL, JournalBuilder, place

TRADES = 12


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    """TRADES one-lot trades of BTC-USD on e1, four batches of takers; the tables hold all but the
    last batch, which is in the log only."""
    path = tmp_path_factory.mktemp("journal") / "journal.db"
    j = JournalBuilder(path)
    j.batch("e1", place(0, "alice", "BTC-USD", SELL, f"{TRADES / 10_000:.4f}", "43000.00"))
    takers = [place(1 + n, "bob", "BTC-USD", BUY, "0.0001", "43000.00") for n in range(TRADES)]
    for start in range(0, TRADES - 3, 3):
        j.batch("e1", *takers[start:start + 3])
    j.writer.catch_up = lambda *streams: 0  # the tables stop here
    j.batch("e1", *takers[TRADES - 3:])
    j.close()
    return path


def ask(path, request):
    conn = open_readonly(path)
    try:
        return answer(conn, str(path), request, {"e1"})
    finally:
        conn.close()


def test_recent_trades_come_up_to_the_limit_and_none_for_a_limit_below_one(journal):
    everything = ask(journal, RecentTradesRequest(1, "e1", "BTC-USD", 0, 10**6)).trades
    assert len(everything) == TRADES and all(isinstance(t, Trade) for t in everything)
    assert ask(journal, RecentTradesRequest(2, "e1", "BTC-USD", 0, 4)).trades == everything[-4:]
    for limit in (0, -1, -10**9):  # -1 was SQLite's "no LIMIT"; 0 kept every trade the tables lack
        assert ask(journal, RecentTradesRequest(3, "e1", "BTC-USD", 0, limit)).trades == [], limit


def test_recent_trades_are_never_more_than_a_chunk(journal, monkeypatch):
    monkeypatch.setattr(exchange.journal.history, "MAX_EVENTS", 5)
    assert len(ask(journal, RecentTradesRequest(1, "e1", "BTC-USD", 0, 10**6)).trades) == 5


@pytest.mark.parametrize("most", [0, -1])
def test_batches_asked_with_no_room_come_as_the_least_there_is_one_batch(journal, most):
    released = ask(journal, ReleasedBatchesRequest(1, "e1", 0, most)).batches
    logged = ask(journal, LoggedBatchesRequest(2, "e1", 0, 10**9, most)).bodies
    assert len(released) == 1 and released[0][1] == 1  # not none: a shard would take it for "nothing new"
    assert len(logged) == 1


PARTS, PART_SIZE = 16, 1 << 18  # a 4 MiB checkpoint in 256 KiB parts


@pytest.fixture
def checkpointed(tmp_path):
    path = tmp_path / "journal.db"
    JournalBuilder(path).close()
    conn = sqlite3.connect(path)
    with conn:  # the parts as the writer stores them: engine, seq, part, parts, epoch, batch, digest, state
        conn.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?)",
                         [("e1", 10, part, PARTS, 1, 1, "d", bytes([part]) * PART_SIZE) for part in range(PARTS)])
    conn.close()
    return path


def peak_while(path, request):
    """The answer to ``request``, and the most memory Python held meanwhile."""
    conn = open_readonly(path)
    tracemalloc.start()
    try:
        return answer(conn, str(path), request, {"e1"}), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conn.close()


def test_a_checkpoint_part_is_answered_from_that_part_alone(checkpointed):
    for part in (0, 7, PARTS - 1):
        reply, peak = peak_while(checkpointed, CheckpointPartRequest(1, "e1", 10, part))
        assert isinstance(reply, CheckpointPart) and reply.state == bytes([part]) * PART_SIZE
        assert peak < 3 * PART_SIZE, f"{peak / PART_SIZE:.1f} parts held to answer one"
    for part in (PARTS, -1):
        missing, _ = peak_while(checkpointed, CheckpointPartRequest(2, "e1", 10, part))
        assert isinstance(missing, JournalRefused) and f"no part {part}" in missing.reason


def test_a_checkpoints_parts_are_counted_without_reading_them(checkpointed):
    reply, peak = peak_while(checkpointed, EngineHistoryRequest(1, "e1"))
    assert reply.checkpoint_seq == 10 and reply.checkpoint_parts == PARTS
    assert peak < PART_SIZE, f"{peak / PART_SIZE:.1f} parts held to count them"


def test_an_abandoned_reading_is_closed_with_no_request_to_come(journal, tmp_path, monkeypatch):
    monkeypatch.setattr(exchange.journal.history, "MAX_EVENTS", 2)
    monkeypatch.setattr(exchange.journal.history, "CURSOR_IDLE_S", 0.0)  # idle from the first turn after
    closed = threading.Event()
    close = Cursors.close

    def close_and_say(cursors, cursor):
        close(cursors, cursor)
        closed.set()

    monkeypatch.setattr(Cursors, "close", close_and_say)
    ctx = zmq.Context()
    endpoint = f"ipc://{tmp_path}/history"
    service = HistoryService(ctx, str(journal), endpoint, ["e1"], None)
    service.start()
    try:
        with JournalClient(endpoint, None, HistoryReply) as client:
            first = client.ask(OrderEventsRequest(1, 0), 5.0)
        assert first.events and not first.last  # a reading under way; then the gateway is gone, and nobody asks
        assert closed.wait(5.0), "the idle reading is still open"
        writer = sqlite3.connect(journal)
        with writer:
            writer.execute("INSERT OR REPLACE INTO meta VALUES ('k', ?)", ("x" * 40_000,))
        busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        writer.close()
        assert busy == 0  # its snapshot no longer pins the WAL
    finally:
        service.stop()
        ctx.term()
