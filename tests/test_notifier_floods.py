"""The notifier under floods: private subscriptions a bounded share of each loop turn, answers to a peer that does not read a bounded queue."""

import time

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


def test_answers_to_a_peer_that_does_not_read_are_held_a_few_at_a_time(tmp_path):
    """The snapshots socket keeps at most ANSWERS_PER_PEER answers for one peer (then drops them: it
    asks again), not libzmq's default 1,000 full answers per connection."""
    from exchange.marketdata.notifier import ANSWERS_PER_PEER, snapshots_socket

    ctx = zmq.Context()
    sock = snapshots_socket(ctx, f"ipc://{tmp_path}/snapshots")
    try:
        assert sock.getsockopt(zmq.SNDHWM) == ANSWERS_PER_PEER <= 100
    finally:
        sock.close(linger=0)
        ctx.term()


def test_a_public_lane_keeps_only_subscriptions_that_name_what_the_feed_carries():
    """A prefix of one of its topics (one channel, a symbol's channels, everything) is taken; any
    other subscription is not kept (libzmq kept each, up to 4 kB, for as long as its client stayed:
    a few thousand of them cost the notifier hundreds of MB)."""
    from exchange.marketdata.notifier import Notifier
    from exchange.wire.messages import topic

    ctx = zmq.Context()
    lane, client = ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
    try:
        lane.setsockopt(zmq.XPUB_MANUAL, 1)
        lane.setsockopt(zmq.XPUB_VERBOSER, 1)
        lane.bind("inproc://lane")
        client.connect("inproc://lane")
        junk = b"md.ZZZ." + b"x" * 4000  # begins like a topic, but no topic of the feed begins like it
        for wanted in (topic("AAPL", "trade"), b"md.MSFT.", junk, b"nonsense"):
            client.setsockopt(zmq.SUBSCRIBE, wanted)
        notifier = object.__new__(Notifier)
        notifier.public_topics = [topic(s, c) for s in ("AAPL", "MSFT") for c in ("trade", "bbo", "l2", "l3")]
        notifier.refused_public = 0
        notifier.subscribe_public(lane)
        assert notifier.refused_public == 2
        for message in (junk, b"nonsense", topic("MSFT", "l2"), topic("AAPL", "trade")):
            lane.send(message)
        assert client.poll(5000)
        assert [client.recv(), client.recv()] == [topic("MSFT", "l2"), topic("AAPL", "trade")]  # in order: the
        assert not client.poll(0)  # first two, sent before them, were never sent on
    finally:
        client.close(linger=0)
        lane.close(linger=0)
        ctx.term()


def test_a_flood_of_trades_requests_is_answered_a_budget_of_trades_per_turn(tmp_path):
    """A TradesRequest answer may hold MAX_RECENT_TRADES trades (about 0.4 ms to build): a turn
    answers requests until TRADES_ANSWERED_PER_TURN trades are spent, so a flood of them cannot
    hold the loop (and the feed) for long; the rest wait in the socket, and every one is answered."""
    from exchange.core.messages import Trade
    from exchange.core.orders import Side
    from exchange.marketdata.levels import LevelBook
    from exchange.marketdata.notifier import TRADES_ANSWERED_PER_TURN, snapshots_socket
    from exchange.marketdata.publisher import MAX_RECENT_TRADES, Publisher, ReleasedBook
    from exchange.wire.messages import Decoder, Trades, TradesRequest, encode

    ctx = zmq.Context()
    sock = snapshots_socket(ctx, f"ipc://{tmp_path}/snapshots")
    client = ctx.socket(zmq.DEALER)
    try:
        client.setsockopt(zmq.RCVHWM, 0)
        client.connect(f"ipc://{tmp_path}/snapshots")
        publisher = Publisher({"AAPL": "e2"})
        publisher.load("AAPL", ReleasedBook(LevelBook("AAPL"), None, 0), batch=1, epoch=1, chan_seqs={}, now=0.0)
        now = time.time_ns()
        for n in range(MAX_RECENT_TRADES):
            publisher.remember(Trade(n + 1, now + n, "AAPL", f"2-{n + 1}", 100, 1, Side.BUY))
        notifier = object.__new__(Notifier)
        notifier.snapshots, notifier.publisher, notifier.malformed = sock, publisher, 0
        asked = 40
        for _ in range(asked):
            client.send(encode(TradesRequest("AAPL", 0)))
        per_turn = -(-TRADES_ANSWERED_PER_TURN // MAX_RECENT_TRADES)  # the request that goes past the budget is answered
        turns = []
        while sum(turns) < asked and len(turns) < 20:
            if sock.poll(5000):
                turns.append(notifier.answer_requests())
        assert turns[0] == per_turn < asked and sum(turns) == asked
        answers = [Decoder(Trades).decode(client.recv()) for _ in range(asked)]
        assert all(len(answer.trades) == MAX_RECENT_TRADES for answer in answers)
    finally:
        client.close(linger=0)
        sock.close(linger=0)
        ctx.term()
