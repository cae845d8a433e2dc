"""The gateway's text transport: one asyncio TCP connection per client, one line per message.

Each connection opens a session of exchange.gateway.order_entry.OrderEntry, hands it the request
lines and writes its replies. Bad input is bounded here (docs/security.md): lines are capped at
``max_line``; a client that stops reading is no longer read from, and is cut off once
``max_write_buffer`` bytes wait for it. A client that shuts down its sending side (EOF) gets the
replies to every line it sent, then the connection closes, as after a LOGOUT.
"""

from __future__ import annotations

import asyncio
import logging

from exchange.config import GatewayConfig
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.protocol.grammar import format_reply, parse_bytes
from exchange.gateway.protocol.messages import Bye, ClientReply, Rej
from exchange.gateway.sessions import Session

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 5.0  # a closing connection's last replies may take this long to be read; then it is cut


class TextConnection(asyncio.Protocol):
    """One TCP client: splits lines (with a length cap), answers each with one line.

    Lines are taken only while the session has room for another unanswered request and the
    client reads its replies; otherwise the connection is not read from, and what was read
    already waits in ``buffer`` (at most one read, 256 KiB) until the session drains.
    """

    def __init__(self, entry: OrderEntry, config: GatewayConfig):
        self.entry = entry
        self.max_line = config.max_line
        self.max_write_buffer = config.max_write_buffer
        self.buffer = b""
        self.discarding = False
        self.unwritten: list[str] = []  # reply lines of this event-loop turn, written together ...
        self.unwritten_size = 0  # ... unless they grow past UNWRITTEN_MAX characters
        self.held = False  # the session has no room for another request: lines wait in ``buffer``
        self.writing_paused = False  # the client does not read fast enough
        self.input_ended = False  # the client sends nothing more (EOF): its lines are answered, then it ends
        self.cut_later: asyncio.TimerHandle | None = None  # a close waiting for the client to read: not forever
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None

    UNWRITTEN_MAX = 64 * 1024

    def connection_made(self, transport) -> None:
        self.transport = transport
        # above this many unread bytes, stop reading the client's requests until it reads its replies
        transport.set_write_buffer_limits(high=min(256 * 1024, self.max_write_buffer // 2))
        peer = transport.get_extra_info("peername")
        try:
            self.session = self.entry.open(self.write, self.disconnect, peer[0] if peer else "",
                                           resume=self.drained)
        except ProtocolError as e:  # no room: say so, and close
            log.warning("refused a connection from %s: %s", peer, e.reason)
            transport.write((format_reply(Bye(e.code, e.reason)) + "\n").encode())
            transport.close()

    def connection_lost(self, exc) -> None:
        if self.cut_later is not None:
            self.cut_later.cancel()
        if self.session is not None:
            self.entry.close(self.session)

    def eof_received(self) -> bool:
        """The client shut down its sending side (``nc -N``, ``shutdown(SHUT_WR)``): keep the connection
        open for the replies still owed, take the lines it sent that wait in ``buffer``, then end the
        session once they are answered (``end_after_the_last_line``)."""
        if self.session is None or self.session.closed:
            return False
        self.input_ended = True
        self.end_after_the_last_line()
        return True

    def end_after_the_last_line(self) -> None:
        """Once every whole line the client sent is taken (the rest of a line is no request), end the
        session when they are answered; their engines' answers, or their timeouts, come in bounded time."""
        if self.input_ended and not self.held and not self.session.closed:
            self.session.end_once_answered(self.disconnect)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.transport.pause_reading()  # the client is not reading: take no more requests from it

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.go_on()

    def drained(self) -> None:
        """The session has room again (called while it writes replies): go on at the end of this turn."""
        asyncio.get_running_loop().call_soon(self.go_on)

    def go_on(self) -> None:
        """Take the lines that waited, then read the client again, if nothing holds it back."""
        if self.transport.is_closing() or self.session is None or self.session.closed:
            return
        if self.held and not self.writing_paused:
            self.held = False
            self.take_lines()
        if not self.held and not self.writing_paused and not self.input_ended:
            self.transport.resume_reading()

    def disconnect(self) -> None:
        """Close the connection once the replies written so far are read, and end the session now."""
        self.flush()
        if self.transport.get_write_buffer_size() and self.cut_later is None:
            # a client that does not read would keep a graceful close waiting forever
            self.cut_later = asyncio.get_running_loop().call_later(CLOSE_WAIT_S, self.transport.abort)
        self.transport.close()
        self.entry.close(self.session)

    def write(self, replies: list[ClientReply]) -> None:
        """Queue reply lines; they leave in one write at the end of this event-loop turn, or at once
        if many wait (so that the transport sees, and says, when the client does not read them)."""
        if not self.unwritten:
            asyncio.get_running_loop().call_soon(self.flush)
        text = "\n".join(map(format_reply, replies)) + "\n"
        self.unwritten.append(text)
        self.unwritten_size += len(text)
        if self.unwritten_size > self.UNWRITTEN_MAX:
            self.flush()

    def flush(self) -> None:
        if not self.unwritten:
            return
        text = "".join(self.unwritten)
        self.unwritten.clear()
        self.unwritten_size = 0
        if self.transport.is_closing():
            return
        self.transport.write(text.encode())
        if self.transport.get_write_buffer_size() > self.max_write_buffer:
            log.warning("session %d: client does not read its replies; disconnecting", self.session.id)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return
        self.buffer = self.buffer + data if self.buffer else data
        self.take_lines()

    def take_lines(self) -> None:
        """Answer the whole lines in ``buffer`` while the session has room and the client reads."""
        buffer, start = self.buffer, 0
        while not self.session.closed:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if not self.may_take():
                break
            line, start = buffer[start:end], end + 1
            if self.discarding:
                self.discarding = False  # the rest of an overlong line, already answered
                continue
            self.line_received(line)
        self.buffer = buffer[start:]
        # a line's \r may come without its \n yet: it does not count towards max_line
        if not self.held and len(self.buffer) - self.buffer.endswith(b"\r") > self.max_line and self.may_take():
            self.buffer = b""
            if not self.discarding:  # one answer per overlong line, however many pieces it comes in
                self.discarding = True
                self.entry.on_error(self.session, Rej(
                    RejectCode.TOO_LARGE, f"line longer than {self.max_line} bytes; discarded"))
        self.end_after_the_last_line()

    def may_take(self) -> bool:
        """Whether the session may take a request now; if not, stop reading until ``go_on``."""
        if self.writing_paused or not self.session.has_room():
            self.held = True  # go_on takes the rest, once the session drains or the client reads
            self.transport.pause_reading()
            return False
        return True

    def line_received(self, raw: bytes) -> None:
        if self.session.closed:
            return
        request = parse_bytes(raw, self.max_line)
        if isinstance(request, Rej):
            self.entry.on_error(self.session, request)
            return
        self.entry.on_request(self.session, request)  # a bug there ends this session (OrderEntry.guarded)
