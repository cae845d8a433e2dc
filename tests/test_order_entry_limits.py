"""The gateway's per-session limits in memory: a session holds a bounded number of unanswered
requests, whatever it sends and however slowly its answers come (docs/security.md)."""

from __future__ import annotations

import asyncio

from exchange.gateway.text_server import TextConnection
from test_sessions import Client, Exchange, configured

LIMIT = 64
FLOOD = 30_000  # blank lines: each is one request, answered REJ MALFORMED (or RATE_LIMITED)


class Transport:
    """Just enough of an asyncio transport for TextConnection: it records what the connection does."""

    def __init__(self):
        self.written = bytearray()
        self.paused = self.closed = False

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str):
        return ("10.0.0.1", 5000) if name == "peername" else None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0  # this client reads everything at once

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


async def turns_until(predicate, turns: int = 1000) -> None:
    """Let the event loop run (its call_soon callbacks write the replies) until ``predicate()``."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached in {turns} turns of the event loop")


def test_a_text_session_is_not_read_past_max_unanswered_and_is_read_again_once_answered():
    """`LOGIN alice wrong` (answered after a delay) and then a flood of blank lines: the gateway
    stops reading at the limit instead of queuing a reply slot per line, and goes on once the
    LOGIN is answered; every line still gets its one reply, in order."""
    exchange = Exchange(config=configured(gateway={"max_unanswered": LIMIT}), deferred=True)

    async def flood() -> None:
        transport = Transport()
        connection = TextConnection(exchange.entry, exchange.entry.config.gateway)
        connection.connection_made(transport)
        data, sent, peak = b"LOGIN alice wrong\n" + b"\n" * FLOOD, 0, 0
        for _ in range(10_000):  # the client writes whenever the gateway reads
            if sent < len(data) and not transport.paused:
                connection.data_received(data[sent:sent + 4096])
                sent += 4096
            peak = max(peak, len(connection.session.queue))
            if transport.paused and exchange.blocking:
                assert sent < len(data)  # stopped reading long before the flood's end
                exchange.run_blocking()  # the key is checked ...
            elif transport.paused and exchange.timers:
                exchange.run_timers()  # ... and found wrong, after the delay
            await asyncio.sleep(0)
            if transport.written.count(b"\n") == FLOOD + 1:
                break
        lines = transport.written.decode().splitlines()
        assert peak <= LIMIT, f"{peak} replies were queued for one session"
        assert len(lines) == FLOOD + 1 and lines[0] == "REJ BAD_LOGIN unknown user or wrong key"
        assert {line.split()[1] for line in lines[1:]} <= {"MALFORMED", "RATE_LIMITED"}
        assert not transport.closed

    asyncio.run(flood())


def test_a_session_that_cannot_be_stopped_from_sending_is_told_bye_at_max_unanswered():
    """A ZMQ session cannot be left unread: past the limit it is cut off, with a reason."""
    exchange = Exchange(config=configured(gateway={"max_unanswered": LIMIT}), deferred=True)
    mallory = Client(exchange)
    lines = mallory.say("LOGIN alice wrong")
    for _ in range(FLOOD):
        lines += mallory.say("")
    assert len(mallory.session.queue) <= LIMIT
    assert mallory.disconnected and mallory.session.closed
    assert lines == [f"BYE RATE_LIMITED more than {LIMIT} requests wait for their answers;"
                              " closing the session"]
    exchange.run_blocking()
    exchange.run_timers()
    assert mallory.take() == []
    assert exchange.entry.sessions == {}


def test_an_overlong_line_at_the_limit_waits_its_turn_instead_of_ending_the_session():
    exchange = Exchange(config=configured(gateway={"max_unanswered": LIMIT}), deferred=True)

    async def overlong() -> None:
        transport = Transport()
        connection = TextConnection(exchange.entry, exchange.entry.config.gateway)
        connection.connection_made(transport)
        connection.data_received(b"LOGIN alice wrong\n" + b"\n" * (LIMIT - 1) + b"x" * 2000)
        assert transport.paused and not connection.session.closed
        exchange.run_blocking()
        exchange.run_timers()
        await turns_until(lambda: transport.written.count(b"\n") >= LIMIT + 1)
        lines = transport.written.decode().splitlines()
        assert len(lines) == LIMIT + 1 and lines[-1] == "REJ TOO_LARGE line longer than 1024 bytes; discarded"
        assert not transport.paused and not transport.closed

    asyncio.run(overlong())
