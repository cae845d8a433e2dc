"""`exchange watch --plain` without a book: a stopped mesh must not look like a quiet market. Once
the feed has had no book for WAITING_NOTE_S (none yet, or lost and not reloaded), one WAITING line
says so; a book coming back (its RESYNC line) and going again makes another."""

from __future__ import annotations

import pytest

from exchange.config import load_config
from exchange.marketdata.watch import WAITING_NOTE_S, Watch
from exchange.testing.mesh import loopback_config


@pytest.fixture
def watch(tmp_path):
    watch = Watch(load_config(loopback_config(tmp_path)), "BTC-USD")  # nothing listens there
    yield watch
    watch.close()


def test_one_waiting_line_once_there_has_been_no_book_for_a_while(watch):
    since = watch.unsynced_since
    assert watch._waiting(since + WAITING_NOTE_S - 0.1) == []
    [line] = watch._waiting(since + WAITING_NOTE_S + 0.1)
    assert "WAITING BTC-USD: no book from the notifier for 5 s (tcp://127.0.0.1:" in line
    assert line.endswith("is it running? Still asking")
    assert watch._waiting(since + 60) == []  # said once


def test_a_book_lost_again_after_it_came_back_is_said_again(watch):
    watch.feed.synced = True  # the book came (the RESYNC line says so)
    assert watch._waiting(100.0) == []
    watch.feed.synced = False  # silence or a gap: re-syncing, and no snapshot comes
    assert watch._waiting(101.0) == []
    assert len(watch._waiting(101.0 + WAITING_NOTE_S)) == 1


def test_a_step_without_a_notifier_says_nothing_at_first(watch):
    assert watch.step(0.05) == []
