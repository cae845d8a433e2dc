"""docs/wire.md holds on a real mesh: malformed requests are answered, and a client written from
the spec alone (examples/feed_client.py: pyzmq + msgpack, nothing of ``exchange``) works."""

from __future__ import annotations

import msgpack
import pytest
import zmq

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
                                    None, None, "CANCEL_NEWEST"]
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


def test_an_order_entry_request_of_several_frames_is_answered_rej_malformed(module_mesh):
    reply = ask(module_mesh.config.gateway.zmq, b"", msgpack.packb({"type": "PingRequest"}))
    assert reply["type"] == "Rej" and reply["code"] == "MALFORMED", reply
