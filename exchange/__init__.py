"""An exchange: price-time matching, a SQLite journal and fair market data over ZeroMQ."""

__version__ = "0.1.0"
