"""The client protocol's two forms: text lines and ZMQ frames, to and from its messages. Pure.

The text protocol is one ``\\n``-terminated line per message, verbs case-insensitive
(docs/protocol.md); the ZMQ protocol is one msgpack map per frame, held to the same grammar.
``parse_bytes`` turns a line into a request, ``decode_request`` a frame, and ``format_reply`` a
reply into a line. Anything wrong becomes ProtocolError(code, reason), or the Rej that answers it:
the gateway writes it as ``REJ [#id] CODE reason``.
"""

from __future__ import annotations

import ipaddress
import re

import msgspec

from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.messages import (
    AccountBalances, Ack, AnyRequest, BalanceRequest, Book, BookRequest, Bye, CancelAllOk, CancelAllRequest,
    CancelRequest, ClientReply, ClientRequest, DepositRequest, Fill, LoginOk, LoginRequest, LogoutOk,
    LogoutRequest, Orders, OrdersRequest, Out,
    PingRequest, PlaceRequest, Pong, Reduced, Rej, ReplaceAck, ReplaceRequest, State, StatusRequest, TransferOk,
    WithdrawRequest,
)

_CLIENT_ORDER_ID = re.compile(r"#([A-Za-z0-9_.:\-]{1,36})")
_ORDER_ID = re.compile(r"[0-9]{1,4}-[0-9]{1,18}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-/]{0,23}")
_LEVELS = re.compile(r"[1-9][0-9]?|100")
_ASSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}")
_AMOUNT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
_REF = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_LEVELS = 100  # price levels per side a BOOK may ask for
_SEPARATORS = re.compile(r"[ \t]+")
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)


# -- requests -----------------------------------------------------------------------------------

def parse_bytes(raw: bytes, max_line: int) -> ClientRequest | Rej:
    """One raw line (without its ``\\n``) → a request, or the Rej that answers it. Never raises.

    The Rej echoes the line's ``#client-order-id`` when it names one.
    """
    if len(raw) - raw.endswith(b"\r") > max_line:  # a \r before the \n does not count
        return Rej(RejectCode.TOO_LARGE, f"line longer than {max_line} bytes; discarded")
    try:
        line = raw.decode("utf-8").removesuffix("\r")  # one \r before the \n is ignored, not more
    except UnicodeDecodeError:
        return Rej(RejectCode.MALFORMED, "the line is not UTF-8")
    try:
        return parse_line(line)
    except ProtocolError as e:
        login = _upper(_SEPARATORS.split(line.strip(" \t"), 1)[0]) == "LOGIN"
        match = _ECHOED_ID.search(line) if not login else None  # a LOGIN's words may be a key: never echoed
        return Rej(e.code, e.reason, match.group(1) if match else "")


def decode_request(frame: bytes, max_size: int) -> ClientRequest | Rej:
    """One ZMQ frame (a msgpack map) → a request held to the text grammar, or its Rej. Never raises.

    The Rej names the request's client order id when it names one, as a text line's does.
    """
    if len(frame) > max_size:
        return Rej(RejectCode.TOO_LARGE, f"a request is one frame of at most {max_size} bytes")
    try:
        request = _request_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as e:  # RecursionError: nested too deeply
        # the decoder quotes what it was given: keep the reason one printable line
        reason = "".join(c if c.isprintable() else "?" for c in str(e)[:200])
        fields = _fields(frame)
        return Rej(RejectCode.MALFORMED, f"bad request: {reason}; {_expected(fields)}", _echoed(fields))
    try:
        return check_request(request)
    except ProtocolError as e:
        return Rej(e.code, e.reason, _valid(getattr(request, "client_order_id", "")))


_REQUEST_TYPES = {kind.__name__: kind for kind in AnyRequest.__args__}
REQUEST_FORM = ('a request is one msgpack map: {"type": "<request>", "<field>": <value>, …}, <request> one of '
                + ", ".join(_REQUEST_TYPES) + " (docs/wire.md)")


