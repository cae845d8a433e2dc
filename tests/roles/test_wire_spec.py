"""docs/wire.md holds on a real mesh: malformed requests are answered, and a client written from
the spec alone (examples/feed_client.py: pyzmq + msgpack, nothing of ``exchange``) works."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from test_market_data import engine_book

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "feed_client.py"
REPLY_TIMEOUT_MS = 10_000


def ask(endpoint: str, *frames: bytes) -> list:
    """Send one message from a fresh DEALER; the msgpack value of the one-frame answer."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send_multipart(list(frames))
        assert sock.poll(REPLY_TIMEOUT_MS), f"no answer to {frames!r}: silence"
        answer = sock.recv_multipart()
        assert len(answer) == 1, answer
        return msgpack.unpackb(answer[0])
    finally:
        sock.close()
        ctx.term()


# -- the snapshots endpoint ------------------------------------------------------------------------

@pytest.mark.parametrize("frame, expected", [
    pytest.param(msgpack.packb({"type": "SnapshotRequest", "symbol": "BTC-USD"}),
                 "Expected `array`, got `object`", id="a-map"),
    pytest.param(msgpack.packb("BTC-USD"), "Expected `array`, got `str`", id="a-bare-string"),
    pytest.param(msgpack.packb(["BookRequest", "BTC-USD"]), "Invalid value 'BookRequest'", id="unknown-tag"),
    pytest.param(msgpack.packb(["SnapshotRequest", 7]), "Expected `str`, got `int`", id="wrong-field-type"),
    pytest.param(msgpack.packb(["SnapshotRequest"]), "Expected `array` of at least length 2", id="no-symbol"),
    pytest.param(b"\xc1not msgpack", "MessagePack data is malformed", id="not-msgpack"),
    pytest.param(b"", "truncated", id="empty"),
])
def test_a_malformed_snapshots_request_is_answered_with_what_is_wrong(module_mesh, frame, expected):
    tag, reason = ask(module_mesh.config.notifier.snapshots, frame)
    assert tag == "RequestRefused"
    assert expected in reason
    assert '["SnapshotRequest", symbol]' in reason and '["InstrumentsRequest"]' in reason  # the expected form


def test_a_snapshots_request_of_several_frames_is_answered(module_mesh):
    tag, reason = ask(module_mesh.config.notifier.snapshots, b"", msgpack.packb(["SnapshotRequest", "AAPL"]))
    assert tag == "RequestRefused"
    assert "one frame" in reason


def test_the_snapshots_endpoint_still_answers_after_malformed_requests(module_mesh):
    endpoint = module_mesh.config.notifier.snapshots
    assert ask(endpoint, b"junk")[0] == "RequestRefused"
    answer = ask(endpoint, msgpack.packb(["SnapshotRequest", "AAPL"]))
    assert answer[0] == "BookSnapshot" and answer[1] == "AAPL"
    assert ask(endpoint, msgpack.packb(["SnapshotRequest", "DOGE-USD"])) == [
        "SnapshotRefused", "DOGE-USD", "no instrument DOGE-USD"]


def test_the_notifier_answers_instruments_from_its_config(module_mesh):
    tag, instruments = ask(module_mesh.config.notifier.snapshots, msgpack.packb(["InstrumentsRequest"]))
    assert tag == "Instruments"
    by_symbol = {spec[0]: spec for spec in instruments}
    assert list(by_symbol) == [i.symbol for i in module_mesh.config.instruments]
    assert by_symbol["BTC-USD"] == ["BTC-USD", "0.01", "0.0001", "0.0001", "1000.0000", "1000000000.00", None, None,
                                    None, None, "CANCEL_NEWEST", None, None]  # base, quote: accounts are off
    assert by_symbol["ETH-USD"][10] == "CANCEL_OLDEST"
    assert by_symbol["AAPL"][1:6] == ["0.01", "1", "1", "100000", "100000.00"]


# -- the ZMQ order entry endpoint (already answers: proven here) -----------------------------------

@pytest.mark.parametrize("frame, expected", [
    pytest.param(msgpack.packb(["PingRequest"]), "Expected `object`, got `array`", id="an-array"),
    pytest.param(msgpack.packb("PingRequest"), "Expected `object`, got `str`", id="a-bare-string"),
    pytest.param(msgpack.packb({"side": "BUY"}), "missing required field `type`", id="no-type"),
    pytest.param(msgpack.packb({"type": "Hello"}), "Invalid value 'Hello'", id="unknown-type"),
    pytest.param(msgpack.packb({"type": "PlaceRequest", "side": "BUY", "symbol": "BTC-USD", "qty": 1}),
                 "Expected `str`, got `int`", id="wrong-field-type"),
    pytest.param(b"\xc1", "MessagePack data is malformed", id="not-msgpack"),
])
def test_a_malformed_order_entry_request_is_answered_rej_malformed(module_mesh, frame, expected):
    reply = ask(module_mesh.config.gateway.zmq, frame)
    assert reply["type"] == "Rej" and reply["code"] == "MALFORMED", reply
    assert expected in reply["reason"]
    assert reply["reason"].endswith("(docs/wire.md)"), "the reason says what a request looks like"


