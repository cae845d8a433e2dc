"""Notifier role: fans the engines' released events out to any number of subscribers.

Sockets:
    upstream   XSUB    connect  → every engine's PUB (subscribed to everything)
    public     XPUB    bound    ← anyone: market data, topics ``md.<SYMBOL>.<channel>|``
    private    XPUB    bound    ← users with a CURVE key: their own ``priv.<user>|`` topic, nothing else
    snapshots  ROUTER  bound    ← subscribers' SnapshotRequests, relayed to the owning engine
    engines    DEALER  connect  → each engine's ROUTER, for those snapshots

With ``mesh_curve`` on, ``upstream`` and ``engines`` are CURVE clients of their engines
(exchange.mesh_curve); the notifier binds no mesh socket, so its ZAP handler serves users only.

Messages pass through unchanged: one message per (symbol, channel) per engine release, so fan-out
is paid per batch. PUB drops for a subscriber that cannot keep up; it sees the gap in ``chan_seq``
and re-syncs from a snapshot. On the private feed, XPUB_MANUAL hands every subscription to this
loop, which allows exactly ``priv.<User-Id>|`` — the User-Id that the CURVE handshake (ZAP)
attached to the connection — and refuses the rest, the empty "everything" subscription included.
"""

from __future__ import annotations

import logging

import zmq

from exchange import curve, mesh
from exchange.config import Config
from exchange.errors import WireError
from exchange.mesh_curve import MeshSecurity
from exchange.wire import Decoder, SnapshotRefused, SnapshotRequest, encode, private_topic

log = logging.getLogger(__name__)

SUBSCRIBER_HWM = 10_000
MAX_SUBSCRIPTION_SIZE = 4096  # CURVE handshakes need about 512 bytes


class Notifier:
    def __init__(self, config: Config, replica: str | None = None):
        """The first notifier of ``config``, or its replica named ``replica``."""
        self.config = config
        self.section = section = config.notifier.replica(replica)
        self.role = f"notifier-{replica}" if replica else "notifier"
        security = MeshSecurity.for_role(config, self.role)
        self.ctx = ctx = zmq.Context(io_threads=section.io_threads)
        ctx.linger = mesh.LINGER_MS
        self.auth = curve.start_authenticator(ctx, users=curve.user_keys(config))
        self.public = self._xpub(section.publish)  # ← anyone
        self.private = self._xpub(section.private, manual=True)  # ← users with CURVE keys
        self.snapshots = mesh.socket(ctx, zmq.ROUTER, bind=section.snapshots,
                                     max_msg_size=MAX_SUBSCRIPTION_SIZE)  # ← subscribers
        self.upstream = mesh.socket(ctx, zmq.XSUB)  # → engines
        for engine in config.engines:
            mesh.connect_to(self.upstream, engine.publish, security, engine.role)
        self.upstream.send(b"\x01")  # everything: public and private topics are split here
        self.engines = {e.name: mesh.socket(ctx, zmq.DEALER, connect=e.replay, security=security, peer=e.role)
                        for e in config.engines}
        self.owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        self.forwarded = self.refused = 0

    def _xpub(self, endpoint: str, manual: bool = False) -> zmq.Socket:
        sock = mesh.socket(self.ctx, zmq.XPUB, max_msg_size=MAX_SUBSCRIPTION_SIZE)
        sock.setsockopt(zmq.SNDHWM, SUBSCRIBER_HWM)
        sock.setsockopt(zmq.BACKLOG, 1024)
        if manual:
            curve.make_server(sock, curve.server_secret_key(self.section.secret_key_file))
            sock.setsockopt(zmq.XPUB_MANUAL, 1)
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        sock.bind(endpoint)
        return sock

    def run(self, stopper: mesh.Stopper) -> None:
        log.info("%s ready: market data on %s, private feed on %s, snapshots on %s, from %d engines",
                 self.role, self.section.publish, self.section.private, self.section.snapshots,
                 len(self.config.engines))
        poller = zmq.Poller()
        for sock in (self.upstream, self.public, self.private, self.snapshots, *self.engines.values()):
            poller.register(sock, zmq.POLLIN)
        requests = Decoder(SnapshotRequest)
        while not stopper.requested:
            ready = dict(poller.poll(100))
            if self.upstream in ready:
                for parts in mesh.drain(self.upstream):
                    (self.private if parts[0].startswith(b"priv.") else self.public).send_multipart(parts)
                    self.forwarded += 1
            if self.public in ready:
                mesh.drain(self.public)  # subscriptions: nothing to do, upstream gets everything
            if self.private in ready:
                self.authorise()
            if self.snapshots in ready:
                for parts in mesh.drain(self.snapshots):
                    self.relay_request(parts, requests)
            for sock in self.engines.values():
                if sock in ready:
                    for parts in mesh.drain(sock):
                        self.reply(parts)

    def authorise(self) -> None:
        """Decide each (un)subscription on the private feed at once, before the next recv (libzmq #1568)."""
        while True:
            try:
                frame = self.private.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue
            topic = data[1:]
            if data[0] == 0:
                # narrows what a peer gets, so it needs no authorisation; libzmq also hands us the
                # unsubscriptions of a peer that has gone, whose frame has no metadata left to read
                self.private.setsockopt(zmq.UNSUBSCRIBE, topic)
                continue
            user = subscriber(frame)
            if user and topic == private_topic(user):
                self.private.setsockopt(zmq.SUBSCRIBE, topic)
            else:
                self.refused += 1
                log.warning("refused private subscription %r for user %s", topic[:64], user)

    def relay_request(self, parts: list[bytes], requests: Decoder) -> None:
        client, body = parts[0], parts[-1]
        try:
            request = requests.decode(body)
        except WireError as e:
            log.warning("snapshots: dropped %s", e)
            return
        engine = self.owner.get(request.symbol)
        if engine is None:
            self.reply([client, encode(SnapshotRefused(request.symbol, f"no instrument {request.symbol}"))])
            return
        self.engines[engine].send_multipart([client, body])

    def reply(self, parts: list[bytes]) -> None:
        try:
            self.snapshots.send_multipart(parts, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the subscriber left; it will ask again if it still cares

    def close(self) -> None:
        for sock in (self.upstream, self.public, self.private, self.snapshots, *self.engines.values()):
            sock.close()
        self.auth.stop()
        self.ctx.term()


def subscriber(frame: zmq.Frame) -> str | None:
    """The User-Id that ZAP attached to the connection of a subscription frame (None if unreadable)."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:  # EINVAL: no metadata, e.g. the connection is already gone
        return None


def run(config: Config, replica: str | None = None) -> None:
    """Run the first notifier, or the replica named ``replica``, until SIGINT or SIGTERM."""
    stopper = mesh.Stopper()
    notifier = Notifier(config, replica)
    mesh.freeze_startup_objects()
    try:
        notifier.run(stopper)
    finally:
        notifier.close()
    log.info("stopped: %d messages forwarded, %d private subscriptions refused", notifier.forwarded,
             notifier.refused)
