"""Every way a request is refused, over a real socket: the exact code, and the session stays open.

One mesh serves the module (``module_mesh``); each text test logs in its own sessions and the
books are emptied after it. ``alice`` and ``bob`` trade over text; ``carol`` is kept for the
journal test and the ZMQ tests, so that nothing else pushes lines to her sessions. The tests
that can break the gateway for everyone get a fresh mesh of their own (``mesh``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing

import msgspec
import pytest

from exchange.client.order_entry import ZmqClient
from exchange.client.text import TextClient
from exchange.core.orders import Side, TimeInForce
from exchange.errors import RejectCode
from exchange.gateway.protocol.messages import (
    Ack, CancelAllOk, CancelAllRequest, CancelRequest, LoginOk, LoginRequest, Out, PingRequest, PlaceRequest, Pong,
    Rej, StatusRequest,
)
from exchange.journal.readers import wait_for_tables

REJ = re.compile(r"REJ (?:#(?P<cid>[A-Za-z0-9_.:\-]{1,36}) )?(?P<code>[A-Z_]+) (?P<reason>\S.*)")


# -- helpers --------------------------------------------------------------------------------------

def parse_rej(line: str) -> tuple[str, str, str]:
    """``REJ [#cid] CODE reason`` → (cid, code, reason); fails the test for any other line."""
    match = REJ.fullmatch(line)
    assert match, f"not a REJ line: {line!r}"
    assert match["code"] in RejectCode.__members__, f"{match['code']} is not a RejectCode: {line!r}"
    return match["cid"] or "", match["code"], match["reason"]


def assert_open(client: TextClient) -> None:
    """The session still answers, and answered everything before (replies come in order)."""
    assert client.request("PING") == "PONG"


def assert_rejected(client: TextClient, line: str, code: str, cid: str | None = "") -> str:
    """Send ``line``; its reply is ``REJ [#cid] code …`` (cid None: not checked); nothing is pushed;
    the session stays open. Returns the reply."""
    pushed = len(client.pushed)
    reply = client.request(line)
    got_cid, got_code, _ = parse_rej(reply)
    assert got_code == code, f"{line!r} → {reply!r}, expected {code}"
    if cid is not None:
        assert got_cid == cid, f"{line!r} → {reply!r}, expected the client order id #{cid} echoed"
    assert_open(client)
    assert len(client.pushed) == pushed, f"{line!r} pushed {list(client.pushed)[pushed:]}"
    return reply


def cid_of(line: str) -> str:
    return next((word[1:] for word in line.split() if word.startswith("#")), "")


def ack_id(reply: str) -> str:
    assert reply.startswith("ACK "), reply
    return reply.split()[1]


@pytest.fixture
def connect(module_mesh):
    """``connect(user=None)`` → a TextClient (logged in if ``user``); alice's and bob's orders are
    canceled after the test."""
    opened: list[TextClient] = []

    def connect(user: str | None = None) -> TextClient:
        client = TextClient(module_mesh.host, module_mesh.port, timeout=10)
        opened.append(client)
        if user:
            assert client.request(f"LOGIN {user} {user}-key") == f"OK LOGIN {user}"
        return client

    yield connect
    for client in opened:
        client.close()
    for user in ("alice", "bob"):
        with TextClient(module_mesh.host, module_mesh.port) as client:
            assert client.request(f"LOGIN {user} {user}-key") == f"OK LOGIN {user}"
            assert client.request("CANCELALL").startswith("OK CANCELALL")


@pytest.fixture
def alice(connect) -> TextClient:
    return connect("alice")


@pytest.fixture
def bob(connect) -> TextClient:
    return connect("bob")


# -- login ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "BUY BTC-USD 1 @ 10", "SELL AAPL 1", "BUY AAPL 1 @ 10.00 #early", "CANCEL 1-1", "CANCEL #early",
    "REPLACE 1-1 2", "REPLACE #early 2 @ 10", "CANCELALL", "CANCELALL AAPL", "STATUS 1-1", "STATUS #early",
])
def test_order_requests_before_login_are_rejected_not_logged_in(connect, line):
    client = connect()
    assert_rejected(client, line, "NOT_LOGGED_IN", cid=cid_of(line))
    assert client.request("LOGIN alice alice-key") == "OK LOGIN alice"  # the session is still usable


