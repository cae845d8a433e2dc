#!/usr/bin/env python3
"""A client of the exchange written from docs/wire.md alone: pyzmq and msgpack, nothing else.

1. asks the notifier for the instruments (tick and lot sizes, limits);
2. subscribes to one symbol's market data, takes a snapshot and applies the deltas after it by
   the rules of docs/market-data.md, printing the book in decimal text;
3. logs in over ZMQ order entry (a gateway with ``zmq_auth: login``), places a limit order,
   watches it reach the book, cancels it and watches it leave.

    pip install pyzmq msgpack
    scripts/run                                  # the demo mesh of configs/local.yaml
    python examples/feed_client.py --symbol BTC-USD --side BUY --qty 0.5 --price 42000

Copy it freely. Every wait has a deadline, so it never hangs: it exits 1 with a message instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal

import msgpack
import zmq

CHANNELS = ("trade", "bbo", "l2")
INSTRUMENT_FIELDS = ("symbol", "tick_size", "lot_size", "min_qty", "max_qty", "max_price", "price_band",
                     "reference_price", "max_notional", "max_open_orders", "stp_default")
PUSHED = ("Fill", "Out", "Reduced")  # order entry messages that answer no request
SILENCE_S = 3.0  # no market data (not even a heartbeat) for this long: re-sync


class Instrument:
    """One element of ``Instruments``: fields by position; fields added later are ignored."""

    def __init__(self, fields: list):
        for name, value in zip(INSTRUMENT_FIELDS, fields):
            setattr(self, name, value)
        self.tick, self.lot = Decimal(self.tick_size), Decimal(self.lot_size)

    def price(self, ticks: int) -> str:
        return str((ticks * self.tick).quantize(self.tick))

    def qty(self, lots: int) -> str:
        return str((lots * self.lot).quantize(self.lot))

    def ticks(self, price: str) -> int:
        return int(Decimal(price) / self.tick)


def ask(ctx: zmq.Context, endpoint: str, request: list, timeout: float) -> list:
    """One request to the notifier's snapshots endpoint, from a fresh DEALER; its answer."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send(msgpack.packb(request))
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no answer from {endpoint} to {request[0]}")
        return msgpack.unpackb(sock.recv())
    finally:
        sock.close()


def instruments(ctx: zmq.Context, snapshots: str, timeout: float = 5.0) -> dict[str, Instrument]:
    answer = ask(ctx, snapshots, ["InstrumentsRequest"], timeout)
    if answer[0] != "Instruments":
        raise RuntimeError(f"instruments refused: {answer}")
    return {fields[0]: Instrument(fields) for fields in answer[1]}


class Book:
    """One instrument's book from a BookSnapshot and the MarketData after it (prices in ticks, qty in lots)."""

    def __init__(self, snapshot: list):
        _tag, self.symbol, self.epoch, self.seq, self.chan_seqs, bids, asks, self.top, self.last_trade = snapshot[:9]
        self.bids, self.asks = dict(map(tuple, bids)), dict(map(tuple, asks))

    def apply(self, message: list) -> bool:
        """Apply one MarketData in sequence; False if it shows a gap or a new epoch (re-sync)."""
        _symbol, channel, epoch, chan_seq, events = message[:5]
        if epoch != self.epoch:
            return epoch < self.epoch  # older: stale; newer: the engine restarted
        last = self.chan_seqs[channel]
        if chan_seq <= last:
            return True  # already in the snapshot (or a heartbeat: nothing new)
        if chan_seq > last + 1 or not events:
            return False  # missed a message (a heartbeat ahead of us says so too)
        self.chan_seqs[channel] = chan_seq
        for event in events:
            match event[0]:
                case "DepthUpdate":
                    side, price, qty = event[4:7]
                    levels = self.bids if side == "BUY" else self.asks
                    if qty:
                        levels[price] = qty
                    else:
                        levels.pop(price, None)
                case "TopOfBook":
                    self.top = event
                case "Trade":
                    self.last_trade = event
            self.seq = max(self.seq, event[1])
        return True

    def levels(self, side: str) -> list[tuple[int, int]]:
        """(price, qty) of one side, best first."""
        levels = self.bids if side == "BUY" else self.asks
        return sorted(levels.items(), reverse=side == "BUY")

    def render(self, instrument: Instrument, depth: int = 5) -> str:
        lines = [f"{self.symbol} epoch {self.epoch} seq {self.seq}"]
        for price, qty in reversed(self.levels("SELL")[:depth]):
            lines.append(f"{'':>16} {instrument.price(price):>14} {instrument.qty(qty)}")
        for price, qty in self.levels("BUY")[:depth]:
            lines.append(f"{instrument.qty(qty):>16} {instrument.price(price):>14}")
        if not self.bids and not self.asks:
            lines.append("(no orders)")
        if self.last_trade is not None:
            _, _seq, _ts, _symbol, trade_id, price, qty, taker_side = self.last_trade[:8]
            lines.append(f"last trade {trade_id}: {instrument.qty(qty)} @ {instrument.price(price)}"
                         f" ({taker_side} taker)")
        return "\n".join(lines)


