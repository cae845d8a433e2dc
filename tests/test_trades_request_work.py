"""What a TradesRequest costs the notifier's loop: the recent trades read to answer it. An answer
reads only the trades from the first at or after its since_ns on, and a turn is charged for the
trades it reads, so TRADES_ANSWERED_PER_TURN bounds the work of a turn, not only what its answers
hold: a flood of requests whose answers hold nothing (a since_ns in the future, or the NO_TRADES
numbering check the notifiers send each other) once read every recent trade, for each request."""

from __future__ import annotations

import time
from collections import deque

import zmq

from exchange.core.messages import Trade
from exchange.core.orders import Side
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.notifier import MAX_REQUESTS_PER_TURN, NO_TRADES, TRADES_ANSWERED_PER_TURN, Notifier
from exchange.marketdata.publisher import MAX_RECENT_TRADES, Publisher, ReleasedBook
from exchange.wire.messages import Decoder, Trades, TradesRefused, TradesRequest, encode

HOUR_NS = 3_600 * 10**9


class CountingDeque(deque):
    """Recent trades that count every trade read out of them, however it is read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scanned = 0

    def __iter__(self):
        for item in super().__iter__():
            self.scanned += 1
            yield item

    def __reversed__(self):
        for item in super().__reversed__():
            self.scanned += 1
            yield item

    def __getitem__(self, index):
        self.scanned += 1
        return super().__getitem__(index)


class Requests:
    """The snapshots ROUTER as answer_requests sees it: the requests waiting, the answers sent."""

    def __init__(self, requests: list[TradesRequest]):
        self.waiting = deque([b"client", encode(request)] for request in requests)
        self.answers: list[bytes] = []

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.waiting:
            raise zmq.Again()
        return self.waiting.popleft()

    def send_multipart(self, parts: list[bytes], flags: int = 0, copy: bool = True) -> None:
        self.answers.append(parts[1])


def publisher_with(trades) -> tuple[Publisher, CountingDeque]:
    publisher = Publisher({"AAPL": "e2"})
    publisher.load("AAPL", ReleasedBook(LevelBook("AAPL"), None, 0), batch=1, epoch=1, chan_seqs={}, now=0.0)
    recent = publisher.recent["AAPL"] = CountingDeque(maxlen=MAX_RECENT_TRADES)
    for trade in trades:
        publisher.remember(trade)
    recent.scanned = 0
    return publisher, recent


def trade(seq: int, ts: int) -> Trade:
    return Trade(seq, ts, "AAPL", f"2-{seq}", 100, 1, Side.BUY)


def one_clock(now: int, count: int = MAX_RECENT_TRADES) -> list[Trade]:
    return [trade(n + 1, now + n) for n in range(count)]


def two_clocks(now: int, count: int = MAX_RECENT_TRADES) -> list[Trade]:
    """Trades in seq order whose commands came through two gateways, every other one through a gateway
    whose clock is an hour behind: their ts_event go back and forth."""
    return [trade(n + 1, now + n - (HOUR_NS if n % 2 else 0)) for n in range(count)]


def notifier_of(publisher: Publisher, requests: list[TradesRequest]) -> Notifier:
    notifier = object.__new__(Notifier)
    notifier.snapshots, notifier.publisher, notifier.malformed = Requests(requests), publisher, 0
    return notifier


def test_a_turn_of_empty_trades_answers_reads_no_more_trades_than_the_budget():
    now = time.time_ns()
    publisher, recent = publisher_with(one_clock(now))
    past_the_newest = now + MAX_RECENT_TRADES
    requests = [TradesRequest("AAPL", since) for since in (NO_TRADES, past_the_newest)
                for _ in range(MAX_REQUESTS_PER_TURN // 2)]
    notifier = notifier_of(publisher, requests)
    answered, scanned = notifier.answer_requests(), recent.scanned
    # the budget: TRADES_ANSWERED_PER_TURN trades, plus the one request that goes past it
    assert scanned <= TRADES_ANSWERED_PER_TURN + MAX_RECENT_TRADES, f"{answered} empty answers read {scanned} trades"
    assert answered == MAX_REQUESTS_PER_TURN
    assert all(Decoder(Trades).decode(answer).trades == [] for answer in notifier.snapshots.answers)


def test_an_answer_reads_only_the_trades_it_holds():
    now = time.time_ns()
    publisher, recent = publisher_with(one_clock(now))
    answer = publisher.trades("AAPL", now + MAX_RECENT_TRADES - 10, time.time_ns())[0]
    scanned = recent.scanned
    assert [t.seq for t in answer.trades] == list(range(MAX_RECENT_TRADES - 9, MAX_RECENT_TRADES + 1))
    assert scanned == 10


def test_an_answer_holds_every_trade_at_or_after_since_though_the_gateways_clocks_disagree():
    """ts_event is the time a gateway received the command, so the recent trades (kept in seq order)
    are not in ts_event order: a trade at or after since_ns may come before one that is not."""
    now = time.time_ns()
    remembered = two_clocks(now, MAX_RECENT_TRADES + 500)  # the first 500 are no longer kept
    publisher, _ = publisher_with(remembered)
    kept = remembered[-MAX_RECENT_TRADES:]
    for since in (0, now - HOUR_NS, now - HOUR_NS + 501, now - HOUR_NS + 3_000, now, now + 501, now + 777,
                  now + MAX_RECENT_TRADES + 499, now + MAX_RECENT_TRADES + 500):
        answer = publisher.trades("AAPL", since, now)[0]
        assert answer.trades == [t for t in kept if t.ts_event >= since], since


def test_a_turn_is_charged_for_the_trades_it_reads_not_only_those_it_answers():
    """With one gateway's clock an hour behind, an answer since ``now`` holds half the trades it reads
    (every other one is older than it says): the turn still stops at TRADES_ANSWERED_PER_TURN read."""
    now = time.time_ns()
    publisher, recent = publisher_with(two_clocks(now))
    notifier = notifier_of(publisher, [TradesRequest("AAPL", now)] * 40)
    answered, scanned = notifier.answer_requests(), recent.scanned
    assert scanned <= TRADES_ANSWERED_PER_TURN + MAX_RECENT_TRADES, f"{answered} answers read {scanned} trades"
    answers = [Decoder(Trades).decode(answer) for answer in notifier.snapshots.answers]
    assert all(len(answer.trades) == MAX_RECENT_TRADES // 2 for answer in answers)


def test_a_trades_request_that_gets_no_trades_is_refused_with_a_tag_of_its_own():
    """It was answered SnapshotRefused: a client that asked for a snapshot and the trades of one symbol
    at once could not tell which was refused."""
    publisher = Publisher({"AAPL": "e2"})
    refused, read = publisher.trades("DOGE-USD", 0, time.time_ns())
    assert (refused, read) == (TradesRefused("DOGE-USD", "no instrument DOGE-USD"), 0)
    not_ready, _ = publisher.trades("AAPL", 0, time.time_ns())  # its books not taken yet
    assert type(not_ready) is TradesRefused and "try again" in not_ready.reason
    assert type(publisher.snapshot("DOGE-USD")).__name__ == "SnapshotRefused"
