"""The messages roles send each other, and their encoders and decoders (built once).

Every message is a frozen, ``array_like`` msgspec struct encoded with msgpack; schemas evolve
only by appending fields with defaults (see docs/protocol.md). Decoding failures raise WireError.

    gateway ──Requests──▶ engine                     (PUSH → PULL), one message per loop turn
    gateway ──Requests──▶ ledger shard ──Requests──▶ engine   with accounts on (docs/accounts.md)
    engine ──EventBatch──▶ journal writer            (PUSH → PULL; replayed over ROUTER on request)
    journal writer ──Durable──▶ engines              (PUB → SUB)
    journal writer ──ReplayRequest──▶ engine         (DEALER → ROUTER)
    journal writer ──[RELEASED, EventBatch]──▶ gateway   (PUSH → PULL), each engine batch once written:
                                                     the gateway answers from its entries
    journal writer ──EventBatch──▶ ledger shards     (PUSH → PULL), the same batches, for settlement
    journal writer ──[RELEASED, EventBatch]──▶ notifiers (PUB → SUB), the same batches: the notifiers
                                                     keep the public books and publish from them
    ledger shard ──Replies──▶ gateway                (PUSH → PULL), released at its durable seq
    notifier ──[topic, MarketData]──▶ subscribers    (XPUB → SUB)
    ledger shard ──[topic, PrivateData]──▶ notifier  (PUB → XSUB): balances after a change
    notifier ──SnapshotRequest──▶ engine, notifier   (DEALER → ROUTER): a notifier that starts gets its
                                                     books from another notifier (BookSnapshot) or the
                                                     engine (EngineBook)
    engine, gateway ──JournalRequest──▶ journal writer   (DEALER → ROUTER) at start: epochs, positions
    engine, ledger shard, gateway ──HistoryRequest──▶ journal writer's history service (DEALER → ROUTER):
                                                     a stream's checkpoint and events at start, a gateway's
                                                     order events, the batches a ledger shard missed
    subscriber ──NotifierRequest──▶ notifier         (DEALER → ROUTER): snapshots, instruments

What clients see of these (and the byte-level forms) is in docs/wire.md.
"""

from __future__ import annotations

import msgspec

from exchange.core.ledger_messages import AnyLedgerCommand, AnyLedgerEvent
from exchange.core.messages import (
    ORDER_EVENTS, AnyCommand, AnyEvent, BookOrderAdded, BookOrderDeleted, BookOrderExecuted, BookOrderReduced,
    DepthUpdate, PlaceOrder, ReplaceOrder, TopOfBook, Trade,
)
from exchange.core.orders import SelfTradePrevention, Side
from exchange.errors import WireError


class _Wire(msgspec.Struct, frozen=True, array_like=True, gc=False):
    pass


class GetBalances(_Wire, tag=True):
    """A user asks their ledger shard for their balances (one asset, or all): not journaled.

    ``seen``: engine → the last seq of it that the asking gateway had taken in when it asked (after
    the answers to the session's earlier requests); the shard answers once it has settled each of
    them that far, so the balances hold everything those answers told. Empty (older gateways):
    answered as they are."""

    user: str
    asset: str | None = None
    seen: dict[str, int] = {}


class Balance(_Wire):
    """One asset of one user, in the asset's smallest units."""

    asset: str
    available: int
    held: int


class Balances(_Wire, tag=True):
    """The answer to GetBalances: every asset the user has (or the one asked for), by name."""

    user: str
    balances: list[Balance]


LedgerRequestCommand = AnyLedgerCommand | GetBalances


class Request(_Wire):
    """A command from one gateway session; ``request_id`` pairs it with its reply.

    With accounts on, a gateway sends a user's requests to the user's ledger shard: order commands
    there name the ``engine`` the shard passes them on to (a placement as a HoldOrder, a replace as a
    HoldReplace, cancels as they are), in the order they came; the shard's own commands (deposits,
    withdrawals, GetBalances) name none.
    """

    gateway: str
    session: int
    request_id: int
    command: AnyCommand | LedgerRequestCommand
    engine: str = ""  # to a ledger shard: the engine the command goes on to
    # from a ledger shard: (its stream, epoch, batch) that holds this order's hold; the journal writes
    # the engine's batch of it only once it has written that one (EventBatch.after)
    after: tuple[str, int, int] | None = None


