"""Process plumbing shared by the roles: a context, sockets with their options, drains, stop flag, logs."""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)

LINGER_MS = 1000
MAX_MSG_SIZE = 64 * 1024 * 1024  # internal links carry batches
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


class Stopper:
    """SIGINT/SIGTERM set ``requested``; loops poll with a timeout and check it."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, signum, frame) -> None:
        self.requested = True


def context() -> zmq.Context:
    """A fresh context (never the global instance) whose sockets linger at most LINGER_MS."""
    ctx = zmq.Context()
    ctx.linger = LINGER_MS
    return ctx


def socket(ctx: zmq.Context, kind: int, *, bind: str | None = None, connect: str | None = None,
           max_msg_size: int = MAX_MSG_SIZE, rcvhwm: int | None = None, sndhwm: int | None = None,
           security: MeshSecurity | None = None, peer: str | None = None) -> zmq.Socket:
    """A socket with the mesh's options (heartbeats, size cap, backlog), bound or connected.

    With ``security`` (mesh_curve on), a bound socket is a CURVE server that admits mesh roles only,
    and a connected one a CURVE client of the role ``peer``, which is bound at ``connect``.
    """
    sock = ctx.socket(kind)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if sndhwm is not None:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg_size)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if bind:
        if security is not None:
            security.serve(sock)
        sock.setsockopt(zmq.BACKLOG, 1024)
        sock.bind(bind)
    if connect:
        connect_to(sock, connect, security, peer)
    return sock


def connect_to(sock: zmq.Socket, endpoint: str, security: MeshSecurity | None = None,
               peer: str | None = None) -> None:
    """Connect ``sock`` to ``endpoint``; with ``security``, as a CURVE client of the role ``peer`` there."""
    if security is not None:
        security.client_of(sock, peer)
    sock.connect(endpoint)


READY_FD_ENV = "EXCHANGE_READY_FD"  # the launcher passes a pipe's write end; a role says "ready" on it


def report_ready() -> None:
    """Tell the launcher that started this role (if any) that it is ready: one line on its pipe."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except (OSError, ValueError):
        log.warning("could not tell the launcher this role is ready (%s=%s)", READY_FD_ENV, fd)


def freeze_startup_objects() -> None:
    """Collect, then move every object alive now (modules, the config, a recovered book) out of the
    cyclic collector's reach: they live as long as the process, and each full collection would
    otherwise walk them all while the role's loop waits. Call once, after a role's setup."""
    gc.collect()
    gc.freeze()


def poll_ms(seconds: float) -> int:
    """A wait of ``seconds`` as the whole milliseconds a poll takes, rounded up (0 if none is left).

    zmq's pollers truncate a float timeout to whole milliseconds, so a wait of under 1 ms would poll
    without waiting, and a loop waiting for a deadline would spin until it passed."""
    return math.ceil(seconds * 1000) if seconds > 0 else 0


def drain(sock: zmq.Socket, limit: int = 10_000) -> list[list[bytes]]:
    """Every multipart message waiting on ``sock`` (at most ``limit``), without blocking."""
    messages = []
    recv = sock.recv_multipart
    try:
        while len(messages) < limit:
            messages.append(recv(zmq.NOBLOCK))
    except zmq.Again:
        pass
    return messages


def send_queued(sock: zmq.Socket, queue) -> None:
    """Send the frames waiting in ``queue`` (a deque), oldest first, until the socket has no room:
    what is left waits for the next call. Never blocks."""
    while queue:
        try:
            sock.send(queue[0], zmq.NOBLOCK)
        except zmq.Again:
            return
        queue.popleft()


def close_all(sockets: list[zmq.Socket], auth, ctx: zmq.Context) -> None:
    """Close a role's sockets, stop its ZAP authenticator (if any), and end its context."""
    for sock in sockets:
        sock.close()
    if auth is not None:
        auth.stop()
    ctx.term()


def send_routed(router: zmq.Socket, envelope: tuple[bytes, ...], frames: list[bytes]) -> int:
    """Send ``frames`` to ``envelope`` through a ROUTER without blocking; how many went (-1: the
    requester is gone, EHOSTUNREACH with ROUTER_MANDATORY). Stops at the first that finds its queue full."""
    for sent, frame in enumerate(frames):
        try:
            router.send_multipart([*envelope, frame], zmq.NOBLOCK)
        except zmq.Again:
            return sent
        except zmq.ZMQError as e:
            log.warning("requester gone (%s)", e)
            return -1
    return len(frames)


def setup_logging(role: str, var_dir: str | None) -> None:
    """Log lines to stderr and, when ``var_dir`` is given, to ``var_dir/<role>.log``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if var_dir:
        Path(var_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(var_dir) / f"{role}.log"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format=f"%(asctime)s {role} %(levelname)s %(message)s")
