"""A text client that sends its lines and then shuts down its sending side (``printf ... | nc -N``,
``shutdown(SHUT_WR)``) still gets the reply to every line it sent; then the gateway closes the
connection and ends the session, as after a LOGOUT (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import socket

from exchange.gateway.text_server import TextConnection
from test_sessions import Exchange, configured

LIMIT = 16  # the smallest max_unanswered the config allows


class Watched(TextConnection):
    """A connection that says when it has read all it will read (the client's EOF, or its own end:
    ``read_all``) and when the session stopped taking lines (``held``)."""

    def __init__(self, *args, events: dict[str, asyncio.Event]):
        super().__init__(*args)
        self.events = events

    def eof_received(self):
        self.events["read_all"].set()
        return super().eof_received()

    def connection_lost(self, exc) -> None:
        self.events["read_all"].set()
        super().connection_lost(exc)

    def may_take(self) -> bool:
        taken = super().may_take()
        if not taken:
            self.events["held"].set()
        return taken


async def happened(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), 5)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within 5 s") from None


def half_closed(exchange: Exchange, sent: bytes, *steps) -> bytes:
    """Connect to a text gateway on ``exchange``, send ``sent`` and shut down the sending side; then for
    each ``(event, act)`` of ``steps``, once the connection says ``event`` (``Watched``), ``act()`` (the
    engines answer, say); return all that the client read until the gateway closed the connection."""

    async def run() -> bytes:
        events = {"read_all": asyncio.Event(), "held": asyncio.Event()}
        server = await asyncio.get_running_loop().create_server(
            lambda: Watched(exchange.entry, exchange.entry.config.gateway, events=events), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            await writer.drain()
            writer.write_eof()  # nothing more to send; still reading
            for event, act in steps:
                await happened(events[event], f"the gateway never got to {event}")
                act()
            received = await asyncio.wait_for(reader.read(), 5)  # up to the gateway's close
            writer.close()
            return received
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def test_requests_sent_before_a_half_close_are_still_answered():
    exchange = Exchange()
    received = half_closed(exchange, b"LOGIN alice alice-key\nBUY AAPL 3 @ 10.00 #h1\nPING\n",
                           ("read_all", exchange.release))  # the engine's answer to the BUY comes after the EOF
    assert len(exchange.matchers["e2"].books["AAPL"].orders) == 1  # the order was placed ...
    # ... so its ACK (and the PING's PONG) are owed to the client
    assert received.decode().splitlines() == ["OK LOGIN alice", "ACK 2-1 #h1 BUY AAPL 3 @ 10.00 GTC", "PONG"]
    assert exchange.entry.sessions == {}


def test_requests_behind_a_login_being_checked_are_answered_after_a_half_close():
    """Unlike lines after a LOGOUT, the lines waiting behind a LOGIN are the client's to be answered."""
    exchange = Exchange(deferred=True)

    def login_checked() -> None:
        exchange.run_blocking()
        exchange.release()

    received = half_closed(exchange, b"LOGIN alice alice-key\nBUY AAPL 1 @ 9.00 #h2\nPING\n",
                           ("read_all", login_checked))
    assert received.decode().splitlines() == ["OK LOGIN alice", "ACK 2-1 #h2 BUY AAPL 1 @ 9.00 GTC", "PONG"]
    assert exchange.entry.sessions == {}


def test_lines_not_yet_read_at_a_half_close_are_answered_once_the_session_has_room():
    """At max_unanswered the gateway stops taking lines; the rest, sent before the EOF, are still taken
    once the LOGIN in front of them is answered, and answered, the last one by an engine."""
    exchange = Exchange(config=configured(gateway={"max_unanswered": LIMIT}), deferred=True)
    pings = 3 * LIMIT

    received = half_closed(exchange, b"LOGIN alice alice-key\n" + b"PING\n" * pings + b"BUY AAPL 2 @ 8.00 #h3\n",
                           ("held", exchange.run_blocking), ("read_all", exchange.release))  # held: LIMIT requests wait
    assert received.decode().splitlines() == ["OK LOGIN alice"] + ["PONG"] * pings + [
        "ACK 2-1 #h3 BUY AAPL 2 @ 8.00 GTC"]
    assert exchange.entry.sessions == {}