# What a gateway sends an engine: the requests of one event-loop turn. Engines still take a single
# Request per message (gateways before this list); upgrade the engines before the gateways.
Requests = list[Request]


class Entry(_Wire):
    """One command as the engine (or ledger shard) handled it, with the events it produced (maybe none)."""

    gateway: str
    session: int
    request_id: int
    command: AnyCommand | AnyLedgerCommand
    events: list[AnyEvent | AnyLedgerEvent]


class EventBatch(_Wire):
    """Consecutive entries of one engine: events ``first_seq``..``last_seq`` (empty if last < first).

    A ledger shard journals its batches the same way, as the stream ``ledger-<shard>`` (its
    commands and events are the ledger's; a SettleEvents command is journaled without its events,
    which the engine's own stream holds).
    """

    engine: str
    epoch: int
    batch: int  # +1 per batch of this engine, across epochs
    first_seq: int
    last_seq: int
    entries: list[Entry]
    checkpoint: bytes = b""  # now and then, one part of a checkpoint of the matcher (exchange.core.checkpoint)
    ts_matched: int = 0  # wall clock (ns) when the engine finished matching the batch
    # (stream, epoch, batch) of the ledger shards' batches that hold the holds of this batch's orders:
    # the journal writes this batch only after them, in the same transaction or an earlier one
    after: list[tuple[str, int, int]] = []

    def replies(self) -> list[Reply]:
        """What this batch answers: one Reply per request, its order events (the market data stays
        out). An order or replace the engine refused to execute because it came too late (journaled
        with no events) gets none: its gateway has answered it already."""
        return [Reply(e.session, e.request_id, [ev for ev in e.events if isinstance(ev, ORDER_EVENTS)], e.gateway)
                for e in self.entries if e.events or not isinstance(e.command, (PlaceOrder, ReplaceOrder))]


RELEASED = b"released"  # the first frame of an engine's batch that the journal writer passes on, once written


class BatchHeader(msgspec.Struct, array_like=True, dict=True):
    """An ``EventBatch`` decoded but for its entries (left as the bytes they came in): all the
    journal writer needs to order, write and watermark a batch. ``body`` (set by the receiver, not
    on the wire) keeps the whole frame, which the journal stores as it came."""

    engine: str
    epoch: int
    batch: int
    first_seq: int
    last_seq: int
    entries: msgspec.Raw
    checkpoint: bytes = b""
    ts_matched: int = 0
    after: list[tuple[str, int, int]] = []


class Durable(_Wire):
    """The journal holds every batch of ``engine`` up to ``batch`` (events up to ``seq``).

    ``batch`` -1 refuses the epoch: a batch of it depends on a ledger shard's batch that was lost
    when the shard restarted (``EventBatch.after``), so the journal writes nothing more of that
    epoch, and the engine restarts from the journal (nothing of the refused batches was released).
    """

    engine: str
    epoch: int
    batch: int
    seq: int


def durable_prefix(stream: str) -> bytes:
    """The first bytes of every ``Durable`` of ``stream``, encoded: a SUB subscribes to just these
    (a msgpack array of Durable's four fields, then the stream's name with its length, so ``e1``
    never matches ``e10``). The journal writer publishes every stream's watermarks on one PUB; a role
    that subscribes to its own wakes for its own only."""
    return b"\x94" + encoder.encode(stream)


class ReplayRequest(_Wire, tag=True):
    """The journal writer asks an engine to send its batches again, from ``from_batch`` on."""

    engine: str
    from_batch: int


class SnapshotRequest(_Wire, tag=True):
    """A subscriber asks a notifier for the released book of ``symbol``; a notifier that starts asks
    another notifier, or the engine of ``symbol`` (which answers EngineBook)."""

    symbol: str


EngineRequest = ReplayRequest | SnapshotRequest


