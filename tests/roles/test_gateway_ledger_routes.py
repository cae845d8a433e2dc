"""The gateway role with accounts on, over real sockets: each user's requests leave on the PUSH to
their own ledger shard, and the shard's answers on the gateway's replies PULL reach the client.

The test plays both ledger shards (a PULL bound at each shard's commands endpoint, a PUSH to the
gateway's replies); the journal writer and the gateway run as `python -m exchange <role>`.
"""

from __future__ import annotations

import time

import zmq

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.core.ledger_messages import HoldOrder, HoldRejected
from exchange.errors import RejectCode
from exchange.testing.mesh import Role, loopback_config, wait_until
from exchange.wire.messages import Balance, Balances, Decoder, GetBalances, Replies, Reply, Request, Requests, encode


def sent_to(client: TextClient, line: str, shard: zmq.Socket, deadline: float) -> Request:
    """Send ``line`` until it reaches ``shard`` (the gateway's PUSH may not be connected yet: then
    the answer is BUSY at once) and return the Request the shard got."""
    poller = zmq.Poller()
    poller.register(shard, zmq.POLLIN)
    poller.register(client.sock, zmq.POLLIN)
    got = []

    def reached() -> bool:
        client.send_line(line)
        if shard in dict(poller.poll(5000)):
            got.extend(Decoder(Requests).decode(shard.recv()))
            return True
        reply = client.read_reply(timeout=5)
        assert "BUSY ledger shard" in reply, reply
        return False

    wait_until(reached, max(0.0, deadline - time.monotonic()), f"{line} reaching its ledger shard")
    [request] = got
    return request


def answer(replies: zmq.Socket, request: Request, *events) -> None:
    replies.send(encode(Replies(request.gateway, [Reply(request.session, request.request_id, list(events),
                                                         request.gateway)])))


def test_each_users_requests_go_to_their_shard_and_its_answers_come_back(tmp_path):
    path = loopback_config(tmp_path, accounts=True)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    ctx = zmq.Context()
    sockets: list[zmq.Socket] = []
    roles: list[Role] = []
    try:
        shards = {}
        for ledger in config.ledgers:
            shards[ledger.name] = ctx.socket(zmq.PULL)
            shards[ledger.name].bind(ledger.commands)
        replies = ctx.socket(zmq.PUSH)
        replies.connect(config.gateway.replies)
        sockets += [*shards.values(), replies]
        roles.append(Role(path, "journal-writer"))
        roles.append(Role(path, "gateway"))
        roles[-1].wait_for("ready")
        deadline = time.monotonic() + 30
        with TextClient(host, int(port)) as alice, TextClient(host, int(port)) as bob:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"

            request = sent_to(alice, "BALANCE", shards["ledger-1"], deadline)
            assert (request.command, request.engine) == (GetBalances("alice", None), "")
            answer(replies, request, Balances("alice", [Balance("USD", 5_000_000, 1_250_000)]))
            assert [alice.read_reply(), alice.read_reply()] == ["BALANCE USD AVAILABLE 5.000000 HELD 1.250000",
                                                                "END BALANCE 1"]

            request = sent_to(bob, "BUY AAPL 3 @ 190.00 #b1", shards["ledger-0"], deadline)
            assert isinstance(request.command, HoldOrder) and request.engine == "e2"
            assert (request.command.order.user, request.command.order.client_order_id) == ("bob", "b1")
            answer(replies, request, HoldRejected(1, 0, "bob", "AAPL", RejectCode.INSUFFICIENT_FUNDS,
                                                  "needs 570.142500 USD, 10.000000 available", "b1"))
            assert bob.read_reply() == "REJ #b1 INSUFFICIENT_FUNDS needs 570.142500 USD, 10.000000 available"
            assert not shards["ledger-1"].poll(0)  # nothing of bob's went to alice's shard
    finally:
        for role in roles:
            role.stop()
        for sock in sockets:
            sock.close(linger=0)
        ctx.term()
