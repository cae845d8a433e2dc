"""The page's WebSocket (``/ws``): what a browser asks (follow an instrument, a fresh snapshot)
and what it is sent (the instrument list, its instrument's snapshot and updates, and, signed in,
its account). A socket opened from another site's page, or one too many, is refused; a browser
sending faster than ``web.max_rate`` messages a second is answered with an error for each extra one.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect

from exchange.config import plain
from exchange.web.hub import Client
from exchange.web.security import same_origin
from exchange.web.sessions import TokenBucket, WebSession

if TYPE_CHECKING:
    from exchange.web.app import Web

FORM = 'a message is a JSON object {"type": "subscribe" or "resync", "symbol": SYMBOL}'


async def serve(web: Web, websocket: WebSocket) -> None:
    if not same_origin(websocket.headers, websocket.url.scheme, web.public_origin):
        await websocket.close(code=1008, reason="another site's page may not open this socket")
        return
    if web.sockets >= web.config.max_sockets:
        await websocket.close(code=1013, reason="too many open sockets; try again later")
        return
    await websocket.accept()
    web.sockets += 1
    client = Client(web.hub)
    web.hub.clients.add(client)
    client.send(web.hub.summaries())
    session = web.session(websocket)
    if session is not None:
        session.listeners.add(client.send)
        client.send(session.account())
    elif websocket.cookies.get("session"):
        # a page reconnecting after its session ended (it expired or the gateway ended it while the socket
        # was down) would otherwise go on showing the account: it hears what it would have heard then
        client.send({"type": "signed_out", "reason": "the session ended; sign in again"})
    writer = asyncio.get_running_loop().create_task(_write(websocket, client))
    try:
        await _read(web, websocket, client, session)
    except WebSocketDisconnect:
        pass
    finally:
        writer.cancel()
        web.sockets -= 1
        web.hub.clients.discard(client)
        if session is not None:
            session.listeners.discard(client.send)


async def _read(web: Web, websocket: WebSocket, client: Client, session: WebSession | None) -> None:
    bucket = TokenBucket(web.config.max_rate, web.config.max_burst)
    while True:
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            return
        if session is not None:
            web.sessions.get(session.token)  # a page in use keeps its session
        if not bucket.take():
            client.send({"type": "error", "reason": f"more than {plain(web.config.max_rate)} messages per second;"
                                                    " slow down"})
            continue
        try:
            message = json.loads(frame.get("text") or frame.get("bytes") or b"")
            kind, symbol = message["type"], message["symbol"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: brackets nested too deep
            client.send({"type": "error", "reason": FORM})
            continue
        if kind not in ("subscribe", "resync"):
            client.send({"type": "error", "reason": f"unknown type {str(kind)[:32]!r}; types are subscribe, resync"})
        elif not isinstance(symbol, str) or symbol not in web.hub.markets:
            client.send({"type": "error", "reason": f"no instrument {str(symbol)[:32]!r}; there are"
                                                    f" {', '.join(web.hub.markets)}"})
        else:
            client.follow(symbol)


async def _write(websocket: WebSocket, client: Client) -> None:
    try:
        while True:
            for text in await client.next_batch():
                await websocket.send_text(text)
    except (WebSocketDisconnect, RuntimeError):
        pass
