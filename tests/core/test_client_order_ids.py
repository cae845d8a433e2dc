"""The uniqueness window of client order ids: reserved while the order is open and for a window
after its acceptance (by the commands' ts_received), then free; memory stays bounded."""

from __future__ import annotations

import pytest

from exchange.core import checkpoint
from exchange.core.matching import Matcher
from exchange.core.messages import OrderAccepted, OrderRejected
from exchange.errors import RejectCode
from scenario import BTC, ETH, buy, cancel, sell

WINDOW = 1_000_000  # ns


def outcome(matcher: Matcher, command) -> str:
    first = matcher.handle(command)[0]
    if isinstance(first, OrderRejected):
        return f"{first.code.value} {first.order_id}"
    assert isinstance(first, OrderAccepted)
    return "accepted"


@pytest.mark.parametrize("first, closed, reused_at, expected", [
    ("rests", False, WINDOW // 2, "DUPLICATE_ID 7-1"),
    ("rests", False, 10 * WINDOW, "DUPLICATE_ID 7-1"),  # open: reserved whatever the time
    ("rests", True, WINDOW // 2, "DUPLICATE_ID 7-1"),  # canceled, but within the window
    ("rests", True, WINDOW, "accepted"),
    ("expires", True, WINDOW - 1, "DUPLICATE_ID 7-1"),
    ("expires", True, WINDOW, "accepted"),
    ("expires", True, -5, "DUPLICATE_ID 7-1"),  # a clock behind the acceptance: still inside
])
def test_a_client_order_id_is_reserved_while_open_and_for_the_window_after_acceptance(
        first, closed, reused_at, expected):
    matcher = Matcher(7, [BTC, ETH], WINDOW)
    tif = "GTC" if first == "rests" else "IOC"
    assert outcome(matcher, buy("alice", "1", at="100.00", tif=tif, cid="x", ts=0)) == "accepted"
    if closed and first == "rests":
        matcher.handle(cancel("alice", "7-1", ts=1))
    assert outcome(matcher, buy("alice", "1", at="100.00", cid="x", ts=reused_at)) == expected
    assert outcome(matcher, buy("bob", "1", at="100.00", cid="x", ts=reused_at)) == "accepted"  # per user


def test_a_reused_id_names_the_new_order_and_the_old_ones_window_does_not_forget_it():
    matcher = Matcher(7, [BTC, ETH], WINDOW)
    matcher.handle(buy("alice", "1", at="100.00", tif="IOC", cid="x", ts=0))  # 7-1, expires
    matcher.handle(buy("alice", "1", at="90.00", cid="x", ts=WINDOW))  # 7-2 rests
    matcher.handle(buy("alice", "1", at="90.00", tif="IOC", cid="y", ts=3 * WINDOW))  # forgets stale entries
    assert matcher.client_order_ids.get(("alice", "x")) == "7-2"
    events = matcher.handle(cancel("alice", cid="x", ts=3 * WINDOW))
    assert events[0].order_id == "7-2"


def test_many_ids_over_time_keep_memory_to_two_windows_and_the_open_orders():
    matcher = Matcher(7, [BTC, ETH], WINDOW)
    step = WINDOW // 100  # 100 ids per window
    for n in range(10_000):
        resting = n % 100 == 0
        command = (buy("alice", "1", at="90.00", cid=f"r{n}", ts=n * step) if resting
                   else sell("bob", "1", at="200.00", tif="IOC", cid=f"i{n}", ts=n * step))
        matcher.handle(command)
    ids = matcher.client_order_ids
    assert len(ids) <= 100 + 2 * 100 and all(("alice", f"r{n}") in ids for n in range(0, 10_000, 100))
    assert len(ids.due) <= 2 * len(ids)


def test_replay_and_a_checkpoint_forget_what_the_live_matcher_forgot():
    live = Matcher(7, [BTC, ETH], 2 * WINDOW)  # an IOC id comes back after 1.5 windows: some are refused
    events = []
    for n in range(600):
        command = (buy("alice", "1", at="90.00", cid=f"c{n}", ts=n * 10_000) if n % 7 == 0
                   else sell("bob", "1", at="200.00", tif="IOC", cid=f"c{n % 150}", ts=n * 10_000))
        events += live.handle(command)
        if n % 50 == 0:
            restored = checkpoint.restore([BTC, ETH], checkpoint.take(live, 1024))
            assert restored.digest() == live.digest()
    assert Matcher.rebuild(7, [BTC, ETH], events, 2 * WINDOW).digest() == live.digest()
    assert any(isinstance(e, OrderRejected) and e.code is RejectCode.DUPLICATE_ID for e in events)
