"""The browser view (the `web` role): an ASGI app that serves the live market and a signed-in
user's orders and balances. May import exchange.core, exchange.wire, exchange.config,
exchange.errors, the client side of market data (exchange.marketdata.feed, .depth) and the client
order entry protocol (exchange.gateway.protocol); never another role.
"""
