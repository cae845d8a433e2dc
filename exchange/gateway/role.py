"""Gateway role: clients' order entry, over raw TCP text lines and over ZMQ, routed to engines.

Sockets:
    text     asyncio TCP server  ← people and programs typing the text protocol (docs/protocol.md)
    zmq      ROUTER bound        ← programs with a DEALER: msgpack requests, msgpack replies; a CURVE
                                   server whose ZAP handler names each client's user (or plain, with
                                   LOGIN, if ``gateway.zmq_auth`` is ``login``)
    front_end ROUTER bound       ← the web role (a trusted front end): its browsers' sessions, signed
                                   in with LOGIN (user, key, the browser's address); a mesh socket
    engines  PUSH connect, one per engine → each engine's commands PULL (one Requests per loop turn);
                                   with accounts on, one per ledger shard instead → each shard's
                                   commands PULL: every command of a user goes through the user's
                                   shard (exchange.gateway.ledger_routes)
    replies  PULL bound          ← journal writer: each engine batch once written, whose entries
                                   answer the requests (exchange.gateway.released); ledger shards:
                                   Replies (refused holds, balances, transfers)
    books    DEALER connect      → the notifier's snapshots ROUTER: SnapshotRequests for BOOK, and
                                   their BookSnapshot / SnapshotRefused (exchange.gateway.book_requests)

With ``mesh_curve`` on, ``replies`` is a CURVE server that admits mesh roles only and the PUSHes
are CURVE clients of their engines (exchange.wire.security.mesh_keys); one ZAP handler serves both the users
of ``zmq`` and the roles of ``replies``, each in its own ZAP domain (exchange.wire.security.zap).

One asyncio loop serves everything; the logic lives in exchange.gateway.order_entry.OrderEntry,
the transports in exchange.gateway.text_server and exchange.gateway.zmq_server. scrypt for LOGIN
and the journal reads for resent orders run on a small thread pool, so neither stalls anyone
else's orders. Engine batches that the journal writer passed on but that never arrived (a link that
broke or stalled) are read from the journal writer's history service before the batch after them
is taken, so that every answer, fill and order view follows in order (exchange.gateway.released).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import time

import msgspec
import zmq
import zmq.asyncio

from exchange.wire import sockets
from exchange.config import Config
from exchange.errors import JournalError, WireError
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.gateway.journal_reads import JournalReads
from exchange.gateway.ledger_routes import Routes
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.released import ReleasedBatches
from exchange.gateway.text_server import TextConnection
from exchange.gateway.zmq_server import ZmqServer
from exchange.wire.messages import (
    RELEASED, BookSnapshot, Decoder, EventBatch, NotifierReply, Replies, Request, SnapshotRefused, SnapshotRequest, encode,
)
from exchange.wire.security.zap import start_authenticator, user_keys

log = logging.getLogger(__name__)

CONNECT_ON_START_S = 2.0  # at a start, order entry waits at most this long for every engine or shard to be connected

BLOCKING_THREADS = 2  # scrypt and journal reads run here, off the event loop; more would only let a
#                      login flood eat more CPU
FETCH_TRIES = 3  # batches lost on the way are asked of the journal this often (LOOKUP_WAIT_S each) before skipped


class Gateway:
    def __init__(self, config: Config, role: str = "gateway"):
        """The gateway whose section is ``config.gateway`` (a replica's, as ``run`` gives it), as mesh role ``role``."""
        self.config = config
        self.ctx = zmq.asyncio.Context()
        self.ctx.linger = sockets.LINGER_MS
        security = MeshSecurity.for_role(config, role)
        keyed = config.gateway.zmq_auth == "curve"
        self.auth = None
        if keyed or security is not None:
            # the authenticator thread needs a plain context; a shadow shares the ZAP endpoint
            self.auth = start_authenticator(zmq.Context.shadow(self.ctx.underlying),
                                                  users=user_keys(config) if keyed else None,
                                                  roles=security.role_keys() if security else None)
        self.routes = Routes(config)
        # → engines, or (accounts on) ledger shards: the "ways" commands leave by
        self.pushes = {way: self._push(endpoint, security, role) for way, endpoint, role in self.routes.ways()}
        self.ways = {name: self._sync(sock) for name, sock in self.pushes.items()}
        self.outbox: dict[str, list[Request]] = {name: [] for name in self.ways}  # sent by flush_requests
        self.flush_scheduled = False
        self.replies = sockets.socket(self.ctx, zmq.PULL, bind=config.gateway.replies,
                                   security=security)  # ← journal writer, ledger shards
        # each start is a new incarnation: replies to a previous one's requests only update views
        self.name = f"{config.gateway.name}/{time.time_ns()}"
        loop = asyncio.get_running_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="blocking")

        def run_blocking(fn, done) -> None:
            # fn returns its failures (Logins.check's key check, OrderEntry._look_up's read): one it
            # raised would end here, in the loop's log, and ``done`` would never answer its client
            loop.run_in_executor(self.executor, fn).add_done_callback(
                lambda future: None if future.cancelled() else done(future.result()))

        self.books = sockets.socket(self.ctx, zmq.DEALER)  # → the notifier's snapshots
        self.books.setsockopt(zmq.IMMEDIATE, 1)  # a request is refused at once while the notifier is away
        self.books.connect(config.notifier.snapshots)
        self.books_sync = self._sync(self.books)
        self.entry = OrderEntry(config, self.send, self.name, history=self._history,
                                run_blocking=run_blocking, later=loop.call_later, ask_book=self.ask_book)
        self.zmq_server = ZmqServer(self.ctx, config, self.entry)  # ← ZMQ clients
        self.servers = [self.zmq_server]
        if config.gateway.front_end:  # ← the web role
            self.servers.append(ZmqServer(self.ctx, config, self.entry, front_end=True, security=security))
        self.journal = JournalReads(config.journal.history, security)  # → the journal writer's history
        self.released = ReleasedBatches()  # the engine batches taken, each once
        self.batch_decoder = Decoder(EventBatch)
        known = self.entry.load(self.journal.known_orders(time.time_ns() - self.entry.window_ns))
        log.info("%d orders known from the journal", known)

    async def wait_for_ways(self, seconds: float) -> None:
        """Before taking orders: until every engine (or ledger shard) it sends to is connected, for at
        most ``seconds`` (one that is down must not keep the gateway shut). An IMMEDIATE PUSH is
        writable only once connected; until then an order for that way is refused BUSY."""
        deadline = time.monotonic() + seconds
        waiting = dict(self.ways)
        while True:
            waiting = {name: sock for name, sock in waiting.items() if not sock.poll(0, zmq.POLLOUT)}
            if not waiting or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        if waiting:
            log.warning("not connected yet to %s: orders for them are refused BUSY until they are",
                        ", ".join(sorted(waiting)))

    def _push(self, endpoint: str, security: MeshSecurity | None, peer: str) -> zmq.asyncio.Socket:
        """A PUSH to one engine (or ledger shard) that queues nothing while it is not connected
        (IMMEDIATE): an order for an engine that is down is refused BUSY at once, rather than kept
        here and run whenever the engine comes back."""
        sock = sockets.socket(self.ctx, zmq.PUSH)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # before connecting: it applies to connections made after
        sockets.connect_to(sock, endpoint, security, peer)
        return sock

    def _history(self, order_id: str) -> list:
        """The journaled events of one order (on the executor: the loop never waits for the journal)."""
        return self.journal.order_history(order_id)

    @staticmethod
    def _sync(sock: zmq.asyncio.Socket) -> zmq.Socket:
        return zmq.Socket.shadow(sock.underlying)

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        """Queue a request for ``engine`` (by way of its user's ledger shard, with accounts on), or
        return False if the way is full (the client gets BUSY). The requests of one event-loop turn
        leave as one message per way (a batch per hop: docs/architecture.md)."""
        way, request = self.routes.route(self.name, engine, command, session_id, request_id)
        outbox = self.outbox[way]
        if not outbox and not self.ways[way].get(zmq.EVENTS) & zmq.POLLOUT:
            return False
        outbox.append(request)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_requests)
        return True

    def flush_requests(self) -> None:
        self.flush_scheduled = False
        for way, outbox in self.outbox.items():
            if not outbox:
                continue
            requests = outbox.copy()
            outbox.clear()
            try:
                self.ways[way].send(encode(requests), zmq.NOBLOCK)
            except zmq.ZMQError as e:  # only if the way closed since send() looked
                log.warning("%s: %d requests not sent (%s)", way, len(requests), e)
                for request in requests:
                    self.entry.not_sent(request.engine or way, request.request_id)

    def ask_book(self, symbol: str) -> bool:
        """Hand a SnapshotRequest to the notifier, or return False if it cannot take one now."""
        try:
            self.books_sync.send(encode(SnapshotRequest(symbol)), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    async def pump_books(self) -> None:
        decoder = Decoder(NotifierReply)
        while True:
            first = await self.books.recv_multipart()
            for parts in [first, *sockets.drain(self.books_sync)]:
                try:
                    answer = decoder.decode(parts[-1])
                except WireError as e:
                    log.warning("books: dropped %s", e)
                    continue
                if isinstance(answer, (BookSnapshot, SnapshotRefused)):
                    self.entry.on_book(answer)
                else:
                    log.warning("books: the notifier answered %r", answer)

    async def pump_replies(self) -> None:
        decoder, batches, released = Decoder(Replies), self.batch_decoder, self.released
        sync = self._sync(self.replies)
        while True:
            # await one message, then drain the rest without awaiting (docs/architecture.md, ZeroMQ);
            # awaiting poll() alone spins: the edge-triggered FD keeps waking with nothing to read
            first = await self.replies.recv_multipart()
            for parts in [first, *sockets.drain(sync)]:
                try:
                    if parts[0] == RELEASED:  # from the journal writer
                        batch = batches.decode(parts[-1])
                        if released.missing(batch) is not None:  # lost on the way: from the journal first
                            await self.take_missed(batch)
                        replies = released.replies(batch)
                    else:  # from a ledger shard
                        replies = decoder.decode(parts[-1]).replies
                except WireError as e:
                    log.warning("replies: dropped %s", e)
                    continue
                for reply in replies:
                    self.entry.on_reply(reply)

    async def take_missed(self, batch: EventBatch) -> None:
        """Take the batches of ``batch``'s engine that came before it but never here (lost on the way), in
        order, a chunk at a time, from the journal writer's history service; what it cannot give in
        FETCH_TRIES tries is skipped (see exchange.gateway.released). Answers wait meanwhile."""
        released, decode, engine = self.released, self.batch_decoder.decode, batch.engine
        loop = asyncio.get_running_loop()
        log.warning("engine %s: batches %d..%d never reached this gateway; taking them from the journal",
                    engine, released.last[engine] + 1, batch.batch - 1)
        first, tries = released.last[engine], 0
        while (missing := released.missing(batch)) is not None and tries < FETCH_TRIES:
            try:
                bodies = await loop.run_in_executor(self.executor, self.journal.logged_batches, engine, *missing)
                for body in bodies:
                    for reply in released.replies(decode(body)):
                        self.entry.on_reply(reply)
            except (JournalError, WireError) as e:
                log.warning("engine %s: the journal did not give batches %d..%d: %s", engine, missing[0] + 1,
                            missing[1] - 1, e)
            if released.missing(batch) == missing:  # nothing taken this time
                tries += 1
        log.info("engine %s: took %d batches from the journal", engine, released.last[engine] - first)

    async def expire_requests(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            timeout = self.config.gateway.request_timeout
            late = self.entry.expire(timeout)
            if late:
                log.warning("%d requests got no answer from an engine in %.1f s", late, timeout)
            self.entry.expire_idle()
            self.entry.expire_books()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)  # a journal lookup ends within LOOKUP_WAIT_S
        self.journal.close()  # its clients, once no thread of the pool uses one
        self.flush_requests()  # e.g. the cancels of sessions that asked for cancel on disconnect
        for sock in (*self.ways.values(), *self.pushes.values(), self.replies, self.books):
            sock.close()
        for server in self.servers:
            server.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


async def serve(config: Config, role: str = "gateway") -> None:
    gateway = Gateway(config, role)
    sockets.freeze_startup_objects()
    host, port = config.gateway.text.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await gateway.wait_for_ways(CONNECT_ON_START_S)
    server = await loop.create_server(lambda: TextConnection(gateway.entry, config.gateway),
                                      host, int(port), backlog=1024, reuse_address=True)
    tasks = [asyncio.create_task(gateway.pump_replies()), asyncio.create_task(gateway.pump_books()),
             *(asyncio.create_task(server.pump()) for server in gateway.servers),
             asyncio.create_task(gateway.expire_requests())]
    log.info("ready: text protocol on %s, zmq on %s (%s)%s", config.gateway.text, config.gateway.zmq,
             "CURVE keys" if gateway.zmq_server.keyed else "LOGIN",
             f", front ends on {config.gateway.front_end}" if config.gateway.front_end else "")
    sockets.report_ready()
    try:
        done, _ = await asyncio.wait([asyncio.create_task(stop.wait()), *tasks],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        gateway.close()
        log.info("stopped")


def run(config: Config, name: str | None = None) -> None:
    """Run the first gateway, or its replica named ``name``, until SIGINT or SIGTERM: the replica runs
    with its own section in place of the first gateway's (its name, endpoints and host)."""
    role = f"gateway-{name}" if name else "gateway"
    asyncio.run(serve(msgspec.structs.replace(config, gateway=config.gateway.replica(name)), role))