def test_a_bad_login_is_rejected_and_leaves_the_session_logged_out(connect):
    client = connect()
    for line in ("LOGIN alice wrong-key", "LOGIN alice bob-key", "LOGIN mallory mallory-key",
                 "LOGIN Alice alice-key"):
        reply = assert_rejected(client, line, "BAD_LOGIN")
        assert line.split()[2] not in reply, f"{reply!r} repeats the key"
    assert_rejected(client, "BUY AAPL 1 @ 1.00", "NOT_LOGGED_IN")
    assert client.request("LOGIN alice alice-key") == "OK LOGIN alice"


def test_a_second_login_is_rejected_and_the_session_stays_the_first_user(alice, bob):
    assert_rejected(alice, "LOGIN alice alice-key", "ALREADY_LOGGED_IN")
    assert_rejected(alice, "LOGIN bob bob-key", "ALREADY_LOGGED_IN")
    order_id = ack_id(alice.request("BUY AAPL 1 @ 1.00 #who-am-i"))
    assert alice.request("STATUS #who-am-i") == f"STATE {order_id} #who-am-i NEW 0 1 BUY AAPL @ 1.00"
    assert_rejected(bob, "STATUS #who-am-i", "NOT_YOUR_ORDER", cid=None)


# -- the line itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", ["HELLO", "QUIT", "BUYY BTC-USD 1 @ 10", "CANCEL_ALL", "#a1", "@ 10", "é"])
def test_an_unknown_verb_is_rejected_unknown_verb(connect, line):
    assert_rejected(connect(), line, "UNKNOWN_VERB", cid=cid_of(line))  # before login
    assert_rejected(connect("alice"), line, "UNKNOWN_VERB", cid=cid_of(line))


@pytest.mark.parametrize("line", [
    "LOGIN", "LOGIN alice", "LOGIN alice alice-key extra", "LOGIN -alice alice-key", "LOGIN alice " + "k" * 129,
    "BUY", "BUY BTC-USD", "BUY BTC-USD 1 @", "BUY BTC-USD 1 @ 10 XYZ", "BUY BTC-USD 1 @ 10 GTC IOC",
    "BUY BTC-USD 1 @ 10 STP=SOMETIMES", "BUY BTC-USD 1 @ 10 STP=DECREMENT STP=CANCEL_BOTH",
    "BUY BTC-USD 1 @ 10 #bad!id", "BUY BTC-USD 1 @ 10 #" + "x" * 37, "BUY BTC-USD 1 @ 10 #", "BUY BTC_USD! 1",
    "SELL", "SELL AAPL", "SELL AAPL 1 @ 10 @ 11", "SELL AAPL 1 IOC @ 10",
    "CANCEL", "CANCEL foo", "CANCEL 1-1 1-2", "CANCEL #", "CANCEL 1_1",
    "REPLACE", "REPLACE 1-1", "REPLACE 1-1 1 10", "REPLACE foo 1", "REPLACE 1-1 1 @", "REPLACE 1-1 1 @ 10 GTC",
    "CANCELALL AAPL BTC-USD", "CANCELALL !!",
    "STATUS", "STATUS x", "STATUS 1-1 1-2",
    "PING x",
])
def test_a_line_that_breaks_its_verbs_grammar_is_rejected_malformed(connect, line):
    assert_rejected(connect("alice"), line, "MALFORMED")


def test_a_malformed_order_line_still_echoes_its_client_order_id(alice):
    assert_rejected(alice, "BUY BTC-USD 1 @ 10 XYZ #m1", "MALFORMED", cid="m1")


@pytest.mark.parametrize("line", [b"", b"   ", b"\t", b"\r"])
def test_an_empty_line_is_rejected_malformed(connect, line):
    client = connect("alice")
    client.send_line(line + b"\n")
    reply = client.read_reply()
    assert parse_rej(reply)[1] == "MALFORMED", reply
    assert_open(client)