def _fields(frame: bytes) -> dict:
    """A frame that did not decode as a request, as the map it may be (empty if it is none)."""
    try:
        fields = msgspec.msgpack.decode(frame)
    except (msgspec.DecodeError, RecursionError):  # not msgpack, or nested too deeply
        return {}
    return fields if isinstance(fields, dict) else {}


def _expected(fields: dict) -> str:
    """What a frame that did not decode should have been: the fields of the type it names, or any request."""
    name = fields.get("type")
    kind = _REQUEST_TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        return REQUEST_FORM
    names = ", ".join(field.name for field in msgspec.structs.fields(kind)) or "nothing else"
    return f'a {kind.__name__} is a msgpack map of "type" and {names} (docs/wire.md)'


def _echoed(fields: dict) -> str:
    """The client order id a frame that did not decode names, for its Rej: only a valid one, and
    only if the type it names has one (or it names no type we know, as a text line's unknown verb)."""
    client_order_id = fields.get("client_order_id")
    name = fields.get("type")
    kind = _REQUEST_TYPES.get(name) if isinstance(name, str) else None
    if kind is not None and "client_order_id" not in kind.__struct_fields__:
        return ""
    return _valid(client_order_id)


def _valid(client_order_id: object) -> str:
    """``client_order_id`` if it is a valid one, for a Rej to name; else nothing."""
    if isinstance(client_order_id, str) and _CLIENT_ORDER_ID.fullmatch("#" + client_order_id):
        return client_order_id
    return ""


def parse_line(line: str) -> ClientRequest:
    """One request line (without its newline) → a request; ProtocolError if it is not one.

    Words are separated by runs of spaces and tabs, and nothing else (docs/protocol.md#grammar).
    """
    line = line.strip(" \t")
    # single spaces (nearly every line) split as they are, without the regular expression
    words = line.split(" ") if "\t" not in line and "  " not in line else _SEPARATORS.split(line)
    if words == [""]:
        raise ProtocolError(RejectCode.MALFORMED, "empty line; try PING")
    verb = _upper(words[0])
    args = words[1:]
    parser = _PARSERS.get(verb)
    if parser is None:
        raise ProtocolError(RejectCode.UNKNOWN_VERB,
                            f"unknown verb {words[0][:16]!r}; verbs are {', '.join(_PARSERS)}")
    return parser(verb, args)


def _upper(word: str) -> str:
    """A word in capitals, for the case-insensitive words: ASCII letters only (``'ı'.upper()`` is ``'I'``)."""
    return word.upper() if word.isascii() else word


def _usage(verb: str) -> ProtocolError:
    return ProtocolError(RejectCode.MALFORMED, f"usage: {_USAGE[verb]}")


def _parse_login(verb: str, args: list[str]) -> LoginRequest:
    if len(args) not in (2, 3) or not _NAME.fullmatch(args[0]) or len(args[1]) > 128:
        raise _usage(verb)
    cancel_on_disconnect = None
    if len(args) == 3:
        option = _upper(args[2])
        if option not in _LOGIN_OPTIONS:
            raise _usage(verb)
        cancel_on_disconnect = _LOGIN_OPTIONS[option]
    return LoginRequest(args[0], args[1], cancel_on_disconnect)


