"""The JSON bodies the page sends, read up to ``MAX_BODY`` bytes and validated once at the edge, and
the error answer every route gives: ``{"error": {"code": CODE, "reason": "what was wrong, and what
is allowed"}}``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse

from exchange.core.orders import Side, TimeInForce
from exchange.gateway.protocol.messages import PlaceRequest, ReplaceRequest

Text = Annotated[str, Meta(max_length=64)]
MAX_BODY = 4096  # bytes a request's body may have: a sign-in or an order ticket takes a few hundred


class TooLarge(Exception):
    """A request's body is longer than ``MAX_BODY``: its reason is for the user."""


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


def too_large(reason: str) -> JSONResponse:
    """The answer to a body too large; the connection closes, so the rest of the body is never read."""
    response = error(413, "TOO_LARGE", reason)
    response.headers["connection"] = "close"
    return response


async def read(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body; raises TooLarge, before reading any of it, if its Content-Length says it is
    longer than ``limit``, and otherwise as soon as more than ``limit`` bytes have come."""
    reason = f"the body is larger than {limit} bytes, the most a request here takes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(reason)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(reason)
        chunks.append(chunk)
    return b"".join(chunks)


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