@pytest.mark.parametrize("line", [b"\xff\xfe", b"BUY AAPL 1 @ 1.00 #caf\xe9", b"PING \xc3\x28", b"\xed\xa0\x80"])
def test_a_line_that_is_not_utf8_is_rejected_malformed(connect, line):
    client = connect("alice")
    client.send_line(line + b"\n")
    reply = client.read_reply()
    assert parse_rej(reply)[1] == "MALFORMED", reply
    assert_open(client)


def test_a_line_longer_than_max_line_is_rejected_too_large_and_the_session_goes_on(module_mesh, alice):
    max_line = module_mesh.config.gateway.max_line
    # one byte over: discarded unread (parsed, "PING xxx…" would be MALFORMED)
    assert_rejected(alice, "PING " + "x" * (max_line - 4), "TOO_LARGE")
    # exactly max_line bytes: read and parsed
    assert_rejected(alice, "PING " + "x" * (max_line - 5), "MALFORMED")
    # far longer, and followed by a good line in the same write: one reject, then the good line's reply
    # (twice max_line at most: in pieces, a longer one meets the bug of the test below)
    alice.send_line(b"BUY AAPL 1 @ 1.00 #long " + b"9" * (2 * max_line - 30) + b"\nPING\n")
    assert parse_rej(alice.read_line())[1] == "TOO_LARGE"
    assert alice.read_line() == "PONG"
    assert_open(alice)


def test_an_overlong_line_arriving_in_pieces_gets_exactly_one_reject(module_mesh, alice):
    """One request line, one reply: also when the line reaches the gateway in several reads."""
    max_line = module_mesh.config.gateway.max_line
    for _ in range(3):
        alice.sock.sendall(b"y" * (max_line + 100))  # no newline yet: the line goes on
        time.sleep(0.2)  # not ordering: only so that the gateway reads the line in separate pieces
    alice.sock.sendall(b"\nPING\n")
    assert parse_rej(alice.read_line())[1] == "TOO_LARGE"
    assert alice.read_line() == "PONG", "a single overlong line was answered by more than one REJ"


# -- values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, code", [
    ("BUY BTC-USD 1 @ 43000.105", "BAD_PRICE"),  # off the tick grid
    ("SELL ETH-USD 1 @ 0.001", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ 0", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ 0.00", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ -5", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ 1e5", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ 1,000", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ NaN", "BAD_PRICE"),
    ("BUY BTC-USD 1 @ 1234567890123", "BAD_PRICE"),  # more than 12 integer digits
    ("BUY AAPL 1 @ 100000.01", "BAD_PRICE"),  # above AAPL's max_price
    ("BUY BTC-USD 0.00001 @ 10", "BAD_QTY"),  # off the lot grid
    ("BUY AAPL 1.5 @ 10", "BAD_QTY"),
    ("BUY BTC-USD 0 @ 10", "BAD_QTY"),  # below the minimum (one lot)
    ("SELL AAPL -1 @ 10", "BAD_QTY"),
    ("BUY ETH-USD abc @ 10", "BAD_QTY"),
    ("BUY AAPL 100001 @ 10", "BAD_QTY"),  # above max_qty
    ("BUY BTC-USD 1000.0001 @ 10", "BAD_QTY"),
    ("BUY BTC-USD 0.00001 @ 10 #grid1", "BAD_QTY"),
])
def test_a_value_off_the_grid_or_out_of_range_is_rejected(alice, line, code):
    reply = assert_rejected(alice, line, code, cid=cid_of(line))
    assert "round" not in reply


@pytest.mark.parametrize("line", ["BUY DOGE-USD 1 @ 1", "SELL btc-eur 1", "BUY AAPL.L 1 @ 1 #sym",
                                  "CANCELALL DOGE"])
def test_an_unknown_symbol_is_rejected_unknown_symbol(alice, line):
    assert_rejected(alice, line, "UNKNOWN_SYMBOL", cid=cid_of(line))


