"""A ledger shard's state around its Ledger core: the batches it journals and what each releases.

No sockets here (exchange.ledger.role has them). One loop turn of the role:

    handle_requests(frames)   the gateways' requests: holds, transfers, balances, cancels to pass on
    settle(batch)             an engine's released EventBatch: its events settled (R2)
    seal()                    this turn's entries as one EventBatch frame for the journal

and then, as the journal's watermark passes each batch, ``on_durable`` hands back what that batch
released, in the order it was decided: the replies for the gateway and the balance changes for
the private feed. Held orders and cancels go on to their engines at once, in the order they came
(so a cancel never overtakes its order); a held order names the shard's batch that holds its hold
(``Request.after``), and the journal writes the engine's batch of it only after that one, so an
ACK (which comes from the engine, once its batch is durable) always follows a durable hold. A
balance question waits until the engines are settled as far as its gateway had seen them
(``GetBalances.seen``), then is answered with the batch before it, or at once when nothing waits.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import msgspec

from exchange.core import ledger_checkpoint
from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_messages import (
    DepositFunds, HoldOrder, HoldReplace, OrderHeld, OrderSettled, ReleaseHold, ReplaceHeld, SettleEvents,
    WithdrawFunds, available_account, held_account,
)
from exchange.core.messages import CancelAll, CancelOrder
from exchange.errors import WireError
from exchange.journal.readers import EnginePosition
from exchange.wire.messages import (
    Balance, Balances, Decoder, Durable, Entry, EventBatch, GetBalances, Reply, Request, encode, private_topic,
)

log = logging.getLogger(__name__)

_replace = msgspec.structs.replace


def moves_funds(event) -> bool:
    """Whether a shard's event changed balances: it carries an entry (a hold, a transfer applied, a
    release); a refused or repeated transfer, or a refused hold, changes none."""
    return getattr(event, "entry", None) is not None


class Released(msgspec.Struct):
    """What durable batches let go of, in order: Requests per engine, Replies, each user's new balances."""

    forwards: dict[str, list[Request]] = {}
    replies: list[Reply] = []
    balances: dict[str, Balances] = {}

    def add(self, output: tuple) -> None:
        kind, target, item = output
        if kind == "forward":
            self.forwards.setdefault(target, []).append(item)
        elif kind == "reply":
            self.replies.append(item)
        else:  # the latest balances of a user win
            self.balances[target] = item


