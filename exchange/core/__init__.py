"""The pure core: instruments, orders, messages, books, the matcher and its replay, and the ledger
(assets, fees, holds, settlement). May import exchange.errors and nothing else of the package, and
of the rest only pure computation (tests/test_layers.py lists what).

Units, everywhere inside this package:
- ``price`` is an int number of ticks of the instrument's ``tick_size``;
- ``qty`` (and ``leaves_qty``, ``filled_qty``, ``last_qty``) is an int number of lots of its ``lot_size``;
- ``ts_received`` / ``ts_event`` are int nanoseconds since the UNIX epoch, given by the caller.

Nothing here reads a clock, a file, a socket or a random source: the same commands give the
same events, byte for byte once encoded. Decimal text is converted to ticks and lots once, at
the edge, by :class:`exchange.core.instruments.Instrument`.
"""
