"""The engine's replay ROUTER, with the role's own handlers on a real socket (ipc): snapshot
requests from starting notifiers and ReplayRequests from the journal writer are answered on the
matching loop, so what one turn does there, and what it holds, must stay bounded."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import zmq

from exchange.core.matching import Matcher
from exchange.core.messages import CancelAll, PlaceOrder
from exchange.core.orders import Side
from exchange.engine import role
from exchange.engine.batches import Engine
from exchange.engine.role import EngineProcess
from exchange.journal.readers import EnginePosition
from exchange.testing.mesh import toy_config
from exchange.wire import sockets
from exchange.wire.messages import (
    Decoder, Durable, EngineBook, EventBatch, ReplayRequest, Request, Requests, SnapshotRequest, encode,
)

CONFIG = toy_config()
INSTRUMENTS = [CONFIG.instrument_map()[s] for s in ("BTC-USD", "ETH-USD")]


def place(engine: Engine, orders: int, start: int = 0) -> None:
    """``orders`` resting bids on BTC-USD, in one batch."""
    engine.handle_requests([[encode([Request("gw", 1, n, PlaceOrder(f"u{n % 10}", "BTC-USD", Side.BUY, 1,
                                                                    1000 + n % 500))
                                     for n in range(start, start + orders)])]], Decoder(Requests))


class ReplaySocket:
    """An EngineProcess with only its replay ROUTER (bound on ipc in ``directory``), and DEALER peers."""

    def __init__(self, directory, engine: Engine):
        self.ctx = sockets.context()
        self.endpoint = f"ipc://{directory}/replay.ipc"
        self.process = process = EngineProcess.__new__(EngineProcess)
        process.engine = engine
        process.open_replay(self.ctx, self.endpoint, None)
        self.taken = 0  # requests the handler has read so far
        decode = process.engine_requests.decode

        def counted(frame):
            self.taken += 1
            return decode(frame)

        process.engine_requests = SimpleNamespace(decode=counted)
        self.peers: list[zmq.Socket] = []

    def peer(self, rcvhwm: int = 1000) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.connect(self.endpoint)
        self.peers.append(sock)
        return sock

    def turns(self, expected: int) -> None:
        """The loop's turns on this socket until the handler has read ``expected`` more requests (each
        turn reads at most MAX_ENGINE_REQUESTS_PER_TURN of those that have come)."""
        until, deadline = self.taken + expected, time.monotonic() + 10
        while self.taken < until:
            assert time.monotonic() < deadline, f"{until - self.taken} requests never came"
            if self.process.replay.poll(100):
                self.process.on_engine_requests()

    def close(self) -> None:
        for sock in self.peers:
            sock.close(linger=0)
        self.process.replay.close(linger=0)
        self.ctx.term()


@pytest.fixture
def replay_socket(tmp_path):
    made = []

    def make(engine: Engine) -> ReplaySocket:
        made.append(ReplaySocket(tmp_path, engine))
        return made[-1]

    yield make
    for each in made:
        each.close()


def received(peer: zmq.Socket, count: int) -> list[bytes]:
    """The next ``count`` answers to ``peer``, as they come."""
    frames, deadline = [], time.monotonic() + 10
    while len(frames) < count:
        assert time.monotonic() < deadline, f"{len(frames)} answers of {count}"
        if peer.poll(100):
            frames += [parts[-1] for parts in sockets.drain(peer)]
    return frames


def test_snapshot_requests_of_one_batch_walk_the_book_once_and_share_the_answer(replay_socket):
    """Defect: every SnapshotRequest walked and encoded the whole book again, so a burst of them (a
    notifier's restarts, several notifiers) for a large book kept the loop from matching for seconds."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    place(engine, 1_000)
    builds = []
    build = engine.book
    engine.book = lambda symbol: builds.append(symbol) or build(symbol)
    replay = replay_socket(engine)
    first, second = replay.peer(), replay.peer()
    for _ in range(30):
        first.send(encode(SnapshotRequest("BTC-USD")))
        second.send(encode(SnapshotRequest("BTC-USD")))
    second.send(encode(SnapshotRequest("ETH-USD")))
    replay.turns(61)
    assert builds == ["BTC-USD", "ETH-USD"]  # once per instrument
    answers = received(first, 30) + received(second, 31)
    assert len(answers) == 61 and len(set(answers)) == 2  # the very same frame for every requester
    assert Decoder(EngineBook).decode(answers[0]).batch == 1

    # the answer is of the batch it was asked at: a new batch, or a new watermark, builds it again
    place(engine, 1, start=1_000)
    first.send(encode(SnapshotRequest("BTC-USD")))
    replay.turns(1)
    engine.on_durable(Durable("e1", 1, 2, engine.matcher.seq))
    first.send(encode(SnapshotRequest("BTC-USD")))
    replay.turns(1)
    assert builds == ["BTC-USD", "ETH-USD", "BTC-USD", "BTC-USD"]
    books = [Decoder(EngineBook).decode(frame) for frame in received(first, 2)]
    assert [(b.batch, b.durable_batch, len(b.orders)) for b in books] == [(2, 0, 1_001), (2, 2, 1_001)]


def test_a_requester_that_reads_nothing_has_few_answers_queued_in_the_engine(replay_socket):
    """Defect: the ROUTER kept ZeroMQ's default high-water mark, a thousand answers per peer, each a
    whole book: a notifier that stopped reading made the engine hold a thousand books. Past the mark a
    send finds the peer's queue full (ROUTER_MANDATORY) and the answer is dropped; the notifier asks again."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    place(engine, 1_000)
    replay = replay_socket(engine)
    sent = []
    answer = replay.process.answer
    replay.process.answer = lambda envelope, frames: sent.append(answer(envelope, frames)) or sent[-1]
    stuck = replay.peer(rcvhwm=1)  # reads nothing, and holds next to nothing on its side
    for _ in range(300):
        stuck.send(encode(SnapshotRequest("BTC-USD")))
    replay.turns(300)  # five turns
    assert len(sent) == 300 and set(sent) <= {0, 1}  # never blocks: dropped, or queued
    assert sum(sent) <= role.ANSWERS_PER_PEER + 8, f"{sum(sent)} books queued for a peer that reads none"


def batches(engine: Engine, count: int) -> None:
    """``count`` batches, none of them durable (a journal writer that is behind)."""
    for n in range(count):
        engine.handle_requests([[encode([Request("gw", 1, n, CancelAll(f"u{n}", None, 1))])]], Decoder(Requests))


def test_replays_are_kept_one_per_requester_and_a_bounded_number_at_once(replay_socket, caplog):
    """Defect: a replay under way was kept per envelope (every frame but the last), with no limit: a
    peer that varied a leading frame left one per request, and each loop turn rebuilt the list of
    retained batches for every one of them."""
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    batches(engine, 300)
    replay = replay_socket(engine)
    stuck = replay.peer(rcvhwm=1)  # reads nothing
    for n in range(200):
        stuck.send_multipart([str(n).encode(), encode(ReplayRequest("e1", 1))])
    replay.turns(200)
    assert len(replay.process.replays) == 1  # one per requester (its routing id)

    others = [replay.peer(rcvhwm=1) for _ in range(20)]
    for other in others:
        other.send(encode(ReplayRequest("e1", 1)))
    replay.turns(20)
    assert len(replay.process.replays) == role.MAX_REPLAYS
    assert "dropped the oldest" in caplog.text


def test_a_replay_goes_on_from_where_it_stopped_until_the_last_batch(replay_socket):
    engine = Engine("e1", Matcher(1, INSTRUMENTS), 1, EnginePosition())
    batches(engine, 300)
    engine.on_durable(Durable("e1", 1, 20, 0))  # batches 1..20 are no longer retained
    replay = replay_socket(engine)
    writer = replay.peer(rcvhwm=1)
    writer.send(encode(ReplayRequest("e1", 5)))
    replay.turns(1)
    got = []
    for _ in range(1_000):  # the loop's turns, while the writer reads at its own pace
        got.extend(Decoder(EventBatch).decode(parts[-1]).batch for parts in sockets.drain(writer, 7))
        replay.process.resume_replays()
        if not replay.process.replays:
            break
        writer.poll(10)  # until something more has come to read
    got.extend(Decoder(EventBatch).decode(frame).batch for frame in received(writer, 280 - len(got)))
    assert got == list(range(21, 301)) and not replay.process.replays