class OpenEpoch(_Wire, tag=True):
    """An engine that starts asks the journal writer for a new epoch, and where its history ends.

    The writer records the epoch before it answers and from then on drops every batch of an older
    epoch of that engine, so an epoch is unique per process start and the engine's journaled
    history cannot change while the engine rebuilds from it.
    """

    engine: str
    nonce: int  # echoed in the answer, so a retried request takes only its own answer


class GetPositions(_Wire, tag=True):
    """A role that starts asks where each engine's journaled history ends (to check it can see it)."""

    nonce: int


JournalRequest = OpenEpoch | GetPositions


class EpochOpened(_Wire, tag=True):
    """The engine's new epoch; its journaled history ends at ``batch`` and ``seq``."""

    engine: str
    nonce: int
    epoch: int
    batch: int
    seq: int


class Positions(_Wire, tag=True):
    """Where each engine's journaled history ends: engine → (epoch, batch, seq)."""

    nonce: int
    positions: dict[str, tuple[int, int, int]]


class JournalRefused(_Wire, tag=True):
    nonce: int
    reason: str


JournalReply = EpochOpened | Positions | JournalRefused


class EngineHistoryRequest(_Wire, tag=True):
    """An engine (or a ledger shard: ``engine`` is then ``ledger-<shard>``) that starts asks the journal
    writer's history service (``journal.history``) where its history ends and what it needs to
    rebuild it (exchange.journal.history)."""

    nonce: int
    engine: str


class EngineHistory(_Wire, tag=True):
    """The answer to EngineHistoryRequest: the newest whole checkpoint (seq 0: none) and how many parts
    it has, the events per instrument (symbol → [count, first seq, last seq]), the last trade of
    each instrument, and where the history ends."""

    nonce: int
    position: tuple[int, int, int]  # (epoch, batch, seq)
    checkpoint_seq: int
    checkpoint_parts: int
    symbols: dict[str, tuple[int, int, int]]
    last_trades: list[Trade]


class CheckpointPartRequest(_Wire, tag=True):
    nonce: int
    engine: str
    seq: int  # the checkpoint's
    part: int  # 0, 1, …


class CheckpointPart(_Wire, tag=True):
    nonce: int
    state: bytes


class EventsRequest(_Wire, tag=True):
    """The next events of a stream after ``after_seq`` (at most a chunk of them)."""

    nonce: int
    stream: str
    after_seq: int


class OrderEventsRequest(_Wire, tag=True):
    """A gateway that starts asks for the order events of every open order and of every order
    accepted at or after ``since_ns``. ``cursor`` 0 begins a reading; each answer's cursor goes on
    with it, a chunk at a time."""

    nonce: int
    since_ns: int
    cursor: int = 0


class OrderHistoryRequest(_Wire, tag=True):
    """A gateway asks for the journaled order events of one order (a resend it never saw answered):
    those after ``after_seq`` (0: from the first), at most a chunk; the answer's ``last`` says whether
    more follow, asked for after the seq of the last one."""

    nonce: int
    order_id: str
    after_seq: int = 0


class Events(_Wire, tag=True):
    nonce: int
    events: list[AnyEvent | AnyLedgerEvent]
    last: bool  # no events after these
    cursor: int = 0  # for an OrderEventsRequest: the cursor to ask the next chunk with


class ReleasedBatchesRequest(_Wire, tag=True):
    """A ledger shard asks for an engine's written batches with events after ``after_seq`` (ones
    that did not reach it), whole batches, up to about ``max_events`` events."""

    nonce: int
    engine: str
    after_seq: int
    max_events: int


class ReleasedBatches(_Wire, tag=True):
    nonce: int
    batches: list[tuple[int, int, int, list[AnyEvent]]]  # (epoch, first_seq, last_seq, events)


class LoggedBatchesRequest(_Wire, tag=True):
    """A gateway asks for an engine's written batches numbered after ``after_batch`` and before
    ``before_batch`` (ones passed on to it that never arrived), as the journal logged them, whole,
    in order, up to about ``max_events`` events (at least one batch)."""

    nonce: int
    engine: str
    after_batch: int
    before_batch: int
    max_events: int


class LoggedBatches(_Wire, tag=True):
    nonce: int
    bodies: list[bytes]  # each an EventBatch, byte for byte as the engine sent it and the journal logged it


