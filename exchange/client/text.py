"""A blocking client of the text protocol, for tests, tools and people's scripts.
"""

from __future__ import annotations

import socket
import time
from collections import deque


PUSHED = ("FILL ", "OUT ", "REDUCED ")  # lines the gateway sends without a request


class TextClient:
    """A text-protocol session over TCP. ``request`` sends a line and returns its one reply line;
    pushed lines (FILL, OUT, REDUCED) that arrive meanwhile are kept in ``pushed``.

    A request whose reply does not come in time raises TimeoutError, and the session stays usable:
    the gateway answers every request, in order, so that reply (or the rest of its block) is still
    owed, and the next requests read it and drop it before their own. They never take it for theirs.
    """

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""
        self.pushed: deque[str] = deque()
        # the requests whose replies are still to come, oldest first: (a block?, the order id of a
        # CANCEL, whose reply is an OUT line); and the lines of the oldest one's block read so far
        self.owed: deque[tuple[bool, str | None]] = deque()
        self.partial: list[str] = []

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
        return self._answer(False, canceling, timeout)[0]

    def request_block(self, line: str, timeout: float | None = None) -> list[str]:
        """Send an ORDERS, a BOOK or a BALANCE; return the lines of its reply, up to its END line (or its REJ)."""
        self.send_line(line)
        return self._answer(True, None, timeout)

    def _answer(self, block: bool, canceling: str | None, timeout: float | None) -> list[str]:
        """The reply to the request just sent, within ``timeout``: the replies still owed to
        requests before it that timed out come first, and are read and dropped."""
        self.owed.append((block, canceling))
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            lines = self._took(self.read_reply(max(0.0, deadline - time.monotonic()), self.owed[0][1]))
            if lines is not None and not self.owed:
                return lines

    def _took(self, line: str) -> list[str] | None:
        """``line`` is (part of) the oldest owed reply: its lines once whole (it is then no longer
        owed), else None."""
        self.partial.append(line)
        if self.owed[0][0] and not line.startswith(("END ", "REJ ")):
            return None
        lines, self.partial = self.partial, []
        self.owed.popleft()
        return lines

    def next_pushed(self, timeout: float | None = None) -> str:
        """The next pushed line (FILL, OUT, REDUCED), from ``pushed`` or the socket."""
        if self.pushed:
            return self.pushed.popleft()
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line.startswith(PUSHED):
                return line
            if not self.owed:
                raise AssertionError(f"expected a pushed line, got {line!r}")
            self._took(line)  # a late reply to a request that timed out: dropped

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TextClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