def _parse_place(verb: str, args: list[str]) -> PlaceRequest:
    """``<symbol> <qty>`` (a buy may leave the quantity out before FUNDS), then the optional parts,
    each at most once and in the order of ``_PLACE_PARTS``."""
    if len(args) < 2 or not _SYMBOL.fullmatch(args[0]):
        raise _usage(verb)
    symbol, qty, rest = args[0], args[1], args[2:]
    if _upper(qty) == "FUNDS":  # no quantity: the budget alone limits the order
        qty, rest = "", args[1:]
    found: dict[str, object] = {}
    last = -1  # the place in _PLACE_PARTS of the last part found: the next one must come after it
    while rest:
        word = rest.pop(0)
        upper = _upper(word)
        part = _place_part(word, upper)
        if part is None:
            raise ProtocolError(RejectCode.MALFORMED, f"unexpected {word[:40]!r}; usage: {_USAGE[verb]}")
        if part == "price" and upper == "FUNDS" and (verb == "SELL" or found.get("price")):
            raise ProtocolError(RejectCode.MALFORMED, f"FUNDS is for market buys only; usage: {_USAGE[verb]}")
        place = _PLACE_PARTS[part]
        if place <= last:
            raise ProtocolError(RejectCode.MALFORMED, f"{word[:40]!r} is out of place: the parts after the"
                                f" quantity come in this order, each at most once: {_USAGE[verb]}")
        last = place
        found[part] = _place_value(part, word, upper, rest)
    funds = None
    if isinstance(found.get("price"), _Funds):
        funds, found["price"] = found["price"].amount, None
    return PlaceRequest(_SIDES[verb], symbol.upper(), qty, found.get("price"), found.get("tif"), found.get("stp"),
                        found.get("cid", ""), funds)


class _Funds:
    """FUNDS <amount> where a price goes: a market buy's budget."""

    def __init__(self, amount: str):
        self.amount = amount


_PLACE_PARTS = {"price": 0, "tif": 1, "stp": 2, "cid": 3}  # in the one order they may come in
_SIDES = dict(Side.__members__)
_TIFS = dict(TimeInForce.__members__)
_STPS = dict(SelfTradePrevention.__members__)


def _place_part(word: str, upper: str) -> str | None:
    """Which optional part of an order ``word`` (``upper``: in capitals) starts (None: none)."""
    if word.startswith("@") or upper in ("MKT", "FUNDS"):
        return "price"
    if upper in _TIFS:
        return "tif"
    if upper.startswith("STP="):
        return "stp"
    if word.startswith("#"):
        return "cid"
    return None


def _place_value(part: str, word: str, upper: str, rest: list[str]):
    """The value of an optional part that starts with ``word`` (``upper``: in capitals); a price after
    a lone ``@`` is taken from ``rest``. MKT (a market order, as ACK prints it) is the price None."""
    match part:
        case "price":
            if upper == "MKT":
                return None
            if upper == "FUNDS":
                return _Funds(_amount(rest.pop(0) if rest else "", "FUNDS"))
            price = word[1:] or (rest.pop(0) if rest else "")
            if not price:
                raise ProtocolError(RejectCode.MALFORMED, "a price must follow @")
            return price
        case "tif":
            return _TIFS[upper]
        case "stp":
            mode = upper[4:]
            if mode not in _STPS:
                raise ProtocolError(RejectCode.MALFORMED, f"STP must be one of {', '.join(_STPS)}")
            return _STPS[mode]
    return _client_order_id(word[1:])


def _client_order_id(cid: str) -> str:
    """``cid`` (without its ``#``) if it is a client order id; else ProtocolError saying why not."""
    if _CLIENT_ORDER_ID.fullmatch("#" + cid):
        return cid
    if not cid:
        raise ProtocolError(RejectCode.MALFORMED, "client order id is empty: # is followed by 1 to 36 characters")
    if len(cid) > 36:
        raise ProtocolError(RejectCode.MALFORMED, f"client order id is too long: {len(cid)} characters, at most 36")
    raise ProtocolError(RejectCode.MALFORMED,
                        f"client order id {cid[:40]!r} may only hold letters, digits and _ . : -")


def _amount(word: str, what: str) -> str:
    """``word`` if it is a decimal amount; else ProtocolError MALFORMED naming ``what`` it is for."""
    if not _AMOUNT.fullmatch(word):
        raise ProtocolError(RejectCode.MALFORMED, f"{what} takes an amount like 1000 or 0.25, not {word[:40]!r}")
    return word


def _order_ref(verb: str, word: str) -> tuple[str, str]:
    if _ORDER_ID.fullmatch(word):
        return word, ""
    if word.startswith("#"):
        return "", _client_order_id(word[1:])
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


