"""How a notifier follows an engine's released batches from the starts it is given (marketdata.following)."""

from __future__ import annotations

from exchange.marketdata.following import MAX_PENDING, EngineFollower, Start
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.publisher import ReleasedBook
from exchange.wire.messages import EventBatch

SYMBOLS = ["BTC-USD", "ETH-USD"]


def batch(n: int, epoch: int = 1) -> EventBatch:
    return EventBatch("e1", epoch, n, n, n - 1, [])


def from_notifier(symbol: str, at: int, epoch: int = 77) -> Start:
    return Start(ReleasedBook(LevelBook(symbol), None, 0), at, epoch, {"l2": at}, 0, True)


def from_engine(symbol: str, at: int, durable: int, engine_epoch: int = 1) -> Start:
    return Start(ReleasedBook(LevelBook(symbol), None, 0), at, 0, {}, engine_epoch, durable >= at)


def applied(step) -> list[tuple[int, frozenset | None]]:
    return [(b.batch, symbols) for b, symbols in step.apply]


def test_an_idle_engine_book_that_the_journal_holds_goes_live_at_once_and_then_each_batch_follows():
    follower = EngineFollower("e1", SYMBOLS)
    assert follower.missing() == SYMBOLS
    assert not follower.started("BTC-USD", from_engine("BTC-USD", 40, durable=40)).starts
    step = follower.started("ETH-USD", from_engine("ETH-USD", 40, durable=40))
    assert set(step.starts) == set(SYMBOLS) and step.apply == [] and follower.live and follower.last == 40
    assert follower.missing() == []
    new, step = follower.released(batch(41))
    assert new and applied(step) == [(41, None)]
    new, step = follower.released(batch(41))
    assert not new and not step.apply  # seen before
    assert not follower.released(batch(30))[0]  # the journal writer passes recent batches on again at a start


def test_an_engine_book_ahead_of_the_journal_waits_until_the_journal_has_released_it():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(41))
    for symbol in SYMBOLS:
        step = follower.started(symbol, from_engine(symbol, 43, durable=41))
    assert not follower.live and not step.starts
    assert not follower.released(batch(42))[1].starts
    new, step = follower.released(batch(43))  # the last batch the engine's book holds
    assert new and follower.live and set(step.starts) == set(SYMBOLS) and step.apply == []
    assert applied(follower.released(batch(44))[1]) == [(44, None)]


def test_each_instrument_gets_the_batches_after_its_own_start():
    follower = EngineFollower("e1", SYMBOLS)
    for n in (10, 11, 12):
        follower.released(batch(n))
    follower.started("BTC-USD", from_notifier("BTC-USD", 10))
    step = follower.started("ETH-USD", from_notifier("ETH-USD", 11))
    assert follower.live and follower.last == 12
    assert step.starts["BTC-USD"].epoch == 77 and step.starts["BTC-USD"].chan_seqs == {"l2": 10}
    assert applied(step) == [(11, frozenset({"BTC-USD"})), (12, frozenset(SYMBOLS))]


def test_a_start_from_another_notifier_ahead_of_what_came_here_waits_for_the_batches_on_their_way():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(10))
    follower.started("BTC-USD", from_notifier("BTC-USD", 9))
    assert not follower.started("ETH-USD", from_notifier("ETH-USD", 11)).starts  # 11 has not come here yet
    new, step = follower.released(batch(11))
    assert follower.live and applied(step) == [(10, frozenset({"BTC-USD"})), (11, frozenset({"BTC-USD"}))]


def test_a_start_older_than_the_batches_held_is_dropped_and_asked_for_again():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(20))  # 18 and 19 came before this notifier subscribed
    follower.started("ETH-USD", from_notifier("ETH-USD", 20))
    assert not follower.started("BTC-USD", from_notifier("BTC-USD", 17)).starts
    assert follower.missing() == ["BTC-USD"]
    step = follower.started("BTC-USD", from_notifier("BTC-USD", 20))
    assert follower.live and set(step.starts) == set(SYMBOLS) and step.apply == []


def test_starts_at_different_batches_with_nothing_held_are_asked_for_again():
    follower = EngineFollower("e1", SYMBOLS)
    follower.started("BTC-USD", from_notifier("BTC-USD", 5))
    assert not follower.started("ETH-USD", from_notifier("ETH-USD", 6)).starts  # 6 was released before we came
    assert follower.missing() == ["BTC-USD"]
    assert follower.started("BTC-USD", from_notifier("BTC-USD", 6)).starts


def test_an_engine_book_from_before_the_engine_restarted_is_never_used():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(40))
    follower.started("BTC-USD", from_engine("BTC-USD", 42, durable=40, engine_epoch=1))
    follower.started("ETH-USD", from_engine("ETH-USD", 42, durable=40, engine_epoch=1))
    # the engine died before 41 and 42 were written; its next start numbers its batches from 41 again
    follower.released(batch(41, epoch=2))
    assert follower.missing() == SYMBOLS
    follower.released(batch(42, epoch=2))
    assert not follower.live


