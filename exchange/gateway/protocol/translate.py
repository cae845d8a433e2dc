"""Between the client protocol and the core: requests become commands, events become replies.

Pure: no sockets, no clock. Decimal text becomes ticks and lots here, on the instrument's grid
(ProtocolError if a value is off it), and back again in the replies.
"""

from __future__ import annotations

from exchange.core.instruments import GridError, Instrument
from exchange.core.messages import (
    CancelAll, CancelOrder, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced,
    OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder,
)
from exchange.core.orders import TimeInForce
from exchange.errors import ProtocolError
from exchange.gateway.protocol.messages import (
    Ack, Book, ClientReply, Fill, Out, PlaceRequest, Reduced, Rej, ReplaceAck, ReplaceRequest,
)


# -- requests → commands ------------------------------------------------------------------------

def place_command(request: PlaceRequest, instrument: Instrument, user: str, ts: int,
                  max_open_orders: int = 0, funds: int = 0) -> PlaceOrder:
    """The engine command for a BUY/SELL; ProtocolError if a value is off the instrument's grid.

    ``user`` and ``max_open_orders`` come from the session and the config, never from the request;
    ``funds`` is the engine's budget (lots × ticks). A FUNDS buy without a quantity is for the
    instrument's ``max_qty``: its budget alone limits it.
    """
    try:
        qty = instrument.max_qty if request.funds is not None and not request.qty else instrument.to_lots(request.qty)
        price = instrument.to_ticks(request.price) if request.price is not None else None
    except GridError as e:
        raise ProtocolError(e.code, e.reason) from None
    tif = request.tif or (TimeInForce.GTC if price is not None else TimeInForce.IOC)
    return PlaceOrder(user, instrument.symbol, request.side, qty, price, tif, request.stp,
                      request.client_order_id, ts, max_open_orders, funds)


def replace_command(request: ReplaceRequest, instrument: Instrument, order_id: str, user: str,
                    ts: int) -> ReplaceOrder:
    """The engine command for a REPLACE of ``order_id`` (or, if empty, of the request's client order id)."""
    try:
        qty = instrument.to_lots(request.qty)
        price = instrument.to_ticks(request.price) if request.price is not None else None
    except GridError as e:
        raise ProtocolError(e.code, e.reason) from None
    return ReplaceOrder(user, instrument.symbol, qty, price, order_id, request.client_order_id, ts)


def cancel_command(order_id: str, user: str, ts: int, client_order_id: str = "") -> CancelOrder:
    return CancelOrder(user, "", order_id, client_order_id, ts)


def cancel_all_command(symbol: str | None, user: str, ts: int) -> CancelAll:
    return CancelAll(user, symbol, ts)



# -- events → replies ---------------------------------------------------------------------------

def book_reply(symbol: str, bids: list[tuple[int, int]], asks: list[tuple[int, int]], instrument: Instrument,
               levels: int) -> Book:
    """The answer to a BOOK: the first ``levels`` (price ticks, qty lots) levels of each side, as decimal text."""
    def side(book_levels: list[tuple[int, int]]) -> list[tuple[str, str]]:
        return [(instrument.format_price(price), instrument.format_qty(qty)) for price, qty in book_levels[:levels]]

    return Book(symbol, side(bids), side(asks))


def shown(client_order_id: str) -> str:
    """A client order id as its client may see it: "" for one a ledger shard gave an order that had
    none (``~<shard>-<n>``, which no client can send)."""
    return "" if client_order_id.startswith("~") else client_order_id


def reply_for_event(event, instrument: Instrument | None) -> ClientReply:
    """What a client is told about one of its order events."""
    cid = shown(event.client_order_id)
    match event:  # the most frequent first
        case OrderAccepted():
            return Ack(event.order_id, cid, event.side, event.symbol, instrument.format_qty(event.qty),
                       instrument.format_price(event.price) if event.price is not None else None, event.tif)
        case OrderCanceled():
            return Out(event.order_id, cid, "CANCELED", "" if event.reason.value == "USER" else event.reason.value)
        case OrderFilled():
            return Fill(event.order_id, cid, instrument.format_qty(event.last_qty),
                        instrument.format_price(event.last_price), instrument.format_qty(event.leaves_qty),
                        event.trade_id)
        case OrderReplaced():
            return ReplaceAck(event.order_id, cid, event.side, event.symbol, instrument.format_qty(event.qty),
                              instrument.format_price(event.price), instrument.format_qty(event.leaves_qty))
        case OrderExpired():
            return Out(event.order_id, cid, "EXPIRED", event.reason.value)
        case OrderRejected():
            return Rej(event.code, event.reason, cid)
        case OrderReduced():
            return Reduced(event.order_id, cid, instrument.format_qty(event.reduced_qty),
                           instrument.format_qty(event.leaves_qty))
    raise TypeError(f"not an order event: {event!r}")


def replies_for_event(event, instrument: Instrument | None) -> list[ClientReply]:
    """``reply_for_event``, and after a fill that completes its order, the ``OUT … FILLED`` line."""
    replies = [reply_for_event(event, instrument)]
    if isinstance(event, OrderFilled) and event.leaves_qty == 0:
        replies.append(Out(event.order_id, shown(event.client_order_id), "FILLED"))
    return replies
