"""Ledger shards in the journal: written by Writer, read back by recover_ledger and released_batches,
checked by verify, sequenced and given epochs by the journal writer like engines.

The journal is written by real ledger shards and matchers (tests/ledger_journal.py), without processes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from ledger_journal import (
    ASSETS, CONFIG, INSTRUMENTS, SHARDS, TERMS, SELL, LedgerJournal, previous_version_checkpoint, session,
)

from exchange.cli.main import cli
from exchange.core import ledger_checkpoint
from exchange.core.ledger import Ledger
from exchange.core.ledger_checkpoint import LedgerCheckpointPart, digest_of
from exchange.core.ledger_messages import (
    OrderHeld, OrderSettled, SettleEvents, TransferRejected, TransferRepeated,
)
from exchange.core.messages import OrderCanceled
from exchange.core.orders import CancelReason
from exchange.errors import ConfigError, RejectCode
from exchange.journal.ledger_readers import recover_ledger, released_batches
from exchange.journal.ledger_rows import read_part
from exchange.journal.queries import open_journal
from exchange.journal.readers import EnginePosition, positions
from exchange.journal.role import answer
from exchange.journal.schema import open_db
from exchange.journal.sequencer import Sequencer
from exchange.journal.verify_ledger import verify_ledgers
from exchange.journal.writer import Writer
from exchange.wire.messages import EpochOpened, EventBatch, GetPositions, JournalRefused, OpenEpoch, Positions

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = str(ROOT / "configs" / "local.yaml")  # the same instruments, assets and shards as CONFIG


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> LedgerJournal:
    journal = session(tmp_path_factory.mktemp("ledger") / "journal.db", checkpoint_every=4)
    journal.close()
    return journal


@pytest.fixture
def db(built, tmp_path) -> Path:
    """A private copy of the session's journal, free to corrupt."""
    path = tmp_path / "journal.db"
    source, target = sqlite3.connect(built.path), sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    return path


