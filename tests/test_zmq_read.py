"""The gateway's ZMQ transport reading its clients' frames, in memory (DEALERs on an inproc ROUTER):
every frame of a batch is answered, whatever another frame in it holds, and a bug on one frame
ends that client's session only, with `Rej` `INTERNAL` (docs/protocol.md, docs/wire.md)."""

from __future__ import annotations

import asyncio

import msgspec
import zmq
import zmq.asyncio

from exchange.errors import RejectCode
from exchange.gateway import zmq_server
from exchange.gateway.protocol.messages import AnyReply, PingRequest, Pong, Rej
from exchange.gateway.zmq_server import ZmqServer
from exchange.wire.messages import encode
from test_sessions import Exchange, configured

DEEP = b"\x91" * 1000 + b"\xc0"  # 1000 msgpack arrays, one in the other, around a nil: under max_line
PING = encode(PingRequest())
REPLY = msgspec.msgpack.Decoder(AnyReply)


def received(dealer: zmq.Socket) -> list:
    """The replies that reached ``dealer``."""
    replies = []
    while dealer.poll(100):
        replies.append(REPLY.decode(dealer.recv()))
    return replies


def batch(frames: list[bytes], before_read=lambda server: None) -> list[list]:
    """Each of ``frames`` sent by a DEALER of its own, all waiting on the ROUTER before the gateway
    reads (``before_read(server)`` first); then the gateway's reads, as its loop runs them. Returns
    what each DEALER received (the ROUTER may take the frames in any order)."""
    config = configured(gateway={"zmq": "inproc://zmq-read"})
    exchange = Exchange(config=config)

    async def serving() -> list[list]:
        ctx = zmq.asyncio.Context()
        server = ZmqServer(ctx, config, exchange.entry)
        dealers = [zmq.Context.shadow(ctx.underlying).socket(zmq.DEALER) for _ in frames]
        try:
            for dealer, frame in zip(dealers, frames):
                dealer.connect(config.gateway.zmq)
                dealer.send(frame)
            before_read(server)
            try:
                server.read()
            except KeyError:  # a bug before the frame had a session: it escapes, as bugs do
                pass
            for _ in range(3):  # the reads scheduled for the end of this turn
                await asyncio.sleep(0)
            return [received(dealer) for dealer in dealers]
        finally:
            for dealer in dealers:
                dealer.close(linger=0)
            server.close()
            ctx.destroy(linger=0)

    return asyncio.run(serving())


def test_a_small_frame_nested_too_deeply_is_answered_malformed_and_the_frames_behind_it_are_answered():
    [[rej], [pong]] = batch([DEEP, PING])
    assert isinstance(rej, Rej) and rej.code is RejectCode.MALFORMED, rej
    assert isinstance(pong, Pong)


def test_a_bug_on_one_frame_ends_that_clients_session_only_and_the_batch_goes_on(monkeypatch):
    decode = zmq_server.decode_request

    def broken(frame: bytes, max_size: int):
        if frame == b"bug":
            raise KeyError("a bug")
        return decode(frame, max_size)

    monkeypatch.setattr(zmq_server, "decode_request", broken)
    [[internal], [pong]] = batch([b"bug", PING])
    assert internal == Rej(RejectCode.INTERNAL, "the gateway failed on this request; closing the session")
    assert isinstance(pong, Pong)


def test_a_bug_that_escapes_a_read_leaves_the_rest_of_its_batch_to_the_next_read():
    def failing_once(server: ZmqServer) -> None:
        session = server._session

        def broken(*args):
            server._session = session
            raise KeyError("a bug")

        server._session = broken

    [lost, [pong]] = sorted(batch([PING, PING], failing_once), key=len)
    assert lost == [] and isinstance(pong, Pong)