class Feed:
    """A live book of one symbol: subscribe, buffer, snapshot, drop what it covers, apply the rest."""

    def __init__(self, ctx: zmq.Context, publish: str, snapshots: str, symbol: str):
        self.ctx, self.snapshots, self.symbol = ctx, snapshots, symbol
        self.sub = ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.rcvhwm = 100_000  # deep, so a briefly busy client catches up instead of re-syncing
        for channel in CHANNELS:
            self.sub.subscribe(f"md.{symbol}.{channel}|".encode())
        self.sub.connect(publish)
        self.book: Book | None = None
        self.messages = 0  # MarketData messages decoded
        self.resyncs = 0
        self.last_heard = time.monotonic()

    def sync(self, timeout: float = 10.0) -> Book:
        """Take a snapshot, drop the buffered messages it covers and apply the rest (steps 1-3 of
        docs/market-data.md); again while what follows the snapshot shows a gap."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot, buffered = self._snapshot(deadline)
            self.book = Book(snapshot)
            self.last_heard = time.monotonic()
            if all(self.book.apply(message) for message in buffered + self._drain()):
                return self.book
            self.resyncs += 1

    def _snapshot(self, deadline: float) -> tuple[list, list[list]]:
        """A BookSnapshot, and the MarketData that arrived while it was on its way."""
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(self.snapshots)
        buffered = []
        try:
            dealer.send(msgpack.packb(["SnapshotRequest", self.symbol]))
            while (left := deadline - time.monotonic()) > 0:
                ready = dict(_poll((self.sub, dealer), left))
                if self.sub in ready:
                    buffered += self._drain()
                if dealer in ready:
                    answer = msgpack.unpackb(dealer.recv())
                    if answer[0] == "BookSnapshot":
                        return answer, buffered
                    if answer[0] != "SnapshotRefused" or "try again" not in answer[2]:
                        raise RuntimeError(f"snapshot refused: {answer}")
                    time.sleep(0.5)  # too many requests at the notifier right now
                    dealer.send(msgpack.packb(["SnapshotRequest", self.symbol]))
            raise TimeoutError(f"no snapshot of {self.symbol} from {self.snapshots}")
        finally:
            dealer.close()

    def poll(self, timeout: float) -> None:
        """Apply what arrives within ``timeout`` s; re-sync on a gap, a new epoch or a silence."""
        if self.sub.poll(int(timeout * 1000)):
            self.last_heard = time.monotonic()
            if all(self.book.apply(message) for message in self._drain()):
                return
        elif time.monotonic() - self.last_heard < SILENCE_S:
            return  # every channel sends a heartbeat each second: quiet for longer means we lost the feed
        self.resyncs += 1
        self.sync()

    def _drain(self) -> list[list]:
        """Every MarketData waiting on the SUB socket: [topic, MarketData] messages."""
        messages = []
        while True:
            try:
                _topic, body = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self.messages += len(messages)
                return messages
            messages.append(msgpack.unpackb(body))

    def close(self) -> None:
        self.sub.close()


def _poll(sockets, timeout: float) -> list:
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    return poller.poll(int(timeout * 1000))


class OrderEntry:
    """A ZMQ order entry session: a DEALER sending msgpack maps, each answered by one reply map."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.pushed: list[dict] = []  # Fill, Out and Reduced messages that came meanwhile

    def request(self, request: dict, canceling: str | None = None) -> dict:
        """Send one request; return its reply. The reply to a cancel of ``canceling`` is its Out."""
        self.sock.send(msgpack.packb(request))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise TimeoutError(f"no reply to {request['type']}")
            reply = msgpack.unpackb(self.sock.recv())
            if reply["type"] == "Out" and reply["order_id"] == canceling and reply["status"] == "CANCELED":
                return reply
            if reply["type"] not in PUSHED:
                return reply
            self.pushed.append(reply)

    def close(self) -> None:
        self.sock.close()


