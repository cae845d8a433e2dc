"""A journal written as a mesh with accounts on would write it, without any process.

Real ledger shards (``Ledger``, two of them, as configs/local.yaml has) hold each order before a real
``Matcher`` per engine matches it; every engine batch is then settled by every shard. Each step is
journaled with ``Writer`` as the journal writer would: the shard's batch (its command and events,
stream ``ledger-<shard>``), the engine's batch, then each shard's settlement batch (a
``SettleEvents`` journaled without its events, which the engine's stream holds).

Users of configs/local.yaml on its two shards: bob and carol on shard 0, alice on shard 1.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec

from exchange.core import ledger_checkpoint, parts
from exchange.core.ledger_checkpoint import LedgerCheckpointPart
from exchange.core.ledger import Ledger, shard_of
from exchange.core.ledger_messages import DepositFunds, HoldOrder, OrderHeld, SettleEvents, WithdrawFunds
from exchange.core.matching import Matcher
from exchange.core.messages import CancelOrder, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer
from exchange.testing.mesh import toy_config
from exchange.wire.messages import Entry, EventBatch

CONFIG = toy_config(accounts=True)  # configs/local.yaml with accounts on, without price bands
INSTRUMENTS = CONFIG.instrument_map()
TERMS = CONFIG.terms()
ASSETS = CONFIG.asset_map()
SHARDS = len(CONFIG.ledgers)
T0 = 1_800_000_000 * 10**9
BUY, SELL = Side.BUY, Side.SELL


def units(asset: str, text: str) -> int:
    return ASSETS[asset].to_units(text)


class LedgerJournal:
    """The shards, one matcher per engine and the journal they write to (see the module docstring)."""

    def __init__(self, path: Path | str, checkpoint_every: int = 0):
        self.path = path
        self.db = open_db(path)
        self.writer = Writer(self.db, INSTRUMENTS)
        self.ledgers = [Ledger(n, SHARDS, TERMS.values(), ASSETS.values()) for n in range(SHARDS)]
        self.matchers = {e.name: Matcher(e.id, [INSTRUMENTS[s] for s in e.instruments]) for e in CONFIG.engines}
        self.engine_of = {s: e.name for e in CONFIG.engines for s in e.instruments}
        self.batches: Counter = Counter()
        self.engine_events: dict[str, list] = {name: [] for name in self.matchers}
        self.checkpoint_every = checkpoint_every  # a ledger checkpoint after every this many ledger batches
        self.clock = T0
        self.paused: set[int] = set()  # shards that do not settle engine batches now

    def tick(self) -> int:
        self.clock += 10**9
        return self.clock

    def shard(self, user: str) -> Ledger:
        return self.ledgers[shard_of(user, SHARDS)]

    def write(self, stream: str, first_seq: int, last_seq: int, entries: list, state: bytes = b"") -> None:
        self.batches[stream] += 1
        self.writer.append([EventBatch(stream, 1, self.batches[stream], first_seq, last_seq, entries, state)])
        self.writer.catch_up()

    def ledger(self, ledger: Ledger, command, gateway: str = "gw", session: int = 1) -> list:
        """``command`` through ``ledger``, journaled as one batch of its stream; its events."""
        first = ledger.seq + 1
        events = ledger.handle(command)
        journaled = command
        if isinstance(command, SettleEvents):
            journaled = SettleEvents(command.engine, command.epoch, command.first_seq, command.last_seq, [],
                                     command.ts_received)
        stream = f"ledger-{ledger.shard}"
        state = b""
        if self.checkpoint_every and (self.batches[stream] + 1) % self.checkpoint_every == 0:
            state = ledger_checkpoint.take(ledger)[0]  # small: one part
        self.write(stream, first, ledger.seq, [Entry(gateway, session, 0, journaled, events)], state)
        return events

    def deposit(self, user: str, asset: str, amount: str, ref: str = "") -> list:
        command = DepositFunds(user, asset, units(asset, amount), ref or f"opening:{user}:{asset}", self.tick())
        return self.ledger(self.shard(user), command, "", 0)

    def withdraw(self, user: str, asset: str, amount: str, ref: str) -> list:
        return self.ledger(self.shard(user), WithdrawFunds(user, asset, units(asset, amount), ref, self.tick()))

    def engine(self, command) -> list:
        """``command`` matched by its engine, journaled, then settled (and journaled) by every shard."""
        name = self.engine_of.get(command.symbol, "e1")
        matcher = self.matchers[name]
        first = matcher.seq + 1
        events = matcher.handle(command)
        self.write(name, first, matcher.seq, [Entry("gw", 1, 0, command, events)])
        self.engine_events[name] += events
        if events:
            ts = self.tick()
            for ledger in self.ledgers:
                if ledger.shard not in self.paused:
                    self.ledger(ledger, SettleEvents(name, 1, first, matcher.seq, events, ts), "", 0)
        return events

    def place(self, user: str, symbol: str, side: Side, qty: str, price: str | None, tif: str = "GTC",
              cid: str = "") -> tuple[list, list]:
        """(ledger events, engine events) of an order: held by its user's shard, then matched."""
        instrument = INSTRUMENTS[symbol]
        order = PlaceOrder(user, symbol, side, instrument.to_lots(qty),
                           None if price is None else instrument.to_ticks(price), TimeInForce(tif),
                           client_order_id=cid, ts_received=self.tick())
        held = self.ledger(self.shard(user), HoldOrder(order))
        if not isinstance(held[0], OrderHeld):
            return held, []
        return held, self.engine(held[0].command)

    def cancel(self, user: str, symbol: str, order_id: str) -> list:
        return self.engine(CancelOrder(user, symbol, order_id, ts_received=self.tick()))

    def close(self) -> None:
        self.db.conn.close()


