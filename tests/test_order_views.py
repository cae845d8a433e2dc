"""The gateway's views of orders keep client order ids by the engines' rule, so memory stays bounded."""

from __future__ import annotations

from exchange.core.instruments import Instrument
from exchange.core.messages import OrderAccepted, OrderCanceled, OrderExpired
from exchange.core.orders import CancelReason, ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.gateway.order_views import OrderViews
from exchange.journal.readers import EnginePosition, open_and_recent_order_events
from exchange.journal.schema import open_db
from exchange.journal.writer import Writer

BTC = Instrument("BTC-USD", tick_size="0.01", lot_size="0.001")
WINDOW = 1_000_000  # ns


def accepted(n: int, user: str, cid: str, ts: int) -> OrderAccepted:
    return OrderAccepted(n, ts, "BTC-USD", f"1-{n}", user, Side.BUY, 10, 100, TimeInForce.GTC,
                         SelfTradePrevention.CANCEL_NEWEST, cid)


def test_closed_orders_ids_leave_after_the_window_and_open_ones_stay():
    views = OrderViews({"BTC-USD": BTC}, WINDOW)
    step = WINDOW // 100
    for n in range(1, 10_001):
        views.track(accepted(n, "alice", f"c{n}", n * step))
        if n % 100:  # one in a hundred stays open
            views.track(OrderExpired(n, n * step, "BTC-USD", f"1-{n}", "alice", Side.BUY, 10, ExpireReason.IOC,
                                     f"c{n}"))
    ids = views.client_order_ids
    assert len(ids) <= 100 + 2 * 100
    assert views.own("alice", "", "c100").order_id == "1-100"  # open, accepted long ago
    assert ("alice", "c9999") in ids and ("alice", "c5") not in ids


def test_an_id_stays_for_the_window_after_its_order_closes_and_then_goes():
    views = OrderViews({"BTC-USD": BTC}, WINDOW)
    views.track(accepted(1, "alice", "x", 0))
    views.track(OrderCanceled(2, 10, "BTC-USD", "1-1", "alice", Side.BUY, 10, CancelReason.USER, "x"))
    views.track(accepted(3, "bob", "y", WINDOW - 1))
    assert views.client_order_ids.get(("alice", "x")) == "1-1"
    views.track(accepted(4, "bob", "z", WINDOW))
    assert ("alice", "x") not in views.client_order_ids


def test_load_needs_only_open_orders_and_the_windows_ids():
    views = OrderViews({"BTC-USD": BTC}, WINDOW)
    assert views.load([accepted(7, "alice", "old-but-open", 0), accepted(9, "bob", "", 5 * WINDOW)]) == 2
    assert views.own("alice", "", "old-but-open").order_id == "1-7"
    assert views.own("bob", "1-9", "").status.value == "NEW"


def test_a_starting_gateway_reads_only_open_orders_and_those_accepted_within_the_window(tmp_path):
    from pathlib import Path

    from exchange.core.matching import Matcher
    from exchange.core.messages import CancelOrder, PlaceOrder
    from exchange.engine.batches import Engine
    from exchange.testing.mesh import toy_config
    from exchange.wire.messages import Decoder, EventBatch, Request, Requests, encode

    config = toy_config()
    instruments = [config.instrument_map()[s] for s in config.engine("e2").instruments]
    engine = Engine("e2", Matcher(2, instruments), 1, EnginePosition())
    s = 1_000_000_000
    commands = [
        PlaceOrder("alice", "AAPL", Side.SELL, 5, 1000, client_order_id="old-open", ts_received=1 * s),  # 2-1
        PlaceOrder("alice", "AAPL", Side.SELL, 1, 900, client_order_id="old-filled", ts_received=2 * s),  # 2-2
        PlaceOrder("bob", "AAPL", Side.BUY, 1, 900, client_order_id="old-taker", ts_received=3 * s),  # 2-3
        PlaceOrder("bob", "AAPL", Side.BUY, 1, 500, client_order_id="old-canceled", ts_received=4 * s),  # 2-4
        CancelOrder("bob", "AAPL", "2-4", "", ts_received=5 * s),
        PlaceOrder("bob", "AAPL", Side.BUY, 1, 1000, client_order_id="new-taker", ts_received=100 * s),  # 2-5
        PlaceOrder("carol", "AAPL", Side.BUY, 1, 400, client_order_id="new-open", ts_received=101 * s),  # 2-6
    ]
    frame = engine.handle_requests([[encode([Request("gw", 1, n, c) for n, c in enumerate(commands)])]],
                                   Decoder(Requests))
    db = open_db(tmp_path / "journal.db")
    writer = Writer(db, config.instrument_map())
    writer.append([Decoder(EventBatch).decode(frame)])
    writer.catch_up()
    db.conn.close()
    loaded = list(open_and_recent_order_events(Path(tmp_path / "journal.db"), since_ns=50 * s))
    assert {e.order_id for e in loaded} == {"2-1", "2-5", "2-6"}  # 2-1 still open (partly filled by 2-5)
    views = OrderViews(config.instrument_map(), 300 * s)
    views.load(loaded)
    assert views.own("alice", "", "old-open").leaves_qty == 4
    assert views.own("bob", "", "new-taker").status.value == "FILLED"
    assert ("alice", "old-filled") not in views.client_order_ids
    assert list(open_and_recent_order_events(tmp_path / "missing.db", 0)) == []