def wait_for_level(feed: Feed, side: str, price: int, qty: int, timeout: float) -> None:
    """Apply the feed until the book holds ``qty`` lots at ``price`` on ``side`` (0: no level)."""
    deadline = time.monotonic() + timeout
    while dict(feed.book.levels(side)).get(price, 0) != qty:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the feed never showed {qty} lots at {price} ticks on the {side} side")
        feed.poll(min(left, 0.2))


def default_price(book: Book, instrument: Instrument, side: str) -> int:
    """A price that rests without trading and inside the price band: the best price of our side,
    else halfway from the reference (the last trade, or the instrument's reference price) to the
    band's edge (10 % away without a band), else the far end of the grid."""
    ours = book.levels(side)
    if ours:
        return ours[0][0]
    if book.last_trade is not None:
        reference = book.last_trade[5]
    elif instrument.reference_price is not None:
        reference = instrument.ticks(instrument.reference_price)
    else:
        return 1 if side == "BUY" else instrument.ticks(instrument.max_price)
    away = int(reference * Decimal(instrument.price_band or 20) / 200)
    return reference - away if side == "BUY" else reference + away


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publish", default="tcp://127.0.0.1:7003", help="the notifier's market data (XPUB)")
    parser.add_argument("--snapshots", default="tcp://127.0.0.1:7005", help="the notifier's snapshots (ROUTER)")
    parser.add_argument("--order-entry", default="tcp://127.0.0.1:7002", help="the gateway's ZMQ order entry")
    parser.add_argument("--symbol", default="BTC-USD")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--key", default="alice-key", help="the user's API key (demo users: <user>-key)")
    parser.add_argument("--side", choices=("BUY", "SELL"), default="BUY")
    parser.add_argument("--qty", help="decimal text (default: the instrument's min_qty)")
    parser.add_argument("--price", help="decimal text (default: the best price of our side, so it rests)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for anything")
    args = parser.parse_args(argv)

    ctx = zmq.Context()
    feed = session = None
    try:
        known = instruments(ctx, args.snapshots, args.timeout)
        for i in known.values():
            print(f"instrument {i.symbol}: tick {i.tick_size} lot {i.lot_size} qty {i.min_qty}..{i.max_qty}"
                  f" price up to {i.max_price} band {i.price_band or '-'}%")
        instrument = known.get(args.symbol)
        if instrument is None:
            print(f"no instrument {args.symbol}", file=sys.stderr)
            return 1

        feed = Feed(ctx, args.publish, args.snapshots, args.symbol)
        book = feed.sync(args.timeout)
        print(f"snapshot chan_seqs {book.chan_seqs}")
        print(book.render(instrument))

        qty = args.qty or instrument.min_qty
        price = args.price or instrument.price(default_price(book, instrument, args.side))
        ticks, lots = instrument.ticks(price), int(Decimal(qty) / instrument.lot)
        before = dict(book.levels(args.side)).get(ticks, 0)

        session = OrderEntry(ctx, args.order_entry, args.timeout)
        login = session.request({"type": "LoginRequest", "user": args.user, "key": args.key})
        print("login:", login)
        if login["type"] != "LoginOk":
            return 1
        ack = session.request({"type": "PlaceRequest", "side": args.side, "symbol": args.symbol, "qty": qty,
                               "price": price, "tif": "POST", "client_order_id": f"example-{time.time_ns()}"})
        print("place:", ack)
        if ack["type"] != "Ack":
            return 1
        wait_for_level(feed, args.side, ticks, before + lots, args.timeout)
        print(feed.book.render(instrument))
        out = session.request({"type": "CancelRequest", "order_id": ack["order_id"]}, canceling=ack["order_id"])
        print("cancel:", out)
        if out["type"] != "Out":
            return 1
        wait_for_level(feed, args.side, ticks, before, args.timeout)
        print(feed.book.render(instrument))
        print(f"feed: {feed.messages} messages decoded, {feed.resyncs} re-syncs")
        return 0
    except (TimeoutError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for closable in (feed, session):
            if closable is not None:
                closable.close()
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
