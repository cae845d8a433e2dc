"""The client protocol's two forms: text lines and ZMQ frames, to and from its messages. Pure.

The text protocol is one ``\\n``-terminated line per message, verbs case-insensitive
(docs/protocol.md); the ZMQ protocol is one msgpack map per frame, held to the same grammar.
``parse_bytes`` turns a line into a request, ``decode_request`` a frame, and ``format_reply`` a
reply into a line. Anything wrong becomes ProtocolError(code, reason), or the Rej that answers it:
the gateway writes it as ``REJ [#id] CODE reason``.
"""

from __future__ import annotations

import re

import msgspec

from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.messages import (
    Ack, AnyRequest, Bye, CancelAllOk, CancelAllRequest, CancelRequest, ClientReply, ClientRequest, Fill,
    LoginOk, LoginRequest, Out, PingRequest, PlaceRequest, Pong, Reduced, Rej, ReplaceAck, ReplaceRequest,
    State, StatusRequest,
)

_CLIENT_ORDER_ID = re.compile(r"#([A-Za-z0-9_.:\-]{1,36})")
_ORDER_ID = re.compile(r"[0-9]{1,4}-[0-9]{1,18}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-/]{0,23}")
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)


# -- requests -----------------------------------------------------------------------------------

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


# -- replies --------------------------------------------------------------------------------------

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


