"""A blocking client of the gateway's ZMQ order entry (DEALER, msgpack).
"""

from __future__ import annotations

import socket
import time
import msgspec
import zmq
from exchange.wire import sockets
from exchange.gateway.protocol.messages import AnyReply, ClientReply, ClientRequest
from exchange.wire.messages import Decoder, encode
from exchange.wire.security.curve_keys import make_client


class ZmqClient:
    """An order entry session over ZMQ (DEALER): msgpack requests in, msgpack replies out.

    For a gateway with ``zmq_auth: curve`` give ``curve_keys=(gateway public key, own public key,
    own secret key)`` (Z85): the session is then logged in as the user whose key it holds.
    """

    def __init__(self, endpoint: str, timeout: float = 10.0,
                 curve_keys: tuple[bytes, bytes, bytes] | None = None):
        self.timeout = timeout
        self.ctx = sockets.context()
        self.sock = sockets.socket(self.ctx, zmq.DEALER)
        if curve_keys is not None:
            make_client(self.sock, *curve_keys)
        self.sock.connect(endpoint)
        self.decoder = msgspec.msgpack.Decoder(AnyReply)

    def send(self, request: ClientRequest) -> None:
        self.sock.send(encode(request))

    def receive(self, timeout: float | None = None) -> ClientReply:
        if not self.sock.poll(int(1000 * (timeout if timeout is not None else self.timeout))):
            raise TimeoutError("no reply from the gateway in time")
        return self.decoder.decode(self.sock.recv())

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()

    def __enter__(self) -> ZmqClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