@pytest.mark.parametrize("line", ["BUY BTC-USD 1 GTC", "SELL BTC-USD 1 POST", "BUY AAPL 1 POST #mkt-post"])
def test_a_market_order_cannot_be_gtc_or_post(alice, bob, line):
    bob.request("SELL BTC-USD 1 @ 50000")  # liquidity on both sides: BAD_TIF is not NO_LIQUIDITY
    bob.request("BUY BTC-USD 1 @ 1")
    assert_rejected(alice, line, "BAD_TIF", cid=cid_of(line))


@pytest.mark.parametrize("line", ["BUY ETH-USD 1", "SELL ETH-USD 1", "BUY ETH-USD 1 FOK", "SELL AAPL 5 IOC #mkt1"])
def test_a_market_order_on_an_empty_side_is_rejected_no_liquidity(alice, line):
    assert_rejected(alice, line, "NO_LIQUIDITY", cid=cid_of(line))


def test_a_rejected_order_does_not_use_up_its_client_order_id(alice):
    assert_rejected(alice, "SELL AAPL 5 #mkt2", "NO_LIQUIDITY", cid="mkt2")
    assert alice.request("BUY AAPL 1 @ 1.00 #mkt2").startswith("ACK ")


def test_a_post_only_order_that_would_cross_is_rejected_would_cross(alice, bob):
    sell_id = ack_id(alice.request("SELL AAPL 10 @ 100.00 #resting"))
    assert_rejected(bob, "BUY AAPL 1 @ 100.00 POST #p1", "WOULD_CROSS", cid="p1")
    assert_rejected(bob, "BUY AAPL 1 @ 101 POST", "WOULD_CROSS")
    buy_id = ack_id(bob.request("BUY AAPL 1 @ 99.99 POST #p2"))
    assert_rejected(bob, f"REPLACE {buy_id} 1 @ 100", "WOULD_CROSS")  # a replace of a POST order too
    assert bob.request("STATUS #p2") == f"STATE {buy_id} #p2 NEW 0 1 BUY AAPL @ 99.99"
    assert alice.request("STATUS #resting") == f"STATE {sell_id} #resting NEW 0 10 SELL AAPL @ 100.00"


# -- client order ids -----------------------------------------------------------------------------

def test_a_client_order_id_is_unique_per_user_forever(connect, alice, bob):
    order_id = ack_id(alice.request("BUY AAPL 1 @ 1.00 #once"))
    assert_rejected(alice, "BUY AAPL 2 @ 1.00 #once", "DUPLICATE_ID", cid="once")
    assert_rejected(alice, "SELL BTC-USD 1 @ 90000 #once", "DUPLICATE_ID", cid="once")
    assert_rejected(connect("alice"), "BUY AAPL 2 @ 1.00 #once", "DUPLICATE_ID", cid="once")  # another session
    assert bob.request("BUY AAPL 1 @ 1.00 #once").startswith("ACK ")  # bob's ids are his own
    assert alice.request(f"CANCEL {order_id}") == f"OUT {order_id} #once CANCELED"
    assert_rejected(alice, "BUY AAPL 3 @ 1.00 #once", "DUPLICATE_ID", cid="once")  # also once it is gone


def test_a_client_order_id_is_taken_while_its_order_is_still_in_flight(module_mesh, alice):
    alice.send_line(b"BUY AAPL 1 @ 1.00 #twice\nBUY AAPL 2 @ 1.00 #twice\n")  # one write: no wait between
    order_id = ack_id(alice.read_reply())
    cid, code, _ = parse_rej(alice.read_reply())
    assert (cid, code) == ("twice", "DUPLICATE_ID")
    assert_open(alice)
    # the same order sent twice is one order, answered twice alike (a resend)
    alice.send_line(b"BUY AAPL 3 @ 1.00 #again\nBUY AAPL 3 @ 1.00 #again\n")
    first, second = alice.read_reply(), alice.read_reply()
    assert first.startswith("ACK ") and second == first
    assert_open(alice)
    wait_for_tables(module_mesh.config.journal.path)
    with closing(sqlite3.connect(module_mesh.config.journal.path)) as db:
        placed = db.execute("SELECT client_order_id, COUNT(*) FROM commands"
                            " WHERE user='alice' AND client_order_id IN ('twice', 'again')"
                            " GROUP BY client_order_id ORDER BY client_order_id").fetchall()
    assert placed == [("again", 1), ("twice", 1)]  # the engine got each order once
    assert alice.request(f"STATUS {order_id}") == f"STATE {order_id} #twice NEW 0 1 BUY AAPL @ 1.00"