class Shard:
    """One ledger shard in ``epoch``, whose journaled history ends at ``position``."""

    def __init__(self, ledger: Ledger, epoch: int, position: EnginePosition, owner: dict[str, str],
                 checkpoint_every: int = 100_000,
                 checkpoint_part_size: int = ledger_checkpoint.DEFAULT_PART_SIZE,
                 max_balance_wait_s: float = 10.0):
        self.ledger = ledger
        self.name = f"ledger-{ledger.shard}"
        self.epoch = epoch
        self.owner = owner  # symbol → the engine that trades it
        self.engines = set(owner.values())
        self.checkpoint_every = checkpoint_every
        self.checkpoint_part_size = checkpoint_part_size
        self.checkpoint_seq = ledger.seq
        self.checkpoint_parts: deque[bytes] = deque()
        self.batch = self.durable_batch = position.batch
        self.retained: deque[tuple[int, int, bytes]] = deque()  # (batch, event count, frame) until durable
        self.retained_events = 0
        self.unreleased: deque[tuple[int, list[tuple]]] = deque()  # (batch, outputs) until durable
        self.unsent: deque[bytes] = deque()  # batches the journal PUSH had no room for yet
        self.entries: list[Entry] = []  # this turn's
        self.outputs: list[tuple] = []  # this turn's, in order
        self.changed: set[str] = set()  # users whose balances this turn changed, of those followed
        # the private topics (``priv.<user>|``) that some notifier asks for, because a user follows their
        # own private feed there (exchange.marketdata.notifier); b"" (everything) from older notifiers
        self.followed: set[bytes] = set()
        self.first_seq = ledger.seq + 1
        # (user, client order id) → (engine, ts_received) of a hold passed on and not yet accepted
        self.awaiting: dict[tuple[str, str], tuple[str, int]] = {}
        self.engine_clock: dict[str, int] = {}  # engine → ts_matched of the last batch of it settled
        # engine → (epoch, first seq, last seq, events of ours) taken in and not settled yet
        self.unsettled: dict[str, tuple[int, int, int, list]] = {}
        # GetBalances waiting for settlement to reach what they name (``seen``): (give up at, the request),
        # at most ``max_balance_wait_s`` each (the gateways' request_timeout: by then the gateway has
        # answered UNAVAILABLE, and a late answer could lack what the user was told)
        self.asking: deque[tuple[float, Request]] = deque()
        self.max_balance_wait_s = max_balance_wait_s
        self.requests = Decoder(list[Request])

    # -- one turn ---------------------------------------------------------------------------------

    def handle_requests(self, frames: list[list[bytes]]) -> None:
        """Every gateway request of every frame (each a Requests list)."""
        for parts in frames:
            try:
                requests: list[Request] = self.requests.decode(parts[-1])
            except WireError as e:
                log.warning("commands: dropped %s", e)
                continue
            for request in requests:
                self.handle_request(request)

    def handle_request(self, request: Request) -> None:
        command = request.command
        match command:
            case HoldOrder(order=order):
                user = order.user
            case HoldReplace(replace=replace):
                user = replace.user
            case CancelOrder() | CancelAll():
                if request.engine not in self.engines:
                    log.warning("commands: dropped a %s for unknown engine %r", type(command).__name__,
                                request.engine)
                    return
                self.outputs.append(("forward", request.engine, _replace(request, engine="")))
                return
            case GetBalances() | DepositFunds() | WithdrawFunds():
                user = command.user
            case _:
                log.warning("commands: dropped a %s from %s (not a gateway's request)", type(command).__name__,
                            request.gateway)
                return
        if not self.ledger.owns(user):  # a gateway with another shard count: a config mismatch
            log.error("commands: user %s belongs to another shard; is every role on the same config?", user)
            return
        if isinstance(command, GetBalances):
            if self.behind(command.seen):  # its gateway has taken in engine events this shard has not: at ``seal``
                self.asking.append((time.monotonic() + self.max_balance_wait_s, request))
            else:
                self.answer_balances_to(request)
            return
        events = self.ledger.handle(command)
        self.entries.append(Entry(request.gateway, request.session, request.request_id, command, events))
        for event in events:
            if type(event) is OrderHeld:
                engine = self.owner[event.hold.symbol]
                held = event.command
                if event.budget:
                    held = _replace(held, funds=event.budget)
                self.outputs.append(("held", engine, Request(request.gateway, request.session, request.request_id,
                                                             held)))
                self.awaiting[(user, event.hold.client_order_id)] = (engine, held.ts_received)
                self.balance_changed(user)
            elif type(event) is ReplaceHeld:
                self.outputs.append(("held", self.owner[event.hold.symbol],
                                     Request(request.gateway, request.session, request.request_id, event.command)))
                if event.entry is not None:
                    self.balance_changed(user)
            else:  # refused, or a transfer's outcome: the requester hears it once it is durable
                self.outputs.append(("reply", "", Reply(request.session, request.request_id, [event],
                                                        request.gateway)))
                if moves_funds(event):
                    self.balance_changed(user)

    def handle_own(self, command: DepositFunds | ReleaseHold) -> list:
        """A command of the shard's own (an opening balance, the release of a lost order's hold);
        its events."""
        events = self.ledger.handle(command)
        self.entries.append(Entry("", 0, 0, command, events))
        if any(map(moves_funds, events)):
            self.balance_changed(command.user)
        return events

    # -- balance questions ------------------------------------------------------------------------------

    def behind(self, seen: dict[str, int]) -> list[tuple[str, int]]:
        """The (engine, seq) of ``seen`` that this shard has not taken in yet (engines it does not
        settle aside: they never will be)."""
        return [(engine, seq) for engine, seq in seen.items()
                if engine in self.engines and self.settled_to(engine) < seq]

    def answer_balances_to(self, request: Request) -> None:
        """Answer a GetBalances with its user's balances now, the engine events taken in settled first."""
        self.settle_pending()
        command: GetBalances = request.command
        self.outputs.append(("reply", "", Reply(request.session, request.request_id,
                                                [self.balances(command.user, command.asset)], request.gateway)))

    def answer_balances(self) -> None:
        """Answer each GetBalances waiting whose engines are now settled as far as it names (what its
        gateway had taken in: the answers to the session's earlier requests among them); give up on
        those that waited ``max_balance_wait_s``."""
        now, waiting = time.monotonic(), deque()
        for give_up_at, request in self.asking:
            behind = self.behind(request.command.seen)
            if not behind:
                self.answer_balances_to(request)
            elif now >= give_up_at:
                log.warning("gave up on a balance question of %s: %s not settled to seq %d in %.0f s (its"
                            " gateway answers UNAVAILABLE)", request.command.user, *behind[0],
                            self.max_balance_wait_s)
            else:
                waiting.append((give_up_at, request))
        self.asking = waiting

    def settled_to(self, engine: str) -> int:
        """The last event of ``engine`` taken in here (journaled, or waiting in ``unsettled``)."""
        last = self.ledger.positions.get(engine, (0, 0))[1]
        waiting = self.unsettled.get(engine)
        return max(last, waiting[2]) if waiting else last

    def settle(self, batch: EventBatch) -> bool:
        """Take an engine's released batch in; False if batches before it are missing (nothing done:
        the caller fetches them from the journal and comes back).

        Batches wait in ``unsettled``, consecutive ones of an engine joined into one range, until
        ``settle_pending`` settles them as one SettleEvents (one journaled command, however many
        batches). A range with no event of this shard's users waits for ``settle_pending(everything=True)``
        (so a busy engine whose trades are all other shards' costs this shard one journal write a second)."""
        last = self.settled_to(batch.engine)
        if batch.first_seq > last + 1:
            return False
        if batch.ts_matched:
            self.engine_clock[batch.engine] = max(self.engine_clock.get(batch.engine, 0), batch.ts_matched)
        if batch.last_seq <= last:
            return True  # settled already (or no events at all)
        mine = self.ledger.own_events([event for entry in batch.entries for event in entry.events])
        waiting = self.unsettled.get(batch.engine)
        if waiting is None:
            self.unsettled[batch.engine] = (batch.epoch, batch.first_seq, batch.last_seq, mine)
        else:
            self.unsettled[batch.engine] = (batch.epoch, waiting[1], batch.last_seq, waiting[3] + mine)
        return True

    def settle_pending(self, everything: bool = False) -> None:
        """Settle what waits in ``unsettled``: the ranges with events of ours (or all, ``everything``)."""
        for engine, (epoch, first, last, events) in list(self.unsettled.items()):
            if events or everything:
                del self.unsettled[engine]
                self.settle_events(engine, epoch, first, last, events)

    def settle_events(self, engine: str, epoch: int, first_seq: int, last_seq: int, events: list) -> None:
        """Settle ``engine``'s events ``first_seq``..``last_seq`` (``events``: those of them of our users)."""
        waiting = self.unsettled.pop(engine, None)
        if waiting is not None:  # they come first (``events`` may start before their end: whole batches)
            first_seq, events = min(first_seq, waiting[1]), waiting[3] + [e for e in events if e.seq > waiting[2]]
        ledger = self.ledger
        settled = ledger.handle(SettleEvents(engine, epoch, first_seq, last_seq, events, time.time_ns()))
        self.entries.append(Entry("", 0, 0, SettleEvents(engine, epoch, first_seq, last_seq, [], 0), settled))
        for event in settled:
            if type(event) is OrderSettled:
                if event.hold is None or event.hold.order_id:
                    self.awaiting.pop((event.user, event.client_order_id), None)
                if event.entries:
                    self.balance_changed(event.user)

    def seal(self) -> tuple[bytes | None, Released | None]:
        """(the EventBatch frame of this turn's entries, or None; what may leave at once, or None).

        Orders and cancels leave at once, in order: a held order names this batch (``after``), and the
        journal writes its engine's batch only after this one. Replies and balances wait for the
        watermark, behind any batch before them; the balance questions settled far enough are
        answered first (``answer_balances``)."""
        if self.asking:
            self.answer_balances()
        entries, outputs = self.entries, self.outputs
        self.entries, self.outputs = [], []
        if self.changed:
            outputs.extend(("balances", user, self.balances(user)) for user in sorted(self.changed))
            self.changed.clear()
        frame = None
        if entries:
            frame = self._batch(entries)
        now, later = Released(), []
        after = (self.name, self.epoch, self.batch)
        for kind, target, item in outputs:
            if kind == "held":
                now.add(("forward", target, _replace(item, after=after)))
            elif kind == "forward":
                now.add(("forward", target, item))
            else:
                later.append((kind, target, item))
        if frame is not None:
            self.unreleased.append((self.batch, later))
        elif later and self.unreleased:  # behind the batch before them, in order
            self.unreleased[-1][1].extend(later)
        else:
            for output in later:
                now.add(output)
        return frame, now if (now.forwards or now.replies or now.balances) else None

    def _batch(self, entries: list[Entry]) -> bytes:
        """This turn's entries as the next EventBatch of the stream, retained until durable."""
        self.batch += 1
        ledger = self.ledger
        if not self.checkpoint_parts and ledger.seq - self.checkpoint_seq >= self.checkpoint_every:
            self.checkpoint_parts.extend(ledger_checkpoint.take(ledger, self.checkpoint_part_size))
            self.checkpoint_seq = ledger.seq
        state = self.checkpoint_parts.popleft() if self.checkpoint_parts else b""
        frame = encode(EventBatch(self.name, self.epoch, self.batch, self.first_seq, ledger.seq, entries, state,
                                  time.time_ns()))
        count = ledger.seq - self.first_seq + 1
        self.first_seq = ledger.seq + 1
        self.retained.append((self.batch, count, frame))
        self.retained_events += count
        self.unsent.append(frame)
        return frame

    # -- the journal's watermark --------------------------------------------------------------------

    def on_durable(self, durable: Durable) -> Released | None:
        """Advance the watermark; what it releases (None if nothing)."""
        if durable.engine != self.name or durable.epoch != self.epoch or durable.batch <= self.durable_batch:
            return None
        self.durable_batch = durable.batch
        while self.retained and self.retained[0][0] <= durable.batch:
            self.retained_events -= self.retained.popleft()[1]
        released = Released()
        while self.unreleased and self.unreleased[0][0] <= durable.batch:
            for output in self.unreleased.popleft()[1]:
                released.add(output)
        return released

    def awaits_watermark(self) -> bool:
        """Whether a batch not yet durable holds back something for someone (replies, balances)."""
        return any(later for _, later in self.unreleased)

    def replay_frames(self, from_batch: int) -> list[bytes]:
        return [frame for batch, _, frame in self.retained if batch >= from_batch]

    # -- what users see -------------------------------------------------------------------------------

    def balances(self, user: str, asset: str | None = None) -> Balances:
        """``user``'s balances now: every asset with an account (or the one asked for)."""
        ledger = self.ledger
        names = [asset] if asset is not None else sorted(ledger.assets)
        rows = []
        for name in names:
            available, held = ledger.balance(user, name)
            if asset is not None or available or held or (available_account(user), name) in ledger.balances \
                    or (held_account(user), name) in ledger.balances:
                rows.append(Balance(name, available, held))
        return Balances(user, rows)

    def follow(self, topic: bytes) -> None:
        """A notifier asks for ``topic`` (``priv.<user>|``; b"": everything): from now on, the user's
        balances go out after each change, and now as they are, with this turn's batch (so a notifier
        that comes back after this shard restarted learns what changed meanwhile)."""
        if not topic:
            self.followed.add(topic)
            return
        if not (topic.startswith(b"priv.") and topic.endswith(b"|")):
            return  # not a user's topic: nothing of it is published here
        user = topic[5:-1].decode(errors="replace")
        ledger = self.ledger
        if shard_of(user, ledger.shards) == ledger.shard:  # (not ``owns``: it remembers every name it is asked)
            self.followed.add(topic)
            self.changed.add(user)

    def unfollow(self, topic: bytes) -> None:
        """No notifier asks for ``topic`` any more."""
        self.followed.discard(topic)

    def balance_changed(self, user: str) -> None:
        """``user``'s balances go out with this turn's batch (once, as they are at its end), if someone
        follows them: nothing is built, held back or sent for a user whom no notifier asks for."""
        followed = self.followed
        if followed and (private_topic(user) in followed or b"" in followed):
            self.changed.add(user)

    # -- holds whose order never reached its engine ----------------------------------------------------

    def lost_holds(self, max_age_ns: int) -> tuple[list[tuple[str, str]], set[str]]:
        """(holds to release, engines to nudge). An engine executes no order received by its gateway more
        than ``max_age_ns`` before it handles it; so once a batch it matched after that age is settled
        here, an order it has not accepted or refused by then never executes, and its hold goes back. An
        engine that has matched nothing since gets a nudge (a command that does nothing), so that it does."""
        lost, nudge = [], set()
        holds = self.ledger.holds
        for key, (engine, ts_received) in list(self.awaiting.items()):
            hold = holds.get(key)
            if hold is None or hold.order_id:
                del self.awaiting[key]
            elif self.engine_clock.get(engine, 0) > ts_received + max_age_ns:
                lost.append(key)
                del self.awaiting[key]
            elif time.time_ns() > ts_received + max_age_ns:
                nudge.add(engine)
        return lost, nudge
