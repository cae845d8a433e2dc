"""The gateway's views of orders keep client order ids by the engines' rule, so memory stays bounded."""

from __future__ import annotations

from exchange.core.instruments import Instrument
from exchange.core.messages import OrderAccepted, OrderCanceled, OrderExpired
from exchange.core.orders import CancelReason, ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.order_views import OrderViews

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
