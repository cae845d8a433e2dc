"""The order entry protocol: request lines in, reply lines out. Pure: no sockets, no clock.

The text protocol (one ``\\n``-terminated line per message, verbs case-insensitive) and the ZMQ
protocol (msgpack maps) carry the same requests and replies, defined here as tagged structs:
``parse_line`` turns a line into a request, ``format_reply`` a reply into a line, and
``reply_for_event`` an engine event into the reply a client sees. Anything wrong raises
ProtocolError(code, reason); the gateway turns it into ``REJ [#id] CODE reason``.
"""

from __future__ import annotations

import re

import msgspec

from exchange.core.instruments import GridError, Instrument
from exchange.core.messages import (
    CancelAll, CancelOrder, OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced,
    OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder,
)
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.errors import ProtocolError, RejectCode

_CLIENT_ORDER_ID = re.compile(r"#([A-Za-z0-9_.:\-]{1,36})")
_ORDER_ID = re.compile(r"[0-9]{1,4}-[0-9]{1,18}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-/]{0,23}")


# -- requests -----------------------------------------------------------------------------------

class ClientRequest(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A request from a client; the ZMQ form is the msgpack map of these fields plus ``type``."""


class LoginRequest(ClientRequest):
    user: str
    key: str
    cancel_on_disconnect: bool | None = None  # None: the user's default from the config


class PlaceRequest(ClientRequest):
    side: Side
    symbol: str
    qty: str  # decimal text, converted with the instrument's lot size
    price: str | None = None  # None: a market order
    tif: TimeInForce | None = None  # None: GTC for a limit order, IOC for a market order
    stp: SelfTradePrevention | None = None  # None: the instrument's default
    client_order_id: str = ""


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


AnyRequest = (LoginRequest | PlaceRequest | CancelRequest | ReplaceRequest | CancelAllRequest
              | StatusRequest | PingRequest)


def parse_bytes(raw: bytes, max_line: int) -> ClientRequest | Rej:
    """One raw line (without its ``\\n``) → a request, or the Rej that answers it. Never raises.

    The Rej echoes the line's ``#client-order-id`` when it names one.
    """
    if len(raw) > max_line:
        return Rej(RejectCode.TOO_LARGE, f"line longer than {max_line} bytes; discarded")
    try:
        line = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return Rej(RejectCode.MALFORMED, "the line is not UTF-8")
    try:
        return parse_line(line)
    except ProtocolError as e:
        login = line.lstrip()[:6].upper() == "LOGIN "
        match = _ECHOED_ID.search(line) if not login else None  # a LOGIN's words may be a key: never echoed
        return Rej(e.code, e.reason, match.group(1) if match else "")


def decode_request(frame: bytes, max_size: int) -> ClientRequest | Rej:
    """One ZMQ frame (a msgpack map) → a request held to the text grammar, or its Rej. Never raises."""
    if len(frame) > max_size:
        return Rej(RejectCode.TOO_LARGE, f"a request is one frame of at most {max_size} bytes")
    try:
        return check_request(_request_decoder.decode(frame))
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        # the decoder quotes what it was given: keep the reason one printable line
        reason = "".join(c if c.isprintable() else "?" for c in str(e)[:200])
        return Rej(RejectCode.MALFORMED, f"bad request: {reason}")
    except ProtocolError as e:
        return Rej(e.code, e.reason)


def parse_line(line: str) -> ClientRequest:
    """One request line (without its newline) → a request; ProtocolError if it is not one."""
    words = line.split()
    if not words:
        raise ProtocolError(RejectCode.MALFORMED, "empty line; try PING")
    verb = words[0].upper()
    args = words[1:]
    parser = _PARSERS.get(verb)
    if parser is None:
        raise ProtocolError(RejectCode.UNKNOWN_VERB,
                            f"unknown verb {words[0][:16]!r}; verbs are {', '.join(_PARSERS)}")
    return parser(verb, args)


def _usage(verb: str) -> ProtocolError:
    return ProtocolError(RejectCode.MALFORMED, f"usage: {_USAGE[verb]}")


def _parse_login(verb: str, args: list[str]) -> LoginRequest:
    if len(args) not in (2, 3) or not _NAME.fullmatch(args[0]) or len(args[1]) > 128:
        raise _usage(verb)
    cancel_on_disconnect = None
    if len(args) == 3:
        option = args[2].upper()
        if option not in _LOGIN_OPTIONS:
            raise _usage(verb)
        cancel_on_disconnect = _LOGIN_OPTIONS[option]
    return LoginRequest(args[0], args[1], cancel_on_disconnect)


def _parse_place(verb: str, args: list[str]) -> PlaceRequest:
    if len(args) < 2:
        raise _usage(verb)
    symbol, qty, rest = args[0], args[1], args[2:]
    if not _SYMBOL.fullmatch(symbol):
        raise _usage(verb)
    price = tif = stp = None
    client_order_id = ""
    if rest and rest[0].startswith("@"):
        price = rest[0][1:] or (rest[1] if len(rest) > 1 else "")
        rest = rest[1:] if rest[0] != "@" else rest[2:]
        if not price:
            raise ProtocolError(RejectCode.MALFORMED, "a price must follow @")
    for word in rest:
        upper = word.upper()
        if upper in TimeInForce.__members__ and tif is None:
            tif = TimeInForce[upper]
        elif upper.startswith("STP=") and stp is None:
            mode = upper[4:]
            if mode not in SelfTradePrevention.__members__:
                raise ProtocolError(RejectCode.MALFORMED, f"STP must be one of"
                                    f" {', '.join(SelfTradePrevention.__members__)}")
            stp = SelfTradePrevention[mode]
        elif _CLIENT_ORDER_ID.fullmatch(word) and not client_order_id:
            client_order_id = word[1:]
        else:
            raise ProtocolError(RejectCode.MALFORMED, f"unexpected {word[:40]!r}; usage: {_USAGE[verb]}")
    return PlaceRequest(Side[verb], symbol.upper(), qty, price, tif, stp, client_order_id)


def _order_ref(verb: str, word: str) -> tuple[str, str]:
    if _ORDER_ID.fullmatch(word):
        return word, ""
    if _CLIENT_ORDER_ID.fullmatch(word):
        return "", word[1:]
    raise ProtocolError(RejectCode.MALFORMED,
                        f"{word[:40]!r} is neither an order id (like 1-42) nor a #client-order-id")


def _parse_cancel(verb: str, args: list[str]) -> CancelRequest:
    if len(args) != 1:
        raise _usage(verb)
    return CancelRequest(*_order_ref(verb, args[0]))


def _parse_status(verb: str, args: list[str]) -> StatusRequest:
    if len(args) != 1:
        raise _usage(verb)
    return StatusRequest(*_order_ref(verb, args[0]))


def _parse_replace(verb: str, args: list[str]) -> ReplaceRequest:
    if len(args) not in (2, 3, 4):
        raise _usage(verb)
    order_id, client_order_id = _order_ref(verb, args[0])
    price = None
    if len(args) == 3 and args[2].startswith("@") and len(args[2]) > 1:
        price = args[2][1:]
    elif len(args) == 4 and args[2] == "@":
        price = args[3]
    elif len(args) != 2:
        raise _usage(verb)
    return ReplaceRequest(args[1], price, order_id, client_order_id)


def _parse_cancel_all(verb: str, args: list[str]) -> CancelAllRequest:
    if len(args) > 1 or (args and not _SYMBOL.fullmatch(args[0])):
        raise _usage(verb)
    return CancelAllRequest(args[0].upper() if args else None)


def _parse_ping(verb: str, args: list[str]) -> PingRequest:
    if args:
        raise _usage(verb)
    return PingRequest()


_PARSERS = {
    "LOGIN": _parse_login, "BUY": _parse_place, "SELL": _parse_place, "CANCEL": _parse_cancel,
    "REPLACE": _parse_replace, "CANCELALL": _parse_cancel_all, "STATUS": _parse_status,
    "PING": _parse_ping,
}
_LOGIN_OPTIONS = {"CANCEL_ON_DISCONNECT": True, "KEEP_ON_DISCONNECT": False}
_ECHOED_ID = re.compile(r"(?:^|\s)#([A-Za-z0-9_.:\-]{1,36})(?:\s|$)")
_USAGE = {
    "LOGIN": "LOGIN <user> <key> [CANCEL_ON_DISCONNECT|KEEP_ON_DISCONNECT]",
    "BUY": "BUY <symbol> <qty> [@ <price>] [GTC|IOC|FOK|POST] [STP=<mode>] [#<client-order-id>]",
    "SELL": "SELL <symbol> <qty> [@ <price>] [GTC|IOC|FOK|POST] [STP=<mode>] [#<client-order-id>]",
    "CANCEL": "CANCEL <order-id>|#<client-order-id>",
    "REPLACE": "REPLACE <order-id>|#<client-order-id> <qty> [@ <price>]",
    "CANCELALL": "CANCELALL [<symbol>]",
    "STATUS": "STATUS <order-id>|#<client-order-id>",
    "PING": "PING",
}


def check_request(request: ClientRequest) -> ClientRequest:
    """A request that came as a struct (over ZMQ), held to the text grammar; symbols upper-cased.

    ProtocolError if a field could not have been written in a text line.
    """
    def bad(what: str, value: str) -> ProtocolError:
        return ProtocolError(RejectCode.MALFORMED, f"{what} {value[:40]!r} is not allowed")

    cid = getattr(request, "client_order_id", "")
    if cid and not _CLIENT_ORDER_ID.fullmatch("#" + cid):
        raise bad("client order id", cid)
    match request:
        case LoginRequest():
            if not _NAME.fullmatch(request.user) or len(request.key) > 128:
                raise _usage("LOGIN")
        case PlaceRequest() | CancelAllRequest():
            if request.symbol is not None:
                if not _SYMBOL.fullmatch(request.symbol):
                    raise bad("symbol", request.symbol)
                request = msgspec.structs.replace(request, symbol=request.symbol.upper())
        case CancelRequest() | ReplaceRequest() | StatusRequest():
            if request.order_id and not _ORDER_ID.fullmatch(request.order_id):
                raise bad("order id", request.order_id)
            if bool(request.order_id) == bool(request.client_order_id):
                raise ProtocolError(RejectCode.MALFORMED, "name exactly one of order_id and client_order_id")
    for field in ("qty", "price"):
        value = getattr(request, field, None)
        if value is not None and len(value) > 40:
            raise bad(field, value)
    return request


# -- requests → commands (at the edge: decimal text becomes ticks and lots here) ----------------

def place_command(request: PlaceRequest, instrument: Instrument, user: str, ts: int,
                  max_open_orders: int = 0) -> PlaceOrder:
    """The engine command for a BUY/SELL; ProtocolError if a value is off the instrument's grid.

    ``user`` and ``max_open_orders`` come from the session and the config, never from the request.
    """
    try:
        qty = instrument.to_lots(request.qty)
        price = instrument.to_ticks(request.price) if request.price is not None else None
    except GridError as e:
        raise ProtocolError(e.code, e.reason) from None
    tif = request.tif or (TimeInForce.GTC if price is not None else TimeInForce.IOC)
    return PlaceOrder(user, instrument.symbol, request.side, qty, price, tif, request.stp,
                      request.client_order_id, ts, max_open_orders)


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


# -- replies --------------------------------------------------------------------------------------

class ClientReply(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A reply or a pushed update; the ZMQ form is the msgpack map of these fields plus ``type``."""


class LoginOk(ClientReply):
    user: str
    cancel_on_disconnect: bool = False  # the session's orders are canceled when it ends


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


class Bye(ClientReply):
    """The gateway ends the session (idle, or no room for it); the last line it gets."""

    code: RejectCode
    reason: str


AnyReply = LoginOk | Ack | ReplaceAck | Rej | Fill | Out | Reduced | CancelAllOk | State | Pong | Bye
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)


