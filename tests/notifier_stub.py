"""A Notifier without its sockets or threads, around a real publisher and follower: for tests of what
it does with released batches and with its siblings' and engines' answers (on_released, on_start)."""

from __future__ import annotations

from collections import Counter

from exchange.marketdata.following import EngineFollower
from exchange.marketdata.notifier import Notifier
from exchange.marketdata.publisher import Publisher
from exchange.wire.messages import Decoder, Durable, EngineBookReply, EventBatch, SnapshotReply, Trades, TradesRefused


class Sink:
    """A socket that keeps what is sent on it."""

    def __init__(self):
        self.sent = []

    def send_multipart(self, parts, *_):
        self.sent.append(parts)


def stub_notifier(engine: str, symbol: str = "AAPL") -> Notifier:
    """A notifier of one engine trading ``symbol``, following it since time 0; its public and private
    sockets are Sinks."""
    n = object.__new__(Notifier)
    n.publisher = Publisher({symbol: engine})
    n.followers = {engine: EngineFollower(engine, [symbol])}
    n.following_since, n.asked, n.reported = {engine: 0.0}, {engine: 0.0}, True
    n.public, n.private = Sink(), Sink()
    n.lanes, n.published, n.forwarded = [n.public], Counter(), 0
    n.batches, n.durables = Decoder(EventBatch), Decoder(Durable)
    n.sibling_answers, n.engine_books = Decoder(SnapshotReply | Trades | TradesRefused), Decoder(EngineBookReply)
    return n
