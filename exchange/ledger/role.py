"""Ledger shard role: one shard's accounts; holds funds before orders reach engines, settles after.

Sockets (this process binds the stable side):
    commands  PULL   bound    ← gateways: Requests of this shard's users (holds, cancels, transfers, balances)
    settle    PULL   bound    ← journal writer: the engines' EventBatches, each once written
    replay    ROUTER bound    ← journal writer: ReplayRequest → the retained batches again
    publish   XPUB   bound    → notifiers: the balances of each followed user after a change, on their private
                                topic; the notifiers' subscriptions say who is followed (Shard.followed)
    journal   PUSH   connect  → journal writer: EventBatch per loop turn (stream ``ledger-<shard>``)
    durable   SUB    connect  ← journal writer: its own Durable watermarks
    watermarks SUB   connect, one per engine ← journal writer: that engine's watermarks, the newest only,
                                read at each check, never polled (exchange.ledger.watermarks)
    history   DEALER connect  → journal writer's history service: its history at start, missed engine batches
    engines   PUSH   connect, one per engine → the held orders and the cancels, once the hold is durable
    replies   PUSH   connect, one per gateway → the gateway a request came from: refusals, transfer outcomes,
                                balances (once the engines are settled as far as the question names), released
                                at the watermark

Settlement reads each engine's released batches as they come; a batch that does not follow the
last one settled, or what the journal held a check (a second) ago and has not come (the engines'
watermarks tell how far it holds them), is asked of the journal writer's history service (every
released batch is in the journal). The shard rebuilds its ledger from the same service at start:
it never opens the journal file. The engines' PUSHes queue while an engine is away, so a
held order reaches it when it is back; one that never does (lost with a dead engine) has its
hold released once the engine has matched past the age at which it would refuse it
(Shard.lost_holds). With ``mesh_curve`` on, sockets are CURVE like the engines'.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import zmq

from exchange.config import Config, LedgerConfig
from exchange.core.ledger_messages import DepositFunds, ReleaseHold, TransferRejected
from exchange.core.messages import CancelAll
from exchange.errors import JournalError, WireError
from exchange.journal import handshake
from exchange.journal.ledger_readers import restored_ledger
from exchange.journal.readers import EnginePosition
from exchange.ledger.shard import Released, Shard
from exchange.ledger.watermarks import EngineWatermarks
from exchange.wire import sockets
from exchange.wire.messages import (
    Decoder, Durable, EventBatch, GetPositions, HistoryReply, OpenEpoch, durable_prefix, PrivateData, Replies,
    ReleasedBatchesRequest, ReplayRequest, Request, encode, private_topic,
)
from exchange.wire.security.mesh_keys import MeshSecurity
from exchange.wire.security.zap import start_authenticator

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_TURN = 200  # gateway messages (each one gateway loop turn's requests) per loop turn
MAX_SETTLE_PER_TURN = 1000  # engine batches per loop turn
MAX_SUBSCRIPTIONS_PER_TURN = 200  # notifiers' (un)subscriptions to users' balances per loop turn (each
# subscription sends that user's balances, so a notifier that reconnects with many is answered over turns)
PUBLISH_HWM = 10_000  # balance messages queued per notifier: a few turns of answers to subscriptions
SETTLE_EVERY_S = 0.005  # engine batches gather this long (or until requests come) to be settled together
CATCH_UP_EVENTS = 20_000  # engine events read from the journal at a time
CATCH_UP_WAIT_S = 2.0  # for the journal writer's answer, in the loop; then the next check asks again
MAX_UNSENT_FORWARDS = 10_000  # Requests messages waiting for an engine's queue: beyond, stop reading requests
CHECK_EVERY_S = 1.0  # lost holds and settlement behind the engines' watermarks
FLUSH_ON_STOP_S = 2.0


class LedgerProcess:
    def __init__(self, config: Config, spec: LedgerConfig, stopper: sockets.Stopper):
        self.config, self.spec = config, spec
        self.security = security = MeshSecurity.for_role(config, spec.role)
        opened = handshake.ask(config, OpenEpoch(spec.name, time.time_ns()), security,
                               stopped=lambda: stopper.requested)
        held = EnginePosition(opened.epoch, opened.batch, opened.seq)
        # → the journal writer's history service: at start, and for engine batches that do not come
        self.history = handshake.JournalClient(config.journal.history, security, HistoryReply,
                                               stopped=lambda: stopper.requested)
        start, state = handshake.stream_start(self.history, spec.name)
        ledger = restored_ledger(spec.shard, len(config.ledgers), list(config.terms().values()),
                                 list(config.asset_map().values()), state, "the journal")
        for event in handshake.events_after(self.history, spec.name, ledger.seq):
            ledger.apply(event)
        position = EnginePosition(*start.position)
        if (position.batch, ledger.seq) != (held.batch, held.seq):
            raise JournalError(f"{spec.name}: the journal holds batch {held.batch} seq {held.seq}, but its events"
                               f" rebuild batch {position.batch} seq {ledger.seq}; run `exchange journal verify`")
        owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        # a balance question waits for settlement no longer than its gateway waits for the answer
        self.shard = Shard(ledger, opened.epoch, held, owner, spec.checkpoint_every, spec.checkpoint_part_size,
                           max_balance_wait_s=config.gateway.request_timeout)
        for hold in ledger.holds.values():  # passed on before a restart, maybe never arrived
            if not hold.order_id:
                self.shard.awaiting[(hold.user, hold.client_order_id)] = (owner[hold.symbol], time.time_ns())
        self.max_order_age_ns = int(config.gateway.request_timeout * 1e9 / 2)  # the engines' (engine.role)
        self.ctx = ctx = sockets.context()
        self.auth = start_authenticator(ctx, roles=security.role_keys()) if security else None
        self.commands = sockets.socket(ctx, zmq.PULL, bind=spec.commands, security=security)
        self.settle = sockets.socket(ctx, zmq.PULL, bind=spec.settle, security=security)
        self.replay = sockets.socket(ctx, zmq.ROUTER, bind=spec.replay, security=security)
        self.publish = sockets.socket(ctx, zmq.XPUB, sndhwm=PUBLISH_HWM, security=security)
        self.publish.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription: each gets the balances as they are
        self.publish.bind(spec.publish)
        self.to_journal = sockets.socket(ctx, zmq.PUSH, connect=config.journal.events, security=security,
                                         peer="journal-writer")
        self.durable = sockets.socket(ctx, zmq.SUB, connect=config.journal.watermarks, security=security,
                                      peer="journal-writer")
        self.durable.setsockopt(zmq.SUBSCRIBE, durable_prefix(spec.name))  # its own watermarks
        # and the engines': how far the journal holds them, for ``check``. They come with every commit of
        # the journal writer, and the check (once a second) needs only the newest of each, so they
        # neither wake the loop nor queue up: one socket per engine, keeping its last message only
        self.engine_watermarks = EngineWatermarks(ctx, config.journal.watermarks, [e.name for e in config.engines],
                                                  security)
        self.engines = {e.name: sockets.socket(ctx, zmq.PUSH, connect=e.commands, security=security, peer=e.role)
                        for e in config.engines}
        self.replies = {gateway.name: sockets.socket(ctx, zmq.PUSH, connect=gateway.replies, security=security,
                                                     peer=role)
                        for role, gateway in config.gateway.all()}  # → each gateway, by its name
        self.unsent_forwards: dict[str, deque[bytes]] = {name: deque() for name in self.engines}
        self.batches, self.durables, self.replays = Decoder(EventBatch), Decoder(Durable), Decoder(ReplayRequest)
        self.journal_seen: dict[str, int] = {}  # engine → the last seq the journal held at the last check
        self.replaying: dict[tuple[bytes, ...], int] = {}
        if ledger.seq == 0:  # a new shard over an existing history: it settles from now on
            self.start_settling_now(stopper)
        self.opening_balances()
        for engine in self.engines:
            self.catch_up(engine)

    # -- start ------------------------------------------------------------------------------------

    def opening_balances(self) -> None:
        """Deposit each of this shard's users' configured opening balances, once ever (by reference)."""
        ledger, assets = self.shard.ledger, self.config.asset_map()
        for user in self.config.users:
            if not ledger.owns(user.name):
                continue
            for asset, amount in user.opening_balances.items():
                ref = f"opening:{user.name}:{asset}"
                if not ledger.knows_transfer(user.name, ref):
                    for event in self.shard.handle_own(DepositFunds(user.name, asset, assets[asset].to_units(amount),
                                                                    ref, time.time_ns())):
                        if isinstance(event, TransferRejected):  # `config check` should have said so
                            log.error("the opening balance of %s %s %s was refused: %s; it is tried again at"
                                      " the next start", user.name, amount, asset, event.reason)

    def start_settling_now(self, stopper: sockets.Stopper) -> None:
        """Settle each engine from where its journaled history ends now: the orders it holds were
        placed without accounts (docs/accounts.md, "Turning accounts on")."""
        held = handshake.ask(self.config, GetPositions(time.time_ns()), self.security,
                             stopped=lambda: stopper.requested).positions
        for engine, pos in sorted(held.items()):
            pos = EnginePosition(*pos)
            if engine in self.engines and pos.seq:
                log.warning("%s: accounts begin at %s seq %d; its earlier orders hold no funds and are not"
                            " settled", self.shard.name, engine, pos.seq)
                self.shard.settle_events(engine, pos.epoch, 1, pos.seq, [])

    def catch_up(self, engine: str) -> None:
        """Settle what the journal holds of ``engine`` beyond what this shard settled (bounded per call),
        asked of the journal writer's history service; if it does not answer within CATCH_UP_WAIT_S,
        the next check asks again."""
        shard = self.shard
        after = shard.settled_to(engine)
        try:
            batches = self.history.ask(ReleasedBatchesRequest(time.time_ns(), engine, after, CATCH_UP_EVENTS),
                                       CATCH_UP_WAIT_S).batches
        except JournalError as e:
            log.warning("could not read %s's batches after seq %d from the journal: %s", engine, after, e)
            return
        for epoch, first_seq, last_seq, events in batches:
            if last_seq > shard.settled_to(engine):
                shard.settle_events(engine, epoch, first_seq, last_seq, shard.ledger.own_events(events))

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, stopper: sockets.Stopper) -> None:
        shard, spec = self.shard, self.spec
        log.info("ready: %s of %d, epoch %d, from batch %d seq %d, %d users' accounts, commands on %s",
                 shard.name, len(self.config.ledgers), shard.epoch, shard.batch, shard.ledger.seq,
                 len({user for user, _ in shard.ledger.balances if not user.startswith("*")}), spec.commands)
        sockets.report_ready()
        poller = zmq.Poller()
        for sock in (self.durable, self.replay, self.settle, self.commands, self.publish):
            poller.register(sock, zmq.POLLIN)
        busy = False
        watching = True  # whether the loop wakes for its own watermarks (``durable`` polled)
        last_check = time.monotonic()
        settle_at = None  # when to settle the engine batches that came (the socket is not polled meanwhile)
        while not stopper.requested:
            full = (shard.retained_events >= spec.max_undurable_events
                    or max(map(len, self.unsent_forwards.values()), default=0) >= MAX_UNSENT_FORWARDS)
            if full != busy:
                busy = full
                poller.modify(self.commands, 0 if busy else zmq.POLLIN)
                log.warning("%s", "journal or engines behind: no longer reading requests" if busy
                            else "reading requests again")
            # A watermark only frees the retained batches, unless one of them holds back replies or
            # balances, or requests wait for room: only then is it worth waking for. Otherwise the
            # watermarks are read as the loop comes by (it does at least every 100 ms).
            wake = busy or shard.awaits_watermark()
            if wake != watching:
                watching = wake
                poller.modify(self.durable, zmq.POLLIN if wake else 0)
            wait_ms = 100 if settle_at is None else sockets.poll_ms(settle_at - time.monotonic())
            ready = dict(poller.poll(wait_ms))
            if self.durable in ready or self.durable.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                self.on_durable()
            if self.replay in ready:
                self.on_replay_requests()
            if self.publish in ready:
                self.on_subscriptions()
            if self.settle in ready:  # gather a few ms of them: one settlement, one journal batch
                poller.modify(self.settle, 0)
                # unless a balance question waits for them (its gateway heard of them first)
                settle_at = time.monotonic() + (0.0 if shard.asking else SETTLE_EVERY_S)
            # but before requests: what a user was told is settled before their next order holds (the
            # journal writer passes a batch to the shards before the gateway)
            if settle_at is not None and (self.commands in ready or time.monotonic() >= settle_at):
                self.on_settle()
                poller.modify(self.settle, zmq.POLLIN)
                settle_at = None
            if self.commands in ready:
                shard.handle_requests(sockets.drain(self.commands, MAX_MESSAGES_PER_TURN))
            now = time.monotonic()
            if now - last_check >= CHECK_EVERY_S:
                last_check = now
                self.check()
            self.end_turn()

    def end_turn(self) -> None:
        _, released = self.shard.seal()
        self.send_to_journal()
        if released is not None:
            self.send(released)
        self.send_forwards()
        self.resume_replays()

    def on_durable(self) -> None:
        shard = self.shard
        for parts in sockets.drain(self.durable):
            try:
                durable = self.durables.decode(parts[-1])
            except WireError as e:
                log.warning("durable: dropped %s", e)
                continue
            released = shard.on_durable(durable)
            if released is not None:
                self.send(released)

    def on_subscriptions(self) -> None:
        """The notifiers' (un)subscriptions to users' balances. XPUB (verbose) passes on every
        subscription, a notifier's first one of a user and those it makes again when it reconnects
        (after this shard restarted, say): each gets the user's balances as they are (Shard.follow).
        It passes on the unsubscription of a topic's last subscriber (a notifier gone unsubscribes all)."""
        shard = self.shard
        for _ in range(MAX_SUBSCRIPTIONS_PER_TURN):
            try:
                data = self.publish.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if data[:1] == b"\x01":
                shard.follow(data[1:])
            elif data[:1] == b"\x00":
                shard.unfollow(data[1:])

    def on_settle(self) -> None:
        for parts in sockets.drain(self.settle, MAX_SETTLE_PER_TURN):
            try:
                batch = self.batches.decode(parts[-1])
            except WireError as e:
                log.warning("settle: dropped %s", e)
                continue
            if batch.engine not in self.engines:
                log.warning("settle: dropped a batch of unknown stream %r", batch.engine)
                continue
            if not self.shard.settle(batch):  # batches before it went missing: the journal has them
                self.catch_up(batch.engine)
                if not self.shard.settle(batch):
                    log.warning("settle: %s batch %d does not follow what the journal holds yet; later",
                                batch.engine, batch.batch)
        self.shard.settle_pending()

    def check(self) -> None:
        """Release the holds of orders that never reached their engine; read the journal for
        settlement the engines' pushes did not bring."""
        shard = self.shard
        lost, nudge = shard.lost_holds(self.max_order_age_ns)
        for user, client_order_id in lost:
            log.warning("order #%s of %s never reached its engine: releasing its hold", client_order_id, user)
            shard.handle_own(ReleaseHold(user, client_order_id, time.time_ns()))
        for engine in nudge:  # a command that changes nothing, so that the engine matches a batch
            shard.outputs.append(("forward", engine, Request("", 0, 0, CancelAll("", None, time.time_ns(),
                                                                               order_ids=()))))
        # what the journal held a check ago and has not come to settle was lost on the way: read it
        for engine, seq in self.journal_seen.items():
            if shard.settled_to(engine) < seq:
                self.catch_up(engine)
        self.journal_seen = dict(self.engine_watermarks.read())
        shard.settle_pending(everything=True)

    # -- sending, never blocking ------------------------------------------------------------------------

    def send_to_journal(self) -> None:
        sockets.send_queued(self.to_journal, self.shard.unsent)  # the writer replays what it misses

    def send(self, released: Released) -> None:
        for engine, requests in released.forwards.items():
            self.unsent_forwards[engine].append(encode(requests))
        by_gateway: dict[str, list] = {}
        for reply in released.replies:  # a request names its gateway: "<name>/<its start>"
            by_gateway.setdefault(reply.gateway.split("/", 1)[0], []).append(reply)
        for name, replies in by_gateway.items():
            sock = self.replies.get(name)
            try:
                if sock is None:
                    raise zmq.Again  # a gateway the config no longer has
                sock.send(encode(Replies(name, replies)), zmq.NOBLOCK)
            except zmq.Again:
                log.warning("gateway %s not reading: %d replies dropped", name, len(replies))
        name, epoch = self.shard.name, self.shard.epoch
        for user, balances in released.balances.items():
            self.publish.send_multipart([private_topic(user), encode(PrivateData(user, name, epoch, [balances]))])

    def send_forwards(self) -> None:
        """Pass held orders and cancels on, in order per engine; what an engine's queue has no room
        for waits here (and, past MAX_UNSENT_FORWARDS, stops the reading of requests)."""
        for engine, unsent in self.unsent_forwards.items():
            sockets.send_queued(self.engines[engine], unsent)

    # -- replay for the journal writer --------------------------------------------------------------

    def on_replay_requests(self) -> None:
        for parts in sockets.drain(self.replay, 64):
            try:
                request = self.replays.decode(parts[-1])
            except WireError as e:
                log.warning("replay: dropped %s", e)
                continue
            log.info("replay from batch %d requested", request.from_batch)
            self.replaying[tuple(parts[:-1])] = request.from_batch

    def resume_replays(self) -> None:
        shard = self.shard
        for envelope, from_batch in list(self.replaying.items()):
            frames = shard.replay_frames(from_batch)
            sent = sockets.send_routed(self.replay, envelope, frames)
            if sent < 0 or sent == len(frames):
                del self.replaying[envelope]
            elif sent:
                self.replaying[envelope] = max(from_batch, shard.retained[0][0]) + sent

    # -- stop ----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """On a clean stop, give the journal a moment to make the last batches durable and release them."""
        shard = self.shard
        shard.settle_pending(everything=True)
        self.end_turn()
        deadline = time.monotonic() + FLUSH_ON_STOP_S
        while (shard.retained or shard.unsent) and time.monotonic() < deadline:
            self.send_to_journal()
            if self.durable.poll(50):
                self.on_durable()
            self.send_forwards()
        self.send_forwards()
        if shard.retained:
            log.warning("stopping with %d events not yet durable (their orders never passed on)",
                        shard.retained_events)

    def close(self) -> None:
        self.history.close()
        self.engine_watermarks.close()
        sockets.close_all([self.commands, self.settle, self.replay, self.publish, self.to_journal, self.durable,
                           *self.replies.values(), *self.engines.values()], self.auth, self.ctx)


def run(config: Config, name: str) -> None:
    """Run the ledger shard ``name`` until SIGINT or SIGTERM."""
    stopper = sockets.Stopper()
    process = LedgerProcess(config, config.ledger(name), stopper)
    sockets.freeze_startup_objects()
    try:
        process.end_turn()  # the opening balances and the catch-up, journaled
        process.run(stopper)
        process.finish()
    finally:
        process.close()
    ledger = process.shard.ledger
    log.info("stopped: %s at seq %d digest %s", process.shard.name, ledger.seq, ledger.digest())
