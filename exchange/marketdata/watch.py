"""`exchange watch SYMBOL`: a live view of one instrument's book, trades and feed health.

Built on exchange.marketdata.feed.BookFeed, so what it shows is the re-synced, gap-checked book. With a
terminal it redraws in place (rich); ``--plain`` (or a pipe) prints one line per event instead.
``--mine`` adds the user's own order updates from the private feed, each told in its own
instrument's units, once the notifier has admitted the user's key (``private_feed``); with accounts
on, also the user's balances (``Own``), as their ledger shard publishes them after each change.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.table import Table

import zmq
from zmq.utils import z85

from exchange.client.private_feed import PrivateFeed
from exchange.marketdata.feed import BookFeed
from exchange.config import Config, NotifierConfig
from exchange.core.assets import Asset
from exchange.core.instruments import Instrument
from exchange.core.messages import DepthUpdate, TopOfBook, Trade
from exchange.core.orders import Side
from exchange.errors import ExchangeError
from exchange.journal.queries import to_iso
from exchange.gateway.protocol.grammar import balance_line, format_reply
from exchange.gateway.protocol.translate import replies_for_event
from exchange.wire.messages import Balance, Balances, PrivateData
from exchange.wire.security.curve_keys import public_key

LEVELS = 10
TRADES = 12
WAITING_NOTE_S = 5.0  # plain mode: without a book for this long, say so (a stopped mesh looks like a quiet market)
ADMITTED_WITHIN_S = 10.0  # how long --mine waits for the notifier's verdict on the user's key


def private_feed(config: Config, notifier: NotifierConfig, user: str, secret: bytes,
                 notifier_key: str | None = None) -> PrivateFeed:
    """``user``'s private feed from ``notifier``, once the notifier has admitted the key ``secret``;
    ``notifier_key``: the notifier's public key (None: read it from its secret key file, see
    notifier_public_key).

    Raises ExchangeError, saying why, if the key is not the one the config lists for ``user`` or
    the notifier refuses it (it knows another key for them: an outdated one on either side).
    """
    listed = config.user(user)
    if listed is None:
        raise ExchangeError(f"the config has no user {user}; `exchange users add {user}` adds them with a CURVE key")
    if not listed.curve_public_key:
        # `users add` would refuse (the user exists), and removing the user first would lose their settings
        raise ExchangeError(f"the config lists no CURVE key for {user}: make a pair with `exchange keys new`, put"
                            f" its public half in {user}'s `curve_public_key` in the config, restart the notifiers,"
                            " and give its secret half with --secret-key")
    try:
        public = zmq.curve_public(secret)
    except ValueError:
        raise ExchangeError("the CURVE secret key given is not a key: it must be 40 characters of Z85") from None
    if public.decode() != listed.curve_public_key:
        raise ExchangeError(f"the CURVE secret key given is not {user}'s: its public half is {public.decode()},"
                            f" the config lists {listed.curve_public_key}")
    server = notifier_public_key(notifier, notifier_key)
    try:
        return PrivateFeed(notifier.private, server, user, public, secret, admitted_within=ADMITTED_WITHIN_S)
    except (PermissionError, TimeoutError) as e:
        raise ExchangeError(str(e)) from None


def notifier_public_key(notifier: NotifierConfig, given: str | None) -> bytes:
    """The public key of ``notifier``'s private feed: ``given`` (as `exchange keys notifier` prints it
    on the notifier's host), else the one of its secret key file, which is only read, never made: a
    key made on this machine would not be the notifier's, and the handshake would fail.

    Raises ExchangeError if ``given`` is not a key, or there is none to read and what to do then."""
    if given is not None:
        try:
            if len(z85.decode(given)) == 32:
                return given.encode()
        except (ValueError, KeyError, struct.error):  # a length, a character, a group too large for Z85
            pass
        raise ExchangeError("the notifier key given is not a CURVE public key: it must be 40 characters of Z85,"
                            " as `exchange keys notifier` prints it")
    path = notifier.secret_key_file
    try:
        secret = Path(path).read_bytes().strip()
    except (FileNotFoundError, NotADirectoryError):
        # its secret belongs on the notifier's host only: the public key is all a client needs
        raise ExchangeError(f"{path}: no notifier key here (the notifier makes it on its own host); give the"
                            " notifier's public key with --notifier-key (or EXCHANGE_NOTIFIER_KEY), as"
                            " `exchange keys notifier` prints it on that host") from None
    except OSError as e:  # a folder where the file should be, no permission
        raise ExchangeError(f"{path}: {e.strerror}") from None
    try:
        return public_key(secret)
    except ValueError:
        raise ExchangeError(f"{path}: not a CURVE secret key (40 Z85 characters on one line), so not the"
                            " notifier's key file") from None


def describe(event, instrument: Instrument) -> str:
    """One readable line for a market data event."""
    p, q = instrument.format_price, instrument.format_qty
    if isinstance(event, Trade):
        return (f"TRADE {event.symbol} {q(event.qty)} @ {p(event.price)} {event.taker_side.value}"
                f" trade {event.trade_id} seq {event.seq}")
    if isinstance(event, TopOfBook):
        bid = f"{q(event.bid_qty)} @ {p(event.bid_price)}" if event.bid_price is not None else "-"
        ask = f"{q(event.ask_qty)} @ {p(event.ask_price)}" if event.ask_price is not None else "-"
        return f"BBO {event.symbol} bid {bid} | ask {ask} seq {event.seq}"
    if isinstance(event, DepthUpdate):
        return f"L2 {event.symbol} {event.side.value} {q(event.qty)} @ {p(event.price)} seq {event.seq}"
    return repr(event)


def amounts(balance: Balance, asset: Asset | None) -> tuple[str, str]:
    """(available, held) as decimal text in the asset's unit; in units if the config has no such asset."""
    amount = asset.format if asset is not None else str
    return amount(balance.available), amount(balance.held)


