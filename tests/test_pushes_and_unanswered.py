"""Pushed lines (FILL, OUT, REDUCED) held back behind a session's unanswered requests, so that an
order's lines keep their order, are not requests: they never count against ``max_unanswered``
(docs/protocol.md). They are bounded on their own: past ``max_write_buffer`` bytes of them the
session ends with a reason (docs/security.md)."""

from __future__ import annotations

from exchange.core.orders import Side, TimeInForce
from exchange.gateway.protocol.messages import Ack, Fill, Pong
from exchange.gateway.sessions import Session
from test_sessions import Exchange, configured

LIMIT = 16  # the smallest max_unanswered the config allows; the default 8192 behaves the same at scale


def test_pushed_fills_do_not_count_as_unanswered_requests():
    exchange = Exchange(config=configured(gateway={"max_unanswered": LIMIT}))
    alice, bob = exchange.session("alice"), exchange.session("bob")
    assert alice.say("SELL AAPL 1000 @ 10.00 #big") == ["ACK 2-1 #big SELL AAPL 1000 @ 10.00 GTC"]
    alice.say("BOOK AAPL")  # 1st request waiting: the notifier has not answered yet
    alice.say("REPLACE #big 900")  # 2nd: answered, but its line waits behind the BOOK
    for n in range(LIMIT + 2):  # bob trades with alice's resting order: her FILLs wait in order
        assert bob.say(f"BUY AAPL 1 @ 10.00 #b{n}")[0].startswith("ACK ")
    assert len(alice.session.queue) > LIMIT  # pushed lines, not requests
    lines = alice.say("PING")  # her third request
    assert not alice.disconnected and not any(line.startswith("BYE") for line in lines), lines
    exchange.answer_books()
    lines = alice.take()
    assert lines[:3] == ["BOOK AAPL", "ASK 10.00 882", "END BOOK AAPL"]  # the book as it is now
    assert lines[3] == "ACK 2-1 #big REPLACED SELL AAPL 900 @ 10.00 LEAVES 900" and lines[-1] == "PONG"
    assert lines[4:-1] == [f"FILL 2-1 #big 1 @ 10.00 LEAVES {899 - n} TRADE 2-{n + 1}" for n in range(LIMIT + 2)]


def ack(order_id: str) -> Ack:
    return Ack(order_id, "", Side.BUY, "AAPL", "1", "10.00", TimeInForce.GTC)


def fill(order_id: str) -> Fill:
    return Fill(order_id, "", "1", "10.00", "0", "2-1")


def test_a_session_that_stopped_is_read_again_once_half_its_requests_are_answered_whatever_pushes_wait():
    resumed = []
    session = Session(1, lambda replies: None, max_unanswered=LIMIT, resume=lambda: resumed.append(True))
    first = session.reserve()  # unanswered for now
    answered_behind_it = [session.reserve() for _ in range(LIMIT // 2)]
    still_waiting = session.reserve()
    session.fill(session.reserve(), [ack("2-1")])
    for _ in range(3 * LIMIT):  # 2-1's ACK waits: so do its fills, behind the requests
        session.push([fill("2-1")])
    others = [session.reserve() for _ in range(LIMIT - 3 - LIMIT // 2)]
    assert not session.has_room()  # LIMIT requests wait
    for slot in answered_behind_it + others:
        session.fill(slot, [Pong()])
    session.fill(first, [Pong()])  # LIMIT // 2 + 1 requests leave; LIMIT // 2 - 1 remain, and the fills
    assert resumed and session.has_room()
    session.fill(still_waiting, [Pong()])
    assert not session.queue and not session.held


def test_pushed_lines_held_back_are_bounded_and_the_session_is_told_why():
    """Behind a BOOK the notifier takes its time to answer, an order that keeps trading would hold
    back a FILL per trade; past max_write_buffer bytes of them the session ends."""
    exchange = Exchange(config=configured(gateway={"max_write_buffer": 65536}))
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 100000 @ 10.00 #big")
    alice.say("BOOK AAPL")
    alice.say("REPLACE #big 90000")
    trades = 0
    while not alice.disconnected:
        assert trades < 5000, f"{len(alice.session.queue)} pushed lines held back, and counting"
        bob.say(f"BUY AAPL 1 @ 10.00 #b{trades}")
        trades += 1
    held = sum(len(replies) for _, replies, *_ in alice.session.queue)
    assert held * len("FILL 2-1 #big 1 @ 10.00 LEAVES 89999 TRADE 2-1\n") <= 65536
    assert alice.take() == ["BYE RATE_LIMITED more than 65536 bytes of pushed lines wait behind unanswered"
                            " requests; closing the session"]
    alice.close()
    assert alice.session.closed and exchange.entry.sessions.keys() == {bob.session.id}
