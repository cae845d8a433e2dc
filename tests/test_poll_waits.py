"""Waits for a deadline poll for the time left, rounded up: zmq truncates a float timeout to whole
milliseconds, so a wait of under 1 ms would poll without waiting, again and again, until the
deadline passed (the ledger shard's settlement window, a BookFeed's poll)."""

from __future__ import annotations

import zmq
from hypothesis import given, strategies as st

from exchange.marketdata.feed import BookFeed
from exchange.wire import sockets


@given(st.floats(min_value=1e-9, max_value=3600, allow_nan=False))
def test_any_time_left_is_waited_for_at_least_that_long(seconds):
    ms = sockets.poll_ms(seconds)
    assert ms >= 1
    assert ms / 1000 >= seconds
    assert ms - 1 < seconds * 1000  # and not a millisecond more than needed


@given(st.floats(max_value=0, allow_nan=False, allow_infinity=False))
def test_no_time_left_polls_without_waiting(seconds):
    assert sockets.poll_ms(seconds) == 0


def test_a_book_feed_waiting_under_a_millisecond_waits_instead_of_spinning(tmp_path, monkeypatch):
    timeouts = []
    poll = zmq.Poller.poll

    def counted(self, timeout=None):
        timeouts.append(timeout)
        return poll(self, timeout)

    # nothing is bound at either end: the feed hears nothing and its snapshot request waits
    with BookFeed(f"ipc://{tmp_path}/publish", f"ipc://{tmp_path}/snapshots", "AAPL", silence_s=60) as feed:
        monkeypatch.setattr(zmq.Poller, "poll", counted)
        assert feed.poll(0.0009) == []
    # one poll of 1 ms (two if the machine was slow to get there); spinning polls without waiting
    # until 0.9 ms have passed, tens of times
    assert 1 <= len(timeouts) <= 2, timeouts
