"""The text grammar, line by line: what parses to which request, and the reason for what does not."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.core.orders import Side, TimeInForce
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.grammar import _USAGE, decode_request, parse_bytes, parse_line
from exchange.gateway.protocol.messages import CancelRequest, PlaceRequest, Rej, StatusRequest

MAX_LINE = 1024


def reject(line: str) -> Rej:
    result = parse_bytes(line.encode(), MAX_LINE)
    assert isinstance(result, Rej), f"{line!r} parsed to {result!r}"
    return result


@pytest.mark.parametrize("line, tif", [("SELL BTC-USD 100 MKT", None), ("sell btc-usd 100 mkt IOC", TimeInForce.IOC),
                                       ("SELL BTC-USD 100 MKT FOK #m1", TimeInForce.FOK)])
def test_mkt_where_a_price_goes_is_a_market_order_as_the_ack_prints_it(line, tif):
    request = parse_line(line)
    assert request == PlaceRequest(Side.SELL, "BTC-USD", "100", None, tif, None, "m1" if "#" in line else "")


@pytest.mark.parametrize("line", ["SELL BTC-USD 100 @ 5 MKT", "SELL BTC-USD 100 MKT @ 5", "SELL BTC-USD 100 MKT MKT"])
def test_mkt_and_a_price_are_one_or_the_other(line):
    assert reject(line).code is RejectCode.MALFORMED


@pytest.mark.parametrize("line", ["BUY AAPL 1 @ 5 #{}", "CANCEL #{}", "STATUS #{}", "REPLACE #{} 5"])
def test_a_client_order_id_one_character_too_long_says_so(line):
    rej = reject(line.format("x" * 37))
    assert (rej.code, rej.reason) == (RejectCode.MALFORMED, "client order id is too long: 37 characters, at most 36")


@pytest.mark.parametrize("line", ["BUY AAPL 1 @ 5 #a$b", "CANCEL #a$b"])
def test_a_client_order_id_with_a_character_outside_its_set_says_which_are_allowed(line):
    rej = reject(line)
    assert rej.code is RejectCode.MALFORMED
    assert rej.reason == "client order id 'a$b' may only hold letters, digits and _ . : -"


def test_an_empty_client_order_id_says_what_goes_after_the_hash():
    assert reject("CANCEL #").reason == "client order id is empty: # is followed by 1 to 36 characters"


def test_a_zmq_client_order_id_one_character_too_long_gets_the_same_reason():
    frame = msgspec.msgpack.encode({"type": "CancelRequest", "client_order_id": "x" * 37})
    assert decode_request(frame, MAX_LINE) == Rej(RejectCode.MALFORMED,
                                                  "client order id is too long: 37 characters, at most 36")


@pytest.mark.parametrize("line", ["BUY AAPL 1 @ 5 #x IOC", "BUY AAPL 1 @ 5 STP=DECREMENT IOC", "BUY AAPL 1 IOC @ 5",
                                  "BUY AAPL 1 #x STP=DECREMENT", "BUY AAPL 1 @ 5 IOC IOC", "BUY AAPL 1 IOC FOK"])
def test_the_optional_parts_of_an_order_come_in_their_one_order_once_each(line):
    rej = reject(line)
    assert rej.code is RejectCode.MALFORMED
    assert "in this order" in rej.reason and _USAGE["BUY"] in rej.reason


@pytest.mark.parametrize("line", ["BUY\tAAPL 1 @ 5", "  BUY  AAPL\t\t1 @5 IOC ", "\tSTATUS #x\t"])
def test_words_are_separated_by_spaces_or_tabs(line):
    assert isinstance(parse_line(line), (PlaceRequest, StatusRequest))


@pytest.mark.parametrize("separator", ["\xa0", "\u2003", "\x0b", "\x0c", "\u2028"])
def test_other_whitespace_does_not_separate_words(separator):
    assert reject(f"CANCEL{separator}1-1").code is RejectCode.UNKNOWN_VERB
    assert reject(f"CANCEL 1-1{separator}").code is RejectCode.MALFORMED


def test_a_well_formed_cancel_still_parses():
    assert parse_line("CANCEL 1-42") == CancelRequest("1-42", "")


def test_parse_line_raises_protocol_error_for_a_bad_line():
    with pytest.raises(ProtocolError):
        parse_line("BUY")


@pytest.mark.parametrize("line", ["LOGIN\talice #k3y extra", "\tlogin alice #k3y x y", "LOGIN  alice #k3y bad"])
def test_a_login_line_split_by_tabs_never_echoes_a_key_that_looks_like_a_client_order_id(line):
    rej = reject(line)
    assert rej.client_order_id == "" and "k3y" not in rej.reason


@pytest.mark.parametrize("line", ["ſtatus 1-1", "pıng", "BUY AAPL 1 @ 5 ıoc", "SELL AAPL 1 mKt", "BUY AAPL 1 STP=DECREMENT",
                                  "LOGIN alice k CANCEL_ON_DıSCONNECT"])
def test_only_ascii_letters_match_a_word_in_capitals(line):
    if line.isascii():
        assert not isinstance(parse_bytes(line.encode(), MAX_LINE), Rej)
    else:
        assert reject(line).code in (RejectCode.MALFORMED, RejectCode.UNKNOWN_VERB)


# -- the grammar in docs/protocol.md is the parser's ----------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
SEPARATOR = "[ \t]+"


def doc_grammar(doc: str) -> tuple[list[str], dict[str, str]]:
    """The forms of the ```grammar block under '## Grammar', and its table: placeholder → regex."""
    section = doc[doc.index("\n## Grammar\n"):]
    section = section[:section.index("\n## ", 1)]
    block = section[section.index("```grammar\n") + len("```grammar\n"):]
    forms = block[:block.index("```")].splitlines()
    words = {}
    for row in section.splitlines():
        cells = row.split(" | ")
        if row.startswith("| `<") and len(cells) >= 2:
            form = re.search(r"`(.+?)`(?:$|[ ,:])", cells[1].replace("\\|", "|")).group(1)
            for name in re.findall(r"`(<[a-z-]+>)`", cells[0]):
                words[name] = form
    return forms, words


