"""A notifier that goes live from a book ahead of the batches that have reached it (a sibling's
BookSnapshot, or an EngineBook, at a batch still on its way here) counts those batches as new when
they come: their private order events go to their users and their trades join the recent trades,
but they are not applied to the books again nor published again (the book's start holds them).
Only a batch at or below the highest one received is a repeat.

The notifier is stubbed around its publisher and followers (notifier_stub)."""

from exchange.core.messages import OrderAccepted, PlaceOrder, Trade
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.following import EngineFollower, Start
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.notifier import Notifier
from exchange.marketdata.publisher import ReleasedBook
from exchange.wire.messages import BookSnapshot, Decoder, EngineBook, Entry, EventBatch, MarketData, PrivateData, encode
from notifier_stub import stub_notifier




def notifier() -> Notifier:
    return stub_notifier("e1")


def trade(seq):
    return Trade(seq, seq, "AAPL", f"1-{seq}", 100, 1, Side.BUY)


def accepted(seq, user):
    """A bid of 1 at 90 that rests (order id 1-<seq>)."""
    return OrderAccepted(seq, seq, "AAPL", f"1-{seq}", user, Side.BUY, 1, 90, TimeInForce.GTC,
                         SelfTradePrevention.CANCEL_NEWEST)


def batch(number, seq, user):
    """Batch ``number`` of e1: ``user``'s bid 1-<seq - 1> rests, and trade <seq>."""
    entry = Entry("gw", 1, number, PlaceOrder(user, "AAPL", Side.BUY, 1, 90), [accepted(seq - 1, user), trade(seq)])
    return [b"released", encode(EventBatch("e1", 1, number, seq - 1, seq, [entry]))]


# the book as of batch 2: the bids of batches 1 and 2 rest, two trades so far
AT_BATCH_2 = [("1-9", Side.BUY, 90, 1), ("1-19", Side.BUY, 90, 1)]


def sibling_start(n: Notifier) -> None:
    """A sibling's book at batch 2 (two trades on its "trade" channel), before batch 2 reached ``n``."""
    snapshot = BookSnapshot("AAPL", 7, 20, {"trade": 2, "bbo": 1, "l2": 2, "l3": 2}, [(90, 2)], [], None, trade(20),
                            AT_BATCH_2, batch=2)
    n.on_start(encode(snapshot), n.sibling_answers, now=0.0)


def engine_start(n: Notifier) -> None:
    """The engine's book at batch 2, which the journal holds, before batch 2 reached ``n``."""
    book = EngineBook("AAPL", engine_epoch=1, batch=2, durable_batch=2, seq=20, orders=AT_BATCH_2,
                      last_trade=trade(20))
    n.on_start(encode(book), n.engine_books, now=0.0)


def private_users(n: Notifier) -> list[str]:
    return [Decoder(PrivateData).decode(parts[-1]).user for parts in n.private.sent]


def published(n: Notifier) -> list[tuple[str, int]]:
    """(channel, chan_seq) of each public message sent."""
    return [(m.channel, m.chan_seq) for m in (Decoder(MarketData).decode(parts[-1]) for parts in n.public.sent)]


def check_batches_on_their_way_count_once(n: Notifier, trade_chan_seq_at_start: int) -> None:
    assert n.followers["e1"].live
    n.publisher.remember(trade(10))  # batch 1: in the journal's history when the notifier started
    n.on_released(batch(2, 20, user="carol"), now=0.0)  # on its way when the start went live
    # in the book already: not applied again (the bid would count twice), not published again
    assert n.publisher.snapshot("AAPL").bids == [(90, 2)] and published(n) == []
    n.on_released(batch(3, 30, user="dave"), now=0.0)
    assert n.publisher.snapshot("AAPL").bids == [(90, 3)]
    assert ("trade", trade_chan_seq_at_start + 1) in published(n) and len(published(n)) == 4  # one per channel
    answer = n.publisher.trades("AAPL", 0, now_ns=100)[0]
    assert answer.chan_seq == trade_chan_seq_at_start + 1
    assert [t.seq for t in answer.trades] == [10, 20, 30]  # no hole below the chan_seq claimed
    assert private_users(n) == ["carol", "dave"]  # carol's order was accepted in batch 2


def test_batches_on_their_way_when_a_siblings_start_goes_live_count_once():
    n = notifier()
    sibling_start(n)
    check_batches_on_their_way_count_once(n, trade_chan_seq_at_start=2)


def test_batches_on_their_way_when_an_engines_start_goes_live_count_once():
    n = notifier()
    engine_start(n)
    check_batches_on_their_way_count_once(n, trade_chan_seq_at_start=0)  # a new numbering


def test_a_batch_at_or_below_the_highest_received_is_still_a_repeat():
    n = notifier()
    sibling_start(n)
    n.on_released(batch(2, 20, user="carol"), now=0.0)
    n.on_released(batch(2, 20, user="carol"), now=0.0)  # the journal writer passes recent batches on again
    n.on_released(batch(3, 30, user="dave"), now=0.0)
    sent = len(n.public.sent)
    n.on_released(batch(2, 20, user="carol"), now=0.0)
    n.on_released(batch(3, 30, user="dave"), now=0.0)
    assert private_users(n) == ["carol", "dave"] and len(n.public.sent) == sent
    assert n.publisher.snapshot("AAPL").bids == [(90, 3)]


def test_the_follower_counts_batches_up_to_its_start_as_new_without_applying_them():
    follower = EngineFollower("e1", ["AAPL"])
    follower.released(EventBatch("e1", 1, 1, 1, 1, []))
    step = follower.started("AAPL", Start(ReleasedBook(LevelBook("AAPL"), None, 0), 3, 7, {}, 0, True))
    assert follower.live and follower.last == 3 and step.apply == []
    for number in (2, 3):  # on their way: new, but in the book already
        new, step = follower.released(EventBatch("e1", 1, number, number, number, []))
        assert new and step.apply == [] and not step.stopped
    assert not follower.released(EventBatch("e1", 1, 3, 3, 3, []))[0]  # a repeat
    new, step = follower.released(EventBatch("e1", 1, 4, 4, 4, []))
    assert new and [b.batch for b, _ in step.apply] == [4] and follower.last == 4
    new, step = follower.released(EventBatch("e1", 1, 6, 6, 6, []))  # 5 lost on the way
    assert new and step.stopped and not follower.live
