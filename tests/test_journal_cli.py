"""`exchange journal …` on a journal written by real matchers, without running any process.

A short trading session on the instruments of configs/local.yaml is matched by one Matcher per
engine and written with Writer, batch by batch, as the journal writer would. The commands
are checked against what the session did; ``verify`` passes on it and names each fault we plant.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from exchange.cli.main import cli
from exchange.config import load_config
from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import (
    CancelAll, CancelOrder, DepthUpdate, OrderAccepted, OrderFilled, PlaceOrder, ReplaceOrder, TopOfBook, expand,
)
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.journal.queries import EVENT_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS, open_journal, to_iso, to_ns
from exchange.journal.verify import verify
from exchange.wire.messages import Decoder, Entry, EventBatch
from exchange.journal.readers import engine_events
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer
from exchange.marketdata.levels import LevelBook, level_changes

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = str(ROOT / "configs" / "local.yaml")
CONFIG = load_config(CONFIG_PATH)
INSTRUMENTS = CONFIG.instrument_map()
ENGINE_INSTRUMENTS = {e.name: [INSTRUMENTS[s] for s in e.instruments] for e in CONFIG.engines}
ENGINE_IDS = {e.name: e.id for e in CONFIG.engines}
T0 = to_ns("2026-01-02T03:04:05Z")
BUY, SELL = Side.BUY, Side.SELL


def at(second: int) -> str:
    return to_iso(T0 + second * 1_000_000_000)


def place(second: int, user: str, symbol: str, side: Side, qty: str, price: str | None,
          tif: str = "GTC", stp: str | None = None, cid: str = "") -> PlaceOrder:
    instrument = INSTRUMENTS[symbol]
    return PlaceOrder(user, symbol, side, instrument.to_lots(qty),
                      None if price is None else instrument.to_ticks(price), TimeInForce(tif),
                      None if stp is None else SelfTradePrevention(stp), cid, T0 + second * 1_000_000_000)


class JournalBuilder:
    """One Matcher per configured engine; ``batch`` matches commands and journals them as one batch."""

    def __init__(self, path: Path):
        self.path = path
        self.db = open_db(path)
        self.writer = Writer(self.db, INSTRUMENTS)
        self.matchers = {name: Matcher(ENGINE_IDS[name], ENGINE_INSTRUMENTS[name]) for name in ENGINE_IDS}
        self.batches = Counter()
        self.events: dict[str, list] = {name: [] for name in ENGINE_IDS}

    def batch(self, engine: str, *commands, take_checkpoint: bool = False) -> EventBatch:
        matcher = self.matchers[engine]
        first = matcher.seq + 1
        entries = [Entry("gw", 1, n, command, matcher.handle(command)) for n, command in enumerate(commands)]
        self.batches[engine] += 1
        state = checkpoint.take(matcher)[0] if take_checkpoint else b""  # small: one part
        batch = EventBatch(engine, 1, self.batches[engine], first, matcher.seq, entries, state)
        self.writer.append([batch])
        self.writer.catch_up()
        for entry in entries:  # as the tables list them: a Match as its two fills and its trade
            self.events[engine] += expand(entry.events)
        return batch

    def close(self) -> None:
        self.db.conn.close()


def session(path: Path) -> JournalBuilder:
    """Orders 1-1..1-7 on e1 (BTC-USD, ETH-USD) and 2-1, 2-2 on e2 (AAPL), one command a second."""
    j = JournalBuilder(path)
    j.batch("e1",
            place(0, "alice", "BTC-USD", SELL, "0.5", "43000.10", cid="a1"),  # 1-1
            place(1, "bob", "BTC-USD", BUY, "0.2", "43000.10", cid="b1"),  # 1-2, trade 1-1
            place(2, "alice", "ETH-USD", SELL, "2", "2500.00"))  # 1-3
    j.batch("e1",
            place(3, "bob", "BTC-USD", BUY, "0.1", "43000.10", tif="IOC"),  # 1-4, trade 1-2
            place(4, "carol", "ETH-USD", BUY, "5", "2500.00", tif="IOC"),  # 1-5, trade 1-3, expires 3
            CancelOrder("bob", "BTC-USD", "1-1", "", T0 + 5 * 10**9))  # not bob's: rejected
    j.batch("e1",
            ReplaceOrder("alice", "BTC-USD", INSTRUMENTS["BTC-USD"].to_lots("0.4"), None, "1-1", "",
                         T0 + 6 * 10**9),  # keeps priority, leaves 0.1
            PlaceOrder("carol", "BTC-USD", BUY, 0, 100, ts_received=T0 + 7 * 10**9),  # BAD_QTY
            take_checkpoint=True)
    j.batch("e2",
            place(8, "carol", "AAPL", BUY, "10", "180.00"),  # 2-1
            place(9, "dave", "AAPL", SELL, "4", "179.00"),  # 2-2, trade 2-1 at 180.00
            CancelOrder("carol", "AAPL", "2-1", "", T0 + 10 * 10**9))
    j.batch("e1",
            CancelOrder("alice", "BTC-USD", "1-1", "", T0 + 11 * 10**9),
            place(12, "alice", "ETH-USD", BUY, "1", "2400.00"),  # 1-6
            place(13, "alice", "ETH-USD", SELL, "0.4", "2400.00", stp="DECREMENT"),  # 1-7: 1-6 reduced to 0.6
            CancelAll("nobody", None, T0 + 14 * 10**9))  # no events: an empty entry
    return j


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> JournalBuilder:
    builder = session(tmp_path_factory.mktemp("journal") / "journal.db")
    builder.close()
    return builder


@pytest.fixture
def db(built, tmp_path) -> Path:
    """A private copy of the session's journal, free to corrupt."""
    path = tmp_path / "journal.db"
    source = sqlite3.connect(built.path)
    target = sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    return path


