"""The messages of the client order entry protocol: requests in, replies and pushed updates out.

The text protocol (one line per message) and the ZMQ protocol (one msgpack map per frame) carry
the same messages, defined here as tagged structs; the struct's name is the ZMQ ``type``.
exchange.gateway.protocol.grammar reads and writes both forms.
"""

from __future__ import annotations

import msgspec

from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.errors import RejectCode


# -- requests -----------------------------------------------------------------------------------

class ClientRequest(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A request from a client; the ZMQ form is the msgpack map of these fields plus ``type``."""


class LoginRequest(ClientRequest):
    user: str
    key: str
    cancel_on_disconnect: bool | None = None  # None: the user's default from the config
    # where the user is (an IP address), said by a front end of the gateway (the web role) on its
    # own endpoint for the user it signs in; anyone else's LOGIN with it is refused NOT_ALLOWED
    address: str | None = None


class LogoutRequest(ClientRequest):
    """End the session (LOGOUT): answered ``LogoutOk``, then the gateway closes it as if the client had."""


class PlaceRequest(ClientRequest):
    side: Side
    symbol: str
    qty: str  # decimal text, converted with the instrument's lot size
    price: str | None = None  # None: a market order
    tif: TimeInForce | None = None  # None: GTC for a limit order, IOC for a market order
    stp: SelfTradePrevention | None = None  # None: the instrument's default
    client_order_id: str = ""
    funds: str | None = None  # a market buy's budget, decimal text in the quote; then qty "" means no limit


class CancelRequest(ClientRequest):
    order_id: str = ""
    client_order_id: str = ""


class ReplaceRequest(ClientRequest):
    qty: str
    price: str | None = None  # None: keep the price
    order_id: str = ""
    client_order_id: str = ""


class CancelAllRequest(ClientRequest):
    symbol: str | None = None


class StatusRequest(ClientRequest):
    order_id: str = ""
    client_order_id: str = ""


class PingRequest(ClientRequest):
    pass


class OrdersRequest(ClientRequest):
    """The user's open orders (ORDERS), on one instrument or on all."""

    symbol: str | None = None


class BookRequest(ClientRequest):
    """The aggregated depth of one instrument's released book (BOOK), ``levels`` per side."""

    symbol: str
    levels: int = 10


class BalanceRequest(ClientRequest):
    """The session user's balances (BALANCE), of one asset or of all; with accounts on."""

    asset: str | None = None


class DepositRequest(ClientRequest):
    """An admin moves ``amount`` (decimal text) of ``asset`` into ``user``'s account, once per ``ref``."""

    user: str
    asset: str
    amount: str
    ref: str


class WithdrawRequest(ClientRequest):
    """An admin moves ``amount`` of ``asset`` out of ``user``'s available balance, once per ``ref``."""

    user: str
    asset: str
    amount: str
    ref: str


AnyRequest = (LoginRequest | PlaceRequest | CancelRequest | ReplaceRequest | CancelAllRequest
              | StatusRequest | PingRequest | OrdersRequest | BookRequest | BalanceRequest | DepositRequest
              | WithdrawRequest | LogoutRequest)



# -- replies --------------------------------------------------------------------------------------

class ClientReply(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A reply or a pushed update; the ZMQ form is the msgpack map of these fields plus ``type``."""


class LoginOk(ClientReply):
    user: str
    cancel_on_disconnect: bool = False  # the session's orders are canceled when it ends


class LogoutOk(ClientReply):
    """The session has ended (its last reply): as after any disconnect, cancel on disconnect cancels
    its orders if it was on."""

    user: str = ""  # who was logged in on it; "" if nobody


class Ack(ClientReply):
    order_id: str
    client_order_id: str
    side: Side
    symbol: str
    qty: str
    price: str | None
    tif: TimeInForce


class ReplaceAck(ClientReply):
    order_id: str
    client_order_id: str
    side: Side
    symbol: str
    qty: str
    price: str
    leaves_qty: str


class Rej(ClientReply):
    code: RejectCode
    reason: str
    client_order_id: str = ""


class Fill(ClientReply):
    order_id: str
    client_order_id: str
    qty: str
    price: str
    leaves_qty: str
    trade_id: str


class Out(ClientReply):
    order_id: str
    client_order_id: str
    status: str  # FILLED, CANCELED or EXPIRED
    reason: str = ""


class Reduced(ClientReply):
    order_id: str
    client_order_id: str
    qty: str
    leaves_qty: str


class CancelAllOk(ClientReply):
    count: int


class State(ClientReply):
    order_id: str
    client_order_id: str
    status: str
    filled_qty: str
    leaves_qty: str
    side: Side
    symbol: str
    price: str | None


class Pong(ClientReply):
    pass


class Orders(ClientReply):
    """The answer to ORDERS: the user's open orders, oldest first, at most MAX_ORDERS_LISTED of them."""

    orders: list[State]
    count: int  # how many open orders there are; more than listed if the list was cut


class Book(ClientReply):
    """The answer to BOOK: price levels of the released book, best first, as (price, qty) decimal text."""

    symbol: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class AccountBalances(ClientReply):
    """The answer to BALANCE: (asset, available, held) as decimal text in each asset's unit, by asset name."""

    balances: list[tuple[str, str, str]]


class TransferOk(ClientReply):
    """A deposit or withdrawal was applied: ``verb`` is DEPOSIT or WITHDRAW; ``entry_id`` its ledger entry."""

    verb: str
    user: str
    asset: str
    amount: str
    ref: str
    entry_id: int


class Bye(ClientReply):
    """The gateway ends the session (idle, or no room for it); the last line it gets."""

    code: RejectCode
    reason: str


AnyReply = (LoginOk | Ack | ReplaceAck | Rej | Fill | Out | Reduced | CancelAllOk | State | Pong | Bye | Orders
            | Book | AccountBalances | TransferOk | LogoutOk)
