"""Small, blocking Python clients for the exchange: order entry (text or ZMQ) and market data.

    with TextClient("127.0.0.1", 7001) as c:
        c.request("LOGIN alice alice-key")          # -> "OK LOGIN alice"
        c.request("BUY BTC-USD 0.5 @ 43000.10")     # -> "ACK 1-1 BUY BTC-USD 0.5000 @ 43000.10 GTC"
        c.read_line()                               # a pushed FILL/OUT line, when one comes

Every wait has a timeout (TimeoutError), so a test or a script never hangs.
"""

from __future__ import annotations

import socket
import time
from collections import deque

import msgspec
import zmq

from exchange import mesh
from exchange.protocol import AnyReply, ClientReply, ClientRequest
from exchange.wire import Decoder, MarketData, encode, topic

PUSHED = ("FILL ", "OUT ", "REDUCED ")  # lines the gateway sends without a request


class TextClient:
    """A text-protocol session over TCP. ``request`` sends a line and returns its one reply line;
    pushed lines (FILL, OUT, REDUCED) that arrive meanwhile are kept in ``pushed``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.pushed: deque[str] = deque()

    def send_line(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data if data.endswith(b"\n") else data + b"\n")

    def read_line(self, timeout: float | None = None) -> str:
        """The next line from the gateway, whatever it is."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from the gateway in time; have {self.buffer[:80]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def read_reply(self, timeout: float | None = None, canceling: str | None = None) -> str:
        """The next reply line, keeping pushed lines aside in ``pushed``.

        The reply to ``CANCEL x`` is itself an ``OUT`` line: pass ``canceling=x`` to accept
        ``OUT … CANCELED`` naming ``x`` as the reply.
        """
        while True:
            line = self.read_line(timeout)
            words = line.split()
            if canceling and words[0] == "OUT" and canceling in words[1:3] and words[-1] == "CANCELED":
                return line
            if line.startswith(PUSHED):
                self.pushed.append(line)
            else:
                return line

    def request(self, line: str, timeout: float | None = None) -> str:
        """Send one request line; return its reply line."""
        self.send_line(line)
        words = line.split()
        canceling = words[1] if len(words) == 2 and words[0].upper() == "CANCEL" else None
        return self.read_reply(timeout, canceling)

    def next_pushed(self, timeout: float | None = None) -> str:
        """The next pushed line (FILL, OUT, REDUCED), from ``pushed`` or the socket."""
        if self.pushed:
            return self.pushed.popleft()
        line = self.read_line(timeout)
        if not line.startswith(PUSHED):
            raise AssertionError(f"expected a pushed line, got {line!r}")
        return line

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TextClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZmqClient:
    """An order entry session over ZMQ (DEALER): msgpack requests in, msgpack replies out."""

    def __init__(self, endpoint: str, timeout: float = 10.0):
        self.timeout = timeout
        self.ctx = mesh.context()
        self.sock = mesh.socket(self.ctx, zmq.DEALER, connect=endpoint)
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


class MarketDataClient:
    """A subscriber to the notifier's public channels ("trade", "bbo", "l2") of some symbols."""

    def __init__(self, endpoint: str, symbols: list[str], channels=("trade", "bbo", "l2")):
        self.ctx = mesh.context()
        self.sock = mesh.socket(self.ctx, zmq.SUB, connect=endpoint)
        for symbol in symbols:
            for channel in channels:
                self.sock.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
        self.decoder = Decoder(MarketData)

    def receive(self, timeout: float = 10.0) -> MarketData:
        if not self.sock.poll(int(1000 * timeout)):
            raise TimeoutError("no market data in time")
        return self.decoder.decode(self.sock.recv_multipart()[-1])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()

    def __enter__(self) -> MarketDataClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
