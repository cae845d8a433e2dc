"""FUNDS with accounts off on an instrument with a fine grid: tick × lot is 1e-17 there, so a budget
in lots × ticks has more digits than Decimal's default context holds. Every well-formed amount is
converted exactly or refused MALFORMED (docs/protocol.md), never a crash (REJ INTERNAL)."""

from __future__ import annotations

import msgspec
import pytest

from exchange.core.instruments import Instrument
from exchange.core.messages import PlaceOrder
from exchange.core.orders import Side
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.accounts import funds

FINE = Instrument("SHIB-BTC", "0.00000001", "0.000000001")  # tick × lot = 0.00000000000000001


@pytest.mark.parametrize("text, budget", [
    ("0.00000000000000001", None),  # below the 12 fraction digits FUNDS takes: refused as text
    ("0.000000000001", 10**5),
    ("92.233720368547", 9223372036854700000),
    ("123456789012.123456789012", None),  # 24 digits: fine as text, past the largest budget
])
def test_a_funds_amount_on_a_fine_grid_converts_exactly_or_is_malformed(text, budget):
    if budget is None:
        with pytest.raises(ProtocolError) as refused:
            funds(text, FINE, None)
        assert refused.value.code is RejectCode.MALFORMED
    else:
        assert funds(text, FINE, None) == budget


def test_a_large_funds_amount_on_a_fine_grid_is_refused_not_a_crash():
    with pytest.raises(ProtocolError) as refused:  # 10**29 lots × ticks: more than a PlaceOrder carries
        funds("999999999999", FINE, None)
    assert refused.value.code is RejectCode.MALFORMED
    assert refused.value.reason == ("FUNDS 999999999999 is more than SHIB-BTC's largest budget,"
                                    " 9223372036854775807 × its tick × lot, 0.00000000000000001")


def test_the_largest_budget_is_one_a_place_order_carries():
    budget = funds("92.23372036854", FINE, None)
    assert budget == 9223372036854000000
    msgspec.msgpack.encode(PlaceOrder("alice", "SHIB-BTC", Side.BUY, 1, funds=budget))


def test_an_amount_off_a_fine_grid_is_malformed_with_the_exact_step():
    coarse_lot = Instrument("X-Y", "0.00000001", "0.000000003", max_qty="3")  # tick × lot = 0.00000000000000003
    with pytest.raises(ProtocolError) as refused:
        funds("0.000000000001", coarse_lot, None)
    assert refused.value.code is RejectCode.MALFORMED
    assert refused.value.reason == "FUNDS 0.000000000001 is not a multiple of X-Y's tick × lot, 0.00000000000000003"
