"""Market data: books built from depth updates, the notifier role that fans the feeds out,
the client-side feed that follows them (BookFeed), and `exchange watch`. May import
exchange.core, exchange.wire, exchange.client, exchange.config and exchange.errors.
"""