# -- orders that are not there or not yours -------------------------------------------------------

@pytest.mark.parametrize("line", [
    "CANCEL 1-999999", "CANCEL 9-1", "CANCEL #never", "REPLACE 1-999999 1", "REPLACE 2-999999 1 @ 5",
    "REPLACE #never 1", "STATUS 1-999999", "STATUS 9-1", "STATUS #never",
])
def test_an_unknown_order_is_rejected_not_your_order(alice, line):
    assert_rejected(alice, line, "NOT_YOUR_ORDER", cid=None)


def test_a_finished_order_cannot_be_canceled_or_replaced(alice):
    order_id = ack_id(alice.request("BUY AAPL 1 @ 1.00 #done"))
    assert alice.request(f"CANCEL {order_id}") == f"OUT {order_id} #done CANCELED"
    assert_rejected(alice, f"CANCEL {order_id}", "NOT_YOUR_ORDER")
    assert_rejected(alice, f"REPLACE {order_id} 2", "NOT_YOUR_ORDER", cid=None)
    assert alice.request(f"STATUS {order_id}") == f"STATE {order_id} #done CANCELED 0 0 BUY AAPL @ 1.00"


def test_bob_cannot_cancel_replace_or_see_alices_order(alice, bob):
    order_id = ack_id(alice.request("SELL AAPL 5 @ 150.00 #mine"))
    for line in (f"CANCEL {order_id}", "CANCEL #mine", f"REPLACE {order_id} 10", "REPLACE #mine 10 @ 1",
                 f"STATUS {order_id}", "STATUS #mine"):
        reply = assert_rejected(bob, line, "NOT_YOUR_ORDER", cid=None)
        assert "alice" not in reply, f"{line!r} → {reply!r} tells bob whose order it is"
    assert bob.request("CANCELALL AAPL") == "OK CANCELALL 0"
    assert bob.request("CANCELALL") == "OK CANCELALL 0"
    assert_open(alice)
    assert not alice.pushed, f"alice heard of bob's attempts: {list(alice.pushed)}"
    assert alice.request("STATUS #mine") == f"STATE {order_id} #mine NEW 0 5 SELL AAPL @ 150.00"
    assert alice.request("CANCEL #mine") == f"OUT {order_id} #mine CANCELED"


def test_replace_to_a_quantity_at_or_below_the_filled_one_is_rejected_bad_qty(alice, bob):
    order_id = ack_id(alice.request("SELL BTC-USD 1 @ 50000 #part"))
    assert bob.request("BUY BTC-USD 0.4 @ 50000").startswith("ACK ")
    fill = alice.next_pushed()
    assert re.fullmatch(rf"FILL {order_id} #part 0\.4000 @ 50000\.00 LEAVES 0\.6000 TRADE \d+-\d+", fill), fill
    for line in (f"REPLACE {order_id} 0.4", f"REPLACE {order_id} 0.3", "REPLACE #part 0.4",
                 "REPLACE #part 0.0001"):
        assert_rejected(alice, line, "BAD_QTY", cid=None)
    assert_rejected(alice, "REPLACE #part 0.40001", "BAD_QTY", cid="part")  # off the lot grid
    assert_rejected(alice, "REPLACE #part 0.5 @ 50000.001", "BAD_PRICE", cid="part")
    assert alice.request("STATUS #part") == (
        f"STATE {order_id} #part PARTIALLY_FILLED 0.4000 0.6000 SELL BTC-USD @ 50000.00")  # unchanged
    assert alice.request("REPLACE #part 0.5") == (
        f"ACK {order_id} #part REPLACED SELL BTC-USD 0.5000 @ 50000.00 LEAVES 0.1000")


