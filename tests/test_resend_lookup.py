"""A resend the gateway never saw answered (it restarted): the original answer comes from the journal,
and a journal that cannot be read, whatever the failure, answers that request UNAVAILABLE."""
from __future__ import annotations

import pytest

from exchange.errors import JournalError

from test_sessions import Exchange

ORDER = "BUY AAPL 3 @ 9.00 #again"


@pytest.fixture
def restarted():
    """A gateway that restarted after its first incarnation placed ORDER: same engines, no memory."""
    before = Exchange()
    before.session("alice").say(ORDER)
    after = Exchange()
    after.matchers = before.matchers
    journal = [view.accepted for view in before.entry.views.orders.values()]
    return after, journal


def test_the_original_answer_comes_from_the_journal(restarted):
    gateway, journal = restarted
    gateway.entry.history = lambda order_id: [e for e in journal if e.order_id == order_id]
    assert gateway.session("alice").say(ORDER) == ["ACK 2-1 #again BUY AAPL 3 @ 9.00 GTC"]


@pytest.mark.parametrize("failure", [JournalError("the journal writer refused: busy"),
                                     RuntimeError("a reading that broke in a way nobody foresaw")])
def test_a_journal_that_cannot_be_read_answers_the_resend_unavailable(restarted, failure):
    gateway, _ = restarted

    def history(order_id):
        raise failure

    gateway.entry.history = history
    alice = gateway.session("alice")
    assert alice.say(ORDER) == ["REJ #again UNAVAILABLE could not tell from the journal whether this is order 2-1;"
                                " the outcome is unknown: send the same order again with its #client-order-id,"
                                " or ask STATUS"]
    assert alice.say("PING") == ["PONG"]  # the session goes on
