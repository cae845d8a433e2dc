"""A line of the text protocol may be ``gateway.max_line`` bytes long, not counting its ``\\n``,
and one ``\\r`` before the ``\\n`` is ignored (docs/protocol.md): so a line of exactly ``max_line``
bytes sent with ``\\r\\n`` is a line like any other, whether it arrives whole or in pieces."""

from __future__ import annotations

import asyncio

from exchange.errors import RejectCode
from exchange.gateway.protocol.grammar import parse_bytes
from exchange.gateway.protocol.messages import PingRequest, Rej
from exchange.gateway.text_server import TextConnection
from test_order_entry_limits import Transport, turns_until
from test_sessions import CONFIG, Exchange

MAX_LINE = CONFIG.gateway.max_line
PING = b"PING" + b" " * (MAX_LINE - 4)  # max_line bytes


def test_a_line_of_max_line_bytes_ending_in_cr_lf_is_read():
    assert isinstance(parse_bytes(PING, MAX_LINE), PingRequest)
    assert isinstance(parse_bytes(PING + b"\r", MAX_LINE), PingRequest)
    assert isinstance(parse_bytes(PING + b" \r", MAX_LINE), Rej)  # one byte over: too long


def test_only_one_cr_before_the_lf_is_ignored():
    assert isinstance(parse_bytes(b"PING\r", MAX_LINE), PingRequest)
    rej = parse_bytes(b"PING\r\r", MAX_LINE)  # the first \r is part of the line: of its verb
    assert isinstance(rej, Rej) and rej.code is RejectCode.UNKNOWN_VERB


def test_a_line_of_max_line_bytes_whose_cr_lf_comes_apart_is_answered():
    exchange = Exchange()

    async def pieces() -> None:
        transport = Transport()
        connection = TextConnection(exchange.entry, exchange.entry.config.gateway)
        connection.connection_made(transport)
        connection.data_received(b"LOGIN alice alice-key\n" + PING + b"\r")
        connection.data_received(b"\n")
        await turns_until(lambda: transport.written.count(b"\n") >= 2)
        assert transport.written.decode().splitlines() == ["OK LOGIN alice", "PONG"]

    asyncio.run(pieces())
