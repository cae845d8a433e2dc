"""The matcher: commands in, events out, for every book one engine owns.

Rule 1: all state changes to a book happen here, through OrderBook's add/remove/reduce/unlist;
        the hot paths update a level's quantity and queue themselves (they say so), but an order
        enters the book only in ``add`` and leaves its map and its user's queue only in ``unlist``.
Rule 2: no I/O, no clock, no randomness. Same commands in, same events out, byte for byte.
Rule 3: a client mistake is an ``OrderRejected`` event, never an exception; an exception here
        is a bug (a broken invariant) and should crash the process.

Theory of operation
- Price-time priority: an incoming order (the taker) trades with the best-priced opposite level
  first and, within a level, with the oldest resting order (the maker) first, at the maker's price.
- ``handle`` validates the whole command before touching a book, then returns its events in this
  order: the order's fate (accepted / rejected / canceled / replaced), each match (one Match: the
  maker's fill, the taker's fill and the public trade), then the remainder's fate (rests, expires). Only what matching decides: the
  price levels and the top of book follow from these events, and whoever publishes them derives
  them (exchange.marketdata.levels), outside the matching loop.
- ``seq`` is assigned here, +1 per event across all the engine's books, +3 for a Match (the numbers
  of the three events it stands for, which ``messages.expand`` gives back). Order and trade ids are
  ``"<engine_id>-<n>"``, unique across a mesh of engines with distinct ids.
- A client order id is reserved while its order is open and for a window after its acceptance
  (``client_order_ids.py``); a PlaceOrder that reuses a reserved one is rejected DUPLICATE_ID.
- Risk limits (``Instrument.max_notional``, ``price_band``, ``max_open_orders`` and the user's own
  ``PlaceOrder.max_open_orders``) are checked after DUPLICATE_ID, so that a resent order is always
  recognised, and before any book is touched. A command within them gives exactly the events it
  would give without them. Each book's ``last_price`` (the band's centre) is set by every trade.
- ``apply`` rebuilds the same state from the events alone (replay from a journal); ``digest``
  makes "live state == replayed state" a one-line check. Both live in replay.py (``Replay``).

Order life cycle (status × event → status)

    status            Match (its fill)            OrderCanceled  OrderExpired  OrderReplaced / OrderReduced
    NEW               PARTIALLY_FILLED | FILLED   CANCELED       EXPIRED       NEW
    PARTIALLY_FILLED  PARTIALLY_FILLED | FILLED   CANCELED       EXPIRED       PARTIALLY_FILLED
    FILLED, CANCELED, EXPIRED: final; the order is no longer known to the book.

Fill or kill counts the opposite liquidity in priority order up to the limit price and stops at the
first order of the same user: if that is not enough, the order expires and no book is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchange.core.book import OrderBook
from exchange.core.client_order_ids import DEFAULT_WINDOW_NS, ClientOrderIds
from exchange.core.instruments import Instrument
from exchange.core.messages import (
    CancelAll, CancelOrder, Event, Match, OrderAccepted, OrderCanceled, OrderExpired, OrderReduced,
    OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder,
)
from exchange.core.orders import (
    CancelReason, ExpireReason, Order, SelfTradePrevention, Side, TimeInForce,
)
from exchange.core.replay import Replay
from exchange.errors import RejectCode, not_your_order

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, POST = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST
CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
CANCEL_OLDEST = SelfTradePrevention.CANCEL_OLDEST
CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
SELF_TRADE, USER_CANCEL = CancelReason.SELF_TRADE, CancelReason.USER
# Enum members are looked up once: ``SomeEnum.MEMBER`` costs a class attribute lookup per use.
EXPIRED_IOC, EXPIRED_FOK, EXPIRED_MARKET = ExpireReason.IOC, ExpireReason.FOK, ExpireReason.MARKET
EXPIRED_FUNDS = ExpireReason.FUNDS
# An id's last three digits. From 1000 on, an id is built as head + tail, where the head ("7-123"
# for 123000..123999) is formatted once per thousand ids: turning an int into text is most of
# what an f-string id costs, about 1,200 machine instructions against 400 for this.
_TAILS = tuple(f"{n:03d}" for n in range(1000))


class Matcher(Replay):
    """The books of one engine, its sequence number and its id counters (replay and digest: Replay)."""

    def __init__(self, engine_id: int, instruments: Iterable[Instrument],
                 client_order_id_window: int = DEFAULT_WINDOW_NS):
        self.engine_id = engine_id
        self.books: dict[str, OrderBook] = {i.symbol: OrderBook(i) for i in instruments}
        self.seq = 0  # the last event's sequence number
        self._id_prefix = f"{engine_id}-"
        self.last_order_number = 0  # these also set the cached heads of ids (see the properties)
        self.last_trade_number = 0
        # (user, client_order_id) → order_id, while reserved (the uniqueness window, in ns)
        self.client_order_ids = ClientOrderIds(client_order_id_window, self._is_open)
        self._handlers = {  # PlaceOrder is handled in ``handle`` itself
            CancelOrder: self._cancel,
            ReplaceOrder: self._replace,
            CancelAll: self._cancel_all,
        }
        self._replay_takers: dict[str, Order] = {}  # market orders between accept and expiry

    # The id counters are properties because each has a cache: the head and the first number of
    # the current thousand of ids (see ``_format_id``). Setting a counter (a restore, a replay, a
    # test) empties its cache, so the hot paths, where a counter only goes up from a number at or
    # above that first number, need to test only the upper end of the thousand.

    @property
    def last_order_number(self) -> int:
        return self._order_number

    @last_order_number.setter
    def last_order_number(self, number: int) -> None:
        self._order_number = number
        self._order_head, self._order_base = "", -1000  # no head: the next id is formatted whole

    @property
    def last_trade_number(self) -> int:
        return self._trade_number

    @last_trade_number.setter
    def last_trade_number(self, number: int) -> None:
        self._trade_number = number
        self._trade_head, self._trade_base = "", -1000

    def handle(self, cmd) -> list[Event]:
        """Apply one command; return its events (possibly none, for an empty cancel-all).

        A PlaceOrder, three commands in four, is handled right here (it saves a call); a cancel,
        one in four, goes straight to ``_cancel``; the other commands go to their ``_handlers``.
        """
        kind = type(cmd)
        if kind is not PlaceOrder:
            if kind is CancelOrder:
                return self._cancel(cmd)
            return self._handlers[kind](cmd)
        # Hot path: a Struct field costs more to read than a local, and a tuple assignment of four
        # or more names builds a tuple, so each field is read once, one statement each.
        symbol = cmd.symbol
        try:
            book = self.books[symbol]
        except KeyError:
            return self._reject(cmd, RejectCode.UNKNOWN_SYMBOL, f"no instrument {symbol!r}")
        instrument = book.instrument
        qty = cmd.qty
        price = cmd.price
        tif = cmd.tif
        side = cmd.side
        if not instrument.min_qty <= qty <= instrument.max_qty:
            return self._reject(cmd, RejectCode.BAD_QTY, instrument.qty_problem(qty))
        if cmd.funds:
            problem = self._funds_problem(cmd)
            if problem:
                return self._reject(cmd, *problem)
        if price is None:
            if tif is GTC or tif is POST:
                return self._reject(cmd, RejectCode.BAD_TIF,
                                    f"a market order cannot be {tif.value}; it is IOC or FOK")
        elif not 0 < price <= instrument.max_price:
            return self._reject(cmd, RejectCode.BAD_PRICE, instrument.price_problem(price))
        client_order_id = cmd.client_order_id
        user = cmd.user
        if client_order_id:
            original = self.client_order_ids.taken((user, client_order_id), cmd.ts_received)
            if original:
                # the reject names the original order, so a gateway can answer a resend with its outcome
                return self._reject(cmd, RejectCode.DUPLICATE_ID,
                                    f"client order id #{client_order_id} was already used", original)
        # risk limits come after DUPLICATE_ID, so that a resent order is always recognised as one;
        # ``book.limited`` is False when the instrument sets none, so usually this is one test
        if book.limited or cmd.max_open_orders:
            rejected = self._check_limits(book, cmd)
            if rejected:
                return rejected
        if side is BUY:
            best = book.best_ask
            crosses = best is not None and (price is None or price >= best)
        else:
            best = book.best_bid
            crosses = best is not None and (price is None or price <= best)
        if crosses:
            if tif is POST:
                return self._reject(cmd, RejectCode.WOULD_CROSS,
                                    f"post-only order at {instrument.format_price(price)} would take"
                                    f" liquidity at {instrument.format_price(best)}")
        elif price is None:  # a market order crosses anything, so the other side is empty
            return self._reject(cmd, RejectCode.NO_LIQUIDITY,
                                f"no {'asks' if side is BUY else 'bids'} on {symbol} for a market order")

        self._order_number = number = self._order_number + 1
        tail = number - self._order_base  # >= 0 (see the id counters' properties)
        if tail < 1000:
            order_id = self._order_head + _TAILS[tail]
        else:
            order_id, self._order_head, self._order_base = self._format_id(number)
        stp = cmd.stp or instrument.stp_default
        ts = cmd.ts_received
        seq = self.seq + 1
        accepted = OrderAccepted(seq, ts, symbol, order_id, user, side, qty, price, tif, stp, client_order_id)
        if client_order_id:
            self.client_order_ids.add((user, client_order_id), order_id, symbol, ts)
        order = Order(order_id, user, side, price, qty, qty, tif, stp, client_order_id)

        self.seq = seq
        if not crosses and (tif is GTC or tif is POST):  # the most common command: it rests, no trade
            book.add(order)
            return [accepted]
        events = [accepted]
        if tif is FOK and not self._fillable(book, order):
            self._expire(book, order, EXPIRED_FOK, ts, events)
            return events
        spent_all = False
        if crosses:
            spent_all = self._match(book, order, ts, events, cmd.funds or None)
        if order.leaves_qty and order.live:
            if price is None:
                self._expire(book, order, EXPIRED_FUNDS if spent_all else EXPIRED_MARKET, ts, events)
            elif tif is IOC or tif is FOK:
                self._expire(book, order, EXPIRED_IOC, ts, events)
            else:
                book.add(order)
        return events

    # -- commands other than PlaceOrder --------------------------------------------------------

    def _cancel(self, cmd: CancelOrder) -> list[Event]:
        # The usual case, an order id on the named book, is looked up here; ``_find`` does the rest.
        book = self.books.get(cmd.symbol)
        order = book.orders.get(cmd.order_id) if book is not None else None
        if order is None or order.user != cmd.user:
            book, order = self._find(cmd)
            if order is None:
                return self._reject_unknown(cmd)
        self.seq = seq = self.seq + 1
        canceled = OrderCanceled(seq, cmd.ts_received, book.symbol, order.order_id, order.user, order.side,
                                 order.leaves_qty, USER_CANCEL, order.client_order_id)
        book.remove(order)
        return [canceled]

    def _replace(self, cmd: ReplaceOrder) -> list[Event]:
        book, order = self._find(cmd)
        if order is None:
            return self._reject_unknown(cmd)
        instrument = book.instrument
        qty = cmd.qty
        problem = instrument.qty_problem(qty)
        if not problem and qty <= order.filled_qty:
            problem = (f"quantity {instrument.format_qty(qty)} must be more than the"
                       f" {instrument.format_qty(order.filled_qty)} already filled")
        if problem:
            return self._reject(cmd, RejectCode.BAD_QTY, problem, order.order_id)
        price = order.price if cmd.price is None else cmd.price
        problem = instrument.price_problem(price)
        if problem:
            return self._reject(cmd, RejectCode.BAD_PRICE, problem, order.order_id)
        if (qty > order.qty or price != order.price) and instrument.notional_problem(qty, price):
            return self._reject(cmd, RejectCode.MAX_NOTIONAL, instrument.notional_problem(qty, price),
                                order.order_id)
        if price != order.price:  # a new price must be inside the band; the same one may stay
            problem = instrument.band_problem(price, book.last_price)
            if problem:
                return self._reject(cmd, RejectCode.PRICE_BAND, problem, order.order_id)
        side = order.side
        best = book.best_ask if side is BUY else book.best_bid
        crosses = best is not None and (price >= best if side is BUY else price <= best)
        if order.tif is POST and crosses:
            return self._reject(cmd, RejectCode.WOULD_CROSS,
                                f"post-only order at {instrument.format_price(price)} would take liquidity"
                                f" at {instrument.format_price(best)}", order.order_id)

        ts = cmd.ts_received
        leaves = qty - order.filled_qty
        keep_priority = price == order.price and qty <= order.qty
        self.seq = seq = self.seq + 1
        events: list[Event] = [OrderReplaced(seq, ts, book.symbol, order.order_id, order.user, side, qty,
                                             price, leaves, keep_priority, order.client_order_id)]
        if keep_priority:
            book.reduce(order, order.leaves_qty - leaves)
            order.qty = qty
        else:
            book.remove(order)
            order = Order(order.order_id, order.user, side, price, qty, leaves, order.tif, order.stp,
                          order.client_order_id)
            if crosses:
                self._match(book, order, ts, events)
            if order.leaves_qty and order.live:
                book.add(order)
        return events

    def _cancel_all(self, cmd: CancelAll) -> list[Event]:
        if cmd.symbol is None:
            books = list(self.books.values())
        elif cmd.symbol in self.books:
            books = [self.books[cmd.symbol]]
        else:
            return self._reject(cmd, RejectCode.UNKNOWN_SYMBOL, f"no instrument {cmd.symbol!r}")
        events: list[Event] = []
        ts, user, reason, order_ids = cmd.ts_received, cmd.user, cmd.reason, cmd.order_ids
        for book in books:
            if order_ids is None:  # the user's own orders, oldest first: no walk over the book
                mine = book.orders_of(user)
            else:  # only these, if they are open orders of the user's: also oldest first
                wanted = set(order_ids)
                mine = [order for order in book.orders_of(user) if order.order_id in wanted]
            for order in mine:
                self._cancel_resting(book, order, reason, ts, events)
        return events

    # -- matching ------------------------------------------------------------------------------

    def _match(self, book: OrderBook, taker: Order, ts: int, events: list, budget: int | None = None) -> bool:
        """Trade ``taker`` against the opposite side while it crosses; it may end canceled (STP).

        Level by level, best first; within a level, oldest order first, until either is used up.
        With a ``budget`` (a market buy's funds, in lots × ticks) each fill takes at most what the
        rest of the budget buys at the maker's price; True if the budget stopped the taker.
        """
        symbol = book.symbol
        taker_side = taker.side
        buying = taker_side is BUY
        levels = book.asks if buying else book.bids
        maker_side = SELL if buying else BUY
        limit = taker.price
        # The inner loop runs once per trade: the taker's fields, the counters, the level's qty
        # and the bound methods live in locals, written back before self-trade prevention
        # (which reads and changes them) and at the end of each level.
        taker_user = taker.user
        taker_qty = taker.qty
        taker_id = taker.order_id
        taker_cid = taker.client_order_id
        append = events.append
        unlist = book.unlist
        taker_leaves = taker.leaves_qty
        seq = self.seq
        number = self._trade_number
        head = self._trade_head
        base = self._trade_base
        spent = False
        while taker_leaves and taker.live:
            price = book.best_ask if buying else book.best_bid
            if price is None or (limit is not None and (price > limit if buying else price < limit)):
                break
            level = levels[price]
            level_qty = level.qty
            first_number = number
            while taker_leaves and level_qty:  # (a level with orders has qty > 0)
                maker = level.first
                if maker.user == taker_user:
                    if budget is not None and budget < price:
                        spent = True  # (as below) before self-trade prevention: no trade reaches this order
                        break
                    level.qty = level_qty
                    self.seq = seq
                    taker.leaves_qty = taker_leaves
                    done = self._prevent_self_trade(book, taker, maker, ts, events)
                    seq = self.seq
                    taker_leaves = taker.leaves_qty
                    taker_qty = taker.qty
                    level_qty = level.qty
                    if done:
                        break
                    continue
                maker_leaves = maker.leaves_qty
                qty = maker_leaves if maker_leaves < taker_leaves else taker_leaves
                if budget is not None:
                    affordable = budget // price
                    if not affordable:
                        spent = True  # not one more lot at this price, nor at any worse one
                        break
                    if affordable < qty:
                        qty = affordable
                    budget -= qty * price
                taker_leaves -= qty
                number += 1
                tail = number - base  # >= 0 (see the id counters' properties)
                if tail < 1000:
                    trade_id = head + _TAILS[tail]
                else:
                    trade_id, head, base = self._format_id(number)
                    self._trade_head, self._trade_base = head, base
                seq += 3  # a Match takes the numbers of the maker's fill, the taker's and the trade
                append(Match(seq, ts, symbol, trade_id, price, qty, taker_side, maker.order_id, maker.user,
                             maker_leaves - qty, maker.qty - maker_leaves + qty, taker_id, taker_user,
                             taker_leaves, taker_qty - taker_leaves, maker.client_order_id, taker_cid))
                # ``book.reduce(maker, qty)``, cut to what the front order of a level needs: a
                # filled maker leaves the book, and its level if it was the last
                level_qty -= qty
                if qty != maker_leaves:
                    maker.leaves_qty = maker_leaves - qty  # the taker is used up
                    continue
                maker.leaves_qty = 0
                unlist(maker)
                if level_qty:
                    after = maker.next
                    maker.next = None  # a filled order links to no newer one (see ``OrderBook.unlist``)
                    level.first = after
                    after.prev = None
                else:
                    book.drop_level(maker_side, price)  # the level is used up
            level.qty = level_qty
            if number != first_number:
                book.last_price = price
            if spent:
                break
        self.seq = seq
        self._trade_number = number
        taker.leaves_qty = taker_leaves
        return spent

    def _prevent_self_trade(self, book: OrderBook, taker: Order, maker: Order, ts: int,
                            events: list) -> bool:
        """Apply the taker's STP mode against its own resting ``maker``; True if the taker is done."""
        mode = taker.stp
        if mode is CANCEL_NEWEST:
            self._cancel_taker(book, taker, ts, events)
            return True
        if mode is CANCEL_OLDEST:
            self._cancel_resting(book, maker, SELF_TRADE, ts, events)
            return False
        if mode is CANCEL_BOTH:
            self._cancel_resting(book, maker, SELF_TRADE, ts, events)
            self._cancel_taker(book, taker, ts, events)
            return True
        # DECREMENT: the smaller is canceled, the larger reduced by as much; equal: both canceled
        if maker.leaves_qty < taker.leaves_qty:
            reduced = maker.leaves_qty
            self._cancel_resting(book, maker, SELF_TRADE, ts, events)
            taker.leaves_qty -= reduced
            taker.qty -= reduced
            self.seq = seq = self.seq + 1
            events.append(OrderReduced(seq, ts, book.symbol, taker.order_id, taker.user, taker.side,
                                       reduced, taker.leaves_qty, taker.client_order_id))
            return False
        if maker.leaves_qty > taker.leaves_qty:
            reduced = taker.leaves_qty
            book.reduce(maker, reduced)
            maker.qty -= reduced
            self.seq = seq = self.seq + 1
            events.append(OrderReduced(seq, ts, book.symbol, maker.order_id, maker.user, maker.side,
                                       reduced, maker.leaves_qty, maker.client_order_id))
        else:
            self._cancel_resting(book, maker, SELF_TRADE, ts, events)
        self._cancel_taker(book, taker, ts, events)
        return True

    def _fillable(self, book: OrderBook, taker: Order) -> bool:
        """Whether a fill-or-kill order fills completely before reaching its own user's order.

        Level by level, best first, a level's ``qty`` at a time; it stops as soon as enough is
        found. Only the level of the user's own best opposite order (from their queue of orders) is
        walked order by order, up to that order.
        """
        needed = taker.qty
        user = taker.user
        maker_side = SELL if taker.side is BUY else BUY
        own = [o.price for o in book.orders_of(user) if o.side is maker_side]
        limit = taker.price
        if taker.side is BUY:
            levels = book.asks
            stop = min(own) if own else None
        else:
            levels = book.bids
            stop = max(own) if own else None
        for price in book.prices(maker_side):
            if limit is not None and (price > limit if maker_side is SELL else price < limit):
                return False  # (a market order has no limit)
            level = levels[price]
            if price != stop:
                needed -= level.qty
                if needed <= 0:
                    return True
                continue
            for maker in level.orders():  # the user's own order is in here: count up to it
                if maker.user == user:
                    return False
                needed -= maker.leaves_qty
                if needed <= 0:
                    return True
        return False

    # -- event helpers -------------------------------------------------------------------------

    def _cancel_resting(self, book: OrderBook, order: Order, reason: CancelReason, ts: int,
                        events: list) -> int:
        """Cancel a resting order; return the quantity left at its level."""
        self.seq = seq = self.seq + 1
        events.append(OrderCanceled(seq, ts, book.symbol, order.order_id, order.user, order.side,
                                    order.leaves_qty, reason, order.client_order_id))
        return book.remove(order)

    def _cancel_taker(self, book: OrderBook, taker: Order, ts: int, events: list) -> None:
        self.seq = seq = self.seq + 1
        events.append(OrderCanceled(seq, ts, book.symbol, taker.order_id, taker.user, taker.side,
                                    taker.leaves_qty, SELF_TRADE, taker.client_order_id))
        taker.live = False

    def _expire(self, book: OrderBook, order: Order, reason: ExpireReason, ts: int,
                events: list) -> None:
        self.seq = seq = self.seq + 1
        events.append(OrderExpired(seq, ts, book.symbol, order.order_id, order.user, order.side,
                                   order.leaves_qty, reason, order.client_order_id))
        order.live = False

    def _format_id(self, number: int) -> tuple[str, str, int]:
        """Id number ``number``, and the head and first number of its thousand (see ``_TAILS``)."""
        an_id = f"{self._id_prefix}{number}"
        if number < 1000:
            return an_id, "", -1000  # no head: ids below 1000 are formatted whole
        return an_id, an_id[:-3], number - number % 1000

    def _reject(self, cmd, code: RejectCode, reason: str, order_id: str = "") -> list[Event]:
        self.seq = seq = self.seq + 1
        symbol = cmd.symbol or ""
        order_id = order_id or getattr(cmd, "order_id", "")
        return [OrderRejected(seq, cmd.ts_received, symbol, cmd.user, code, reason,
                              getattr(cmd, "client_order_id", ""), order_id, type(cmd).__name__)]

    def _find(self, cmd: CancelOrder | ReplaceOrder) -> tuple[OrderBook | None, Order | None]:
        """The user's open order named by the command and its book; never someone else's.

        The command's ``symbol`` may be empty: the order id alone finds the book.
        """
        order_id = cmd.order_id
        if not order_id and cmd.client_order_id:
            order_id = self.client_order_ids.get((cmd.user, cmd.client_order_id), "")
        if cmd.symbol:  # the usual case: one book to look in
            book = self.books.get(cmd.symbol)
            order = book.orders.get(order_id) if book is not None else None
            if order is not None:
                return (book, order) if order.user == cmd.user else (None, None)
            return None, None
        for book in self.books.values():
            order = book.orders.get(order_id)
            if order is not None:
                return (book, order) if order.user == cmd.user else (None, None)
        return None, None

    def _check_limits(self, book: OrderBook, cmd: PlaceOrder) -> list[Event] | None:
        """The rejection of a PlaceOrder that breaks a risk limit, or None (see ``handle``)."""
        if cmd.max_open_orders < 0:  # no gateway sends one; a direct sender to the engine might
            return self._reject(cmd, RejectCode.MALFORMED, f"max_open_orders {cmd.max_open_orders} is negative;"
                                                           " 0 means no limit of the user's")
        instrument = book.instrument
        qty = cmd.qty
        price = cmd.price
        if price is not None:
            if instrument.max_notional is not None and qty * price > instrument.max_notional:
                return self._reject(cmd, RejectCode.MAX_NOTIONAL, instrument.notional_problem(qty, price))
            if instrument.price_band is not None:
                problem = instrument.band_problem(price, book.last_price)
                if problem:
                    return self._reject(cmd, RejectCode.PRICE_BAND, problem)
        if (cmd.tif is GTC or cmd.tif is POST) and (instrument.max_open_orders or cmd.max_open_orders):
            problem = self._open_orders_problem(book, cmd)
            if problem:
                return self._reject(cmd, RejectCode.MAX_OPEN_ORDERS, problem)
        return None

    @staticmethod
    def _open_orders_problem(book: OrderBook, cmd: PlaceOrder) -> str:
        """Why the user may not rest another order on this book, or "" if they may."""
        limits = [n for n in (book.instrument.max_open_orders, cmd.max_open_orders) if n]
        limit = min(limits)
        # (counted up to 2**62 at most: a uint64 on the wire can be more than a count may be, and no
        # book holds that many orders)
        if book.open_orders_of(cmd.user, up_to=min(limit, 1 << 62)) < limit:
            return ""
        return (f"user {cmd.user} has {limit} open orders on {book.symbol}, the most allowed;"
                f" cancel one first")

    @staticmethod
    def _funds_problem(cmd: PlaceOrder) -> tuple[RejectCode, str] | None:
        """Why a PlaceOrder may not carry ``funds``, or None: only a market buy, IOC, spends a budget."""
        if cmd.side is not BUY or cmd.price is not None:
            return RejectCode.MALFORMED, "FUNDS is for market buys only"
        if cmd.tif is FOK:
            return RejectCode.BAD_TIF, "a market buy with FUNDS is IOC: fill or kill cannot be held to a budget"
        if cmd.funds < 0:
            return RejectCode.MALFORMED, "FUNDS must be positive"
        return None

    def _reject_unknown(self, cmd: CancelOrder | ReplaceOrder) -> list[Event]:
        name = f"#{cmd.client_order_id}" if cmd.client_order_id else cmd.order_id  # as the client named it
        if not cmd.order_id and not cmd.client_order_id:
            return self._reject(cmd, RejectCode.MALFORMED, "name an order id or a client order id")
        return self._reject(cmd, RejectCode.NOT_YOUR_ORDER, not_your_order(name, cmd.user))

    def _is_open(self, order_id: str, symbol: str) -> bool:
        return order_id in self.books[symbol].orders