def form_regex(form: str, words: dict[str, str]) -> str:
    """A form as a regular expression: ``[]`` optional, ``(|)`` one of, a space one or more separators
    (none needed after ``@``), ``<word>`` its regex from the table, anything else literal."""
    tokens = re.findall(r"[()\[\]|]|[^\s()\[\]|]+", form)

    def word(token: str) -> str:
        return "".join(f"(?:{words[part]})" if part in words else re.escape(part)
                       for part in re.split(r"(<[a-z-]+>)", token) if part)

    def alternatives(end: str) -> tuple[str, bool]:
        options = [sequence()]
        while tokens and tokens[0] == "|":
            tokens.pop(0)
            options.append(sequence())
        assert tokens.pop(0) == end, form
        return "(?:" + "|".join(options) + ")", True

    def sequence() -> str:
        out, last = "", None
        while tokens and tokens[0] not in "|)]":
            token = tokens.pop(0)
            optional = token == "["
            if token in "([":
                item, _ = alternatives("]" if optional else ")")
            else:
                item = word(token)
            separator = "[ \t]*" if last == "@" else SEPARATOR
            glued = item if not out else separator + item
            out += f"(?:{glued})?" if optional else glued
            last = token
        return out

    regex = sequence()
    assert not tokens, form
    return regex


FORMS, WORDS = doc_grammar(DOC.read_text())
# the grid, not the grammar, refuses them; FUNDS where a quantity goes begins a budget instead
ANY_WORD = {**WORDS, "<qty>": "(?!FUNDS(?:[ \t]|$))[^ \t]+", "<price>": "[^ \t]+"}
LINE = "[ \t]*(?:{})[ \t]*"
STRICT = re.compile(LINE.format("|".join(form_regex(f, WORDS) for f in FORMS)), re.IGNORECASE | re.ASCII)
LOOSE = re.compile(LINE.format("|".join(form_regex(f, ANY_WORD) for f in FORMS)), re.IGNORECASE | re.ASCII)


def parses(line: str) -> bool:
    try:
        parse_line(line)
    except ProtocolError:
        return False
    return True


def test_the_doc_shows_one_form_per_verb_and_the_parser_teaches_the_same_forms():
    assert [form.split()[0] for form in FORMS] == list(_USAGE)
    for form in FORMS:
        assert _USAGE[form.split()[0]] == form, "a MALFORMED reason shows the verb's form as the doc does"
    assert set(WORDS) >= set(re.findall(r"<[a-z-]+>", " ".join(FORMS)))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(STRICT, fullmatch=True, alphabet=st.characters(blacklist_categories=("Cs",))))
def test_every_line_the_doc_grammar_allows_parses(line):
    assert parses(line), line


SOUP = ["LOGIN", "login", "BUY", "SELL", "sell", "CANCEL", "REPLACE", "CANCELALL", "STATUS", "PING", "ping",
        "ſtatus", "pıng", "AAPL", "btc-usd", "DOGE/USD", "a" * 25, "alice", "al ice", "x" * 129, "key",
        "1", "0.5", "1.", "1e5", "@", "@5", "@@", "@ ", "MKT", "mkt", "GTC", "ioc", "FOK", "POST", "ıoc",
        "STP=DECREMENT", "stp=cancel_both", "STP=", "STP=NOPE", "#a1", "#", "#" + "x" * 36, "#" + "x" * 37,
        "#a$b", "1-1", "12345-1", "1-", "CANCEL_ON_DISCONNECT", "keep_on_disconnect", "\xa0", "é", "K",
        "FUNDS", "funds", "fundſ", "BALANCE", "balance", "DEPOSIT", "WITHDRAW", "USD", "usd", "r-1:2", "x" * 65]
