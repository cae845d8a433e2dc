"""The web role's HTTP connections, bounded: how long a browser may take to send a request, and how
many connections the role holds at once (docs/web.md, Limits).

uvicorn bounds neither. It accepts every connection, and it waits for ever for a request that has
begun (its keep-alive timeout runs only until the next request's first byte, and not at all before
the first request), so a client that opens connections and sends half a request head on each keeps
them, and a file descriptor for each, for as long as it likes; once the descriptors run out no
browser gets in, and the role's own ZMQ sockets (a signed-in browser's gateway session) cannot be
made. Here, on uvicorn's own HTTP/1.1 protocol (h11):

- **A deadline for each request.** A connection must send a whole request, head and body, within
  ``REQUEST_DEADLINE_S`` of being accepted, or of the end of the answer to its previous request;
  one that has not is closed. No deadline runs while the role works on a request, nor on a
  WebSocket once accepted (it is no longer an HTTP connection).
- **A cap on connections.** At most ``max_connections(config)`` connections, HTTP and WebSocket,
  are open at once: one more is closed as soon as it is accepted, before anything of it is read.
  With the few the role accepts in one go before it can look (``ACCEPT_BACKLOG``), the cap and the
  role's own descriptors fit the process's descriptor limit: ``fit_descriptor_limit`` raises the
  soft limit as far as needed (up to the hard limit), or lowers the cap to what fits.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from exchange.config import WebConfig
from exchange.errors import ConfigError

log = logging.getLogger(__name__)

REQUEST_DEADLINE_S = 10.0  # for a whole request: a page's requests are a few hundred bytes
# connections beyond one per WebSocket (max_sockets) and one per signed-in browser for its requests
# (max_sessions): pages loading their files and browsers not signed in asking for the markets; each
# holds one for a request at most REQUEST_DEADLINE_S, then uvicorn's keep-alive (5 s)
HTTP_HEADROOM = 100
# the listening socket's queue, and so the most connections the event loop accepts in one go before
# the cap can close them (asyncio accepts up to this many each time the socket is readable)
ACCEPT_BACKLOG = 128
DESCRIPTORS_PER_CONNECTION = 2  # its socket, and the static file it may be sending
DESCRIPTORS_PER_SESSION = 2  # a signed-in browser's gateway DEALER: its ZMQ mailbox and its connection
DESCRIPTORS_PER_INSTRUMENT = 16  # a feed thread's ZMQ sockets and connections (10 measured with two notifiers)
DESCRIPTORS_OWN = 64  # standard streams, logging, the event loop, the listening socket, ZMQ's threads
REFUSALS_LOGGED_EVERY_S = 60.0


def max_connections(config: WebConfig) -> int:
    """The connections the settings call for: a WebSocket for each open page, one more connection for
    the requests of each signed-in browser, and ``HTTP_HEADROOM``."""
    return config.max_sockets + config.max_sessions + HTTP_HEADROOM


def descriptors_needed(config: WebConfig, instruments: int, connections: int) -> int:
    """File descriptors the role may hold at once with ``connections`` connections open."""
    return (DESCRIPTORS_PER_CONNECTION * connections + ACCEPT_BACKLOG + DESCRIPTORS_PER_SESSION * config.max_sessions
            + DESCRIPTORS_PER_INSTRUMENT * instruments + DESCRIPTORS_OWN)


def fit_descriptor_limit(config: WebConfig, instruments: int) -> int:
    """The cap on connections, with the process's descriptor limit (``ulimit -n``) raised to hold it
    and everything else the role keeps; up to the hard limit only, so if that is lower the cap is
    what fits, with a warning. ConfigError if not even one connection fits."""
    wanted = max_connections(config)
    needed = descriptors_needed(config, instruments, wanted)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    fits = (soft - descriptors_needed(config, instruments, 0)) // DESCRIPTORS_PER_CONNECTION
    if fits < 1:
        raise ConfigError(f"the file descriptor limit ({soft}, ulimit -n) leaves none for browsers' connections"
                          f" beside web.max_sessions {config.max_sessions} and {instruments} instruments;"
                          f" {needed} would hold {wanted} connections: raise it or lower web.max_sessions")
    log.warning("the file descriptor limit (%d, ulimit -n; hard limit %d) holds %d connections at once, not the"
                " %d web.max_sockets and web.max_sessions call for (it would take %d)", soft, hard, fits, wanted,
                needed)
    return fits


class ConnectionCap:
    """The cap on open connections of one server, and a log of the connections it closed (at most
    one line every ``REFUSALS_LOGGED_EVERY_S``, however many)."""

    def __init__(self, most: int):
        self.most = most
        self.refused = 0  # since the last log line
        self.logged_at = -REFUSALS_LOGGED_EVERY_S

    def refuse(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSALS_LOGGED_EVERY_S:
            log.warning("%d connections are open, the most this server holds: closed %d new ones", self.most,
                        self.refused)
            self.refused, self.logged_at = 0, now


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request and a cap on connections; the
    subclass ``bounded_protocol`` makes gives it the cap and the deadline."""

    cap: ConnectionCap
    request_deadline_s: float

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_deadline: asyncio.TimerHandle | None = None
        self.upgraded = False  # to a WebSocket: the connection is no longer this protocol's

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counted among the server's connections from here
        if len(self.connections) > self.cap.most:
            self.cap.refuse()
            transport.close()
            return
        self._restart_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._cancel_deadline()  # the whole request is in (or the connection is over)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start on a request sent meanwhile (handle_events)
        if (not self.upgraded and not self.transport.is_closing()
                and self.conn.their_state in (h11.IDLE, h11.SEND_BODY)):
            self._restart_deadline()  # for the next request, or the rest of this one's body

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.upgraded = True
        self._cancel_deadline()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _restart_deadline(self) -> None:
        self._cancel_deadline()
        self.request_deadline = self.loop.call_later(self.request_deadline_s, self._request_late)

    def _cancel_deadline(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
            self.request_deadline = None

    def _request_late(self) -> None:
        self.request_deadline = None
        if not self.upgraded and not self.transport.is_closing():
            self.transport.close()


def bounded_protocol(most: int, request_deadline_s: float = REQUEST_DEADLINE_S) -> type[BoundedH11Protocol]:
    """The HTTP protocol class for one server: at most ``most`` connections, each request whole
    within ``request_deadline_s``."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,),
                {"cap": ConnectionCap(most), "request_deadline_s": request_deadline_s})


def listening_socket(listen: str) -> socket.socket:
    """The web role's TCP socket, bound to ``listen`` (host:port) before anything else starts, so
    that an address another process holds stops the role at once with that address (OSError
    EADDRINUSE, worded as asyncio words it), rather than inside uvicorn, which logs it and exits."""
    host, port = listen.rsplit(":", 1)
    family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"error while attempting to bind on address ('{host}', {port}):"
                               f" {(e.strerror or str(e)).lower()}") from None
    return sock


def make_server(app, config: WebConfig, most: int, request_deadline_s: float = REQUEST_DEADLINE_S,
                **options) -> uvicorn.Server:
    """uvicorn serving ``app`` on ``config.listen`` as the web role does: these bounds, WebSockets
    (messages up to 4 KiB), no lifespan, no proxy headers (web.trusted_proxies decides whom to
    believe), no access log; ``options`` are more of uvicorn's settings (a test's log level)."""
    host, port = config.listen.rsplit(":", 1)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), backlog=ACCEPT_BACKLOG,
                                         http=bounded_protocol(most, request_deadline_s), ws="websockets-sansio",
                                         ws_max_size=4096, lifespan="off", log_config=None, access_log=False,
                                         proxy_headers=False, server_header=False, **options))