def describe_balance(balance: Balance, asset: Asset | None) -> str:
    """One line for a balance, as BALANCE answers it: ``BALANCE USD AVAILABLE 9999.990000 HELD 0.010000``."""
    return balance_line(balance.asset, *amounts(balance, asset))


class Own:
    """What the user's private feed has said: their order updates, as lines, and their balances.

    ``shown`` names the assets the view always lists (the watched instrument's base and quote),
    with no figures until the first ``Balances`` tells them.
    """

    def __init__(self, instruments: dict[str, Instrument], assets: dict[str, Asset], shown: list[str]):
        self.instruments, self.assets = instruments, assets
        self.updates: deque[str] = deque(maxlen=TRADES)
        self.balances: dict[str, Balance | None] = dict.fromkeys(shown)

    def take(self, data: PrivateData, now_ns: int) -> list[str]:
        """The plain lines for ``data`` (order updates at their ``ts_event``, changed balances at
        ``now_ns``: the ledger stamps none), remembering what the view shows."""
        lines = []
        for event in data.events:
            if isinstance(event, Balances):
                lines += [f"{to_iso(now_ns)} {describe_balance(b, self.assets.get(b.asset))}"
                          for b in self.changed(event)]
                continue
            for reply in replies_for_event(event, self.instruments.get(event.symbol)):
                line = f"{to_iso(event.ts_event)} MINE {format_reply(reply)}"
                self.updates.appendleft(line)
                lines.append(line)
        return lines

    def changed(self, balances: Balances) -> list[Balance]:
        """The balances of ``balances`` that differ from the last ones known, now known."""
        fresh = [b for b in balances.balances if self.balances.get(b.asset) != b]
        self.balances.update((b.asset, b) for b in fresh)
        return fresh

    def table(self) -> Table:
        table = Table(title="your balances")
        for column in ("asset", "available", "held"):
            table.add_column(column, justify="right")
        for name, balance in self.balances.items():
            table.add_row(name, *(amounts(balance, self.assets.get(name)) if balance else ("-", "-")))
        return table


