"""docs/wire.md cannot drift: its byte-level examples are what the real encoder writes, and its
layout lines list each message's fields in the order they travel.

Each ```msgpack block of the doc is a Python expression building a message (lines up to ``=>``),
the msgpack value as JSON (the ``=>`` line), then the encoded bytes in hex. After changing a
message, ``python tests/test_wire_doc.py`` rewrites the value and hex lines from the expressions.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import msgpack
import msgspec

from exchange.gateway.protocol import messages as protocol
from exchange.wire import messages as wire
from exchange.core import messages, orders
from exchange.errors import RejectCode

WIRE_MD = Path(__file__).resolve().parents[1] / "docs" / "wire.md"
BLOCK = re.compile(r"(```msgpack\n)(.*?)(\n```)", re.S)
LAYOUT = re.compile(r"^`(\w+)` = `(.*)`$", re.M)
NAMESPACE = {name: getattr(module, name) for module in (wire, messages, protocol, orders)
             for name in dir(module) if not name.startswith("_")} | {"RejectCode": RejectCode}

# every message a client sends or receives, on some port
CLIENT_MESSAGES = {
    wire.MarketData, messages.Trade, messages.TopOfBook, messages.DepthUpdate, *messages.BOOK_ORDER_EVENTS,
    wire.SnapshotRequest, wire.InstrumentsRequest, wire.TradesRequest, wire.BookSnapshot, wire.SnapshotRefused,
    wire.Instruments, wire.Trades, wire.TradesRefused,
    wire.InstrumentSpec, wire.RequestRefused, wire.PrivateData, wire.Balances, wire.Balance,
    # a Match stays inside the mesh: the private feed tells each side of it their OrderFilled
    *(cls for cls in messages.ORDER_EVENTS if cls is not messages.Match),
    *(cls for cls in vars(protocol).values()
      if isinstance(cls, type) and issubclass(cls, (protocol.ClientRequest, protocol.ClientReply))
      and cls not in (protocol.ClientRequest, protocol.ClientReply)),
}


def split_block(block: str) -> tuple[str, str, list[str]]:
    """(expression, JSON value, hex lines) of one ```msgpack block."""
    lines = block.splitlines()
    arrow = next(i for i, line in enumerate(lines) if line.startswith("=> "))
    return "\n".join(lines[:arrow]), lines[arrow][3:], lines[arrow + 1:]


def encoded(expression: str) -> bytes:
    return wire.encode(eval(expression, dict(NAMESPACE)))  # the doc's own text, in this repository


def rendered(expression: str) -> str:
    """The block as it should read: the expression, its msgpack value as JSON, its bytes 16 a line."""
    frame = encoded(expression)
    value = json.dumps(msgpack.unpackb(frame), ensure_ascii=False)
    hexes = [frame[i:i + 16].hex(" ") for i in range(0, len(frame), 16)]
    return "\n".join([expression, f"=> {value}", *hexes])


def layout(cls: type) -> str:
    """A message's layout line: ``["Tag", field, …]`` for arrays, ``{"type": "Tag", "field", …}`` for maps."""
    config = cls.__struct_config__
    fields = list(cls.__struct_fields__)
    if config.array_like:
        tag = [json.dumps(config.tag)] if config.tag else []
        return f"[{', '.join(tag + fields)}]"
    return "{" + ", ".join([f'"type": "{config.tag}"', *(json.dumps(f) for f in fields)]) + "}"


def test_every_byte_level_example_is_what_the_encoder_writes():
    blocks = BLOCK.findall(WIRE_MD.read_text())
    assert len(blocks) >= 15
    for _, block, _ in blocks:
        expression, _, _ = split_block(block)
        assert block == rendered(expression), (
            f"docs/wire.md is out of date; run `python tests/test_wire_doc.py`. Expected:\n{rendered(expression)}")


def test_every_example_decodes_to_the_message_it_shows():
    for _, block, _ in BLOCK.findall(WIRE_MD.read_text()):
        expression, _, _ = split_block(block)
        message = eval(expression, dict(NAMESPACE))
        assert msgspec.msgpack.decode(encoded(expression), type=type(message)) == message


def test_every_client_message_has_a_layout_line_listing_its_fields_in_order():
    documented = dict(LAYOUT.findall(WIRE_MD.read_text()))
    for cls in CLIENT_MESSAGES:
        assert documented.get(cls.__name__) == layout(cls), f"docs/wire.md: `{cls.__name__}` = `{layout(cls)}`"
    assert set(documented) <= {cls.__name__ for cls in CLIENT_MESSAGES}, "a layout line names no client message"


def test_the_request_refused_example_gives_the_form_a_notifier_says_today():
    """The example is the encoder's bytes for the text the doc wrote, which could grow stale against the
    reason the notifier really gives: it must end with that form."""
    [example] = [block for _, block, _ in BLOCK.findall(WIRE_MD.read_text())
                 if block.startswith("RequestRefused(")]
    reason = eval(split_block(example)[0], dict(NAMESPACE)).reason
    assert reason.endswith("; " + wire.NOTIFIER_REQUEST_FORM), reason


def test_every_enum_value_is_listed():
    text = WIRE_MD.read_text()
    for enum in (orders.Side, orders.TimeInForce, orders.SelfTradePrevention, orders.CancelReason,
                 orders.ExpireReason):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{enum.__name__}` |")), "")
        assert row.split("|")[2].strip() == ", ".join(f"`{m.value}`" for m in enum), enum.__name__


def rewrite() -> None:
    """Rewrite each block's value and hex lines from its expression."""
    text = WIRE_MD.read_text()
    WIRE_MD.write_text(BLOCK.sub(lambda m: m.group(1) + rendered(split_block(m.group(2))[0]) + m.group(3), text))


if __name__ == "__main__":
    rewrite()
    sys.exit(0)