def test_an_engine_book_after_a_restart_goes_live_over_the_older_epochs_batches_passed_on_again():
    """Defect (a rare start that never ended): a journal writer that starts passes on again the
    batches of the last seconds, here the engine's epoch 1; a notifier that took them in, then the
    restarted engine's book (epoch 2, which holds every batch the journal had), dropped that book as
    if the engine had restarted after it, asked again, and dropped the answer again, for ever."""
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(1))
    follower.released(batch(2))  # epoch 1's, passed on again at the journal writer's start
    follower.started("BTC-USD", from_engine("BTC-USD", 2, durable=2, engine_epoch=2))
    step = follower.started("ETH-USD", from_engine("ETH-USD", 2, durable=2, engine_epoch=2))
    assert follower.live and set(step.starts) == set(SYMBOLS) and step.apply == []
    assert applied(follower.released(batch(3, epoch=2))[1]) == [(3, None)]


def test_a_gap_while_live_stops_the_instruments_and_starts_over():
    follower = EngineFollower("e1", SYMBOLS)
    for symbol in SYMBOLS:
        follower.started(symbol, from_engine(symbol, 3, durable=3))
    assert follower.live
    new, step = follower.released(batch(6))  # 4 and 5 were lost on the way
    assert new and step.stopped and not follower.live and follower.restarts == 1
    assert follower.missing() == SYMBOLS
    for symbol in SYMBOLS:
        step = follower.started(symbol, from_notifier(symbol, 5))
    assert follower.live and applied(step) == [(6, frozenset(SYMBOLS))]


def test_a_gap_while_gathering_starts_keeps_only_the_released_starts():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(10))
    follower.started("BTC-USD", from_notifier("BTC-USD", 10))
    follower.started("ETH-USD", from_engine("ETH-USD", 12, durable=10))
    follower.released(batch(13))  # 11 and 12 lost: the engine's book can no longer be checked
    assert follower.missing() == ["ETH-USD"]


def test_the_batches_held_while_gathering_are_bounded():
    follower = EngineFollower("e1", SYMBOLS)
    for n in range(1, MAX_PENDING + 10):
        follower.released(batch(n))
    assert len(follower.pending) <= MAX_PENDING


def test_an_engine_book_whose_batches_went_by_unseen_is_released_by_the_journals_watermark():
    follower = EngineFollower("e1", SYMBOLS)
    for symbol in SYMBOLS:
        follower.started(symbol, from_engine(symbol, 5, durable=4, engine_epoch=2))
    # batch 5 was released before this notifier listened; the watermark, repeated, says it is written
    assert not follower.durable(1, 5).starts  # another epoch's watermark says nothing of this book
    assert not follower.durable(2, 4).starts
    step = follower.durable(2, 5)
    assert follower.live and set(step.starts) == set(SYMBOLS) and follower.last == 5
    assert applied(follower.released(batch(6, epoch=2))[1]) == [(6, None)]


def test_a_start_that_continues_a_numbering_is_kept_over_a_new_one_and_the_older_numbering_over_a_newer():
    follower = EngineFollower("e1", SYMBOLS)
    follower.released(batch(10))
    follower.started("ETH-USD", from_notifier("ETH-USD", 10, epoch=60))
    follower.started("ETH-USD", from_notifier("ETH-USD", 10, epoch=40))  # an older numbering: taken
    follower.started("ETH-USD", from_engine("ETH-USD", 10, durable=10))  # would begin a numbering: ignored
    follower.started("ETH-USD", from_notifier("ETH-USD", 10, epoch=50))  # a newer numbering: ignored
    assert not follower.live
    step = follower.started("BTC-USD", from_notifier("BTC-USD", 10, epoch=50))
    assert follower.live and step.starts["BTC-USD"].epoch == 50 and step.starts["ETH-USD"].epoch == 40


def test_starting_over_stops_the_instruments_and_continues_the_numbering_it_is_given_next():
    follower = EngineFollower("e1", SYMBOLS)
    for symbol in SYMBOLS:
        follower.started(symbol, from_engine(symbol, 3, durable=3))  # a numbering of its own
    assert not EngineFollower("e1", SYMBOLS).start_over().stopped  # not live: nothing to stop
    step = follower.start_over()  # another notifier numbers them in an older numbering
    assert step.stopped and not follower.live and follower.restarts == 1 and follower.missing() == SYMBOLS
    assert not follower.start_over().stopped  # once
    follower.released(batch(4))
    for symbol in SYMBOLS:
        step = follower.started(symbol, from_notifier(symbol, 4, epoch=9))
    assert follower.live and step.apply == [] and {s.epoch for s in step.starts.values()} == {9}
    assert applied(follower.released(batch(5))[1]) == [(5, None)]