# -- client order ids in rejects ------------------------------------------------------------------

def test_status_reject_echoes_the_client_order_id_it_names(alice):
    assert_rejected(alice, "STATUS #nope", "NOT_YOUR_ORDER", cid="nope")


def test_cancel_reject_by_the_engine_echoes_the_client_order_id_it_names(alice):
    order_id = ack_id(alice.request("BUY AAPL 1 @ 1.00 #gone"))
    assert alice.request("CANCEL #gone") == f"OUT {order_id} #gone CANCELED"
    assert_rejected(alice, "CANCEL #gone", "NOT_YOUR_ORDER", cid="gone")


def test_replace_reject_by_the_engine_echoes_the_client_order_id_it_names(alice, bob):
    ack_id(alice.request("SELL AAPL 10 @ 120.00 #half"))
    assert bob.request("BUY AAPL 4 @ 120.00").startswith("ACK ")
    assert alice.next_pushed().startswith("FILL ")
    assert_rejected(alice, "REPLACE #half 4", "BAD_QTY", cid="half")


def test_gateway_rejects_echo_the_client_order_id_they_name(alice):
    assert_rejected(alice, "CANCEL #nope", "NOT_YOUR_ORDER", cid="nope")
    assert_rejected(alice, "REPLACE #nope 1", "NOT_YOUR_ORDER", cid="nope")
    assert_rejected(alice, "BUY AAPL 1 @ 0.001 #e1", "BAD_PRICE", cid="e1")


# -- order and the journal ------------------------------------------------------------------------

def test_pipelined_requests_get_one_reply_each_in_request_order(alice):
    alice.send_line(b"PING\nBUY AAPL 1 @ 1.00 #pipe\nHELLO\nBUY AAPL 1 @ 0.001\n\nSTATUS #pipe\n"
                    b"CANCEL #pipe\nCANCEL #pipe\nPING\n")
    replies = [alice.read_line() for _ in range(9)]
    order_id = ack_id(replies[1])
    assert replies[0] == "PONG"
    assert replies[1] == f"ACK {order_id} #pipe BUY AAPL 1 @ 1.00 GTC"
    assert parse_rej(replies[2])[1] == "UNKNOWN_VERB"
    assert parse_rej(replies[3])[1] == "BAD_PRICE"
    assert parse_rej(replies[4])[1] == "MALFORMED"
    assert replies[5] == f"STATE {order_id} #pipe NEW 0 1 BUY AAPL @ 1.00"
    assert replies[6] == f"OUT {order_id} #pipe CANCELED"
    assert parse_rej(replies[7])[1] == "NOT_YOUR_ORDER"
    assert replies[8] == "PONG"
    with pytest.raises(TimeoutError):
        alice.read_line(timeout=0.3)


def test_bad_lines_never_reach_the_journal(module_mesh, connect):
    """Only requests that passed the gateway are journaled: nothing malformed, off-grid or anonymous."""
    max_line = module_mesh.config.gateway.max_line
    wait_for_tables(module_mesh.config.journal.path)
    with closing(sqlite3.connect(module_mesh.config.journal.path)) as db:
        before = db.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
        anonymous = connect()
        for line in ("BUY BTC-USD 1 @ 10 #j-anon", "CANCELALL", "SELL AAPL 1"):
            assert_rejected(anonymous, line, "NOT_LOGGED_IN", cid=None)
        carol = connect("carol")
        burst = [b"", b"HELLO", b"BUY", b"BUY BTC-USD 1 @", b"BUY BTC-USD 1 @ 10.001 #j-bad",
                 b"BUY BTC-USD 0.00001 @ 10", b"BUY BTC-USD 1 @ 10 XYZ", b"BUY DOGE-USD 1 @ 1",
                 b"\xff\xfe BUY AAPL 1 @ 1", b"BUY AAPL 1 @ 1 " + b"9" * max_line, b"CANCEL foo",
                 b"REPLACE #j-none 1", b"STATUS 1-1", b"PING x", b"LOGIN carol carol-key", b"CANCELALL DOGE"]
        carol.send_line(b"\n".join(burst) + b"\n")
        for line in burst:
            parse_rej(carol.read_line())
        assert_open(carol)
        order_id = ack_id(carol.request("BUY BTC-USD 0.5 @ 10.00 #j1"))
        assert_rejected(carol, "BUY AAPL 2 @ 1.00 #j1", "DUPLICATE_ID", cid="j1")
        assert carol.request("CANCEL #j1") == f"OUT {order_id} #j1 CANCELED"  # replied: so journaled
        wait_for_tables(module_mesh.config.journal.path)
        rows = db.execute("SELECT kind, user, symbol, order_id, client_order_id FROM commands"
                          " ORDER BY rowid LIMIT -1 OFFSET ?", (before,)).fetchall()
        assert rows == [("PlaceOrder", "carol", "BTC-USD", None, "j1"), ("CancelOrder", "carol", "", order_id, "j1")]


