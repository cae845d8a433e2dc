"""Reading a feed message as docs/wire.md ("Evolution") asks of a client: an event of a type the
client does not know (a tag added to the feed after it was written) is left out, the rest of the
message kept. Anything else that does not fit (a malformed event of a known type, a bad envelope)
raises WireError, as a strict decoder would.
"""

from __future__ import annotations

import typing

import msgspec

from exchange.errors import WireError
from exchange.wire.messages import Decoder


class LenientDecoder:
    """Decodes ``kind`` (a struct whose last field is a list of tagged events of the union
    ``events``); ``envelope`` is the same struct with that list as ``list[msgspec.Raw]``."""

    def __init__(self, kind: type, envelope: type, events: typing.Any):
        self.whole, self.envelope = Decoder(kind), Decoder(envelope)
        self.event = msgspec.msgpack.Decoder(events)
        self.known = frozenset(k.__struct_config__.tag for k in typing.get_args(events))

    def decode(self, frame: bytes) -> tuple[typing.Any, list | None]:
        """(the message, None) when every event is of a known type (all but always: one strict
        decode); else (its envelope, the events of known types, in order)."""
        try:
            return self.whole.decode(frame), None
        except WireError as e:
            error = e
        envelope = self.envelope.decode(frame)
        events = []
        for raw in envelope.events:
            try:
                events.append(self.event.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                if not self.unknown(raw):
                    raise error from None
        return envelope, events

    def unknown(self, raw: msgspec.Raw) -> bool:
        """Whether ``raw`` is a tagged struct (an array, its type name first) of a type not known here."""
        try:
            item = msgspec.msgpack.decode(raw)
        except msgspec.DecodeError:
            return False
        return isinstance(item, list) and bool(item) and isinstance(item[0], str) and item[0] not in self.known
