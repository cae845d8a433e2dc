"""A blocking client of the text protocol, for tests, tools and people's scripts.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from exchange.wire.messages import encode


PUSHED = ("FILL ", "OUT ", "REDUCED ")  # lines the gateway sends without a request


class TextClient:
    """A text-protocol session over TCP. ``request`` sends a line and returns its one reply line;
    pushed lines (FILL, OUT, REDUCED) that arrive meanwhile are kept in ``pushed``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
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

    def request_block(self, line: str, timeout: float | None = None) -> list[str]:
        """Send an ORDERS or a BOOK; return the lines of its reply, up to its END line (or its REJ)."""
        lines = [self.request(line, timeout)]
        while not lines[-1].startswith(("END ", "REJ ")):
            lines.append(self.read_reply(timeout))
        return lines

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