def query(path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# -- the writer --------------------------------------------------------------------------------

def test_a_hold_is_journaled_as_a_command_and_an_event_with_columns_for_people(built):
    (command,) = query(built.path, "SELECT kind, user, symbol, order_id, client_order_id, seq, gateway FROM commands"
                                   " WHERE engine='ledger-1' AND kind='HoldOrder' AND client_order_id='a1'")
    assert command == ("HoldOrder", "alice", "BTC-USD", None, "a1", command[5], "gw")
    (event,) = query(built.path, "SELECT kind, symbol, user, order_id, trade_id, side, price, qty, body FROM events"
                                 " WHERE engine='ledger-1' AND seq=?", command[5])
    assert event[:8] == ("OrderHeld", "BTC-USD", "alice", None, None, "SELL", None, None)
    held = msgspec.json.decode(event[8], type=OrderHeld)
    assert held.hold.held == ASSETS["BTC"].to_units("0.5")


def test_a_settlement_is_journaled_without_the_engines_events_and_names_the_order(built):
    bodies = query(built.path, "SELECT body FROM commands WHERE engine='ledger-0' AND kind='SettleEvents'")
    settles = [msgspec.json.decode(body, type=SettleEvents) for (body,) in bodies]
    assert settles and all(s.events == [] for s in settles)
    rows = query(built.path, "SELECT user, order_id FROM events WHERE engine='ledger-0' AND kind='OrderSettled'")
    assert ("bob", "1-2") in rows and ("carol", "1-3") in rows


def test_entries_hold_every_row_of_every_entry_summing_to_zero_with_each_accounts_balance_after(built):
    assert query(built.path, "SELECT stream, entry_id, asset, SUM(delta) FROM entries GROUP BY stream, entry_id, asset"
                             " HAVING SUM(delta) != 0") == []
    for ledger in built.ledgers:
        stream = f"ledger-{ledger.shard}"
        assert query(built.path, "SELECT COUNT(DISTINCT entry_id), MAX(entry_id) FROM entries WHERE stream=?",
                     stream) == [(ledger.last_entry, ledger.last_entry)]
        for (account, asset), balance in ledger.balances.items():
            assert query(built.path, "SELECT balance FROM entries WHERE stream=? AND account=? AND asset=?"
                                     " ORDER BY entry_id DESC, row DESC LIMIT 1", stream, account, asset) == [(balance,)]


def test_engine_batches_write_no_entries_and_their_rows_are_as_before(built):
    assert query(built.path, "SELECT COUNT(*) FROM entries WHERE stream NOT LIKE 'ledger-%'") == [(0,)]
    assert query(built.path, "SELECT kind, user, order_id, side, price, qty FROM events WHERE engine='e1' AND seq=1") \
        == [("OrderAccepted", "alice", "1-1", "SELL", "43000.00", "0.5000")]


def test_ledger_checkpoint_parts_are_stored_like_an_engines(built):
    rows = query(built.path, "SELECT engine, seq, part, parts, digest FROM checkpoints")
    assert rows and {engine for engine, *_ in rows} == {"ledger-0", "ledger-1"}
    assert all((part, parts) == (0, 1) for _, _, part, parts, _ in rows)


def test_entries_have_no_index_but_their_key_so_a_commit_pays_for_none(built):
    indexes = query(built.path, "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='entries'")
    assert [name for (name,) in indexes] == ["sqlite_autoindex_entries_1"]  # the primary key


# -- recover_ledger ----------------------------------------------------------------------------

@pytest.mark.parametrize("checkpoint_every", [0, 3])
def test_recover_ledger_gives_the_live_ledger_and_where_its_stream_ends(tmp_path, checkpoint_every):
    journal = session(tmp_path / "journal.db", checkpoint_every)
    journal.close()
    for live in journal.ledgers:
        ledger, position = recover_ledger(journal.path, live.shard, len(journal.ledgers), TERMS.values(),
                                          ASSETS.values())
        assert digest_of(ledger) == digest_of(live) and ledger.problems() == []
        assert position == EnginePosition(1, journal.batches[f"ledger-{live.shard}"], live.seq)


def test_recover_ledger_without_a_journal_or_history_is_a_fresh_ledger_at_position_0(tmp_path):
    fresh = Ledger(1, 2, TERMS.values(), ASSETS.values())
    open_db(tmp_path / "empty.db").conn.close()
    for path in (tmp_path / "none.db", tmp_path / "empty.db"):
        ledger, position = recover_ledger(path, 1, 2, TERMS.values(), ASSETS.values())
        assert (ledger.shard, digest_of(ledger), position) == (1, digest_of(fresh), EnginePosition())


def test_recover_ledger_refuses_a_checkpoint_of_another_number_of_shards(built):
    with pytest.raises(ConfigError, match="holds a checkpoint of shard 0 of 2, but the config has 3 ledger shards"):
        recover_ledger(built.path, 0, 3, TERMS.values(), ASSETS.values())


# -- released_batches --------------------------------------------------------------------------

def test_released_batches_are_the_engines_whole_batches_after_a_seq_with_their_events(built):
    events = built.engine_events["e1"]
    found = released_batches(built.path, "e1", 0, 10**6)
    assert [e for _, _, _, batch in found for e in batch] == events
    assert all(epoch == 1 and batch[0].seq == first and batch[-1].seq == last for epoch, first, last, batch in found)
    second = found[1]
    mid = released_batches(built.path, "e1", second[1], 10**6)  # after the first event of batch 2
    assert mid[0] == second and mid == found[1:]


def test_released_batches_stop_at_whole_batches_past_max_events_and_give_one_at_least(built):
    found = released_batches(built.path, "e1", 0, 10**6)
    i = next(i for i, batch in enumerate(found[:-1]) if len(batch[3]) > 1)  # a batch of several events
    after = found[i][3][0].seq - 1
    one = released_batches(built.path, "e1", after, 1)
    assert one == found[i:i + 1]
    two = released_batches(built.path, "e1", after, len(found[i][3]) + 1)
    assert two == found[i:i + 2]


def test_released_batches_are_empty_when_there_is_nothing_new(built, tmp_path):
    last = built.engine_events["e1"][-1].seq
    assert released_batches(built.path, "e1", last, 100) == []
    assert released_batches(built.path, "e9", 0, 100) == []
    assert released_batches(tmp_path / "none.db", "e1", 0, 100) == []


# -- the journal writer: epochs and positions for ledger streams -------------------------------

def test_the_journal_writer_opens_epochs_for_ledger_shards_and_reports_their_positions(built, tmp_path):
    writer = Writer(open_db(tmp_path / "journal.db"), INSTRUMENTS)
    sequencer = Sequencer(positions(writer.conn, CONFIG.streams()))
    opened = answer(OpenEpoch("ledger-1", 7), sequencer, writer, CONFIG)
    assert opened == EpochOpened("ledger-1", 7, 1, 0, 0)
    refused = answer(OpenEpoch("ledger-5", 8), sequencer, writer, CONFIG)
    assert isinstance(refused, JournalRefused) and "no engine or ledger shard ledger-5" in refused.reason
    to_write, gaps = sequencer.accept([EventBatch("ledger-1", 1, 1, 1, 0, []), EventBatch("ledger-1", 1, 3, 1, 0, [])])
    writer.append(to_write)
    assert gaps == {"ledger-1"}
    reply = answer(GetPositions(9), sequencer, writer, CONFIG)
    assert reply == Positions(9, {"ledger-1": (1, 1, 0)})
    assert positions(writer.conn, CONFIG.streams()) == {"ledger-1": EnginePosition(1, 1, 0)}
    writer.conn.close()


# -- verify ------------------------------------------------------------------------------------

def verify_output(path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["journal", "verify", "--config", CONFIG_PATH, "--db", str(path)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.splitlines()


def test_verify_of_a_good_journal_whose_ledger_tables_lag_its_log_finds_no_fault(built, tmp_path):
    """ledger-0's tables hold only its first batches (the indexer had not reached the rest): verify
    checks what they hold and notes the rest; nothing is a fault."""
    path = tmp_path / "lagging.db"
    source = sqlite3.connect(built.path)
    source.backup(target := sqlite3.connect(path))
    source.close()
    (kept,) = target.execute("SELECT batch FROM batches WHERE engine='ledger-0' ORDER BY batch LIMIT 1 OFFSET 2"
                             ).fetchone()
    (last,) = target.execute("SELECT last_seq FROM batches WHERE engine='ledger-0' AND batch=?", (kept,)).fetchone()
    target.execute("DELETE FROM events WHERE engine='ledger-0' AND seq>?", (last,))
    target.execute("DELETE FROM entries WHERE stream='ledger-0' AND seq>?", (last,))
    target.execute("DELETE FROM commands WHERE engine='ledger-0' AND batch>?", (kept,))
    target.execute("UPDATE indexed SET batch=?, seq=? WHERE stream='ledger-0'", (kept, last))
    target.commit()
    target.close()
    code, lines = verify_output(path)
    assert code == 0, lines
    assert any(line.startswith(f"note: ledger-0: the tables hold batches 1..{kept} of its log's") for line in lines)


def test_verify_passes_on_a_good_journal_and_says_it_checked_the_ledgers(built):
    code, lines = verify_output(built.path)
    assert code == 0, lines
    assert lines[-1].startswith(f"OK: {built.path}: e1 events 1..") and "ledger-0 events 1..33" in lines[-1]
    assert lines[-1].endswith(f"log and tables, sequences, orders, trades, entries, balances, holds and replay agree"
                              f" ({len(query(built.path, 'SELECT DISTINCT engine, seq FROM checkpoints'))}"
                              " checkpoints checked)")


def faults_of(path) -> list[str]:
    code, lines = verify_output(path)
    assert code == 1 and lines[-1].startswith(f"FAULTY: {path}: "), lines
    return lines[:-1]


def bobs_first_trade(path) -> tuple[int, list]:
    """The entry id and rows of bob's first TRADE entry (shard 0)."""
    ((entry_id,),) = query(path, "SELECT MIN(entry_id) FROM entries WHERE stream='ledger-0' AND kind='TRADE'"
                                 " AND account='bob:held'")
    return entry_id, query(path, "SELECT row, account, asset, delta, balance FROM entries WHERE stream='ledger-0'"
                                 " AND entry_id=? ORDER BY row", entry_id)


def test_verify_reports_one_unit_moved_in_an_entry(db):
    entry_id, rows = bobs_first_trade(db)
    row, account, asset, delta, balance = rows[0]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET delta=delta-1, balance=balance-1 WHERE stream='ledger-0' AND entry_id=?"
                     " AND row=?", (entry_id, row))
    faults = faults_of(db)
    assert f"ledger-0: entry {entry_id} (TRADE) does not balance: its {asset} rows sum to -0.000001 USD" in faults
    assert any(f.startswith(f"ledger-0: entry {entry_id}: the entries table has TRADE at event") for f in faults)
    # the next row of that account starts from the changed balance: one more fault, not a cascade
    assert any(f.startswith("ledger-0: entry ") and f"{account} goes from" in f for f in faults)


def test_verify_reports_a_deleted_entry_row(db):
    entry_id, rows = bobs_first_trade(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM entries WHERE stream='ledger-0' AND entry_id=? AND row=1", (entry_id,))
    faults = faults_of(db)
    assert f"ledger-0: entry {entry_id}: row 1 is missing" in faults
    assert any(f.startswith(f"ledger-0: entry {entry_id} (TRADE) does not balance") for f in faults)


def test_verify_reports_a_ledger_checkpoint_the_replay_does_not_reach(db):
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET digest='0123456789abcdef0123456789abcdef' WHERE engine='ledger-1'")
    faults = faults_of(db)
    assert faults and all(f.startswith("ledger-1: the checkpoint at event") and "has digest 0123456789abcdef" in f
                          for f in faults)


def test_verify_reports_a_deleted_ledger_event_and_stops_that_replay(db):
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE engine='ledger-1' AND seq=2")
    faults = faults_of(db)
    assert faults[0] == "note: balances across shards and holds against the engines not checked: ledger-1 did not" \
                        " replay"
    assert "ledger-1: event 3: replay of FundsDeposited fails: ledger event 3 does not follow 1" in faults
    assert "ledger-1: replay stopped at event 3; the balances after it are not checked" in faults
    assert "ledger-1: entry 2 is in the entries table (event 2) but in no event" in faults


def test_verify_reports_an_open_order_whose_hold_a_shard_released_without_the_engine(tmp_path):
    journal = session(tmp_path / "journal.db")
    e1 = journal.matchers["e1"]
    order = e1.books["BTC-USD"].orders["1-4"]  # bob's, resting half filled, on shard 0
    forged = OrderCanceled(e1.seq + 1, journal.tick(), "BTC-USD", "1-4", "bob", order.side, order.leaves_qty,
                           CancelReason.USER, "b2")
    journal.ledger(journal.ledgers[0], SettleEvents("e1", 1, forged.seq, forged.seq, [forged]), "", 0)
    journal.place("carol", "ETH-USD", SELL, "1", "2600.00")  # the engine goes on: seq e1 passes the forged one
    journal.close()
    faults = faults_of(journal.path)
    # the forged event took the seq of carol's next acceptance, which shard 0 then took as settled already
    assert faults == [f"ledger-0: order {order_id} of {user} is open on e1 at seq {e1.seq}, where ledger-0 settled"
                      " it to, but holds nothing" for order_id, user in (("1-4", "bob"), ("1-7", "carol"))]


def test_verify_notes_clearing_it_cannot_check_while_shards_settled_engines_to_different_seqs(tmp_path):
    journal = session(tmp_path / "journal.db")
    journal.paused = {1}
    journal.place("bob", "ETH-USD", SELL, "1", "2600.00")
    journal.close()
    code, lines = verify_output(journal.path)
    settled = journal.ledgers[1].positions["e1"][1]
    assert code == 0, lines
    assert lines[0] == (f"note: *clearing across shards not checked: the shards settled e1 to different seqs"
                        f" (ledger-0 to {journal.matchers['e1'].seq}, ledger-1 to {settled})")


def test_verify_refuses_ledger_streams_when_the_config_has_accounts_off(built):
    from exchange.testing.mesh import toy_config

    conn = open_journal(built.path)
    try:
        assert verify_ledgers(conn, toy_config()) == (
            ["ledger-0: in the journal, but accounts are off in the config; not checked",
             "ledger-1: in the journal, but accounts are off in the config; not checked"], [])
    finally:
        conn.close()


def test_a_journal_begun_before_references_were_per_user_verifies_and_lists_a_retry(tmp_path, monkeypatch):
    """The older version journaled the first transfers and checkpoints knowing references by ref
    alone; this one restarted from such a checkpoint and went on, writing checkpoints that hold both
    kinds. Replayed from the first event the ledger knows every reference by user: verify compares
    each checkpoint with it seen as that checkpoint sees it, and finds no fault."""
    journal = LedgerJournal(tmp_path / "journal.db", checkpoint_every=2)
    monkeypatch.setattr(ledger_checkpoint, "take", previous_version_checkpoint)
    for user in ("alice", "bob"):  # on two shards: the older version took wire-1 for each
        journal.deposit(user, "USD", "1000", ref="wire-1")
        journal.deposit(user, "USD", "10", ref="wire-2")
    monkeypatch.undo()
    journal.ledgers = [ledger_checkpoint.restore(TERMS.values(), previous_version_checkpoint(ledger), ASSETS.values())
                       for ledger in journal.ledgers]  # restarted from the older version's checkpoints
    [refused] = journal.deposit("bob", "USD", "1000", ref="wire-1")  # what it was for is not known
    assert isinstance(refused, TransferRejected) and refused.code is RejectCode.DUPLICATE_ID
    journal.deposit("bob", "USD", "5", ref="wire-3")
    [repeated] = journal.deposit("bob", "USD", "5", ref="wire-3")
    assert isinstance(repeated, TransferRepeated)
    journal.deposit("carol", "USD", "5", ref="wire-3")  # bob's shard: carol's wire-3 is hers
    journal.deposit("alice", "USD", "7", ref="wire-3")
    journal.deposit("alice", "USD", "7", ref="wire-4")
    journal.close()
    layouts = {(stream, len(msgspec.msgpack.decode(read_part(state).data)))
               for stream, state in query(journal.path, "SELECT engine, state FROM checkpoints")}
    assert layouts == {("ledger-0", 9), ("ledger-0", 10), ("ledger-1", 9), ("ledger-1", 10)}  # both kinds
    conn = open_journal(journal.path)
    try:
        assert verify_ledgers(conn, CONFIG) == ([], [])
    finally:
        conn.close()
    result = CliRunner().invoke(cli, ["journal", "events", "--config", CONFIG_PATH, "--db", str(journal.path),
                                      "--kind", "TransferRepeated", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = msgspec.json.decode(result.output)
    assert (row["engine"], row["user"], row["detail"]) == ("ledger-0", "bob", "USD, ref wire-3, a retry of entry 3")


def journal_spanning_the_upgrade(tmp_path, monkeypatch) -> LedgerJournal:
    """Transfers and checkpoints written by the version before references were per user, then the
    shards restarted from them (the newest checkpoint, then the events after it), as they do."""
    journal = LedgerJournal(tmp_path / "journal.db", checkpoint_every=3)
    monkeypatch.setattr(ledger_checkpoint, "take", previous_version_checkpoint)
    for n in range(4):
        journal.deposit("bob", "USD", f"{100 + n}", ref=f"old-{n}")
        journal.deposit("alice", "USD", f"{100 + n}", ref=f"old-{n}")
    monkeypatch.undo()
    journal.ledgers = [recover_ledger(journal.path, n, SHARDS, TERMS.values(), ASSETS.values())[0]
                       for n in range(SHARDS)]
    assert any(ledger.legacy_refs for ledger in journal.ledgers)
    for n in range(4):
        journal.deposit("bob", "USD", "5", ref=f"new-{n}")
        journal.deposit("bob", "USD", "5", ref=f"new-{n}")  # a retry
    journal.close()
    return journal


def damage_first_checkpoint(path, stream: str) -> None:
    """Flip one byte of the data of ``stream``'s first checkpoint; its recorded digest stays."""
    with sqlite3.connect(path) as conn:
        rowid, state = conn.execute("SELECT rowid, state FROM checkpoints WHERE engine=? ORDER BY seq LIMIT 1",
                                    (stream,)).fetchone()
        part = read_part(state)
        data = bytearray(part.data)
        data[-1] ^= 0x01
        conn.execute("UPDATE checkpoints SET state=? WHERE rowid=?", (msgspec.msgpack.encode(
            LedgerCheckpointPart(part.shard, part.seq, part.part, part.parts, part.digest, bytes(data))), rowid))


def test_a_damaged_checkpoint_of_old_is_reported_as_one_that_does_not_restore(tmp_path, monkeypatch):
    """Defect: for a checkpoint knowing references by ref alone, verify blamed the replay (a digest
    that no checkpoint has) instead of the checkpoint, which does not restore."""
    journal = journal_spanning_the_upgrade(tmp_path, monkeypatch)
    assert verify_output(journal.path)[0] == 0
    damage_first_checkpoint(journal.path, "ledger-0")
    faults = faults_of(journal.path)
    assert any("ledger-0: the checkpoint at event" in f and "does not restore" in f for f in faults), faults
    assert not any("the replayed ledger has" in f for f in faults), faults


def test_verify_reports_a_retry_that_names_another_transfer_than_the_one_it_repeats(tmp_path):
    """Defect: replay ignored a journaled TransferRepeated, so one naming an entry and amount that
    are no transfer of that user and reference (what the requester was told) passed verify."""
    journal = LedgerJournal(tmp_path / "journal.db")
    journal.deposit("bob", "USD", "5", ref="wire-1")
    [repeated] = journal.deposit("bob", "USD", "5", ref="wire-1")
    assert isinstance(repeated, TransferRepeated)
    journal.close()
    told = msgspec.json.encode(msgspec.structs.replace(repeated, entry_id=999, amount=123)).decode()
    with sqlite3.connect(journal.path) as conn:
        conn.execute("UPDATE events SET body=? WHERE engine='ledger-0' AND seq=?", (told, repeated.seq))
    faults = faults_of(journal.path)
    assert any("a retry of bob's transfer wire-1" in f for f in faults), faults


def test_journal_events_lists_ledger_events_with_a_detail(built):
    result = CliRunner().invoke(cli, ["journal", "events", "--config", CONFIG_PATH, "--db", str(built.path),
                                      "--kind", "FundsWithdrawn", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = msgspec.json.decode(result.output)
    assert (row["engine"], row["user"], row["detail"]) == ("ledger-0", "bob", "USD, ref out-1")
    assert isinstance(msgspec.json.decode(query(built.path, "SELECT body FROM events WHERE engine='ledger-0' AND"
                                                            " kind='OrderSettled' LIMIT 1")[0][0], type=OrderSettled),
                      OrderSettled)