def session(path: Path | str, checkpoint_every: int = 0) -> LedgerJournal:
    """Opening balances; alice (shard 1) sells BTC to bob and carol (shard 0), partly; carol's rest
    is canceled; bob's order rests half filled; an ETH-USD and an AAPL trade; a deposit and a
    withdrawal. Orders: e1 1-1 alice sells 0.5 BTC @ 43000, 1-2 bob buys 0.2 @ 43000.10 (fills at
    43000: price improvement), 1-3 carol buys 0.4 @ 42999 (rests), 1-4 bob buys 0.6 @ 43000
    (fills 0.3, rests 0.3); carol's 1-3 is canceled; 1-5 carol sells 2 ETH @ 2500, 1-6 alice buys
    1 ETH @ 2500; e2 2-1 alice buys 10 AAPL @ 190, 2-2 bob sells 4 @ 189 (fills at 190)."""
    j = LedgerJournal(path, checkpoint_every)
    for user in ("alice", "bob", "carol"):
        for asset, amount in (("USD", "100000"), ("BTC", "2"), ("ETH", "20"), ("AAPL", "100")):
            j.deposit(user, asset, amount)
    j.place("alice", "BTC-USD", SELL, "0.5", "43000.00", cid="a1")
    j.place("bob", "BTC-USD", BUY, "0.2", "43000.10", cid="b1")
    j.place("carol", "BTC-USD", BUY, "0.4", "42999.00")
    j.place("bob", "BTC-USD", BUY, "0.6", "43000.00", cid="b2")
    j.cancel("carol", "BTC-USD", "1-3")
    j.place("carol", "ETH-USD", SELL, "2", "2500.00")
    j.place("alice", "ETH-USD", BUY, "1", "2500.00")
    j.place("alice", "AAPL", BUY, "10", "190.00")
    j.place("bob", "AAPL", SELL, "4", "189.00")
    j.deposit("alice", "USD", "250.50", ref="wire-7")
    j.withdraw("bob", "USD", "1000", ref="out-1")
    return j


def previous_version_checkpoint(ledger: Ledger, part_size: int | None = None) -> list[bytes]:
    """A checkpoint of ``ledger`` as the version before transfer references were per user wrote it
    (``ledger_checkpoint.take`` then): nine fields, the references by ref alone (ref → entry id), one part."""
    data = msgspec.msgpack.encode((
        ledger.shard, ledger.shards, ledger.seq, ledger.last_entry, ledger.last_hold,
        [(account, asset, balance) for (account, asset), balance in sorted(ledger.balances.items())],
        [ledger.holds[key] for key in sorted(ledger.holds)],
        [(engine, epoch, seq) for engine, (epoch, seq) in sorted(ledger.positions.items())],
        sorted((ref, transfer.entry_id) for (_, ref), transfer in ledger.transfers.items())))
    return [msgspec.msgpack.encode(LedgerCheckpointPart(ledger.shard, ledger.seq, 0, 1, parts.digest(data), data))]
