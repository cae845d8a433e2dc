"""The journal writer's history service: an engine rebuilds its books over the mesh, a chunk at a time."""

from __future__ import annotations

import pytest
import zmq

import exchange.gateway.journal_reads
import exchange.journal.history
import exchange.wire.messages
from exchange.engine.recovery import recover_all, recover_over_mesh
from exchange.errors import JournalError
from exchange.gateway.journal_reads import JournalReads
from exchange.journal.handshake import JournalClient
from exchange.journal.history import HistoryService, answer
from exchange.journal.readers import latest_checkpoint_seq, log_events
from exchange.journal.schema import open_readonly
from exchange.wire.messages import (
    CheckpointPartRequest, Decoder, EngineHistory, EngineHistoryRequest, EventBatch, EventsRequest, HistoryReply,
    JournalRefused,
    LoggedBatchesRequest,
)
from test_recovery import INSTRUMENTS, journaled_engine


@pytest.fixture
def service(tmp_path):
    """A journal of engine e1 (a checkpoint every 1,700 events), its history service on ipc, and the live engine."""
    engine = journaled_engine(tmp_path / "journal.db", 3000, checkpoint_every=1700)
    ctx = zmq.Context()
    history = HistoryService(ctx, str(tmp_path / "journal.db"), f"ipc://{tmp_path}/history", ["e1"], None)
    history.start()
    try:
        yield engine, f"ipc://{tmp_path}/history", history
    finally:
        history.stop()
        ctx.term()


def test_an_engine_rebuilt_over_the_mesh_equals_the_live_one_and_reads_in_chunks(service, monkeypatch, tmp_path):
    monkeypatch.setattr(exchange.journal.history, "MAX_EVENTS", 100)
    engine, endpoint, history = service
    with JournalClient(endpoint, None, HistoryReply) as client:
        matcher, position, last_trades = recover_over_mesh(client, "e1", 1, INSTRUMENTS)
    conn = open_readonly(tmp_path / "journal.db")
    after_checkpoint = sum(1 for _ in log_events(conn, "e1", latest_checkpoint_seq(conn, "e1")))  # a Match is one
    conn.close()
    assert after_checkpoint > 100 and history.answered >= 2 + after_checkpoint // 100  # start, part(s), chunks
    assert matcher.digest() == engine.matcher.digest() and matcher.seq == engine.matcher.seq
    assert (position.batch, position.seq) == (engine.batch, engine.matcher.seq)
    assert last_trades == {symbol: last.trade() for symbol, last in engine.last_trades.items()}


def test_the_history_over_the_mesh_is_what_the_file_says(service, tmp_path):
    engine, endpoint, _ = service
    with JournalClient(endpoint, None, HistoryReply) as client:
        over_mesh = recover_over_mesh(client, "e1", 1, INSTRUMENTS)
    from_file = recover_all(str(tmp_path / "journal.db"), "e1", 1, INSTRUMENTS)
    assert over_mesh[0].digest() == from_file[0].digest()
    assert over_mesh[1:] == from_file[1:]


def test_bad_requests_are_refused_with_a_reason(tmp_path):
    journaled_engine(tmp_path / "journal.db", 600, checkpoint_every=200)
    conn = open_readonly(tmp_path / "journal.db")
    try:
        unknown = answer(conn, "", EventsRequest(1, "e9", 0), {"e1"})
        assert isinstance(unknown, JournalRefused) and "no engine or ledger shard e9" in unknown.reason
        start = answer(conn, "", exchange.wire.messages.EngineHistoryRequest(2, "e1"), {"e1"})
        assert isinstance(start, EngineHistory) and start.checkpoint_seq and start.checkpoint_parts >= 1
        missing = answer(conn, "", CheckpointPartRequest(3, "e1", start.checkpoint_seq, start.checkpoint_parts), {"e1"})
        assert isinstance(missing, JournalRefused) and "no part" in missing.reason
        tail = answer(conn, "", EventsRequest(4, "e1", start.position[2]), {"e1"})
        assert tail.events == [] and tail.last
    finally:
        conn.close()


def test_a_refusal_reaches_the_asking_role_as_an_error(service):
    _, endpoint, _ = service
    with JournalClient(endpoint, None, HistoryReply) as client:
        with pytest.raises(JournalError, match="refused: no engine or ledger shard e9"):
            client.ask(EventsRequest(1, "e9", 0))