class RecentTradesRequest(_Wire, tag=True):
    """A notifier that starts asks for the last trades of an instrument (of ``engine``) since ``since_ns``."""

    nonce: int
    engine: str
    symbol: str
    since_ns: int
    limit: int


class RecentTrades(_Wire, tag=True):
    nonce: int
    trades: list[Trade]  # oldest first


HistoryRequest = (EngineHistoryRequest | CheckpointPartRequest | EventsRequest | OrderEventsRequest | OrderHistoryRequest
                  | ReleasedBatchesRequest | LoggedBatchesRequest | RecentTradesRequest)
HistoryReply = (EngineHistory | CheckpointPart | Events | ReleasedBatches | LoggedBatches | RecentTrades
                | JournalRefused)


class Reply(_Wire):
    """The order events of one command, for the gateway session that sent it (and their users).

    From a ledger shard: HoldRejected (an order or replace refused before its engine), the outcome of
    a deposit or withdrawal (FundsDeposited, FundsWithdrawn, TransferRejected, TransferRepeated), or
    Balances.
    """

    session: int
    request_id: int
    events: list[AnyEvent | AnyLedgerEvent | Balances]
    gateway: str = ""  # the gateway incarnation that sent the request


class Replies(_Wire):
    gateway: str
    replies: list[Reply]


MarketDataEvent = (Trade | TopOfBook | DepthUpdate | BookOrderAdded | BookOrderExecuted | BookOrderReduced
                   | BookOrderDeleted)


class MarketData(_Wire):
    """One channel's events of one released batch, numbered gap-free per (symbol, channel) and epoch.

    The epoch is the numbering's: a notifier that starts one (from an engine's book, with no other
    notifier to copy from) takes the wall clock in ns, so a later numbering has a higher epoch."""

    symbol: str
    channel: str  # "trade", "bbo", "l2" or "l3"
    epoch: int
    chan_seq: int
    events: list[MarketDataEvent]


class BookSnapshot(_Wire, tag=True):
    """The released book of one instrument, and the ``chan_seq`` of each channel it reflects.

    A subscriber drops buffered messages at or below these, and applies the rest.
    """

    symbol: str
    epoch: int
    seq: int  # engine seq of the last event the snapshot includes
    chan_seqs: dict[str, int]
    bids: list[tuple[int, int]]  # (price, qty), best first
    asks: list[tuple[int, int]]
    top: TopOfBook | None
    last_trade: Trade | None
    # the resting orders, for the "l3" channel: (order_id, side, price, qty), each side best price
    # first and each level in time priority (empty from an engine older than that channel)
    orders: list[tuple[str, Side, int, int]] = []
    # the last of its engine's released batches the snapshot includes, 0 before the first; None: not
    # said (a snapshot from a version older than this field, whose book cannot be followed)
    batch: int | None = None


class EngineBook(_Wire, tag=True):
    """An engine's book of one instrument, for a notifier that starts following it: the resting
    orders (as in BookSnapshot.orders) after the engine's batch ``batch`` of ``engine_epoch``.
    Matching runs ahead of the journal, so the batches after ``durable_batch`` are not released yet:
    the notifier publishes nothing of this book before the journal has released ``batch``."""

    symbol: str
    engine_epoch: int
    batch: int
    durable_batch: int
    seq: int  # the engine's seq after ``batch``
    orders: list[tuple[str, Side, int, int]]
    last_trade: Trade | None


class SnapshotRefused(_Wire, tag=True):
    symbol: str
    reason: str


SnapshotReply = BookSnapshot | SnapshotRefused
EngineBookReply = EngineBook | SnapshotRefused


class InstrumentsRequest(_Wire, tag=True):
    """A subscriber asks for every instrument's grids and limits; the notifier answers from its config."""


