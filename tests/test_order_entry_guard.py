"""The gateway's per-session guard, in memory: a bug while serving one session ends that session
with `REJ INTERNAL`, and the gateway and every other session go on (docs/protocol.md)."""

from __future__ import annotations

import asyncio

from exchange.core.messages import OrderAccepted
from exchange.errors import JournalError
from exchange.gateway.text_server import TextConnection
from test_order_entry_limits import Transport, turns_until
from test_sessions import Client, Exchange

INTERNAL = "REJ INTERNAL the gateway failed on this request; closing the session"


def broken(*args, **kwargs):
    raise KeyError("a bug")


def test_a_bug_on_a_request_ends_that_session_only_with_rej_internal():
    exchange = Exchange()
    alice, bob = exchange.session("alice"), exchange.session("bob")
    exchange.entry.views.status = broken
    assert alice.say("STATUS 1-1") == [INTERNAL]
    assert alice.disconnected and alice.session.closed
    assert alice.say("PING") == []
    assert bob.say("PING") == ["PONG"]
    assert bob.say("BUY AAPL 1 @ 5.00")[0].startswith("ACK")


def test_lines_after_a_rej_internal_in_the_same_read_are_not_executed():
    exchange = Exchange()
    exchange.entry.views.status = broken

    async def session() -> None:
        transport = Transport()
        connection = TextConnection(exchange.entry, exchange.entry.config.gateway)
        connection.connection_made(transport)
        connection.data_received(b"LOGIN alice alice-key\nSTATUS 1-1\nBUY AAPL 1 @ 5.00\nPING\n")
        await turns_until(lambda: transport.closed)
        assert transport.written.decode().splitlines() == ["OK LOGIN alice", INTERNAL]
        assert transport.closed

    asyncio.run(session())
    assert exchange.sent == []  # the BUY never reached an engine


def test_a_bug_while_answering_an_engine_ends_the_requesters_session_only():
    exchange = Exchange()
    alice, bob = exchange.session("alice"), exchange.session("bob")
    exchange.entry._placed = broken
    assert alice.say("BUY AAPL 1 @ 5.00 #a") == [INTERNAL] and alice.session.closed
    del exchange.entry._placed
    assert bob.say("BUY AAPL 1 @ 5.00 #b") == ["ACK 2-2 #b BUY AAPL 1 @ 5.00 GTC"]


def lost_ack_exchange(history) -> Exchange:
    """An engine that accepted alice's #lost and whose answer was lost; a new gateway incarnation
    with ``history`` as its journal reader and blocking work deferred."""
    first = Exchange("gw/1")
    first.session("alice").say("BUY AAPL 2 @ 7.00 #lost", release=False)
    first.outbox.clear()
    second = Exchange("gw/2", deferred=True)
    second.matchers = first.matchers
    second.entry.history = history
    return second


def test_the_journal_is_read_off_the_loop_for_a_resend_the_gateway_never_saw_answered():
    accepted = []
    exchange = lost_ack_exchange(lambda order_id: accepted)
    order = exchange.matchers["e2"].books["AAPL"].orders["2-1"]
    accepted.append(OrderAccepted(1, 0, "AAPL", "2-1", "alice", order.side, 2, 700, order.tif, order.stp, "lost"))
    alice = Client(exchange, user="alice")
    assert alice.say("BUY AAPL 2 @ 7.00 #lost") == []  # the engine says DUPLICATE_ID; the journal is asked
    assert len(exchange.blocking) == 1
    exchange.run_blocking()
    assert alice.take() == ["ACK 2-1 #lost BUY AAPL 2 @ 7.00 GTC"]


def test_a_journal_that_cannot_be_read_answers_that_request_only():
    def unreadable(order_id):
        raise JournalError("journal.db: database is locked")

    exchange = lost_ack_exchange(unreadable)
    alice, bob = Client(exchange, user="alice"), Client(exchange, user="bob")
    alice.say("BUY AAPL 2 @ 7.00 #lost")
    exchange.run_blocking()
    [line] = alice.take()
    assert line.startswith("REJ #lost UNAVAILABLE "), line
    assert alice.say("PING") == ["PONG"]
    assert bob.say("BUY AAPL 1 @ 5.00")[0].startswith("ACK")
