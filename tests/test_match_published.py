"""A Match (one event per match inside the mesh) reaches subscribers as the events they always had:
the public Trade, and each side's own OrderFilled on its private topic. A notifier catching up over
a journal from before Match (two fills and a trade per match) publishes the same messages."""

from __future__ import annotations

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import Match, OrderFilled, PlaceOrder, Trade, expand
from exchange.core.orders import Side
from exchange.marketdata.levels import LevelBook
from exchange.marketdata.publisher import Publisher, ReleasedBook
from exchange.wire.messages import Decoder, MarketData, PrivateData

AAPL = Instrument("AAPL", tick_size="0.01", lot_size="1")


def trading_session() -> list[list]:
    """One command's events per list: carol and dave rest asks, bob buys through both."""
    matcher = Matcher(2, [AAPL])
    commands = [PlaceOrder("carol", "AAPL", Side.SELL, 3, 18000, client_order_id="c1"),
                PlaceOrder("dave", "AAPL", Side.SELL, 4, 18001),
                PlaceOrder("bob", "AAPL", Side.BUY, 5, 18001, client_order_id="b1")]
    return [matcher.handle(command) for command in commands]


def published(released: list[list]) -> tuple[list, list]:
    """(market data messages, private messages) a fresh notifier makes of one released batch."""
    publisher = Publisher({"AAPL": "e2"})
    publisher.load("AAPL", ReleasedBook(LevelBook("AAPL"), None, 0), batch=0, epoch=1, chan_seqs={}, now=0.0)
    public = [Decoder(MarketData).decode(body) for _, body in publisher.market_data("e2", 1, released, now=0.0)]
    events = [event for command in released for event in command]
    private = [Decoder(PrivateData).decode(body) for _, body in publisher.private("e2", 1, events)]
    return public, private


def test_each_side_hears_its_own_fill_and_the_public_the_trade():
    released = trading_session()
    matches = [e for e in released[2] if type(e) is Match]
    assert [(m.maker_user, m.taker_user, m.qty, m.price) for m in matches] == [("carol", "bob", 3, 18000),
                                                                              ("dave", "bob", 2, 18001)]
    public, private = published(released)
    trades = [e for message in public if message.channel == "trade" for e in message.events]
    assert trades == [m.trade() for m in matches]
    assert all(type(t) is Trade and t.taker_side is Side.BUY for t in trades)
    fills = {message.user: [e for e in message.events if type(e) is OrderFilled] for message in private}
    carol, = fills["carol"]
    assert (carol.maker, carol.leaves_qty, carol.client_order_id, carol.side, carol.seq) == (
        True, 0, "c1", Side.SELL, matches[0].seq - 2)
    assert [(f.maker, f.last_qty, f.leaves_qty, f.filled_qty, f.client_order_id) for f in fills["bob"]] == [
        (False, 3, 2, 3, "b1"), (False, 2, 0, 5, "b1")]
    assert [(f.last_qty, f.leaves_qty) for f in fills["dave"]] == [(2, 2)]


def test_a_journal_from_before_match_publishes_the_same_messages():
    released = trading_session()
    assert published(released) == published([expand(events) for events in released])
