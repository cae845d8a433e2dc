"""The web role: the browser view of the exchange (docs/web.md).

Peers: the notifier (its snapshot endpoint for the instrument list; its public feed through one
``BookFeed`` per instrument, each on its own thread) and the gateway (one ZMQ order entry session
per signed-in browser, on the gateway's endpoint for trusted front ends). Serves HTTP and
WebSockets with uvicorn on ``web.listen``, its connections bounded in number and in the time a
request may take to arrive (exchange.web.connections). It keeps no keys, opens no journal and holds
no state that matters across a restart: a restarted web role starts with empty candles and tapes,
and its browsers sign in again.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
import zmq.asyncio

from exchange.config import Config
from exchange.errors import ConfigError
from exchange.web.app import Web, make_app
from exchange.web.connections import fit_descriptor_limit, listening_socket, make_server
from exchange.web.feeds import FeedThread, fetch_instruments
from exchange.web.hub import Hub
from exchange.web.markets import MarketView
from exchange.wire import sockets
from exchange.wire.security.mesh_keys import MeshSecurity

log = logging.getLogger(__name__)


def run(config: Config) -> None:
    if config.web is None:
        raise ConfigError("the config has no `web:` section; add one (listen: 127.0.0.1:8080) to run the web role")
    asyncio.run(serve(config))


async def serve(config: Config) -> None:
    web_config = config.web
    listening = listening_socket(web_config.listen)  # first: an address in use stops the role at once
    try:
        await _serve(config, listening)
    finally:
        listening.close()


async def _serve(config: Config, listening) -> None:
    web_config = config.web
    ctx = zmq.asyncio.Context()
    ctx.linger = sockets.LINGER_MS
    # SIGINT and SIGTERM set this flag; while uvicorn serves, its own handlers stop it, and it
    # passes the signal on to these when it is done, so that the role closes everything and exits 0
    stopper = sockets.Stopper()
    loop = asyncio.get_running_loop()
    notifiers = [config.notifier, *config.notifier.replicas]
    instruments = await fetch_instruments(ctx, [n.snapshots for n in notifiers], stopper)  # whichever answers
    if stopper.requested:
        ctx.destroy(linger=0)
        log.info("stopped")
        return
    hub = Hub({i.symbol: MarketView(i, web_config.tape_length) for i in instruments})
    web = Web(web_config, hub, ctx, config.gateway.front_end, MeshSecurity.for_role(config, "web"))
    server = make_server(make_app(web), web_config, fit_descriptor_limit(web_config, len(instruments)))
    server.config.load()
    crashed = []

    def crash() -> None:
        crashed.append(True)
        server.should_exit = True

    threads = [FeedThread([n.publish for n in notifiers], [n.snapshots for n in notifiers], i.symbol, loop,
                          hub.deliver, crash) for i in instruments]
    for thread in threads:
        thread.start()
    summaries = loop.create_task(hub.send_summaries())
    ready = loop.create_task(_report_ready(server, hub, web_config.listen))
    try:
        await server.serve(sockets=[listening])
    finally:
        ready.cancel()
        summaries.cancel()
        web.sessions.close()
        for thread in threads:
            thread.stopping.set()  # all at once: each may take a moment to close its sockets
        for thread in threads:
            thread.join(2.0)
        ctx.destroy(linger=0)
        log.info("stopped")
    if crashed:
        raise SystemExit("a market data feed failed; see the log above")


async def _report_ready(server: uvicorn.Server, hub: Hub, listen: str) -> None:
    """Ready once it serves, and every instrument's book has come from the notifier once."""
    while not server.started or any(view.state == "connecting" for view in hub.markets.values()):
        await asyncio.sleep(0.05)
    log.info("ready: http://%s/", listen)
    sockets.report_ready()
