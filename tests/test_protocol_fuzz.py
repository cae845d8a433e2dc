"""Hostile input against the parsers, in memory: whatever the bytes, a request or a reject with a code.

Three layers: the text parser (``parse_bytes``), the ZMQ decoder (``decode_request``), and the
gateway's logic behind them (OrderEntry with real matchers), where every line must get exactly
one reply and nothing that was not a valid request may reach an engine.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.core.messages import CancelAll, CancelOrder, PlaceOrder, ReplaceOrder
from exchange.errors import RejectCode
from exchange.gateway.protocol.grammar import check_request, decode_request, format_reply, parse_bytes
from exchange.gateway.protocol.messages import ClientRequest, LoginRequest, LogoutRequest, PlaceRequest, Rej
from test_sessions import CONFIG, Exchange

MAX_LINE = CONFIG.gateway.max_line
WORDS = ["LOGIN", "BUY", "SELL", "CANCEL", "REPLACE", "CANCELALL", "STATUS", "ORDERS", "BOOK", "PING", "buy", "Sell",
         "@", "@1", "MKT", "10", "100", "101",
         "BTC-USD", "ETH-USD", "AAPL", "DOGE", "aapl", "GTC", "IOC", "FOK", "POST", "ioc", "STP=DECREMENT",
         "STP=", "STP=NOPE", "#a1", "#", "#x" * 20, "1-1", "2-1", "9999-1", "1--1", "0", "1", "0.5", "1.000",
         "43000.10", "43000.105", "1e5", "-1", "NaN", "Infinity", "١٢٣", "1_000", "9" * 30, "0." + "0" * 14 + "1",
         "alice", "alice-key", "CANCEL_ON_DISCONNECT", "keep_on_disconnect", "\t", "\r", "\x00", "é", "\u2028",
         "\x85", "\xa0"]
lines = st.one_of(
    st.binary(max_size=2 * MAX_LINE),
    st.text(max_size=200).map(str.encode),
    st.lists(st.sampled_from(WORDS), max_size=9).map(lambda words: " ".join(words).encode()),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=9).map(
        lambda words: " ".join(words).encode("utf-8", "surrogatepass")),
)


def assert_reject(result) -> None:
    assert isinstance(result, Rej), result
    assert isinstance(result.code, RejectCode) and result.reason
    line = format_reply(result)
    assert "\n" not in line and line.startswith("REJ ")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_any_bytes_parse_to_a_request_or_a_reject_with_a_code(raw):
    result = parse_bytes(raw, MAX_LINE)
    if isinstance(result, ClientRequest):
        assert check_request(result) == result  # what text allows, the ZMQ form allows too
        assert len(raw.removesuffix(b"\r")) <= MAX_LINE  # a \r before the \n does not count
    else:
        assert_reject(result)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=MAX_LINE + 1, max_size=4 * MAX_LINE).filter(
    lambda raw: len(raw.removesuffix(b"\r")) > MAX_LINE))
def test_a_line_over_max_line_is_too_large_whatever_it_holds(raw):
    assert parse_bytes(raw, MAX_LINE).code is RejectCode.TOO_LARGE


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
       st.sampled_from(["LOGIN alice {}", "LOGIN alice {} extra", "login alice {} CANCEL_ON_DISCONNECT x",
                        "LOGIN {}", "  LOGIN alice x{}" + "y" * 130, "LOGIN alice #{} #{}"]))
def test_a_login_line_never_echoes_its_key(secret, template):
    key = "K3Y" + secret
    reply = parse_bytes(template.format(key, key).encode(), MAX_LINE)
    if isinstance(reply, Rej):
        assert key not in format_reply(reply) and not reply.client_order_id


REQUEST_TYPES = ["LoginRequest", "PlaceRequest", "CancelRequest", "ReplaceRequest", "CancelAllRequest",
                 "StatusRequest", "PingRequest", "OrdersRequest", "BookRequest", "Nope", ""]
values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=50),
                   st.binary(max_size=20), st.sampled_from(WORDS), st.lists(st.integers(0, 9), max_size=3))
frames = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["type", "side", "symbol", "qty", "price", "tif", "stp", "client_order_id",
                                     "order_id", "user", "key", "cancel_on_disconnect", "levels", "extra"]),
                    values, max_size=9).map(msgspec.msgpack.encode),
    st.builds(lambda kind, fields: msgspec.msgpack.encode({"type": kind, **fields}), st.sampled_from(REQUEST_TYPES),
              st.dictionaries(st.sampled_from(["side", "symbol", "qty", "price", "tif", "order_id", "user", "key",
                                               "client_order_id", "levels"]), values, max_size=6)),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_any_zmq_frame_decodes_to_a_request_or_a_reject_with_a_code(frame):
    result = decode_request(frame, MAX_LINE)
    if isinstance(result, ClientRequest):
        assert check_request(result) == result
        assert not hasattr(result, "user") or isinstance(result, LoginRequest)  # only LOGIN names a user
    else:
        assert_reject(result)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, min_size=1, max_size=40), st.booleans())
@example([b"LOGOUT", b""], False)  # a LOGOUT is answered and ends the session (found once by the fuzzing)
def test_the_gateway_answers_every_line_once_and_sends_engines_only_valid_commands(batch, logged_in):
    exchange = Exchange()
    client = exchange.session("carol") if logged_in else None
    if client is None:
        from test_sessions import Client
        client = Client(exchange)
    replies = 0
    for raw in batch:
        if b"\n" in raw:
            continue  # one line at a time, as the gateway splits them
        request = parse_bytes(raw, MAX_LINE)
        before = len(exchange.sent)
        if isinstance(request, Rej):
            exchange.entry.on_error(client.session, request)
        else:
            exchange.entry.on_request(client.session, request)
        exchange.release()
        exchange.answer_books()
        exchange.entry.expire(0.0)  # nothing may stay unanswered
        sent = exchange.sent[before:]
        if isinstance(request, Rej) or not logged_in:
            assert sent == [], f"{raw!r} reached an engine: {sent}"
        for command in sent:
            assert isinstance(command, (PlaceOrder, CancelOrder, ReplaceOrder, CancelAll))
            assert command.user == "carol"
            if isinstance(command, PlaceOrder):
                assert isinstance(request, PlaceRequest) and command.symbol in exchange.entry.instruments
        answered = [line for line in _one_line_per_reply(client.take())
                    if not line.startswith(("FILL ", "REDUCED ")) and not _pushed_out(line)]
        replies += len(answered)
        assert len(answered) == 1, f"{raw!r} got {answered}"
        if isinstance(request, LogoutRequest):  # answered, and the session is over: no line follows it
            assert not exchange.entry.sessions
            return
    assert exchange.entry.sessions


def _one_line_per_reply(lines: list[str]) -> list[str]:
    """The lines, with the reply to an ORDERS or a BOOK (several lines up to its END line) as one."""
    out: list[str] = []
    for line in lines:
        if line.startswith("END ORDERS "):
            listed = int(line.split()[2])
            del out[len(out) - listed:]  # its STATE lines
        elif line.startswith("END BOOK "):
            while not out[-1].startswith("BOOK "):
                out.pop()
            out.pop()
        out.append(line)
    return out


def _pushed_out(line: str) -> bool:
    """OUT lines that answer nothing: FILLED, EXPIRED …, CANCELED <reason> (a CANCEL's answer has no reason)."""
    words = line.split()
    if not words or words[0] != "OUT":
        return False
    rest = words[2:] if not words[2].startswith("#") else words[3:]
    return rest != ["CANCELED"]