# -- ZMQ ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zmq_carol(module_mesh):
    """carol over ZMQ, logged in, for the whole module (a closed DEALER would leave a dead session)."""
    with ZmqClient(module_mesh.config.gateway.zmq, timeout=10) as client:
        client.send(LoginRequest("carol", "carol-key"))
        assert client.receive() == LoginOk("carol")
        yield client


def zmq_open(client: ZmqClient) -> None:
    client.send(PingRequest())
    assert client.receive() == Pong()


def zmq_rejected(client: ZmqClient, request, code: str, cid: str = "") -> Rej:
    if isinstance(request, bytes):
        client.sock.send(request)
    else:
        client.send(request)
    reply = client.receive()
    assert isinstance(reply, Rej), f"{request!r} → {reply!r}"
    assert (reply.code.value, reply.client_order_id) == (code, cid), f"{request!r} → {reply!r}"
    assert reply.reason
    zmq_open(client)
    return reply


@pytest.mark.parametrize("frame", [
    b"\xc1", b"not msgpack", b"", msgspec.msgpack.encode([1, 2, 3]), msgspec.msgpack.encode({"no": "type"}),
    msgspec.msgpack.encode({"type": "Nope"}), msgspec.msgpack.encode({"type": "PlaceRequest"}),
    msgspec.msgpack.encode({"type": "PlaceRequest", "side": "UP", "symbol": "AAPL", "qty": "1"}),
    msgspec.msgpack.encode({"type": "PlaceRequest", "side": "BUY", "symbol": "AAPL", "qty": 1}),
    msgspec.msgpack.encode({"type": "LoginRequest", "user": "carol"}),
])
def test_zmq_a_frame_that_is_not_a_request_is_rejected_malformed(zmq_carol, frame):
    zmq_rejected(zmq_carol, frame, "MALFORMED")
    zmq_carol.send(CancelAllRequest("AAPL"))
    assert zmq_carol.receive() == CancelAllOk(0)  # still logged in


def test_zmq_login_rules_are_the_text_ones(module_mesh, zmq_carol):
    with ZmqClient(module_mesh.config.gateway.zmq, timeout=10) as anonymous:
        zmq_rejected(anonymous, b"\xc1", "MALFORMED")
        zmq_rejected(anonymous, PlaceRequest(Side.BUY, "AAPL", "1", "1.00", client_order_id="z0"), "NOT_LOGGED_IN",
                     cid="z0")
        zmq_rejected(anonymous, CancelAllRequest(), "NOT_LOGGED_IN")
        zmq_rejected(anonymous, LoginRequest("carol", "alice-key"), "BAD_LOGIN")
        zmq_rejected(anonymous, StatusRequest("1-1"), "NOT_LOGGED_IN")
    zmq_rejected(zmq_carol, LoginRequest("carol", "carol-key"), "ALREADY_LOGGED_IN")


