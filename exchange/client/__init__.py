"""Small Python clients of the exchange: the text protocol, ZMQ order entry and a user's
private feed. May import exchange.core, exchange.wire, exchange.gateway.protocol (the
client-facing messages), exchange.config and exchange.errors.
"""

from exchange.client.order_entry import ZmqClient
from exchange.client.private_feed import PrivateFeed
from exchange.client.text import TextClient

__all__ = ["PrivateFeed", "TextClient", "ZmqClient"]