def test_a_half_close_with_nothing_owed_closes_at_once_and_a_partial_line_is_no_request():
    exchange = Exchange()
    assert half_closed(exchange, b"PING\nPI") == b"PONG\n"
    assert exchange.entry.sessions == {}


def test_a_reply_that_never_comes_after_a_half_close_is_answered_by_its_timeout_then_the_connection_closes():
    exchange = Exchange()

    def engine_died() -> None:
        exchange.outbox.clear()
        exchange.now += 11.0
        exchange.entry.expire(10.0)

    received = half_closed(exchange, b"LOGIN bob bob-key\nBUY AAPL 1 @ 5.00 #lost\nPING\n", ("read_all", engine_died))
    lines = received.decode().splitlines()
    assert lines[0] == "OK LOGIN bob" and lines[-1] == "PONG" and len(lines) == 3
    assert lines[1].startswith("REJ #lost UNAVAILABLE no answer from the engine in 10 s")
    assert exchange.entry.sessions == {}


def test_a_logout_before_the_half_close_still_ends_the_session_after_its_answer():
    exchange = Exchange()
    assert half_closed(exchange, b"LOGIN bob bob-key\nLOGOUT\nPING\n") == b"OK LOGIN bob\nOK LOGOUT bob\n"
    assert exchange.entry.sessions == {}


class SmallSendBuffer(TextConnection):
    """A connection whose socket takes little at a time, so that replies wait in its transport."""

    def __init__(self, *args, made: list, arrived: asyncio.Event):
        super().__init__(*args)
        self.ended, self.lost = asyncio.Event(), asyncio.Event()
        made.append(self)
        arrived.set()

    def connection_made(self, transport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        super().connection_made(transport)

    def disconnect(self) -> None:
        self.flush()
        self.unread_at_close = self.transport.get_write_buffer_size()
        super().disconnect()
        self.ended.set()

    def connection_lost(self, exc) -> None:
        self.lost.set()
        super().connection_lost(exc)


def pings_then_half_close(exchange: Exchange, pings: int, reads: bool) -> tuple[SmallSendBuffer, bytes]:
    """LOGIN and ``pings`` PINGs, then EOF, from a client with a small receive buffer; once the gateway
    ended the session, the client reads everything (``reads``) or nothing at all."""

    async def run() -> tuple[SmallSendBuffer, bytes]:
        loop = asyncio.get_running_loop()
        made: list[SmallSendBuffer] = []
        arrived = asyncio.Event()
        server = await loop.create_server(
            lambda: SmallSendBuffer(exchange.entry, exchange.entry.config.gateway, made=made, arrived=arrived),
            "127.0.0.1", 0)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        try:
            await loop.sock_connect(client, server.sockets[0].getsockname())
            await loop.sock_sendall(client, b"LOGIN alice alice-key\n" + b"PING\n" * pings)
            client.shutdown(socket.SHUT_WR)
            await happened(arrived, "the server never took the connection")
            await happened(made[0].ended, "the session never ended")
            assert made[0].unread_at_close, "no replies waited in the transport: the test tests nothing"
            received = bytearray()
            while reads and (data := await asyncio.wait_for(loop.sock_recv(client, 65536), 5)):
                received += data
            await happened(made[0].lost, "the connection was never closed")
            return made[0], bytes(received)
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def test_a_half_closed_client_that_reads_slowly_gets_every_reply_before_the_close():
    exchange = Exchange()
    _, received = pings_then_half_close(exchange, 20_000, reads=True)
    assert received.decode().splitlines() == ["OK LOGIN alice"] + ["PONG"] * 20_000
    assert exchange.entry.sessions == {}


def test_a_half_closed_client_that_never_reads_its_last_replies_is_cut_off_in_the_end(monkeypatch):
    monkeypatch.setattr("exchange.gateway.text_server.CLOSE_WAIT_S", 0.2)
    exchange = Exchange()
    connection, _ = pings_then_half_close(exchange, 20_000, reads=False)
    assert connection.transport.is_closing() and exchange.entry.sessions == {}
