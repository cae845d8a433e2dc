"""One order's history from the journal writer's history service comes a chunk at a time, after the
last seq the asker has, and a gateway reads it to the end, up to a cap."""

from __future__ import annotations

import pytest
import zmq

import exchange.gateway.journal_reads
import exchange.journal.history
from exchange.core.messages import OrderFilled
from exchange.errors import JournalError
from exchange.gateway.journal_reads import JournalReads
from exchange.journal.history import HistoryService, answer
from exchange.journal.readers import order_history
from exchange.journal.schema import open_readonly
from exchange.wire.messages import Events, OrderHistoryRequest
from test_journal_cli import BUY, SELL, JournalBuilder, place

FILLS = 12
CHUNK = 5


@pytest.fixture
def journal(tmp_path, monkeypatch):
    """alice rests a sell of FILLS lots (order 1-1) that FILLS one-lot buys fill, a few a batch; the
    tables hold all but the last batch, which is in the log only (the indexer has not got to it)."""
    monkeypatch.setattr(exchange.journal.history, "MAX_EVENTS", CHUNK)
    path = tmp_path / "journal.db"
    j = JournalBuilder(path)
    j.batch("e1", place(0, "alice", "BTC-USD", SELL, f"{FILLS / 10_000:.4f}", "43000.00"))
    takers = [place(1 + n, "bob", "BTC-USD", BUY, "0.0001", "43000.00") for n in range(FILLS)]
    j.batch("e1", *takers[:4])
    j.batch("e1", *takers[4:9])
    j.writer.catch_up = lambda *streams: 0  # the tables stop here
    j.batch("e1", *takers[9:])
    j.close()
    whole = order_history(path, "1-1")
    fills = [e for e in whole if isinstance(e, OrderFilled)]
    assert len(whole) > 2 * CHUNK and len(fills) == FILLS and fills[-1].leaves_qty == 0
    return path, whole


def test_an_orders_history_longer_than_a_chunk_comes_in_chunks_after_the_last_seq(journal):
    path, whole = journal
    conn = open_readonly(path)
    try:
        first = answer(conn, str(path), OrderHistoryRequest(1, "1-1"), {"e1"})
        assert isinstance(first, Events) and len(first.events) == CHUNK and not first.last  # not called whole
        read, chunks = list(first.events), 1
        while True:
            chunk = answer(conn, str(path), OrderHistoryRequest(2, "1-1", read[-1].seq), {"e1"})
            read += chunk.events
            chunks += 1
            if chunk.last:
                break
            assert len(chunk.events) == CHUNK
    finally:
        conn.close()
    assert read == whole and chunks == 3  # the tables, then the log past them, each event once


def test_a_history_that_ends_on_a_chunk_is_last_on_the_next(journal):
    path, whole = journal
    conn = open_readonly(path)
    try:
        after = whole[-CHUNK - 1].seq  # exactly CHUNK events after it
        tail = answer(conn, str(path), OrderHistoryRequest(1, "1-1", after), {"e1"})
        end = answer(conn, str(path), OrderHistoryRequest(2, "1-1", whole[-1].seq), {"e1"})
        unknown = answer(conn, str(path), OrderHistoryRequest(3, "9-9"), {"e1"})
    finally:
        conn.close()
    assert tail.events == whole[-CHUNK:] and tail.last  # whether another follows is read ahead, not guessed
    assert end.events == [] and end.last
    assert unknown.events == [] and unknown.last


@pytest.fixture
def reads(journal, tmp_path, monkeypatch):
    """A gateway's JournalReads, the history service on ipc, and the after_seq of each order history
    request it answered (noted before the answer leaves: ``answered`` counts only once it has)."""
    chunks = []
    reply_to = exchange.journal.history.answer

    def answer_and_count(conn, path, request, streams):
        if isinstance(request, OrderHistoryRequest):
            chunks.append(getattr(request, "after_seq", 0))
        return reply_to(conn, path, request, streams)

    monkeypatch.setattr(exchange.journal.history, "answer", answer_and_count)
    ctx = zmq.Context()
    endpoint = f"ipc://{tmp_path}/history"
    service = HistoryService(ctx, str(journal[0]), endpoint, ["e1"], None)
    service.start()
    reads = JournalReads(endpoint, None)
    try:
        yield reads, chunks
    finally:
        reads.close()
        service.stop()
        ctx.term()


def test_a_gateway_reads_an_orders_whole_history_over_several_answers(journal, reads):
    _, whole = journal
    gateway, chunks = reads
    assert gateway.order_history("1-1") == whole  # ends FILLED, not open after its first chunk
    assert chunks == [0, whole[CHUNK - 1].seq, whole[2 * CHUNK - 1].seq]


def test_a_gateway_refuses_an_order_history_beyond_its_cap_rather_than_judge_from_part(journal, reads, monkeypatch):
    monkeypatch.setattr(exchange.gateway.journal_reads, "MAX_ORDER_EVENTS", 2 * CHUNK)
    gateway, chunks = reads
    with pytest.raises(JournalError, match=f"order 1-1 has more than {2 * CHUNK} events"):
        gateway.order_history("1-1")
    assert len(chunks) == 2  # it stopped asking at the cap