def _cid(client_order_id: str) -> str:
    return f" #{client_order_id}" if client_order_id else ""


def format_reply(reply: ClientReply) -> str:
    """The text line (without newline) for a reply."""
    match reply:
        case Ack():
            price = f"@ {reply.price}" if reply.price is not None else "MKT"
            return (f"ACK {reply.order_id}{_cid(reply.client_order_id)} {reply.side.value} {reply.symbol}"
                    f" {reply.qty} {price} {reply.tif.value}")
        case Fill():
            return (f"FILL {reply.order_id}{_cid(reply.client_order_id)} {reply.qty} @ {reply.price}"
                    f" LEAVES {reply.leaves_qty} TRADE {reply.trade_id}")
        case Out():
            reason = f" {reply.reason}" if reply.reason else ""
            return f"OUT {reply.order_id}{_cid(reply.client_order_id)} {reply.status}{reason}"
        case Rej():
            return f"REJ{_cid(reply.client_order_id)} {reply.code.value} {reply.reason}"
        case ReplaceAck():
            return (f"ACK {reply.order_id}{_cid(reply.client_order_id)} REPLACED {reply.side.value}"
                    f" {reply.symbol} {reply.qty} @ {reply.price} LEAVES {reply.leaves_qty}")
        case Reduced():
            return (f"REDUCED {reply.order_id}{_cid(reply.client_order_id)} {reply.qty}"
                    f" LEAVES {reply.leaves_qty}")
        case State():
            price = f"@ {reply.price}" if reply.price is not None else "MKT"
            return (f"STATE {reply.order_id}{_cid(reply.client_order_id)} {reply.status}"
                    f" {reply.filled_qty} {reply.leaves_qty} {reply.side.value} {reply.symbol} {price}")
        case CancelAllOk():
            return f"OK CANCELALL {reply.count}"
        case LoginOk():
            return f"OK LOGIN {reply.user}" + (" CANCEL_ON_DISCONNECT" if reply.cancel_on_disconnect else "")
        case Pong():
            return "PONG"
        case Bye():
            return f"BYE {reply.code.value} {reply.reason}"
    raise TypeError(f"not a reply: {reply!r}")