@pytest.mark.parametrize("request_, code", [
    (PlaceRequest(Side.BUY, "AAPL", "1", "1.001", client_order_id="z1"), "BAD_PRICE"),
    (PlaceRequest(Side.BUY, "AAPL", "0.5", "1.00", client_order_id="z2"), "BAD_QTY"),
    (PlaceRequest(Side.SELL, "DOGE-USD", "1", "1.00", client_order_id="z3"), "UNKNOWN_SYMBOL"),
    (PlaceRequest(Side.SELL, "AAPL", "1", None, TimeInForce.POST, client_order_id="z4"), "BAD_TIF"),
    (PlaceRequest(Side.SELL, "ETH-USD", "1", None, client_order_id="z5"), "NO_LIQUIDITY"),
    (CancelRequest("1-999999"), "NOT_YOUR_ORDER"),
    (CancelRequest(client_order_id="z-never"), "NOT_YOUR_ORDER"),
    (StatusRequest("2-999999"), "NOT_YOUR_ORDER"),
])
def test_zmq_values_are_checked_like_text(zmq_carol, request_, code):
    zmq_rejected(zmq_carol, request_, code, getattr(request_, "client_order_id", ""))


def test_zmq_a_cancel_that_names_no_order_is_rejected_malformed(zmq_carol):
    zmq_rejected(zmq_carol, CancelRequest(), "MALFORMED")


def test_zmq_a_client_order_id_outside_the_grammar_is_rejected_malformed(zmq_carol):
    """Text sessions of the same user would otherwise get lines like ``ACK 1-5 #has space …``."""
    for cid in ("has space", "x" * 37, "semi;colon"):
        zmq_carol.send(PlaceRequest(Side.BUY, "AAPL", "1", "1.00", client_order_id=cid))
        reply = zmq_carol.receive()
        if isinstance(reply, Ack):  # clean up before failing, so no other test meets the order
            zmq_carol.send(CancelRequest(reply.order_id))
            assert isinstance(zmq_carol.receive(), Out)
        assert isinstance(reply, Rej) and reply.code is RejectCode.MALFORMED, f"#{cid} → {reply!r}"
        zmq_open(zmq_carol)


# -- tests that may bring the gateway down: a fresh mesh each ------------------------------------

def test_zmq_an_oversize_message_is_rejected_too_large_and_the_session_stays(mesh):
    oversize = msgspec.msgpack.encode({"type": "PingRequest", "padding": "x" * (4 * mesh.config.gateway.max_line)})
    with ZmqClient(mesh.config.gateway.zmq, timeout=5) as client:
        client.send(LoginRequest("alice", "alice-key"))
        assert client.receive() == LoginOk("alice")
        client.sock.send(oversize)
        try:
            reply = client.receive(timeout=3)
        except TimeoutError:
            reply = None
        client.send(CancelAllRequest("AAPL"))
        after = client.receive()
    assert isinstance(reply, Rej) and reply.code is RejectCode.TOO_LARGE, f"oversize frame → {reply!r}"
    assert after == CancelAllOk(0), f"the session forgot its login: {after!r}"


def test_a_vanished_zmq_session_does_not_take_the_gateway_down(mesh):
    """A user's ZMQ client goes away with an order resting; the fill pushed to it must not hurt others."""
    with ZmqClient(mesh.config.gateway.zmq) as gone:
        gone.send(LoginRequest("alice", "alice-key"))
        assert gone.receive() == LoginOk("alice")
        gone.send(PlaceRequest(Side.SELL, "AAPL", "1", "100.00", client_order_id="left"))
        assert isinstance(gone.receive(), Ack)
    with TextClient(mesh.host, mesh.port) as bob:
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        assert_open(bob)
        try:
            ack = bob.request("BUY AAPL 1 @ 100.00")
            fill, out = bob.next_pushed(), bob.next_pushed()
            pong = bob.request("PING")
        except ConnectionError as e:
            pytest.fail(f"the gateway dropped bob's session when it pushed alice's fill to her vanished"
                        f" ZMQ session: {e}")
    assert ack.startswith("ACK ") and fill.startswith("FILL ") and out.endswith(" FILLED") and pong == "PONG"