def run(*args: str, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["journal", *args, "--config", CONFIG_PATH, "--db", str(db)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def rows(*args: str, db: Path) -> list[dict]:
    code, output = run(*args, "--json", db=db)
    assert code == 0, output
    return json.loads(output)


# -- orders ------------------------------------------------------------------------------------

def test_orders_are_newest_first_and_built_from_all_their_events(built):
    found = rows("orders", db=built.path)
    assert [o["order_id"] for o in found] == ["1-7", "1-6", "2-2", "2-1", "1-5", "1-4", "1-3", "1-2", "1-1"]
    by_id = {o["order_id"]: o for o in found}
    assert by_id["1-1"] == {
        "order_id": "1-1", "symbol": "BTC-USD", "user": "alice", "side": "SELL", "price": "43000.10",
        "qty": "0.4000", "filled_qty": "0.3000", "leaves_qty": "0.0000", "status": "CANCELED", "tif": "GTC",
        "client_order_id": "a1", "ts_accepted": T0, "ts_last": T0 + 11 * 10**9}
    assert [(by_id[i]["status"], by_id[i]["filled_qty"], by_id[i]["leaves_qty"]) for i in
            ("1-2", "1-5", "1-6", "1-7", "2-1", "2-2")] == [
        ("FILLED", "0.2000", "0.0000"), ("EXPIRED", "2.000", "0.000"), ("NEW", "0.000", "0.600"),
        ("CANCELED", "0.000", "0.000"), ("CANCELED", "4", "0"), ("FILLED", "4", "0")]
    assert by_id["1-6"]["qty"] == "0.600"  # reduced by self-trade prevention


@pytest.mark.parametrize("args, expected", [
    (["--limit", "2"], ["1-7", "1-6"]),
    (["--oldest-first", "--limit", "3"], ["1-1", "1-2", "1-3"]),
    (["--symbol", "btc-usd"], ["1-4", "1-2", "1-1"]),
    (["--user", "carol"], ["2-1", "1-5"]),
    (["--order-id", "1-5"], ["1-5"]),
    (["--since", at(1), "--until", at(4)], ["1-4", "1-3", "1-2"]),
    (["--since", at(1)[:-1] + "+00:00", "--until", "2026-01-02T04:04:08+01:00"], ["1-3", "1-2"]),
    (["--user", "alice", "--symbol", "ETH-USD", "--oldest-first"], ["1-3", "1-6", "1-7"]),
    (["--user", "nobody"], []),
    (["--client-order-id", "a1"], ["1-1"]),
    (["--client-order-id", "#a1", "--user", "alice"], ["1-1"]),
    (["--client-order-id", "a1", "--user", "bob"], []),
    (["--client-order-id", "nope"], []),
])
def test_orders_filters(built, args, expected):
    assert [o["order_id"] for o in rows("orders", *args, db=built.path)] == expected


def test_orders_as_a_table_for_people_and_csv_for_programs(built):
    code, table = run("orders", "--symbol", "AAPL", db=built.path)
    assert code == 0
    header, rule, *lines = table.splitlines()
    assert header.split() == ["order_id", "symbol", "user", "side", "price", "qty", "filled_qty", "leaves_qty",
                              "status", "tif", "client_order_id", "ts_accepted", "ts_last"]
    assert set(rule.replace(" ", "")) == {"-"} and len(lines) == 2
    assert lines[0].split() == ["2-2", "AAPL", "dave", "SELL", "179.00", "4", "4", "0", "FILLED", "GTC",
                                at(9), at(9)]
    assert at(9) == "2026-01-02T03:04:14.000000Z"
    code, text = run("orders", "--symbol", "AAPL", "--csv", db=built.path)
    assert code == 0
    assert list(csv.DictReader(io.StringIO(text))) == [
        {k: "" if v is None else str(v) for k, v in row.items()} for row in rows("orders", "--symbol", "AAPL",
                                                                                   db=built.path)]
    assert run("orders", "--user", "nobody", db=built.path) == (0, "no orders match\n")
    assert run("orders", "--user", "nobody", "--csv", db=built.path) == (0, ",".join(ORDER_COLUMNS) + "\n")


@pytest.mark.parametrize("command, columns", [("orders", ORDER_COLUMNS), ("trades", TRADE_COLUMNS),
                                              ("events", EVENT_COLUMNS)])
def test_rows_have_the_documented_columns(built, command, columns):
    assert {tuple(row) for row in rows(command, db=built.path)} == {columns}


# -- trades and events -------------------------------------------------------------------------

def test_trades_name_maker_and_taker_and_match_either_side(built):
    assert rows("trades", "--symbol", "AAPL", db=built.path) == [{
        "trade_id": "2-1", "symbol": "AAPL", "price": "180.00", "qty": "4", "taker_side": "SELL",
        "maker_user": "carol", "maker_order_id": "2-1", "taker_user": "dave", "taker_order_id": "2-2",
        "ts_event": T0 + 9 * 10**9}]
    assert [t["trade_id"] for t in rows("trades", "--user", "alice", db=built.path)] == ["1-3", "1-2", "1-1"]
    assert [t["trade_id"] for t in rows("trades", "--order-id", "1-5", db=built.path)] == ["1-3"]
    assert [t["trade_id"] for t in rows("trades", "--user", "carol", "--oldest-first", db=built.path)] == [
        "1-3", "2-1"]
    assert [t["trade_id"] for t in rows("trades", "--until", at(3), db=built.path)] == ["1-1"]


def test_events_filter_by_kind_order_and_time(built):
    rejects = rows("events", "--kind", "OrderRejected", db=built.path)
    assert [(e["engine"], e["user"], e["detail"].split()[0]) for e in rejects] == [
        ("e1", "carol", "BAD_QTY"), ("e1", "bob", "NOT_YOUR_ORDER")]
    history = rows("events", "--order-id", "1-1", "--oldest-first", db=built.path)
    assert [e["kind"] for e in history] == ["OrderAccepted", "OrderFilled", "OrderFilled", "OrderRejected",
                                            "OrderReplaced", "OrderCanceled"]  # bob's cancel of 1-1 refused
    assert history[1]["detail"] == "maker, leaves 0.3000 #a1" and history[1]["trade_id"] == "1-1"
    assert history[-1]["qty"] == "0.1000" and history[-1]["detail"] == "USER #a1"
    at_12 = rows("events", "--since", at(12), "--until", at(13), "--oldest-first", db=built.path)
    assert {e["ts_event"] for e in at_12} == {T0 + 12 * 10**9}
    assert [e["kind"] for e in at_12] == ["OrderAccepted"]  # it rests: what matching decided, no more
    code, output = run("events", "--kind", "Match", db=built.path)  # no row is one: its fills and trade are
    assert code == 2 and "'Match' is not one of" in output
    everything = rows("events", "--limit", "0", db=built.path)
    assert len(everything) == sum(len(events) for events in built.events.values())
    assert len(rows("events", "--limit", "5", db=built.path)) == 5


# -- stats -------------------------------------------------------------------------------------

def test_stats_count_what_the_session_journaled(built):
    found = rows("stats", db=built.path)
    e1, e2 = built.events["e1"], built.events["e2"]
    assert [(e["engine"], e["epochs"], e["batches"], e["commands"], e["events"], e["first_seq"], e["last_seq"],
             e["checkpoints"]) for e in found["engines"]] == [
        ("e1", 1, 4, 12, len(e1), 1, len(e1), 1), ("e2", 1, 1, 3, len(e2), 1, len(e2), 0)]
    assert (found["events"], found["commands"], found["batches"], found["checkpoints"]) == (
        len(e1) + len(e2), 15, 5, 1)
    assert (found["ts_first"], found["ts_last"]) == (T0, T0 + 13 * 10**9)
    assert found["size_bytes"] >= built.path.stat().st_size > 0
    expected = Counter((e.symbol, type(e).__name__) for e in e1 + e2)
    assert {(c["symbol"], c["kind"]): c["count"] for c in found["counts"]} == expected
    code, text = run("stats", db=built.path)
    assert code == 0
    assert f"time      {at(0)} .. {at(13)} (13.000 s)" in text
    assert f"totals    {len(e1) + len(e2)} events, 15 commands, 5 batches, 1 checkpoints" in text
    code, text = run("stats", "--csv", db=built.path)
    assert text.splitlines()[0] == "symbol,kind,count" and "AAPL,Trade,1" in text.splitlines()


# -- errors ------------------------------------------------------------------------------------

def test_a_missing_journal_is_one_error_line(tmp_path):
    code, output = run("orders", db=tmp_path / "none.db")
    assert code == 1 and output == f"Error: {tmp_path / 'none.db'}: no journal here\n"


def test_a_file_that_is_not_a_journal_is_one_error_line(tmp_path):
    path = tmp_path / "other.db"
    path.write_bytes(b"not sqlite at all, not even close" * 100)
    code, output = run("verify", db=path)
    assert code == 1 and output.startswith(f"Error: {path}: not an SQLite journal")


def test_bad_options_are_usage_errors(built):
    code, output = run("orders", "--since", "yesterday", db=built.path)
    assert code == 2 and "'yesterday' is not an ISO-8601 time" in output
    code, output = run("trades", "--json", "--csv", db=built.path)
    assert code == 2 and "--json and --csv exclude each other" in output


def test_times_keep_nanoseconds():
    assert to_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert to_ns("1970-01-01T01:00:00+01:00") == 0
    assert to_ns("1970-01-02") == 86_400 * 10**9
    assert to_iso(86_400 * 10**9 + 5_000) == "1970-01-02T00:00:00.000005Z"
    # a decimal comma and the basic format are ISO-8601 too: their fraction counts as well
    assert to_ns("1970-01-01T00:00:01,5Z") == to_ns("19700101T000001.5Z") == 1_500_000_000
    assert to_ns("1970-01-01T00:00:01.5+01:00") == 1_500_000_000 - 3_600 * 10**9


# -- verify ------------------------------------------------------------------------------------

def test_verify_passes_on_a_good_journal(built):
    code, output = run("verify", db=built.path)
    assert (code, output.splitlines()) == (0, [
        f"OK: {built.path}: e1 events 1..{len(built.events['e1'])} in 4 batches; e2 events"
        f" 1..{len(built.events['e2'])} in 1 batches; log and tables, sequences, orders, trades and replay agree"
        " (1 checkpoints checked)"])


def corrupt(path: Path, *statements: tuple) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(*statement)
    conn.close()


def rewrite(engine: str, event, **columns) -> tuple:
    """The UPDATE that swaps the body of ``event``'s row (and the given columns) for ``event``."""
    sets = ", ".join(["body=?", *(f"{c}=?" for c in columns)])
    return (f"UPDATE events SET {sets} WHERE engine=? AND seq=?",
            (msgspec.json.encode(event).decode(), *columns.values(), engine, event.seq))


def faults_of(db: Path) -> list[str]:
    code, output = run("verify", db=db)
    lines = output.splitlines()
    assert code == 1 and lines[-1].startswith(f"FAULTY: {db}: ")
    return lines[:-1]


def first(events, kind, **fields):
    return next(e for e in events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items()))


def test_verify_reports_a_deleted_event_as_a_gap(db, built):
    corrupt(db, ("DELETE FROM events WHERE engine='e1' AND seq=5",))
    faults = faults_of(db)
    assert faults[0] == "e1: batch 1: event 5: its events row is missing or not its logged event"
    assert "e1: event 5 is missing (after 4 comes 6)" in faults
    assert "e1: replay stopped after event 4 at the gap; the books after it are not checked, nor 1 later" \
           " checkpoint" in faults
    assert any(f.startswith("e1: batch 1 should hold events 1..") for f in faults)


def test_verify_reports_a_changed_seq(db, built):
    last = len(built.events["e2"])  # carol's cancel of 2-1
    corrupt(db, (f"UPDATE events SET seq=1000 WHERE engine='e2' AND seq={last}",))
    assert faults_of(db) == [
        f"e2: batch 1: event {last}: its events row is missing or not its logged event",
        f"e2: events {last}..999 are missing (after {last - 1} comes 1000)",
        f"e2: replay stopped after event {last - 1} at the gap; the books after it are not checked",
        f"e2: event 1000 says batch 1, which holds events 1..{last}",
        f"e2: the row of event 1000 holds the body of event {last}",
        f"e2: the batches end at event {last} but the events at 1000"]


def test_verify_reports_a_fill_for_an_order_never_accepted(db, built):
    matcher = built.matchers["e1"]
    forged = OrderFilled(matcher.seq + 1, T0 + 20 * 10**9, "BTC-USD", "1-99", "mallory", BUY, "1-99", 1,
                         4_300_010, 0, 1, False)
    conn = open_db(db)
    writer = Writer(conn, INSTRUMENTS)
    writer.append([EventBatch(
        "e1", 1, built.batches["e1"] + 1, forged.seq, forged.seq,
        [Entry("gw", 1, 0, CancelAll("mallory", None, forged.ts_event), [forged])])])
    writer.catch_up()
    conn.conn.close()
    faults = faults_of(db)
    assert f"e1: event {forged.seq}: OrderFilled names order 1-99, which this engine never accepted" in faults
    assert f"e1: event {forged.seq}: fill of trade 1-99, which has no Trade event" in faults
    assert f"e1: event {forged.seq}: replay of OrderFilled fails: event names order 1-99, which is not open" \
        in faults


def test_verify_reports_a_fill_quantity_the_replay_disagrees_with(db, built):
    fill = first(built.events["e1"], OrderFilled, trade_id="1-1", maker=True)
    changed = msgspec.structs.replace(fill, last_qty=fill.last_qty + 1)
    corrupt(db, rewrite("e1", changed, qty="0.2001"))
    faults = faults_of(db)
    assert f"e1: event {fill.seq + 2}: trade 1-1 is 0.2000 @ 43000.10 but fill {fill.seq} (1-1) is" \
           " 0.2001 @ 43000.10" in faults
    assert f"e1: event {fill.seq}: replay of OrderFilled fails: event {fill.seq}: 1-1 leaves 2999" in faults


def test_verify_reports_a_column_that_disagrees_with_the_body(db, built):
    accepted = first(built.events["e2"], OrderAccepted)
    corrupt(db, (f"UPDATE events SET user='mallory' WHERE engine='e2' AND seq={accepted.seq}",))
    assert faults_of(db) == [f"e2: 1 event row has a user column that disagrees with the body (first: event"
                             f" {accepted.seq}, 'mallory' instead of 'carol')"]


def test_verify_reports_a_top_of_book_the_replayed_book_does_not_have(tmp_path):
    """A journal from before the core stopped deriving market data holds DepthUpdate and TopOfBook
    events among the engine's, numbered with them: each must agree with the replayed book."""
    path = tmp_path / "journal.db"
    j = JournalBuilder(path)
    matcher = j.matchers["e2"]
    order = place(8, "carol", "AAPL", BUY, "10", "180.00")
    events = matcher.handle(order)
    derived = [e for e in level_changes({"AAPL": LevelBook("AAPL")}, events) if isinstance(e, (DepthUpdate, TopOfBook))]
    old_style = events + [msgspec.structs.replace(e, seq=events[-1].seq + n) for n, e in enumerate(derived, 1)]
    assert [type(e) for e in old_style] == [OrderAccepted, DepthUpdate, TopOfBook]
    j.writer.append([EventBatch("e2", 1, 1, 1, 3, [Entry("gw", 1, 0, order, old_style)])])
    j.writer.catch_up()
    j.close()
    code, output = run("verify", db=path)
    assert code == 0, output  # as written, it agrees with itself
    top = old_style[-1]
    corrupt(path, rewrite("e2", msgspec.structs.replace(top, bid_qty=top.bid_qty + 1)))
    assert faults_of(path) == ["e2: batch 1: event 3: its events row is missing or not its logged event",
                               "e2: event 3: TopOfBook AAPL says bid 11 @ 180.00 / ask -; the replayed"
                               " book has bid 10 @ 180.00 / ask -"]


def test_verify_reports_a_checkpoint_whose_digest_the_replay_does_not_reach(db):
    corrupt(db, ("UPDATE checkpoints SET digest='0123456789abcdef0123456789abcdef'",))
    faults = faults_of(db)
    assert len(faults) == 1
    assert faults[0].startswith("e1: the checkpoint at event") and "has digest 0123456789abcdef" in faults[0]


def test_verify_reports_a_missing_batch(db):
    corrupt(db, ("DELETE FROM batches WHERE engine='e1' AND batch=2",))
    faults = faults_of(db)
    assert faults[0] == "e1: batch 2 is missing"
    assert any(f.startswith("e1: events ") and f.endswith("say batch 2, which is not in the batches table")
               for f in faults)


def test_verify_reports_an_engine_the_config_does_not_know(db):
    writer = Writer(open_db(db), INSTRUMENTS)
    logged = open_journal(db).execute("SELECT body FROM batches WHERE engine='e2' ORDER BY batch").fetchall()
    writer.append([msgspec.structs.replace(Decoder(EventBatch).decode(body), engine="e9") for (body,) in logged])
    writer.catch_up()
    writer.conn.close()
    assert faults_of(db) == ["e9: in the journal but not in the config; its events are not replayed"]


def test_verify_reports_an_engine_id_that_differs_from_the_config(built):
    conn = open_journal(built.path)
    faults = verify(conn, ENGINE_INSTRUMENTS, {**ENGINE_IDS, "e2": 5})
    conn.close()
    assert faults == ["e2: event 1: order id 2-1 is not of the engine id the config gives e2 (5)",
                      "e2: event 2: order id 2-2 is not of the engine id the config gives e2 (5)"]


# -- the storage boundary, as a property -------------------------------------------------------

users = st.sampled_from(["alice", "bob", "carol"])
symbols = st.sampled_from(["BTC-USD", "ETH-USD"])
commands = st.one_of(
    st.builds(lambda user, symbol, side, qty, offset, tif, stp: PlaceOrder(
        user, symbol, side, qty, 250_000 + offset, tif, stp),
        users, symbols, st.sampled_from(Side), st.integers(1, 2000), st.integers(-6, 6),
        st.sampled_from(TimeInForce), st.sampled_from([None, *SelfTradePrevention])),
    st.builds(lambda user, symbol, side, qty, tif: PlaceOrder(user, symbol, side, qty, None, tif),
              users, symbols, st.sampled_from(Side), st.integers(1, 2000),
              st.sampled_from([TimeInForce.IOC, TimeInForce.FOK])),
    st.builds(lambda user, n: CancelOrder(user, "", f"1-{n}"), users, st.integers(1, 40)),
    st.builds(lambda user, n, qty, offset: ReplaceOrder(user, "", qty, None if offset is None else 250_000 + offset,
                                                        f"1-{n}"),
              users, st.integers(1, 40), st.integers(1, 2000), st.none() | st.integers(-6, 6)),
    st.builds(CancelAll, users, st.none() | symbols),
)


@given(st.lists(st.lists(commands, min_size=1, max_size=6), max_size=12), st.integers(0, 3))
def test_events_round_trip_through_the_journal_and_verify_passes(batches, checkpoint_every):
    db = open_db(":memory:")
    writer = Writer(db, INSTRUMENTS)
    matcher = Matcher(1, ENGINE_INSTRUMENTS["e1"])
    written, checkpoint_seq = [], 0
    for n, batch in enumerate(batches, start=1):
        first_seq = matcher.seq + 1
        entries = [Entry("gw", 1, i, command, matcher.handle(command)) for i, command in enumerate(batch)]
        state = b""
        if checkpoint_every and n % checkpoint_every == 0 and matcher.seq > checkpoint_seq:
            state, checkpoint_seq = checkpoint.take(matcher)[0], matcher.seq  # small: one part
        writer.append([EventBatch("e1", 1, n, first_seq, matcher.seq, entries, state)])
        writer.catch_up()
        written += [event for entry in entries for event in entry.events]
    assert list(engine_events(db.conn, "e1")) == written
    assert verify(db.conn, ENGINE_INSTRUMENTS, ENGINE_IDS) == []


def test_every_journal_command_is_documented_and_the_documented_lines_parse():
    text = (ROOT / "docs" / "journal.md").read_text()
    group = cli.commands["journal"]
    for name in group.commands:
        assert f"`exchange journal {name}`" in text, name
    examples = re.findall(r"^\$ exchange journal (\S+)(.*)$", text, re.M)
    assert {name for name, _ in examples} == set(group.commands)
    for name, args in examples:
        group.commands[name].make_context(name, args.split())  # raises on an unknown option or value


def test_verify_reads_a_journal_from_before_accounts_with_a_config_that_has_them(tmp_path):
    """A journal no writer with accounts has opened has no `entries` table: verify says so in a note
    and checks the rest (read-only: it adds nothing)."""
    import sqlite3

    path = tmp_path / "journal.db"
    session(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE entries")
    conn.commit()
    conn.close()
    code, output = run("verify", db=path)
    assert code == 0 and "\nOK: " in output, output
    assert output.startswith("note: no ledger entries: this journal is from before accounts")