def reply_for_event(event, instrument: Instrument | None) -> ClientReply:
    """What a client is told about one of its order events."""
    match event:
        case OrderAccepted():
            return Ack(event.order_id, event.client_order_id, event.side, event.symbol,
                       instrument.format_qty(event.qty),
                       instrument.format_price(event.price) if event.price is not None else None, event.tif)
        case OrderRejected():
            return Rej(event.code, event.reason, event.client_order_id)
        case OrderFilled():
            return Fill(event.order_id, event.client_order_id, instrument.format_qty(event.last_qty),
                        instrument.format_price(event.last_price), instrument.format_qty(event.leaves_qty),
                        event.trade_id)
        case OrderCanceled():
            return Out(event.order_id, event.client_order_id, "CANCELED",
                       "" if event.reason.value == "USER" else event.reason.value)
        case OrderExpired():
            return Out(event.order_id, event.client_order_id, "EXPIRED", event.reason.value)
        case OrderReplaced():
            return ReplaceAck(event.order_id, event.client_order_id, event.side, event.symbol,
                              instrument.format_qty(event.qty), instrument.format_price(event.price),
                              instrument.format_qty(event.leaves_qty))
        case OrderReduced():
            return Reduced(event.order_id, event.client_order_id, instrument.format_qty(event.reduced_qty),
                           instrument.format_qty(event.leaves_qty))
    raise TypeError(f"not an order event: {event!r}")
