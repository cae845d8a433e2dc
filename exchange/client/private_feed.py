"""A user's private feed: their own order updates and balances, over CURVE, and a clear refusal of a bad key.
"""

from __future__ import annotations

import socket
import time
import typing
import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message
from exchange.wire import sockets
from exchange.wire.lenient import LenientDecoder
from exchange.wire.messages import PrivateData, private_topic
from exchange.wire.security.curve_keys import make_client


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


PrivateEvent = typing.get_args(typing.get_type_hints(PrivateData)["events"])[0]  # AnyEvent | Balances


class _Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A PrivateData with its events left as the bytes they came in, to be decoded one by one."""

    user: str
    engine: str
    epoch: int
    events: list[msgspec.Raw]


class PrivateDataDecoder:
    """Reads PrivateData frames, leaving out events of types this client does not know
    (exchange.wire.lenient)."""

    def __init__(self):
        self.lenient = LenientDecoder(PrivateData, _Envelope, PrivateEvent)

    def decode(self, frame: bytes) -> PrivateData:
        message, events = self.lenient.decode(frame)
        if events is None:
            return message
        return PrivateData(message.user, message.engine, message.epoch, events)


class PrivateFeed:
    """A user's own order updates and balances from the notifier's CURVE-protected private feed.

    Each ``receive`` is one PrivateData: an engine's order events of one release, or (accounts on)
    the user's ledger shard's ``Balances`` after a change, in each asset's smallest unit. Events
    of a type this client does not know (added to the feed after it) are left out, so a
    PrivateData may come with fewer events, or none.

    The notifier refuses a key it does not know during the CURVE handshake (its ZAP handler), so
    nothing is ever sent to it. With ``admitted_within`` (seconds) the feed waits for the
    handshake's outcome, seen on a socket monitor: PermissionError if the key was refused,
    TimeoutError if the notifier did not answer in time. Without it, a refused key just stays silent.
    """

    def __init__(self, endpoint: str, server_public: bytes, user: str, public: bytes, secret: bytes,
                 admitted_within: float | None = None):
        self.ctx = sockets.context()
        self.sub = self.ctx.socket(zmq.SUB)
        make_client(self.sub, server_public, public, secret)
        self.sub.setsockopt(zmq.SUBSCRIBE, private_topic(user))
        monitor = self.sub.get_monitor_socket(HANDSHAKE_EVENTS) if admitted_within is not None else None
        self.sub.connect(endpoint)
        self.decoder = PrivateDataDecoder()
        if monitor is not None:
            try:
                refusal = handshake_refusal(monitor, admitted_within, f"{user}'s CURVE key", endpoint)
            finally:
                self.sub.disable_monitor()
                monitor.close(linger=0)
            if refusal is not None:
                self.close()
                raise refusal

    def receive(self, timeout: float = 10.0) -> PrivateData:
        if not self.sub.poll(int(1000 * timeout)):
            raise TimeoutError("no private update in time")
        return self.decoder.decode(self.sub.recv_multipart()[-1])

    def close(self) -> None:
        self.sub.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> PrivateFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def handshake_refusal(monitor: zmq.Socket, timeout: float, key: str, endpoint: str) -> Exception | None:
    """None once a CURVE handshake succeeds on the monitored socket; else why not (the error to raise)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not monitor.poll(int(left * 1000)):
            break
        event = recv_monitor_message(monitor)
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return None
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return PermissionError(f"the notifier refused {key}: it lists no user with this key"
                                   f" (status {event['value']}); a new key needs the notifier restarted"
                                   " with a config that lists it")
        return PermissionError(f"the CURVE handshake with {endpoint} failed: was the notifier's public key"
                               " the one it has now?")
    return TimeoutError(f"no answer from {endpoint} to the CURVE handshake within {timeout:g} s")