class InstrumentSpec(_Wire):
    """One instrument's grids and limits, as decimal text in the instrument's own units.

    A price on the wire is a number of ``tick_size``s, a quantity a number of ``lot_size``s.
    New fields are appended, with defaults.
    """

    symbol: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    max_price: str
    price_band: str | None  # percent: how far a limit price may be from the last trade; None: no band
    reference_price: str | None  # the band's centre until the first trade
    max_notional: str | None  # the largest price × quantity of one order, in the quote currency
    max_open_orders: int | None  # resting orders per user on this instrument
    stp_default: SelfTradePrevention  # the self-trade prevention of an order that names none
    base: str | None = None  # with accounts on: the asset bought and sold ...
    quote: str | None = None  # ... and the asset it is paid in; None with accounts off


class Instruments(_Wire, tag=True):
    instruments: list[InstrumentSpec]


class RequestRefused(_Wire, tag=True):
    """The answer to a request that could not be read: what was wrong, and what is expected."""

    reason: str


class TradesRequest(_Wire, tag=True):
    """A subscriber asks a notifier for the recent trades of ``symbol``: those at or after
    ``since_ns`` (ns since the UNIX epoch; 0: all it keeps)."""

    symbol: str
    since_ns: int = 0


DAY_NS = 86_400 * 1_000_000_000  # a notifier keeps (and answers TradesRequest with) at most a day's trades


class Trades(_Wire, tag=True):
    """The answer to TradesRequest: the trades, oldest first (a notifier keeps the last
    ``MAX_RECENT_TRADES`` of each instrument, at most a day's), and the ``chan_seq`` of the "trade"
    channel they reach up to, so a subscriber can join them to the feed."""

    symbol: str
    epoch: int
    chan_seq: int
    trades: list[Trade]


class TradesRefused(_Wire, tag=True):
    """The answer to a TradesRequest that gets no trades: an unknown symbol, or (a reason containing
    "try again") a notifier still taking its books. Its own tag, so that a client with a snapshot and
    trades of one symbol asked for at once knows which of them was refused."""

    symbol: str
    reason: str


NotifierRequest = SnapshotRequest | InstrumentsRequest | TradesRequest
NotifierReply = BookSnapshot | SnapshotRefused | Instruments | Trades | TradesRefused | RequestRefused
NOTIFIER_REQUEST_FORM = ('a request is one frame holding one msgpack array, its type first:'
                         ' ["SnapshotRequest", symbol], ["InstrumentsRequest"] or ["TradesRequest", symbol, since_ns]')


class PrivateData(_Wire):
    """One user's order events of one release, for their private topic; from a ledger shard
    (``engine`` is ``ledger-<shard>``), the user's balances after a release that changed them."""

    user: str
    engine: str
    epoch: int
    events: list[AnyEvent | Balances]


CHANNELS = {Trade: "trade", TopOfBook: "bbo", DepthUpdate: "l2", BookOrderAdded: "l3", BookOrderExecuted: "l3",
            BookOrderReduced: "l3", BookOrderDeleted: "l3"}


def topic(symbol: str, channel: str) -> bytes:
    """The topic frame of a public channel; the trailing ``|`` stops prefix matches across names."""
    return f"md.{symbol}.{channel}|".encode()


def private_topic(user: str) -> bytes:
    """The topic frame of a user's private order updates (exact match thanks to the ``|``)."""
    return f"priv.{user}|".encode()


encoder = msgspec.msgpack.Encoder()
encode = encoder.encode


_notifier_requests = msgspec.msgpack.Decoder(NotifierRequest)


def decode_notifier_request(frame: bytes) -> SnapshotRequest | InstrumentsRequest | TradesRequest | RequestRefused:
    """A subscriber's request, or the RequestRefused that answers it. Never raises."""
    try:
        return _notifier_requests.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        # the decoder may quote what it was given: keep the reason one printable line
        problem = "".join(c if c.isprintable() else "?" for c in str(e)[:200])
        return RequestRefused(f"{problem}; {NOTIFIER_REQUEST_FORM}")


class Decoder:
    """A typed msgpack decoder that raises WireError (with a byte prefix) on bad frames."""

    def __init__(self, type_):
        self._decoder = msgspec.msgpack.Decoder(type_)
        self._name = getattr(type_, "__name__", str(type_))

    def decode(self, frame: bytes):
        try:
            return self._decoder.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise WireError(f"bad {self._name} frame ({e}): {bytes(frame[:32])!r}") from None
