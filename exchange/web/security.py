"""What every response carries and what every state-changing request must show: security headers
(a strict CSP: this origin's scripts, styles and sockets only), the CSRF check, the client's
address (from a trusted reverse proxy's X-Forwarded-For, else the peer) and the limit on sign-in
attempts per client address.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import deque

HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                                 b" connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        return await self.app(scope, receive, with_headers)


def same_origin(headers, scheme: str, public_origin: str | None = None) -> bool:
    """Whether a request's Origin (if it has one) is this server itself: the scheme and Host it was
    reached by, or ``public_origin`` (web.public_origin, as WebConfig.origin writes it), the one
    browsers load the page from behind a TLS-terminating proxy, which reaches this server by plain
    HTTP. X-Forwarded-Proto and -Host are not read: anyone may write them, and the origin is known."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if public_origin is not None and origin == public_origin:
        return True
    host = headers.get("host", "")
    return origin in (f"{scheme}://{host}", f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}")


def token_matches(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class LoginAttempts:
    """At most ``limit`` sign-in attempts per client address in any 60 s."""

    WINDOW_S = 60.0

    def __init__(self, limit: int):
        self.limit = limit
        self.by_address: dict[str, deque[float]] = {}

    def take(self, address: str) -> float:
        """0 if an attempt is allowed now (and counted); else the seconds until one is."""
        now = time.monotonic()
        attempts = self.by_address.setdefault(address, deque())
        while attempts and attempts[0] <= now - self.WINDOW_S:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return attempts[0] + self.WINDOW_S - now
        attempts.append(now)
        if len(self.by_address) > 10_000:  # forget addresses with nothing in the window
            self.by_address = {a: d for a, d in self.by_address.items() if d and d[-1] > now - self.WINDOW_S}
        return 0.0


def ip_address(text: str) -> str | None:
    """``text`` as an IP address in its usual form; None if it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


class ClientAddress:
    """Where a browser is: the peer of the connection, unless that peer is one of the trusted
    reverse proxies; then the address its ``X-Forwarded-For`` header names.

    A proxy appends the address it was reached from to that header, so the header is read from the
    right: each address that is itself a trusted proxy is skipped, and the first one that is not
    is the browser. Everything to its left was written by the browser (or whoever it is) and is
    never believed. A header a trusted proxy sent that does not parse leaves the last address known.
    """

    def __init__(self, trusted_proxies: list[str]):
        self.trusted = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]

    def is_trusted(self, address: str) -> bool:
        ip = ip_address(address)
        return ip is not None and any(ipaddress.ip_address(ip) in network for network in self.trusted)

    def of(self, peer: str, forwarded_for: list[str]) -> str:
        """The browser's address, given the connection's ``peer`` and every X-Forwarded-For header's value."""
        address = peer
        if not self.is_trusted(peer):
            return address
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            ip = ip_address(hop)
            if ip is None:
                return address
            address = ip
            if not self.is_trusted(address):
                return address
        return address
