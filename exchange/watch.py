"""`exchange watch SYMBOL`: one readable line per trade and best bid/offer change, as they happen."""

from __future__ import annotations

from collections.abc import Callable

import zmq

from exchange import mesh
from exchange.config import Config
from exchange.core.instruments import Instrument
from exchange.core.messages import TopOfBook, Trade
from exchange.wire import Decoder, MarketData, topic


def describe(event, instrument: Instrument) -> str:
    p, q = instrument.format_price, instrument.format_qty
    if isinstance(event, Trade):
        return (f"TRADE {event.symbol} {q(event.qty)} @ {p(event.price)} {event.taker_side.value}"
                f" trade {event.trade_id} seq {event.seq}")
    if isinstance(event, TopOfBook):
        bid = f"{q(event.bid_qty)} @ {p(event.bid_price)}" if event.bid_price is not None else "-"
        ask = f"{q(event.ask_qty)} @ {p(event.ask_price)}" if event.ask_price is not None else "-"
        return f"BBO {event.symbol} bid {bid} | ask {ask} seq {event.seq}"
    return repr(event)


def watch(config: Config, symbol: str, emit: Callable[[str], None], stop: Callable[[], bool]) -> None:
    """Print (via ``emit``) trades and top-of-book changes of ``symbol`` until ``stop()`` is true."""
    instrument = config.instrument_map()[symbol]
    ctx = mesh.context()
    sub = mesh.socket(ctx, zmq.SUB, connect=config.notifier.publish)  # ← notifier
    for channel in ("trade", "bbo"):
        sub.setsockopt(zmq.SUBSCRIBE, topic(symbol, channel))
    decoder = Decoder(MarketData)
    last: dict[str, tuple[int, int]] = {}
    try:
        while not stop():
            if not sub.poll(200):
                continue
            for parts in mesh.drain(sub):
                message = decoder.decode(parts[-1])
                epoch, seq = last.get(message.channel, (message.epoch, message.chan_seq - 1))
                if (epoch, seq + 1) != (message.epoch, message.chan_seq):
                    emit(f"GAP {symbol} {message.channel}: expected {seq + 1}, got {message.chan_seq}"
                         f" (epoch {message.epoch})")
                last[message.channel] = (message.epoch, message.chan_seq)
                for event in message.events:
                    emit(describe(event, instrument))
    finally:
        sub.close()
        ctx.term()