class Watch:
    """Feeds plus what the view shows; ``step`` waits a little and returns new lines (plain mode)."""

    def __init__(self, config: Config, symbol: str, mine: PrivateFeed | None = None, notifier: str | None = None,
                 every_notifier: bool = False):
        """``notifier``: the name of the replica to watch through (None: the first notifier);
        ``every_notifier``: all of them at once, as A/B lines (see BookFeed)."""
        self.instruments = config.instrument_map()
        self.instrument = self.instruments[symbol]
        names = [None, *(r.name for r in config.notifier.replicas)] if every_notifier else [notifier]
        sections = [config.notifier.replica(name) for name in names]
        self.feed = BookFeed([s.publish for s in sections], [s.snapshots for s in sections], symbol)
        self.mine = mine
        terms = config.terms().get(symbol)  # None with accounts off: no balances to show
        self.own = Own(self.instruments, config.asset_map(), [terms.base.name, terms.quote.name] if terms else [])
        self.trades: deque[Trade] = deque(maxlen=TRADES)
        self.latency_ms: float | None = None
        self.resyncs = 0
        self.unsynced_since: float | None = time.monotonic()  # when the feed last lost (or had not yet) its book
        self.waiting_said = False

    def step(self, timeout: float = 0.2, with_depth: bool = False) -> list[str]:
        lines = []
        for event in self.feed.poll(timeout):
            if isinstance(event, Trade):
                self.trades.appendleft(event)
            self.latency_ms = (time.time_ns() - event.ts_event) / 1e6
            if with_depth or not isinstance(event, DepthUpdate):
                lines.append(f"{to_iso(event.ts_event)} {describe(event, self.instrument)}")
        if self.feed.resyncs > self.resyncs:
            self.resyncs = self.feed.resyncs
            lines.append(f"{to_iso(time.time_ns())} RESYNC {self.feed.symbol}: a gap or silence; book reloaded"
                         f" from a snapshot (re-syncs so far: {self.resyncs})")
        lines += self._waiting(time.monotonic())
        if self.mine is not None:
            while self.mine.sub.poll(0):
                lines += self.own.take(self.mine.receive(0), time.time_ns())
        return lines

    def _waiting(self, now: float) -> list[str]:
        """A line once the feed has had no book for WAITING_NOTE_S (none yet, or it lost it to silence
        or a gap and no snapshot has come since): the notifier may be down, and the book shown old."""
        if self.feed.synced:
            self.unsynced_since, self.waiting_said = None, False
            return []
        if self.unsynced_since is None:
            self.unsynced_since = now
        if self.waiting_said or now - self.unsynced_since < WAITING_NOTE_S:
            return []
        self.waiting_said = True
        endpoints = ", ".join(self.feed.snapshot_endpoints)
        return [f"{to_iso(time.time_ns())} WAITING {self.feed.symbol}: no book from the notifier for"
                f" {now - self.unsynced_since:.0f} s ({endpoints}); is it running? Still asking"]

    def render(self) -> Group:
        p, q = self.instrument.format_price, self.instrument.format_qty
        depth = self.feed.depth
        book = Table(title=f"{self.feed.symbol}", expand=False)
        for column in ("bid qty", "bid", "ask", "ask qty"):
            book.add_column(column, justify="right")
        bids, asks = depth.levels(Side.BUY, LEVELS), depth.levels(Side.SELL, LEVELS)
        for i in range(max(len(bids), len(asks), 1)):
            bid = bids[i] if i < len(bids) else None
            ask = asks[i] if i < len(asks) else None
            book.add_row(q(bid[1]) if bid else "", p(bid[0]) if bid else "",
                         p(ask[0]) if ask else "", q(ask[1]) if ask else "")
        trades = Table(title="last trades")
        for column in ("trade", "qty", "price", "taker"):
            trades.add_column(column, justify="right")
        for t in self.trades:
            trades.add_row(t.trade_id, q(t.qty), p(t.price), t.taker_side.value)
        seqs = " ".join(f"{channel} {seq}" for channel, seq in sorted(self.feed.chan_seq.items()))
        latency = f"{self.latency_ms:.1f} ms" if self.latency_ms is not None else "-"
        lines = f" | {len(self.feed.lines)} lines" if len(self.feed.lines) > 1 else ""
        health = (f"{'synced' if self.feed.synced else 'syncing'}{lines} | epoch {self.feed.epoch} | {seqs} |"
                  f" re-syncs {self.feed.resyncs} | last event {latency} after it happened")
        parts = [book, trades, health]
        if self.mine is not None:
            if self.own.balances:
                parts.append(self.own.table())
            parts += ["your orders:", *self.own.updates]
        return Group(*parts)

    def close(self) -> None:
        self.feed.close()
        if self.mine is not None:
            self.mine.close()


def run_plain(watch: Watch, emit: Callable[[str], None], stop: Callable[[], bool], depth: bool) -> None:
    while not stop():
        for line in watch.step(0.2, with_depth=depth):
            emit(line)


def run_live(watch: Watch, stop: Callable[[], bool]) -> None:
    with Live(watch.render(), auto_refresh=False) as live:
        while not stop():
            watch.step(0.1)
            live.update(watch.render(), refresh=True)
