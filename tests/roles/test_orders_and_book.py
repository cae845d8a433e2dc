"""ORDERS and BOOK over real sockets: BOOK is answered by a real notifier and its engine's released book."""

from __future__ import annotations

import pytest

from exchange.client.order_entry import ZmqClient
from exchange.client.text import TextClient
from exchange.core.orders import Side
from exchange.gateway.protocol.messages import (
    Ack, Book, BookRequest, CancelAllOk, CancelAllRequest, LoginOk, LoginRequest, Orders, OrdersRequest, Out,
    PlaceRequest, Rej, State,
)


@pytest.fixture
def alice(module_mesh):
    with TextClient(module_mesh.host, module_mesh.port) as client:
        assert client.request("LOGIN alice alice-key") == "OK LOGIN alice"
        yield client
        client.request("CANCELALL")


def test_a_book_asked_after_an_ack_shows_that_order_every_time(module_mesh, alice):
    asks = []
    for i in range(8):
        assert alice.request(f"SELL AAPL {i + 1} @ {300 - i}.00").startswith("ACK ")
        asks.insert(0, f"ASK {300 - i}.00 {i + 1}")
        assert alice.request_block("BOOK AAPL 100") == ["BOOK AAPL", *asks, "END BOOK AAPL"]
    with TextClient(module_mesh.host, module_mesh.port) as bob:
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        assert bob.request_block("BOOK AAPL 3") == ["BOOK AAPL", *asks[:3], "END BOOK AAPL"]
        assert bob.request_block("ORDERS AAPL") == ["END ORDERS 0 OF 0"]


def test_pipelined_books_and_orders_are_answered_in_request_order(alice):
    assert alice.request("BUY AAPL 2 @ 50.00 #pb").startswith("ACK ")
    alice.send_line("BOOK AAPL 1\nORDERS\nBOOK BTC-USD\nPING\nBOOK AAPL 1")
    lines = [alice.read_reply() for _ in range(11)]
    order_id = lines[3].split()[1]
    assert lines == ["BOOK AAPL", "BID 50.00 2", "END BOOK AAPL",
                     f"STATE {order_id} #pb NEW 0 2 BUY AAPL @ 50.00", "END ORDERS 1 OF 1",
                     "BOOK BTC-USD", "END BOOK BTC-USD", "PONG", "BOOK AAPL", "BID 50.00 2", "END BOOK AAPL"]


def test_orders_and_book_over_zmq_are_structs_with_the_same_content(module_mesh):
    with ZmqClient(module_mesh.config.gateway.zmq, timeout=10) as carol:
        carol.send(LoginRequest("carol", "carol-key"))
        assert carol.receive() == LoginOk("carol")
        carol.send(PlaceRequest(Side.BUY, "BTC-USD", "0.25", "100", client_order_id="zb"))
        ack = carol.receive()
        assert isinstance(ack, Ack)
        carol.send(OrdersRequest())
        assert carol.receive() == Orders([State(ack.order_id, "zb", "NEW", "0.0000", "0.2500", Side.BUY, "BTC-USD",
                                                "100.00")], 1)
        carol.send(BookRequest("BTC-USD", 5))
        assert carol.receive() == Book("BTC-USD", [("100.00", "0.2500")], [])
        carol.send(BookRequest("BTC-USD", 0))
        reply = carol.receive()
        assert isinstance(reply, Rej) and reply.code.value == "MALFORMED"
        carol.send(CancelAllRequest())
        assert carol.receive() == CancelAllOk(1)
        assert carol.receive() == Out(ack.order_id, "zb", "CANCELED", "CANCEL_ALL")
