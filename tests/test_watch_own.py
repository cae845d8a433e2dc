"""`exchange watch --mine` in memory: what it shows of the private feed's decoded messages, order
updates and balances, in the plain lines and in the live view (tests/roles/test_watch_mine.py runs it
for real; tests/roles/test_private_balances.py shows Balances reaching the right user)."""

from __future__ import annotations

import io
import re

import pytest
import zmq
from rich.console import Console

from exchange.client.private_feed import PrivateFeed
from exchange.core.messages import OrderAccepted, OrderFilled
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.watch import Own, Watch
from exchange.testing.mesh import loopback_config, toy_config
from exchange.config import load_config
from exchange.wire.messages import Balance, Balances, Decoder, PrivateData, encode

NOW = 1796500681123456789  # 2026-12-05T19:58:01.123456Z
DECODER = Decoder(PrivateData)  # what PrivateFeed decodes with


def received(data: PrivateData) -> PrivateData:
    """``data`` as a subscriber gets it: encoded by the sender, decoded by the private feed."""
    return DECODER.decode(encode(data))


def balances(*items: tuple[str, int, int]) -> PrivateData:
    return received(PrivateData("alice", "ledger-1", 1, [Balances("alice", [Balance(*i) for i in items])]))


@pytest.fixture
def own() -> Own:
    config = toy_config(accounts=True)
    return Own(config.instrument_map(), config.asset_map(), ["BTC", "USD"])


def rendered(renderable, width: int = 100) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_balances_are_plain_lines_in_each_assets_unit_at_the_time_they_arrived(own):
    lines = own.take(balances(("USD", 9_999_990_000, 10_000), ("BTC", 150_000_000, 0)), NOW)
    assert lines == ["2026-12-05T19:58:01.123456Z BALANCE USD AVAILABLE 9999.990000 HELD 0.010000",
                     "2026-12-05T19:58:01.123456Z BALANCE BTC AVAILABLE 1.50000000 HELD 0.00000000"]


def test_only_the_balances_that_changed_make_new_lines(own):
    own.take(balances(("USD", 9_999_990_000, 10_000), ("BTC", 150_000_000, 0)), NOW)
    later = balances(("USD", 10_000_000_000, 0), ("BTC", 150_000_000, 0))  # the hold released
    assert own.take(later, NOW + 1000) == ["2026-12-05T19:58:01.123457Z BALANCE USD AVAILABLE 10000.000000 HELD 0.000000"]
    assert own.take(later, NOW + 2000) == []


def test_the_view_lists_base_and_quote_before_any_balance_then_every_asset_told(own):
    assert re.search(r"BTC\s+│\s+-\s+│\s+-", rendered(own.table()))
    assert re.search(r"USD\s+│\s+-\s+│\s+-", rendered(own.table()))
    own.take(balances(("USD", 9_999_990_000, 10_000), ("ETH", 2_000_000, 500_000)), NOW)
    text = rendered(own.table())
    assert re.search(r"USD\s+│\s+9999\.990000\s+│\s+0\.010000", text), text
    assert re.search(r"ETH\s+│\s+2\.000000\s+│\s+0\.500000", text), text
    assert re.search(r"BTC\s+│\s+-\s+│\s+-", text), text  # not told yet
    assert [line.split("│")[1].strip() for line in text.splitlines() if "│" in line] == ["BTC", "USD", "ETH"]


def test_order_events_still_show_as_mine_lines_next_to_balances(own):
    accepted = OrderAccepted(7, NOW, "BTC-USD", "1-7", "alice", Side.BUY, 5000, 4300010, TimeInForce.GTC,
                             SelfTradePrevention.CANCEL_NEWEST, "w1")
    filled = OrderFilled(8, NOW, "BTC-USD", "1-7", "alice", Side.BUY, "1-3", 5000, 4300010, 0, 5000, False, "w1")
    lines = own.take(received(PrivateData("alice", "e1", 1, [accepted, filled])), NOW)
    lines += own.take(balances(("USD", 7_849_990_000, 0), ("BTC", 50_000_000, 0)), NOW)
    assert lines == [
        "2026-12-05T19:58:01.123456Z MINE ACK 1-7 #w1 BUY BTC-USD 0.5000 @ 43000.10 GTC",
        "2026-12-05T19:58:01.123456Z MINE FILL 1-7 #w1 0.5000 @ 43000.10 LEAVES 0.0000 TRADE 1-3",
        "2026-12-05T19:58:01.123456Z MINE OUT 1-7 #w1 FILLED",
        "2026-12-05T19:58:01.123456Z BALANCE USD AVAILABLE 7849.990000 HELD 0.000000",
        "2026-12-05T19:58:01.123456Z BALANCE BTC AVAILABLE 0.50000000 HELD 0.00000000",
    ]
    assert list(own.updates) == lines[2::-1]  # the view's order list: newest first, no balances


def test_an_asset_the_config_does_not_know_shows_in_units(own):
    assert own.take(balances(("XYZ", 12345, 6)), NOW) == ["2026-12-05T19:58:01.123456Z BALANCE XYZ AVAILABLE 12345 HELD 6"]


def test_watch_mine_shows_the_balances_table_with_accounts_on_and_none_with_accounts_off(tmp_path):
    public, secret = zmq.curve_keypair()
    for accounts, shown in ((True, True), (False, False)):
        config = load_config(loopback_config(tmp_path, accounts=accounts))
        mine = PrivateFeed(config.notifier.private, zmq.curve_keypair()[0], "alice", public, secret)
        watch = Watch(config, "ETH-USD", mine)  # nothing listens there: only the view is exercised
        try:
            if accounts:
                watch.own.take(balances(("USD", 9_999_990_000, 10_000)), NOW)
            text = rendered(watch.render())
        finally:
            watch.close()
        assert ("your balances" in text) == shown, text
        if shown:
            assert re.search(r"ETH\s+│\s+-\s+│\s+-", text), text
            assert re.search(r"USD\s+│\s+9999\.990000\s+│\s+0\.010000", text), text
        assert "your orders:" in text
