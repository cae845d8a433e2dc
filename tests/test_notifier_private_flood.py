"""The notifier's private feed under a flood of subscriptions: a bounded share of each loop turn."""

import zmq
from exchange.marketdata.notifier import MAX_SUBSCRIPTIONS_PER_TURN, Notifier


def test_a_flood_of_private_subscriptions_is_decided_a_turns_worth_at_a_time():
    """Each turn decides at most MAX_SUBSCRIPTIONS_PER_TURN of them, so the loop gets on with the
    feed meanwhile; the rest wait in the socket and are decided in the turns after."""
    ctx = zmq.Context()
    private = ctx.socket(zmq.XPUB)
    client = ctx.socket(zmq.XSUB)
    try:
        private.setsockopt(zmq.XPUB_MANUAL, 1)
        private.setsockopt(zmq.XPUB_VERBOSER, 1)
        private.setsockopt(zmq.RCVHWM, 0)
        private.bind("inproc://private")
        client.setsockopt(zmq.SNDHWM, 0)
        client.connect("inproc://private")
        sent = 3 * MAX_SUBSCRIPTIONS_PER_TURN + 7
        for _ in range(sent):
            client.send(b"\x01priv.bob|")  # no CURVE User-Id: each is refused
        notifier = object.__new__(Notifier)
        notifier.private, notifier.refused = private, 0
        turns = []
        while notifier.refused < sent and len(turns) < 10:
            before = notifier.refused
            notifier.authorise()
            turns.append(notifier.refused - before)
        assert turns == [MAX_SUBSCRIPTIONS_PER_TURN] * 3 + [7]
    finally:
        client.close(linger=0)
        private.close(linger=0)
        ctx.term()