def _parse_orders(verb: str, args: list[str]) -> OrdersRequest:
    if len(args) > 1 or (args and not _SYMBOL.fullmatch(args[0])):
        raise _usage(verb)
    return OrdersRequest(args[0].upper() if args else None)


def _parse_book(verb: str, args: list[str]) -> BookRequest:
    if len(args) not in (1, 2) or not _SYMBOL.fullmatch(args[0]):
        raise _usage(verb)
    if len(args) == 2 and not _LEVELS.fullmatch(args[1]):
        raise _bad_levels(args[1])
    if len(args) == 1:
        return BookRequest(args[0].upper())
    return BookRequest(args[0].upper(), int(args[1]))


def _bad_levels(levels: object) -> ProtocolError:
    return ProtocolError(RejectCode.MALFORMED, f"levels {str(levels)[:40]!r} is not a whole number from 1 to"
                         f" {MAX_LEVELS}; usage: {_USAGE['BOOK']}")


def _parse_balance(verb: str, args: list[str]) -> BalanceRequest:
    if len(args) > 1 or (args and not _ASSET.fullmatch(args[0])):
        raise _usage(verb)
    return BalanceRequest(args[0].upper() if args else None)


def _parse_transfer(verb: str, args: list[str]) -> DepositRequest | WithdrawRequest:
    if len(args) != 4 or not _NAME.fullmatch(args[0]) or not _ASSET.fullmatch(args[1]):
        raise _usage(verb)
    if not _REF.fullmatch(args[3]):
        raise ProtocolError(RejectCode.MALFORMED, f"reference {args[3][:40]!r} is not 1 to 64 letters, digits"
                            f" or _ . : -; usage: {_USAGE[verb]}")
    kind = DepositRequest if verb == "DEPOSIT" else WithdrawRequest
    return kind(args[0], args[1].upper(), _amount(args[2], verb), args[3])


def _parse_ping(verb: str, args: list[str]) -> PingRequest:
    if args:
        raise _usage(verb)
    return PingRequest()


def _parse_logout(verb: str, args: list[str]) -> LogoutRequest:
    if args:
        raise _usage(verb)
    return LogoutRequest()


_PARSERS = {
    "LOGIN": _parse_login, "BUY": _parse_place, "SELL": _parse_place, "CANCEL": _parse_cancel,
    "REPLACE": _parse_replace, "CANCELALL": _parse_cancel_all, "STATUS": _parse_status,
    "ORDERS": _parse_orders, "BOOK": _parse_book, "PING": _parse_ping, "BALANCE": _parse_balance,
    "DEPOSIT": _parse_transfer, "WITHDRAW": _parse_transfer, "LOGOUT": _parse_logout,
}
_LOGIN_OPTIONS = {"CANCEL_ON_DISCONNECT": True, "KEEP_ON_DISCONNECT": False}
_ECHOED_ID = re.compile(r"(?:^|[ \t])#([A-Za-z0-9_.:\-]{1,36})(?:[ \t]|$)")
_USAGE = {
    "LOGIN": "LOGIN <user> <key> [CANCEL_ON_DISCONNECT|KEEP_ON_DISCONNECT]",
    "BUY": "BUY <symbol> (<qty> [@ <price>|MKT|FUNDS <amount>]|FUNDS <amount>) [GTC|IOC|FOK|POST] [STP=<mode>]"
           " [#<cid>]",
    "SELL": "SELL <symbol> <qty> [@ <price>|MKT] [GTC|IOC|FOK|POST] [STP=<mode>] [#<cid>]",
    "CANCEL": "CANCEL (<order-id>|#<cid>)",
    "REPLACE": "REPLACE (<order-id>|#<cid>) <qty> [@ <price>]",
    "CANCELALL": "CANCELALL [<symbol>]",
    "STATUS": "STATUS (<order-id>|#<cid>)",
    "ORDERS": "ORDERS [<symbol>]",
    "BOOK": "BOOK <symbol> [<levels>]",
    "PING": "PING",
    "BALANCE": "BALANCE [<asset>]",
    "DEPOSIT": "DEPOSIT <user> <asset> <amount> <ref>",
    "WITHDRAW": "WITHDRAW <user> <asset> <amount> <ref>",
    "LOGOUT": "LOGOUT",
}


