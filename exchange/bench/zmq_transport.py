"""`exchange bench --zmq`: a session over the gateway's ZMQ order entry instead of the text port.

The session (bench.session.Session) and its checks stay exactly as they are: ``DealerTransport``
stands where the asyncio TCP transport would. Each line the session writes becomes the msgpack
request a ZMQ client sends (``parse_bytes``, the gateway's own parser, then the documented map);
each reply frame becomes the text line the gateway would have written (``format_reply``). The
gateway's ``zmq_auth`` must be ``login`` (as in configs/local.yaml), so that sessions log in with
LOGIN as text sessions do.
"""

from __future__ import annotations

import asyncio

import msgspec
import zmq

from exchange.gateway.protocol.grammar import format_reply, parse_bytes
from exchange.gateway.protocol.messages import AnyReply, Rej

MAX_LINE = 65536


class DealerTransport:
    """The part of an asyncio transport that bench sessions use, over one DEALER socket.

    The socket is a plain one watched with ``loop.add_reader`` on its ZMQ_FD, which is
    edge-triggered and is also consumed by sends: so after every readable edge, and after every
    write, everything waiting is drained (scheduled, never inside the session's own callback).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, protocol: asyncio.Protocol):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)  # open loop: queue rather than drop; the gateway answers BUSY
        self.sock.setsockopt(zmq.RCVHWM, 0)  # never let the gateway find this client's queue full
        self.sock.connect(endpoint)
        self.protocol = protocol
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode = msgspec.msgpack.Decoder(AnyReply).decode
        self.closed = False
        self.drain_scheduled = False
        self.loop = asyncio.get_running_loop()
        self.fd = self.sock.getsockopt(zmq.FD)
        self.loop.add_reader(self.fd, self.drain)
        protocol.connection_made(self)

    def write(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line:
                request = parse_bytes(line, MAX_LINE)
                if isinstance(request, Rej):  # the load generator made a line the gateway refuses
                    raise ValueError(f"bench line does not parse: {line[:80]!r}: {request.reason}")
                self.sock.send(self.encode(request))
        if not self.drain_scheduled:
            self.drain_scheduled = True
            self.loop.call_soon(self.drain)

    def drain(self) -> None:
        self.drain_scheduled = False
        if self.closed:
            return
        frames = []
        while self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames.append(self.sock.recv(zmq.NOBLOCK))
        if frames:
            self.protocol.data_received("".join(format_reply(self.decode(f)) + "\n" for f in frames).encode())

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.sock.close()
            self.protocol.connection_lost(None)