soup_lines = st.builds(
    lambda words, separators, ends: ends[0] + "".join(w + s for w, s in zip(words, separators)).rstrip(" \t")
    + ends[1],
    st.lists(st.sampled_from(SOUP), min_size=1, max_size=8),
    st.lists(st.sampled_from([" ", "\t", "  ", " \t"]), min_size=8, max_size=8),
    st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "\t", "\xa0"])))




def mutated(line: str, data: st.DataObject) -> str:
    """A line of the grammar with two words swapped, one dropped or one said twice."""
    words = line.split()
    i, j = data.draw(st.integers(0, len(words) - 1)), data.draw(st.integers(0, len(words) - 1))
    match data.draw(st.sampled_from(["swap", "drop", "twice"])):
        case "swap":
            words[i], words[j] = words[j], words[i]
        case "drop":
            del words[i]
        case "twice":
            words.insert(i, words[j])
    return " ".join(words)


near_lines = st.builds(mutated, st.from_regex(STRICT, fullmatch=True, alphabet=st.characters(
    min_codepoint=32, max_codepoint=126)), st.data())


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(soup_lines, near_lines))
def test_the_parser_takes_exactly_the_lines_the_doc_grammar_allows(line):
    assert parses(line) == bool(LOOSE.fullmatch(line)), line


# -- the ZMQ form ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [b"\x01", msgspec.msgpack.encode(["PlaceRequest", "BUY", "AAPL", "1"]),
                                   msgspec.msgpack.encode({"type": "Nope"}), msgspec.msgpack.encode({"side": "BUY"})])
def test_a_zmq_frame_that_is_no_request_is_told_what_a_request_looks_like(frame):
    rej = decode_request(frame, MAX_LINE)
    assert rej.code is RejectCode.MALFORMED
    assert ('; a request is one msgpack map: {"type": "<request>", "<field>": <value>, …}, <request> one of'
            ' LoginRequest, PlaceRequest, CancelRequest,') in rej.reason


def test_a_zmq_request_missing_a_field_is_told_the_fields_of_its_type():
    rej = decode_request(msgspec.msgpack.encode({"type": "PlaceRequest", "side": "BUY"}), MAX_LINE)
    assert rej.reason == ("bad request: Object missing required field `symbol`; a PlaceRequest is a msgpack map of"
                          ' "type" and side, symbol, qty, price, tif, stp, client_order_id, funds (docs/wire.md)')


def test_a_small_zmq_frame_nested_too_deeply_is_malformed_like_any_frame_that_does_not_decode():
    deep = b"\x91" * 1000 + b"\xc0"  # 1000 arrays, one in the other, around a nil: 1001 bytes
    in_a_field = msgspec.msgpack.encode({"type": "PingRequest", "x": None})[:-1] + deep  # a field no request has
    for frame in (deep, in_a_field):
        rej = decode_request(frame, MAX_LINE)
        assert isinstance(rej, Rej) and rej.code is RejectCode.MALFORMED, rej


@pytest.mark.parametrize("fields", [
    {"type": "PlaceRequest", "side": "BUY", "symbol": "BAD$", "qty": "1", "price": "5"},  # refused by the grammar
    {"type": "PlaceRequest", "side": "BUY", "symbol": "AAPL", "qty": "1", "price": "5", "tif": "DAY"},  # by its type
    {"type": "CancelRequest", "order_id": "1-1"},  # names both ids
    {"type": "StatusRequest", "order_id": 7},
])
def test_a_zmq_reject_names_the_client_order_id_of_the_request_as_the_text_form_does(fields):
    rej = decode_request(msgspec.msgpack.encode({**fields, "client_order_id": "c1"}), MAX_LINE)
    assert isinstance(rej, Rej) and rej.code is RejectCode.MALFORMED and rej.client_order_id == "c1", rej


@pytest.mark.parametrize("cid", ["x" * 37, "a b", 7, ["c1"]])
def test_a_zmq_reject_never_names_a_client_order_id_that_is_none(cid):
    for fields in ({"type": "CancelRequest"}, {"type": "CancelRequest", "order_id": 1}):
        assert decode_request(msgspec.msgpack.encode({**fields, "client_order_id": cid}), MAX_LINE).client_order_id == ""