def check_request(request: ClientRequest) -> ClientRequest:
    """A request that came as a struct (over ZMQ), held to the text grammar; symbols upper-cased.

    ProtocolError if a field could not have been written in a text line.
    """
    def bad(what: str, value: str) -> ProtocolError:
        return ProtocolError(RejectCode.MALFORMED, f"{what} {value[:40]!r} is not allowed")

    cid = getattr(request, "client_order_id", "")
    if cid:
        _client_order_id(cid)
    match request:
        case LoginRequest():
            if not _NAME.fullmatch(request.user) or len(request.key) > 128:
                raise _usage("LOGIN")
            if request.address is not None and not _is_ip_address(request.address):
                raise bad("address", request.address)
        case BookRequest() if not 1 <= request.levels <= MAX_LEVELS:
            raise _bad_levels(request.levels)
        case PlaceRequest() if request.funds is not None and (request.side is Side.SELL or request.price is not None):
            raise ProtocolError(RejectCode.MALFORMED, "FUNDS is for market buys only")
        case PlaceRequest() if request.funds is not None:
            _amount(request.funds, "FUNDS")
            return msgspec.structs.replace(check_request(msgspec.structs.replace(request, funds=None)),
                                           funds=request.funds)
        case BalanceRequest() if request.asset is not None:
            if not _ASSET.fullmatch(request.asset):
                raise bad("asset", request.asset)
            request = msgspec.structs.replace(request, asset=request.asset.upper())
        case DepositRequest() | WithdrawRequest():
            verb = "DEPOSIT" if isinstance(request, DepositRequest) else "WITHDRAW"
            if not _NAME.fullmatch(request.user) or not _ASSET.fullmatch(request.asset) or not _REF.fullmatch(request.ref):
                raise _usage(verb)
            _amount(request.amount, verb)
            request = msgspec.structs.replace(request, asset=request.asset.upper())
        case PlaceRequest() | CancelAllRequest() | OrdersRequest() | BookRequest():
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


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- replies --------------------------------------------------------------------------------------

def _cid(client_order_id: str) -> str:
    return f" #{client_order_id}" if client_order_id else ""


def balance_line(asset: str, available: str, held: str) -> str:
    """One asset's line of a BALANCE answer (also how `exchange watch --mine` shows a balance)."""
    return f"BALANCE {asset} AVAILABLE {available} HELD {held}"


def format_reply(reply: ClientReply) -> str:
    """The text line (without newline) for a reply; the lines, joined by newlines, of an ``Orders`` or
    a ``Book``, which end in their ``END`` line."""
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
        case LogoutOk():
            return "OK LOGOUT" + (f" {reply.user}" if reply.user else "")
        case Pong():
            return "PONG"
        case Orders():
            return "\n".join([*map(format_reply, reply.orders), f"END ORDERS {len(reply.orders)} OF {reply.count}"])
        case Book():
            return "\n".join([f"BOOK {reply.symbol}", *(f"BID {price} {qty}" for price, qty in reply.bids),
                              *(f"ASK {price} {qty}" for price, qty in reply.asks), f"END BOOK {reply.symbol}"])
        case AccountBalances():
            return "\n".join([*(balance_line(*balance) for balance in reply.balances),
                              f"END BALANCE {len(reply.balances)}"])
        case TransferOk():
            return (f"OK {reply.verb} {reply.user} {reply.asset} {reply.amount} REF {reply.ref}"
                    f" ENTRY {reply.entry_id}")
        case Bye():
            return f"BYE {reply.code.value} {reply.reason}"
    raise TypeError(f"not a reply: {reply!r}")


