"""A notifier's recent trades (its answers to TradesRequest) have no hole below the chan_seq they
claim: the trades of the batches it held while it gathered its start are remembered too."""

from exchange.core.messages import PlaceOrder, Trade
from exchange.core.orders import Side
from exchange.marketdata.notifier import Notifier
from exchange.wire.messages import BookSnapshot, Entry, EventBatch, encode
from notifier_stub import stub_notifier


def notifier() -> Notifier:
    return stub_notifier("e1")


def trade(seq):
    return Trade(seq, seq, "AAPL", f"1-{seq}", 100, 1, Side.BUY)


def batch(number, seq):
    entry = Entry("gw", 1, number, PlaceOrder("bob", "AAPL", Side.BUY, 1, 100), [trade(seq)])
    return [b"released", encode(EventBatch("e1", 1, number, seq, seq, [entry]))]


def test_a_trades_answer_holds_the_trades_of_batches_released_while_the_notifier_started():
    """Batch 2 is released while the notifier waits for a sibling's book (so it is held, then found
    already in that book); its trade used to be left out of every later answer."""
    n = notifier()
    n.publisher.remember(trade(10))  # what the journal's history held at start: batch 1
    n.on_released(batch(2, 20), now=0.0)  # released while the notifier gathers its start: held
    # the sibling's book holds batch 2: 2 trades so far on its "trade" channel
    snapshot = BookSnapshot("AAPL", 7, 20, {"trade": 2, "bbo": 0, "l2": 0, "l3": 0}, [], [], None, trade(20),
                            [], batch=2)
    n.on_start(encode(snapshot), n.sibling_answers, now=0.0)
    assert n.followers["e1"].live
    n.on_released(batch(3, 30), now=0.0)  # live: published as trade chan_seq 3
    answer = n.publisher.trades("AAPL", 0, now_ns=100)[0]
    assert answer.chan_seq == 3
    assert [t.seq for t in answer.trades] == [10, 20, 30]