def test_an_order_entry_request_of_several_frames_is_answered_rej_malformed(module_mesh):
    reply = ask(module_mesh.config.gateway.zmq, b"", msgpack.packb({"type": "PingRequest"}))
    assert reply["type"] == "Rej" and reply["code"] == "MALFORMED", reply


# -- the example client ----------------------------------------------------------------------------

def load_example():
    spec = importlib.util.spec_from_file_location("feed_client", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_client_imports_only_pyzmq_msgpack_and_the_standard_library():
    imported = set()
    for node in ast.walk(ast.parse(EXAMPLE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert "exchange" not in imported
    assert imported - sys.stdlib_module_names <= {"zmq", "msgpack"}, imported


def book_state(book) -> tuple:
    return book.symbol, book.levels("BUY"), book.levels("SELL")


def test_the_example_feed_decodes_a_snapshot_equal_to_the_engines_book_and_the_deltas_after_it(module_mesh):
    client = load_example()
    notifier = module_mesh.config.notifier
    ctx = zmq.Context()
    feed = client.Feed(ctx, notifier.publish, notifier.snapshots, "BTC-USD")
    try:
        with module_mesh.login("alice") as alice, module_mesh.login("bob") as bob:
            for i in range(3):
                assert alice.request(f"SELL BTC-USD 0.{i + 1} @ 4300{i}.50").startswith("ACK")
                assert bob.request(f"BUY BTC-USD 0.2 @ 4200{i}.25").startswith("ACK")
            assert bob.request("BUY BTC-USD 0.05 @ 43000.50").startswith("ACK")  # a trade
            # every ACK came once its events were released, so the snapshot holds them all
            book = feed.sync()
            assert book_state(book) == engine_book(module_mesh, "BTC-USD")
            assert book.levels("SELL")[0] == (4300050, 500)  # 0.1 - 0.05 left at 43000.50
            assert book.last_trade[0] == "Trade" and book.last_trade[5:7] == [4300050, 500]
            instrument = client.instruments(ctx, notifier.snapshots)["BTC-USD"]
            lines = book.render(instrument).splitlines()
            assert f"{'':16}       43000.50 0.0500" in lines and "          0.2000       42002.25" in lines
            seen = feed.messages
            assert alice.request("SELL BTC-USD 1 @ 45000").startswith("ACK")  # a delta after the snapshot
            assert bob.request("BUY BTC-USD 0.1 @ 43001.50").startswith("ACK")  # a trade: all three channels
            deadline = time.monotonic() + 15
            while book_state(feed.book) != engine_book(module_mesh, "BTC-USD"):
                assert time.monotonic() < deadline, f"the feed's book {book_state(feed.book)} never became the engine's"
                feed.poll(0.2)
            assert feed.messages > seen
            assert (4500000, 10000) in feed.book.levels("SELL")
        for user in ("alice", "bob"):
            with module_mesh.login(user) as session:
                assert session.request("CANCELALL").startswith("OK CANCELALL")
    finally:
        feed.close()
        ctx.term()


def test_the_example_client_gets_instruments_a_snapshot_and_places_and_cancels_an_order(demo_mesh):
    """As a newcomer runs it against the demo (price bands and all): only the endpoints are given."""
    notifier = demo_mesh.config.notifier
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--publish", notifier.publish, "--snapshots", notifier.snapshots,
         "--order-entry", demo_mesh.config.gateway.zmq],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "instrument BTC-USD: tick 0.01 lot 0.0001 qty 0.0001..1000.0000 price up to 1000000000.00 band 10%" in out
    assert "snapshot chan_seqs {'trade': 0, 'bbo': 0, 'l2': 0, 'l3': 0}" in out
    # half the band below the reference price 43000, for the least quantity
    assert re.search(r"^place: \{'type': 'Ack', 'order_id': '1-1', 'client_order_id': 'example-\d+', 'side': 'BUY',"
                     r" 'symbol': 'BTC-USD', 'qty': '0.0001', 'price': '40850.00', 'tif': 'POST'\}$", out, re.M), out
    assert re.search(r"^cancel: \{'type': 'Out', 'order_id': '1-1', .*'status': 'CANCELED'", out, re.M), out
    assert "          0.0001       40850.00" in out.splitlines()  # the order as the feed showed it
    assert "feed: " in out