def test_a_zmq_reject_names_no_client_order_id_for_a_request_that_has_none():
    """As a text LOGIN never echoes one: a LoginRequest carrying the key is refused without it."""
    rej = decode_request(msgspec.msgpack.encode({"type": "LoginRequest", "user": 7, "client_order_id": "c1"}), MAX_LINE)
    assert isinstance(rej, Rej) and rej.code is RejectCode.MALFORMED and rej.client_order_id == "", rej


def test_wire_md_shows_the_reject_a_msgpack_array_really_gets():
    from test_wire_doc import BLOCK, WIRE_MD, split_block, NAMESPACE
    [shown] = [eval(split_block(m.group(2))[0], dict(NAMESPACE)) for m in BLOCK.finditer(WIRE_MD.read_text())
               if m.group(2).startswith("Rej(code=RejectCode.MALFORMED")]
    assert decode_request(msgspec.msgpack.encode(["PlaceRequest", "BUY"]), MAX_LINE) == shown


@pytest.mark.parametrize("fields, reason", [
    ({"symbol": "AAPL", "levels": 0}, "levels '0' is not a whole number from 1 to 100; usage: BOOK <symbol> [<levels>]"),
    ({"symbol": "AAPL", "levels": 101}, "levels '101' is not a whole number from 1 to 100; usage: BOOK <symbol> [<levels>]"),
    ({"symbol": "A A"}, "symbol 'A A' is not allowed"),
])
def test_a_zmq_book_request_is_held_to_the_text_grammar(fields, reason):
    assert decode_request(msgspec.msgpack.encode({"type": "BookRequest", **fields}), MAX_LINE) == Rej(
        RejectCode.MALFORMED, reason)


def test_orders_and_book_parse_with_their_defaults():
    from exchange.gateway.protocol.messages import BookRequest, OrdersRequest
    assert parse_line("ORDERS") == OrdersRequest(None)
    assert parse_line("orders aapl") == OrdersRequest("AAPL")
    assert parse_line("BOOK btc-usd") == BookRequest("BTC-USD", 10)
    assert parse_line("BOOK BTC-USD 100") == BookRequest("BTC-USD", 100)


# -- accounts: FUNDS, BALANCE, DEPOSIT, WITHDRAW --------------------------------------------------

@pytest.mark.parametrize("line, qty, funds, tif", [
    ("BUY BTC-USD FUNDS 1000", "", "1000", None), ("buy btc-usd 0.5 funds 1000.25 ioc #f1", "0.5", "1000.25",
                                                   TimeInForce.IOC)])
def test_funds_takes_the_place_of_the_price_with_or_without_a_quantity(line, qty, funds, tif):
    request = parse_line(line)
    assert (request.side, request.qty, request.price, request.funds, request.tif) == (Side.BUY, qty, None, funds, tif)


def test_balance_deposit_and_withdraw_parse_with_asset_names_in_capitals():
    from exchange.gateway.protocol.messages import BalanceRequest, DepositRequest, WithdrawRequest
    assert parse_line("BALANCE") == BalanceRequest(None)
    assert parse_line("balance usd") == BalanceRequest("USD")
    assert parse_line("DEPOSIT alice usd 100.5 wire-1") == DepositRequest("alice", "USD", "100.5", "wire-1")
    assert parse_line("withdraw Bob BTC 0.01 out:2") == WithdrawRequest("Bob", "BTC", "0.01", "out:2")
    assert reject("DEPOSIT alice USD 1 r$1").reason.startswith("reference 'r$1' is not 1 to 64 letters")
    assert reject("WITHDRAW alice USD 1e3 r1").reason == "WITHDRAW takes an amount like 1000 or 0.25, not '1e3'"


@pytest.mark.parametrize("fields, expected", [
    ({"type": "BalanceRequest", "asset": "btc"}, "BalanceRequest(asset='BTC')"),
    ({"type": "BalanceRequest"}, "BalanceRequest(asset=None)"),
    ({"type": "DepositRequest", "user": "alice", "asset": "usd", "amount": "5", "ref": "r1"},
     "DepositRequest(user='alice', asset='USD', amount='5', ref='r1')"),
    ({"type": "WithdrawRequest", "user": "alice", "asset": "USD", "amount": "-5", "ref": "r1"},
     "Rej(code=<RejectCode.MALFORMED: 'MALFORMED'>, reason=\"WITHDRAW takes an amount like 1000 or 0.25, not '-5'\","
     " client_order_id='')"),
    ({"type": "DepositRequest", "user": "alice", "asset": "USD", "amount": "5", "ref": "r 1"},
     "Rej(code=<RejectCode.MALFORMED: 'MALFORMED'>, reason='usage: DEPOSIT <user> <asset> <amount> <ref>',"
     " client_order_id='')"),
])
def test_the_zmq_account_requests_are_held_to_the_text_grammar(fields, expected):
    assert repr(decode_request(msgspec.msgpack.encode(fields), MAX_LINE)) == expected
