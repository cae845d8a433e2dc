"""A session's replies leave in request order, and its queue keeps no count of lines that already left."""

from exchange.gateway.protocol.messages import Ack, Fill, Out, Pong
from exchange.gateway.sessions import Session
from exchange.core.orders import Side, TimeInForce


def ack(order_id: str) -> Ack:
    return Ack(order_id, "", Side.BUY, "AAPL", "1", "10.00", TimeInForce.GTC)


def fill(order_id: str) -> Fill:
    return Fill(order_id, "", "1", "10.00", "0", "2-1")


def test_answers_in_turn_leave_at_once_and_leave_nothing_held():
    written: list[list] = []
    session = Session(1, written.append)
    first, second = session.reserve(), session.reserve()
    session.fill(first, [ack("2-1")])
    session.push([fill("2-1")])  # nothing about 2-1 waits: it leaves at once
    session.fill(second, [ack("2-2"), fill("2-2")])
    assert written == [[ack("2-1")], [fill("2-1")], [ack("2-2"), fill("2-2")]]
    assert not session.queue and not session.held


def test_an_answer_out_of_turn_waits_and_its_order_s_fills_wait_behind_it():
    written: list[list] = []
    session = Session(1, written.append)
    first, second, third = session.reserve(), session.reserve(), session.reserve()
    session.fill(second, [ack("2-2")])
    session.push([fill("2-2")])  # its ACK waits: so does the fill
    session.push([Out("2-9", "", "CANCELED")])  # nothing about 2-9 waits
    assert written == [[Out("2-9", "", "CANCELED")]]
    session.fill(third, lambda: [Pong()])
    session.fill(first, [ack("2-1")])
    # the fill was queued after the third request: it leaves after that one's answer
    assert written[1:] == [[ack("2-1"), ack("2-2"), Pong(), fill("2-2")]]
    assert not session.queue and not session.held


def test_a_list_of_replies_handed_to_two_sessions_is_not_changed():
    """Resends of one order are answered with the same list (Pending.answer)."""
    replies = [ack("2-1")]
    one, two = Session(1, lambda r: None), Session(2, lambda r: None)
    slots = [one.reserve(), two.reserve()]
    later = two.reserve()
    two.fill(later, [Pong()])
    one.fill(slots[0], replies)
    two.fill(slots[1], replies)
    assert replies == [ack("2-1")]