def test_a_gateways_reading_goes_on_a_chunk_at_a_time_under_a_bounded_number_of_cursors(tmp_path, monkeypatch):
    from exchange.journal.history import CURSOR_IDLE_S, MAX_CURSORS, Cursors
    from exchange.journal.readers import open_and_recent_order_events
    from exchange.wire.messages import OrderEventsRequest

    monkeypatch.setattr(exchange.journal.history, "MAX_EVENTS", 50)
    journaled_engine(tmp_path / "journal.db", 400, checkpoint_every=10**6)
    path = str(tmp_path / "journal.db")
    whole = list(open_and_recent_order_events(path, 0))
    assert len(whole) > 150
    cursors = Cursors(path)
    first = cursors.answer(OrderEventsRequest(1, 0), now=0.0)
    read, cursor = list(first.events), first.cursor
    assert len(first.events) == 50 and not first.last
    others = [cursors.answer(OrderEventsRequest(2, 0), now=1.0) for _ in range(MAX_CURSORS - 1)]
    assert all(not o.last for o in others)
    busy = cursors.answer(OrderEventsRequest(3, 0), now=1.0)
    assert isinstance(busy, JournalRefused) and "try again" in busy.reason
    while True:
        chunk = cursors.answer(OrderEventsRequest(4, 0, cursor), now=2.0)
        read += chunk.events
        if chunk.last:
            break
    assert read == whole and cursor not in cursors.open  # read to the end: closed
    gone = cursors.answer(OrderEventsRequest(5, 0, cursor), now=2.0)
    assert isinstance(gone, JournalRefused) and "begin again" in gone.reason
    cursors.expire(now=1.0 + CURSOR_IDLE_S + 0.1)  # the others were left idle
    assert not cursors.open


def test_a_request_the_journal_cannot_answer_is_refused_and_the_service_goes_on(service, monkeypatch):
    def broken(*args):
        raise OSError("disk I/O error")

    _, endpoint, _ = service
    monkeypatch.setattr(exchange.journal.history, "log_events", broken)
    with JournalClient(endpoint, None, HistoryReply) as client:
        with pytest.raises(JournalError, match="the journal could not be read: disk I/O error"):
            client.ask(EventsRequest(1, "e1", 0))
        start = client.ask(exchange.wire.messages.EngineHistoryRequest(2, "e1"))  # still answering
        assert isinstance(start, EngineHistory)


def test_a_gateway_gets_the_batches_it_missed_as_the_journal_logged_them_a_chunk_at_a_time(service, monkeypatch):
    monkeypatch.setattr(exchange.gateway.journal_reads, "MISSED_EVENTS", 50)
    engine, endpoint, _ = service
    reads = JournalReads(endpoint, None)
    try:
        batches, chunks = [], 0  # a gateway took batch 3, then batch 40 came
        while not batches or batches[-1].batch < 39:
            chunk = reads.logged_batches("e1", batches[-1].batch if batches else 3, 40)
            batches += [Decoder(EventBatch).decode(body) for body in chunk]
            chunks += 1
        assert [b.batch for b in batches] == list(range(4, 40)) and chunks > 1
        assert all(b.engine == "e1" and b.entries for b in batches)
        with pytest.raises(JournalError, match="holds no batch of e1 after"):
            reads.logged_batches("e1", engine.batch, engine.batch + 5)  # not written (yet)
        with pytest.raises(JournalError, match="no engine or ledger shard e9"):
            reads.logged_batches("e9", 3, 40)
    finally:
        reads.close()


def test_logged_batches_come_whole_in_order_up_to_about_the_events_asked_for(tmp_path):
    journaled_engine(tmp_path / "journal.db", 600, checkpoint_every=200)
    conn = open_readonly(tmp_path / "journal.db")
    try:
        one = answer(conn, "", LoggedBatchesRequest(1, "e1", 0, 10**9, 1), {"e1"})
        assert len(one.bodies) == 1  # at least one batch, however few events were asked for
        some = answer(conn, "", LoggedBatchesRequest(2, "e1", 5, 12, 10**6), {"e1"})
        assert [Decoder(EventBatch).decode(body).batch for body in some.bodies] == list(range(6, 12))
        rows = dict(conn.execute("SELECT batch, body FROM batches WHERE engine='e1'"))
        assert some.bodies == [rows[n] for n in range(6, 12)]  # byte for byte as logged
    finally:
        conn.close()


class IndexesWhileReading:
    """The history service's connection, but the writer's indexer commits the moment a question
    reads how far the tables hold the log, between its reading of the tables and of the log."""

    def __init__(self, conn, writer, nth: int):
        self.conn, self.writer, self.nth = conn, writer, nth

    def execute(self, sql, *args):
        if "FROM indexed" in sql:
            self.nth -= 1
            if self.nth == 0:
                self.writer.catch_up()
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.mark.parametrize("nth", [1, 2])  # 1: while the symbols are read; 2: while the last trades are
def test_an_engines_history_is_read_in_one_snapshot_though_the_indexer_commits_meanwhile(tmp_path, nth):
    from exchange.core.messages import Match
    from exchange.journal.schema import open_db
    from exchange.journal.writer import Writer
    from test_recovery import CONFIG

    path = tmp_path / "journal.db"
    journaled_engine(path, 400, checkpoint_every=0, per_batch=20)
    writer = Writer(open_db(path), CONFIG.instrument_map())  # its tables are behind the log
    conn = open_readonly(path)
    symbols, last = set(), {}
    for event in log_events(conn, "e1"):
        if type(event).__name__ != "OrderRejected":
            symbols.add(event.symbol)
        if isinstance(event, Match):
            last[event.symbol] = event.seq
    reply = answer(IndexesWhileReading(conn, writer, nth), str(path), EngineHistoryRequest(1, "e1"), {"e1"})
    assert set(reply.symbols) == symbols and {t.symbol: t.seq for t in reply.last_trades} == last
