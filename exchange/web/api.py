"""The JSON bodies the page sends, validated once at the edge, and the error answer every route
gives: ``{"error": {"code": CODE, "reason": "what was wrong, and what is allowed"}}``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from starlette.responses import JSONResponse

from exchange.core.orders import Side, TimeInForce
from exchange.gateway.protocol.messages import PlaceRequest, ReplaceRequest

Text = Annotated[str, Meta(max_length=64)]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    user: Annotated[str, Meta(min_length=1, max_length=32)]
    key: Annotated[str, Meta(min_length=1, max_length=128)]


class OrderTicket(msgspec.Struct, forbid_unknown_fields=True):
    side: Side
    symbol: Text
    qty: Text
    type: Literal["limit", "market"] = "limit"
    price: Text | None = None
    tif: Literal["GTC", "IOC", "FOK"] | None = None  # None: GTC for a limit order, IOC for a market order
    post_only: bool = False

    def request(self) -> PlaceRequest:
        """The gateway request; raises ValueError when the ticket contradicts itself."""
        if self.type == "market":
            if self.price is not None:
                raise ValueError("a market order has no price; leave price out or make it a limit order")
            if self.post_only:
                raise ValueError("a market order cannot be post-only; post-only orders are limit orders")
        elif self.price is None:
            raise ValueError("a limit order needs a price")
        tif = TimeInForce(self.tif) if self.tif else None
        if self.post_only:
            if tif not in (None, TimeInForce.GTC):
                raise ValueError(f"a post-only order rests, so it cannot be {self.tif}; leave tif at GTC")
            tif = TimeInForce.POST
        return PlaceRequest(self.side, self.symbol, self.qty, self.price, tif)


class Replace(msgspec.Struct, forbid_unknown_fields=True):
    qty: Text
    price: Text | None = None  # None: keep the price

    def request(self, order_id: str) -> ReplaceRequest:
        return ReplaceRequest(self.qty, self.price, order_id=order_id)


def error(status: int, code: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "reason": reason}}, status)


def decode(body: bytes, kind: type):
    """``body`` as ``kind``; raises ValueError saying what was wrong and where."""
    if not body:
        raise ValueError("the request has no body; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise ValueError(str(e)) from None
    except msgspec.DecodeError:
        raise ValueError("the body is not JSON; send a JSON object") from None
