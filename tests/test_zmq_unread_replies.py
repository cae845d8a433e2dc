"""A ZMQ client that does not take its replies costs the gateway at most ``gateway.max_write_buffer``
bytes of them, however large each reply is (docs/security.md): past that its session ends without a
word, as a text client that does not read loses its connection. The count of replies still bounds
them too, and a client that takes its replies is never cut off, however large they are."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from exchange.core.orders import Side
from exchange.gateway.protocol.messages import Orders, Pong, State
from exchange.gateway.zmq_server import MAX_ZMQ_BACKLOG, ZmqServer
from test_sessions import Exchange, configured

IDENTITY = b"\x00abcd"
ONE_MIB = 1024 * 1024


class Router:
    """The gateway's ROUTER as one client's DEALER makes it behave: it takes replies while ``taking``,
    else every send would block (the client reads nothing and its queue is full)."""

    def __init__(self, taking: bool = False):
        self.taking = taking
        self.sent: list[bytes] = []

    def send_multipart(self, frames, flags=0) -> None:
        if not self.taking:
            raise zmq.Again()
        self.sent.append(frames[1])


class Frame:
    """A request frame's properties, as a plain (not CURVE) ROUTER gives them."""

    def get(self, name: str) -> str:
        return "10.0.0.1"


def orders_reply() -> Orders:
    """The answer to ORDERS for a user with 1000 open orders: about 172 kB of msgpack."""
    state = State("1-123456", "client-order-id-00000000000000000000", "NEW", "0.0000", "1000.0000", Side.BUY,
                  "BTC-USD", "43000.10")
    return Orders([state] * 1000, 1000)


def serve(max_write_buffer: int, router: Router, run):
    """Run ``run(server, session)`` on the loop, with the session of one ZMQ client whose replies go
    to ``router``; the gateway's limits are the toy config's, with ``max_write_buffer``."""
    config = configured(gateway={"max_write_buffer": max_write_buffer, "zmq": "inproc://zmq-unread-replies"})
    exchange = Exchange(config=config)

    async def serving():
        ctx = zmq.asyncio.Context()
        server = ZmqServer(ctx, config, exchange.entry)
        try:
            session = server._session(router, IDENTITY, Frame())
            return await run(server, session)
        finally:
            server.close()
            ctx.destroy(linger=0)

    return exchange, asyncio.run(serving())


def waiting_bytes(server: ZmqServer) -> int:
    known = server.sessions.get(IDENTITY)
    return sum(map(len, known.replies.backlog)) if known else 0


def test_unread_zmq_replies_are_bounded_by_max_write_buffer():
    async def run(server, session) -> list[int]:
        held = []
        for _ in range(100):  # 100 ORDERS answered within a fraction of a second (max_rate is 1000/s)
            session.write([orders_reply()])
            held.append(waiting_bytes(server))
        return held

    exchange, held = serve(ONE_MIB, Router(), run)
    assert max(held) <= ONE_MIB, (
        f"{max(held)} bytes of unread replies kept for one ZMQ client (max_write_buffer is {ONE_MIB})")
    assert exchange.entry.sessions == {}, "the ZMQ client that reads nothing still has its session"


def test_a_zmq_client_that_takes_its_replies_is_not_cut_off_by_one_reply_larger_than_the_limit():
    router = Router(taking=True)

    async def run(server, session) -> None:
        for _ in range(10):  # 1.7 MB in all, each reply larger than max_write_buffer
            session.write([orders_reply()])

    exchange, _ = serve(65536, router, run)
    assert len(router.sent) == 10 and len(exchange.entry.sessions) == 1


def test_replies_the_client_took_later_no_longer_count_against_the_limit():
    router = Router()

    async def run(server, session) -> int:
        for _ in range(2):  # twice: 860 kB wait, then are taken; a count that never went down would cut
            for _ in range(5):
                session.write([orders_reply()])
            assert 5 * 170_000 < waiting_bytes(server) <= ONE_MIB
            router.taking = True
            server.sessions[IDENTITY].replies.send()  # the gateway's next try (every few ms)
            assert waiting_bytes(server) == 0, "the waiting replies were not sent"
            router.taking = False
        return len(router.sent)

    exchange, sent = serve(ONE_MIB, router, run)
    assert sent == 10 and len(exchange.entry.sessions) == 1


def test_unread_zmq_replies_are_still_bounded_in_number():
    async def run(server, session) -> None:
        for _ in range(MAX_ZMQ_BACKLOG + 1):  # small replies: far below max_write_buffer in bytes
            session.write([Pong()])

    exchange, _ = serve(ONE_MIB, Router(), run)
    assert exchange.entry.sessions == {}
