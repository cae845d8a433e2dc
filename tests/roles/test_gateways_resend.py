"""Two gateways (gateway.replicas), accounts on and off: the same order sent on both at once.

docs/protocol.md: the same order sent again with its client order id is a resend, not a new order:
it is not placed twice, and the reply is the original ACK; DUPLICATE_ID is for a *different* order
with the id. docs/configuration.md: that holds whichever gateway the order was placed on; a client
not sure its order got through on one gateway sends it again on the other (docs/deployment.md).
With accounts on, the resend meets the order's hold on the user's ledger shard before the gateway
it was sent to has heard of the order: it waits for it, rather than calling it another order.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from exchange.journal.readers import wait_for_tables
from exchange.testing.mesh import Mesh
from test_gateways import login as login_on, with_second_gateway

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=[True, False], ids=["accounts-on", "accounts-off"])
def mesh(request, tmp_path_factory):
    with Mesh(with_second_gateway(tmp_path_factory.mktemp("resend"), request.param)) as running:
        yield running


def login(mesh, gateway: str, user: str):
    return login_on(mesh, gateway, user, timeout=15)  # more than request_timeout: an UNAVAILABLE would show


def placed(mesh, cid: str) -> int:
    wait_for_tables(mesh.config.journal.path)  # the tables follow the log
    with closing(sqlite3.connect(mesh.config.journal.path)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE kind='OrderAccepted' AND"
                                " json_extract(body, '$[11]') = ?", (cid,)).fetchone()
    return count


def test_the_same_order_sent_on_both_gateways_at_once_is_placed_once_and_acked_alike_on_both(mesh):
    with login(mesh, "gateway", "alice") as on_a, login(mesh, "g2", "alice") as on_b:
        replies = []
        for n in range(8):
            line = f"SELL AAPL 1 @ {200 + n}.00 #both-{n}"
            on_a.send_line(line)  # the client sends its order on A and, not sure it got through, on B too
            on_b.send_line(line)
            replies.append((on_a.read_reply(), on_b.read_reply()))
        bad = [(a, b) for a, b in replies if not (a.startswith("ACK") and a == b)]
        assert not bad, f"a resend on the other gateway was not answered with the original ACK: {bad}"
        for n in range(8):
            assert on_a.request(f"CANCEL #both-{n}").startswith("OUT")
    assert [placed(mesh, f"both-{n}") for n in range(8)] == [1] * 8


def test_a_different_order_with_the_id_on_the_other_gateway_is_refused_duplicate_id(mesh):
    with login(mesh, "gateway", "bob") as on_a, login(mesh, "g2", "bob") as on_b:
        ack = on_a.request("BUY AAPL 1 @ 100.00 #other")
        assert ack.startswith("ACK") and "#other" in ack
        assert on_b.request("BUY AAPL 2 @ 100.00 #other").startswith("REJ #other DUPLICATE_ID")
        assert on_b.request("BUY AAPL 1 @ 100.00 #other") == ack  # the same one is a resend
        assert on_a.request("CANCEL #other").startswith("OUT")
    assert placed(mesh, "other") == 1
