"""Property tests: the matcher against a slow reference model, and the invariants of its events.

``MatcherVersusReference`` sends the same random commands (every order type and time in force,
cancel, replace, cancel-all, every self-trade prevention mode, and bad input) to the live
Matcher and to ``reference.ReferenceMatcher``, and after every command requires:
- the same order events and trades, in the same order (seq, ts_event and reject reasons aside),
  the same books order by order in priority order, the same id counters, and every client order
  id the window still reserves (and none the reference never saw);
- books never crossed, quantity conserved order by order, seq +1 and ts_event copied, events
  grouped per book, and no market data but trades: the core says only what matching decided;
- the price levels derived from those events (``marketdata.levels``, as the engine publishes
  them) give one DepthUpdate for each level that changed and no other, then a TopOfBook if the
  top moved, per book: replayed onto an empty map, they give the live level totals; the last
  TopOfBook of each book is its ``top()``;
- a twin matcher given the same commands gives the same event bytes, and a replica fed only the
  events (``Matcher.apply``) has the same digest;
- each book's per-user queues (``OrderBook.orders_of``) are a scan of its orders, in both.
At the end of a run the commands are replayed from scratch (identical bytes), and the events,
through msgpack, rebuild a matcher with the live digest. The ``@given`` tests below it check the
same properties on plain command lists, fill-or-kill and post-only alone, and one crowded level.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from reference import ReferenceMatcher, opposite

from exchange.core.instruments import Instrument
from exchange.core.matching import Matcher
from exchange.core.messages import (
    AnyEvent, CancelAll, Match, CancelOrder, DepthUpdate, OrderAccepted, OrderCanceled, OrderExpired,
    OrderFilled, OrderReduced, OrderRejected, OrderReplaced, PlaceOrder, ReplaceOrder, TopOfBook,
    Trade, expand,
)
from exchange.core.orders import ExpireReason, SelfTradePrevention, Side, TimeInForce
from exchange.marketdata.levels import LevelBook, level_changes

ENGINE_ID = 7
USERS = ("alice", "bob", "carol")
BTC = Instrument("BTC-USD", tick_size="0.5", lot_size="0.001", min_qty="0.002", max_qty="0.020")
ETH = Instrument("ETH-USD", tick_size="0.01", lot_size="1", max_qty="12", max_price="1.10",
                 stp_default=SelfTradePrevention.DECREMENT)
INSTRUMENTS = (BTC, ETH)
BY_SYMBOL = {i.symbol: i for i in INSTRUMENTS}
SYMBOLS = tuple(BY_SYMBOL)
UNKNOWN_SYMBOL = "XRP-USD"
WINDOW = 12_000  # ns: a client order id is reserved for 12 commands after acceptance (1,000 ns apart)
LOWEST = {"BTC-USD": 200, "ETH-USD": 100}  # prices come from 11 ticks up from here; ETH's top is its max
BAND = 11
MARKET_DATA = (DepthUpdate, TopOfBook)
EMPTY_TOP = (None, 0, None, 0)


def band_price(symbol: str, n: int) -> int:
    return LOWEST.get(symbol, 200) + n % BAND


def limit_price(symbol: str, side: Side, n: int, width: int = 8) -> int:
    """Buys from the lower ``width`` ticks of the band, sells from the upper: the books fill up,
    and orders still cross often."""
    offset = n % width
    return LOWEST[symbol] + (offset if side is Side.BUY else BAND - 1 - offset)


def good_qty(instrument: Instrument, n: int) -> int:
    """Small, so that orders fill partially and sweep levels; now and then the maximum."""
    return instrument.max_qty if n % 16 == 15 else instrument.min_qty + n % 7


def bad_qty(instrument: Instrument, n: int) -> int:
    return (0, -1, instrument.min_qty - 1, instrument.max_qty + 1)[n % 4]


def bad_price(instrument: Instrument, n: int) -> int:
    return (0, -1, instrument.max_price + 1)[n % 3]


def comparable(event):
    """An event as the reference model tells it: no seq, no ts_event, no free-text reason."""
    if isinstance(event, OrderRejected):
        return msgspec.structs.replace(event, seq=0, ts_event=0, reason="")
    return msgspec.structs.replace(event, seq=0, ts_event=0)


def encode_all(events) -> list[bytes]:
    return [msgspec.msgpack.encode(e) for e in events]


def levels(matcher: Matcher) -> dict[tuple[str, Side, int], int]:
    return {(book.symbol, side, price): qty for book in matcher.books.values()
            for side in Side for price, qty in book.depth(side)}


def handle_both(matcher: Matcher, reference: ReferenceMatcher, command) -> list:
    """The matcher's events for ``command``, after checking them and every book against the
    reference's: same order events and trades in the same order, same books, same counters."""
    events = matcher.handle(command)
    expected = reference.handle(command)  # a match as the maker's fill, the taker's and the trade
    assert [comparable(e) for e in expand(events) if not isinstance(e, MARKET_DATA)] == expected
    assert all(e.reason for e in events if isinstance(e, OrderRejected)), "a reject says why"
    for symbol, book in matcher.books.items():
        book.check()
        bid, _, ask, _ = book.top()
        assert bid is None or ask is None or bid < ask, f"{symbol} crossed: {bid} >= {ask}"
        assert book.state() == reference.books[symbol].state()
        assert book.top() == reference.books[symbol].top()
    assert (matcher.last_order_number, matcher.last_trade_number) == \
        (reference.last_order_number, reference.last_trade_number)
    ids = matcher.client_order_ids  # within the window: held; beyond it, possibly forgotten
    assert ids.order_ids().items() <= reference.client_order_ids.items()
    assert reference.reserved(command.ts_received).items() <= ids.order_ids().items()
    return events


@dataclass
class Account:
    """One order's quantities, as its events tell them."""

    symbol: str
    user: str
    side: Side
    client_order_id: str
    qty: int
    filled: int = 0
    leaves: int = 0
    gone: int = 0  # canceled or expired

    @property
    def open(self) -> bool:
        return self.leaves > 0


# -- the state machine ---------------------------------------------------------------------------

users = st.sampled_from(USERS)
sides = st.sampled_from(Side)
tifs = st.sampled_from(TimeInForce)
stps = st.sampled_from([None, *SelfTradePrevention])
numbers = st.integers(0, 255)
client_order_ids = st.tuples(st.sampled_from(["none", "none", "fresh", "reused"]), numbers)
limit_tifs = st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.POST, TimeInForce.IOC, TimeInForce.FOK])
# A cancel or replace names an order: its own open one by id or client order id, or (in the
# misdirected rule, mostly) a closed or made-up one, someone else's, in the wrong book, or none.
open_targets = dict(aimed_at=st.tuples(st.just("open"), numbers),
                    naming=st.sampled_from(["order_id", "order_id", "client_order_id"]),
                    scope=st.sampled_from(["", "own"]))
any_targets = dict(aimed_at=st.tuples(st.sampled_from(["open", "open", "closed", "made-up"]), numbers),
                   naming=st.sampled_from(["order_id", "order_id", "client_order_id", "neither"]),
                   scope=st.sampled_from(["", "own", "other", "unknown"]))
whos = st.sampled_from(["owner", *USERS])
new_qtys = st.tuples(st.sampled_from(["delta", "delta", "filled+"]), st.integers(-4, 4))
new_prices = st.tuples(st.sampled_from(["keep", "keep", "same", "band", "through"]), numbers)


class MatcherVersusReference(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.matcher = Matcher(ENGINE_ID, INSTRUMENTS, WINDOW)
        self.twin = Matcher(ENGINE_ID, INSTRUMENTS, WINDOW)  # the same commands again: replay
        self.replica = Matcher(ENGINE_ID, INSTRUMENTS, WINDOW)  # the events only: rebuild
        self.reference = ReferenceMatcher(ENGINE_ID, INSTRUMENTS, WINDOW)
        self.commands: list = []
        self.events: list = []
        self.accounts: dict[str, Account] = {}
        self.depth: dict[tuple[str, Side, int], int] = {}
        self.published_top = {symbol: EMPTY_TOP for symbol in SYMBOLS}
        self.levels = {symbol: LevelBook(symbol) for symbol in SYMBOLS}  # derived from the events
        self.fresh_ids = 0
        self.clean = True  # False while a step runs: teardown checks only a run that passed

    # -- rules ----------------------------------------------------------------------------------

    @initialize(opening=st.lists(st.tuples(st.sampled_from(SYMBOLS), users, numbers, numbers), max_size=8))
    def open_books(self, opening):
        """A bid and an ask per entry to start from, so that every run has orders to cancel, replace
        and take (swarm testing switches some rules off for a whole run, sometimes all that place)."""
        for symbol, user, q, p in opening:
            for side in Side:
                self.run(PlaceOrder(user, symbol, side, good_qty(BY_SYMBOL[symbol], q),
                                    limit_price(symbol, side, p, width=6), ts_received=self.ts()))

    @rule(symbol=st.sampled_from(SYMBOLS), user=users, side=sides, q=numbers, p=numbers,
          tif=limit_tifs, stp=stps, cid=client_order_ids)
    def place_limit(self, symbol, user, side, q, p, tif, stp, cid):
        self.run(PlaceOrder(user, symbol, side, good_qty(BY_SYMBOL[symbol], q), limit_price(symbol, side, p),
                            tif, stp, self.client_order_id(*cid), self.ts()))

    @rule(symbol=st.sampled_from(SYMBOLS), user=users, side=sides, q=numbers, p=numbers,
          post=st.booleans(), stp=stps)
    def rest_limit(self, symbol, user, side, q, p, post, stp):
        """A GTC or post-only order, mostly behind the touch: depth for the others to take."""
        self.run(PlaceOrder(user, symbol, side, good_qty(BY_SYMBOL[symbol], q),
                            limit_price(symbol, side, p, width=6),
                            TimeInForce.POST if post else TimeInForce.GTC, stp, "", self.ts()))

    @rule(symbol=st.sampled_from(SYMBOLS), user=users, side=sides, q=numbers,
          tif=st.sampled_from([TimeInForce.IOC, TimeInForce.FOK] * 2 + [TimeInForce.GTC, TimeInForce.POST]),
          stp=stps, cid=client_order_ids)
    def place_market(self, symbol, user, side, q, tif, stp, cid):
        self.run(PlaceOrder(user, symbol, side, good_qty(BY_SYMBOL[symbol], q), None, tif, stp,
                            self.client_order_id(*cid), self.ts()))

    @rule(symbol=st.sampled_from([*SYMBOLS, UNKNOWN_SYMBOL, ""]), user=users, side=sides,
          q=st.tuples(st.sampled_from(["good", "bad"]), numbers),
          p=st.tuples(st.sampled_from(["market", "good", "bad"]), numbers), tif=tifs, stp=stps,
          cid=client_order_ids)
    def place_bad(self, symbol, user, side, q, p, tif, stp, cid):
        instrument = BY_SYMBOL.get(symbol, BTC)
        qty = good_qty(instrument, q[1]) if q[0] == "good" else bad_qty(instrument, q[1])
        price = {"market": None, "good": band_price(symbol, p[1]), "bad": bad_price(instrument, p[1])}[p[0]]
        self.run(PlaceOrder(user, symbol, side, qty, price, tif, stp, self.client_order_id(*cid), self.ts()))

    @rule(**open_targets)
    def cancel(self, aimed_at, naming, scope):
        self.cancel_or_replace(aimed_at, "owner", naming, scope)

    @rule(**open_targets, q=new_qtys, p=new_prices)
    def replace(self, aimed_at, naming, scope, q, p):
        self.cancel_or_replace(aimed_at, "owner", naming, scope, (q, p))

    @rule(**any_targets, who=whos, replacing=st.booleans(),
          q=st.one_of(new_qtys, st.tuples(st.sampled_from(["filled", "bad"]), numbers)),
          p=st.one_of(new_prices, st.tuples(st.just("bad"), numbers)))
    def misdirect(self, aimed_at, who, naming, scope, replacing, q, p):
        self.cancel_or_replace(aimed_at, who, naming, scope, (q, p) if replacing else None)

    @rule(user=users, symbol=st.sampled_from([None, *SYMBOLS, UNKNOWN_SYMBOL]))
    def cancel_all(self, user, symbol):
        self.run(CancelAll(user, symbol, self.ts()))

    @invariant()
    def each_users_index_is_a_scan_of_the_book(self):
        """``OrderBook.orders_of`` (what cancel-all reads) is each user's open orders, in the order
        they entered the book, in the live matcher and in the one rebuilt from events alone."""
        for matcher in (self.matcher, self.replica):
            for book in matcher.books.values():
                scan: dict[str, list[str]] = {}
                for order in book.orders.values():
                    scan.setdefault(order.user, []).append(order.order_id)
                assert {user: [o.order_id for o in book.orders_of(user)] for user in book.user_last} == scan

    # -- choosing arguments from the state --------------------------------------------------------

    def ts(self) -> int:
        return 1_000 * (len(self.commands) + 1)

    def client_order_id(self, how: str, n: int) -> str:
        if how == "fresh":
            self.fresh_ids += 1
            return f"c{self.fresh_ids}"
        if how == "reused":
            used = sorted({cid for _, cid in self.reference.client_order_ids})
            return used[n % len(used)] if used else "c0"
        return ""

    def cancel_or_replace(self, aimed_at, who, naming, scope, replacing=None) -> None:
        """Cancel, or replace with new (qty, price) choices, the order chosen by ``aimed_at``."""
        kind, n = aimed_at
        open_orders = [(book.symbol, o) for book in self.reference.books.values() for o in book.orders()]
        if kind == "open" and open_orders:
            home, order = open_orders[n % len(open_orders)]
            order_id, owner, client_order_id = order.order_id, order.user, order.client_order_id
        elif kind != "made-up" and self.accounts:
            order_id = sorted(self.accounts)[n % len(self.accounts)]
            order, account = None, self.accounts[order_id]
            home, owner, client_order_id = account.symbol, account.user, account.client_order_id
        else:
            home, order, owner = SYMBOLS[n % 2], None, USERS[n % 3]
            order_id, client_order_id = ("7-9999", "8-1")[n % 2], "never"
        user = owner if who == "owner" else who
        if naming == "order_id" or (naming == "client_order_id" and not client_order_id):
            client_order_id = ""
        elif naming == "client_order_id":
            order_id = ""
        else:
            order_id = client_order_id = ""
        other = SYMBOLS[1 - SYMBOLS.index(home)]
        symbol = {"": "", "own": home, "other": other, "unknown": UNKNOWN_SYMBOL}[scope]
        if replacing is None:
            self.run(CancelOrder(user, symbol, order_id, client_order_id, self.ts()))
            return
        (how_qty, q), (how_price, p) = replacing
        instrument = BY_SYMBOL[home]
        qty, price = (order.qty, order.price) if order else (instrument.min_qty + 2, band_price(home, 5))
        filled = qty - order.leaves_qty if order else 0
        qty = {"delta": qty + q, "filled": filled, "filled+": filled + abs(q) % 3,  # 0: refused
               "bad": bad_qty(instrument, q)}[how_qty]
        makers = self.reference.books[home].side(opposite(order.side)) if order else []
        if how_price == "through" and makers:  # to the opposite best or beyond: it trades, or STP
            price = makers[0].price + (p % 3 if order.side is Side.BUY else -(p % 3))
        else:
            price = {"keep": None, "same": price, "bad": bad_price(instrument, p),
                     "band": limit_price(home, order.side, p) if order else band_price(home, p),
                     "through": band_price(home, p)}[how_price]
        self.run(ReplaceOrder(user, symbol, qty, price, order_id, client_order_id, self.ts()))

    # -- one command, every check ---------------------------------------------------------------

    def run(self, command) -> None:
        self.clean = False
        levels_before = levels(self.matcher)
        events = handle_both(self.matcher, self.reference, command)
        assert not any(isinstance(e, MARKET_DATA) for e in events), "the core derives no market data"
        derived = level_changes(self.levels, events)
        last_seq = {e.symbol: e.seq for e in events}  # per book: its last event's
        assert all(e.seq == last_seq[e.symbol] and e.ts_event == command.ts_received for e in derived)
        self.check_sequence(command, expand(events))
        self.check_grouping(events)
        self.check_grouping(derived)
        self.check_quantities(expand(events))
        self.check_market_data(derived, levels_before)
        assert encode_all(self.twin.handle(command)) == encode_all(events)
        for event in events:
            self.replica.apply(event)
        assert self.replica.digest() == self.matcher.digest()
        self.commands.append(command)
        self.events.extend(events)
        self.clean = True

    def check_sequence(self, command, events) -> None:
        """Once its Matches are expanded, a command's events are numbered on, one by one."""
        first = self.events[-1].seq + 1 if self.events else 1
        assert [e.seq for e in events] == list(range(first, first + len(events)))
        assert self.matcher.seq == first + len(events) - 1
        assert all(e.ts_event == command.ts_received for e in events)

    @staticmethod
    def check_grouping(events) -> None:
        """Per book, contiguous: order events and trades, then DepthUpdates (one per level), then
        at most one TopOfBook."""
        seen = set()
        for symbol, group in itertools.groupby(events, key=lambda e: e.symbol):
            assert symbol not in seen, f"events of {symbol} are split"
            seen.add(symbol)
            group = list(group)
            stages = [2 if isinstance(e, TopOfBook) else 1 if isinstance(e, DepthUpdate) else 0
                      for e in group]
            assert stages == sorted(stages) and stages.count(2) <= 1, [type(e).__name__ for e in group]
            depth = [(e.side, e.price) for e in group if isinstance(e, DepthUpdate)]
            assert len(depth) == len(set(depth)), f"a level updated twice: {depth}"

    def check_quantities(self, events) -> None:
        """Each order's qty = filled + leaves + canceled/expired; open orders are exactly the book."""
        accounts = self.accounts
        for i, e in enumerate(events):
            match e:
                case OrderAccepted():
                    assert e.order_id not in accounts
                    accounts[e.order_id] = Account(e.symbol, e.user, e.side, e.client_order_id, e.qty,
                                                   leaves=e.qty)
                case OrderFilled():
                    a = accounts[e.order_id]
                    assert a.open and 0 < e.last_qty <= a.leaves
                    a.filled += e.last_qty
                    a.leaves -= e.last_qty
                    assert (e.filled_qty, e.leaves_qty) == (a.filled, a.leaves)
                case Trade():
                    assert i >= 2, "a trade follows its two fills"
                    maker, taker = events[i - 2], events[i - 1]
                    assert isinstance(maker, OrderFilled) and maker.maker
                    assert isinstance(taker, OrderFilled) and not taker.maker
                    assert maker.trade_id == taker.trade_id == e.trade_id
                    assert maker.last_qty == taker.last_qty == e.qty
                    assert maker.last_price == taker.last_price == e.price
                    assert taker.side is e.taker_side and maker.side is not taker.side
                    assert maker.user != taker.user, "a user traded with themself"
                case OrderReduced():
                    a = accounts[e.order_id]
                    assert 0 < e.reduced_qty < a.leaves
                    a.qty -= e.reduced_qty
                    a.leaves -= e.reduced_qty
                    assert e.leaves_qty == a.leaves
                case OrderReplaced():
                    a = accounts[e.order_id]
                    assert a.open and e.qty > a.filled
                    a.qty, a.leaves = e.qty, e.qty - a.filled
                    assert e.leaves_qty == a.leaves
                case OrderCanceled() | OrderExpired():
                    a = accounts[e.order_id]
                    gone = e.canceled_qty if isinstance(e, OrderCanceled) else e.expired_qty
                    assert a.open and gone == a.leaves
                    a.gone += gone
                    a.leaves = 0
        for a in accounts.values():
            assert a.qty == a.filled + a.leaves + a.gone
        resting = {o.order_id: (book.symbol, o.user, o.side, o.qty, o.leaves_qty)
                   for book in self.matcher.books.values() for o in book.orders.values()}
        assert resting == {order_id: (a.symbol, a.user, a.side, a.qty, a.leaves)
                           for order_id, a in accounts.items() if a.open}

    def check_market_data(self, events, levels_before) -> None:
        """A DepthUpdate with the new total for each level that changed, and for no other; a
        TopOfBook whenever the top changed, and only then."""
        levels_after = levels(self.matcher)
        updated = {}
        for e in events:
            if isinstance(e, DepthUpdate):
                key = (e.symbol, e.side, e.price)
                updated[key] = e.qty
                if e.qty:
                    self.depth[key] = e.qty
                else:
                    self.depth.pop(key, None)
            elif isinstance(e, TopOfBook):
                top = (e.bid_price, e.bid_qty, e.ask_price, e.ask_qty)
                assert top != self.published_top[e.symbol], "a TopOfBook that changes nothing"
                self.published_top[e.symbol] = top
        changed = {key for key in levels_before.keys() | levels_after.keys()
                   if levels_before.get(key, 0) != levels_after.get(key, 0)}
        assert updated == {key: levels_after.get(key, 0) for key in changed}, "one per changed level"
        assert self.depth == levels_after == {(symbol, side, price): qty
                                              for symbol, book in self.reference.books.items()
                                              for (side, price), qty in book.level_totals().items()}
        for symbol, book in self.matcher.books.items():
            assert self.published_top[symbol] == book.top()

    def teardown(self) -> None:
        if not self.clean:
            return  # the failing step has already said what is wrong
        replayed = Matcher(ENGINE_ID, INSTRUMENTS, WINDOW)
        again = [e for command in self.commands for e in replayed.handle(command)]
        assert encode_all(again) == encode_all(self.events)
        journal = [msgspec.msgpack.decode(row, type=AnyEvent) for row in encode_all(self.events)]
        assert journal == self.events
        rebuilt = Matcher.rebuild(ENGINE_ID, INSTRUMENTS, journal, WINDOW)
        assert rebuilt.digest() == self.matcher.digest()
        for book in rebuilt.books.values():
            book.check()


TestMatcherVersusReference = MatcherVersusReference.TestCase


# -- single properties over command lists ----------------------------------------------------------

@st.composite
def any_command(draw):
    """One command with a mostly valid, narrow-band price, quantity and target."""
    kind = draw(st.sampled_from(["limit", "limit", "market", "cancel", "replace", "cancel-all"]))
    symbol = draw(st.sampled_from(SYMBOLS))
    user, qty = draw(users), good_qty(BY_SYMBOL[symbol], draw(numbers))
    price = band_price(symbol, draw(numbers))
    order_id = f"{ENGINE_ID}-{draw(st.integers(1, 30))}"
    if kind == "limit":
        return PlaceOrder(user, symbol, draw(sides), qty, price, draw(tifs), draw(stps),
                          draw(st.sampled_from(["", "", "a", "b"])))
    if kind == "market":
        return PlaceOrder(user, symbol, draw(sides), qty, None, draw(tifs), draw(stps))
    if kind == "cancel":
        return CancelOrder(user, draw(st.sampled_from(["", symbol])), order_id)
    if kind == "replace":
        return ReplaceOrder(user, "", qty, draw(st.sampled_from([None, price])), order_id)
    return CancelAll(user, draw(st.sampled_from([None, symbol])))


command_lists = st.lists(any_command(), max_size=40).map(
    lambda cs: [msgspec.structs.replace(c, ts_received=1_000 * i) for i, c in enumerate(cs, 1)])


def run_all(commands) -> tuple[Matcher, list]:
    matcher = Matcher(ENGINE_ID, INSTRUMENTS)
    return matcher, [e for command in commands for e in matcher.handle(command)]


@given(command_lists)
def test_the_same_commands_give_the_same_event_bytes(commands):
    first, events = run_all(commands)
    second, again = run_all(commands)
    assert encode_all(again) == encode_all(events)
    assert second.digest() == first.digest()


@given(command_lists)
def test_rebuilding_from_any_prefix_of_the_journal_gives_the_live_state(commands):
    matcher, journal = Matcher(ENGINE_ID, INSTRUMENTS), []
    for command in commands:
        journal += [msgspec.msgpack.encode(e) for e in matcher.handle(command)]
        events = [msgspec.msgpack.decode(row, type=AnyEvent) for row in journal]
        assert Matcher.rebuild(ENGINE_ID, INSTRUMENTS, events).digest() == matcher.digest()


@given(command_lists, users, sides, numbers, st.one_of(st.none(), numbers), st.sampled_from(SYMBOLS))
def test_fill_or_kill_fills_completely_or_touches_nothing(commands, user, side, q, p, symbol):
    matcher, _ = run_all(commands)
    book = matcher.books[symbol]
    before = book.state()
    qty = good_qty(BY_SYMBOL[symbol], q)
    price = None if p is None else band_price(symbol, p)
    events = matcher.handle(PlaceOrder(user, symbol, side, qty, price, TimeInForce.FOK))
    if isinstance(events[0], OrderRejected):
        assert price is None and len(events) == 1 and book.state() == before
    elif isinstance(events[1], OrderExpired):
        assert events[1].reason is ExpireReason.FOK and events[1].expired_qty == qty
        assert len(events) == 2 and book.state() == before
    else:
        taker_fills = [e.taker_fill() for e in events if isinstance(e, Match)]
        assert sum(e.last_qty for e in taker_fills) == qty and taker_fills[-1].leaves_qty == 0
        assert not any(isinstance(e, (OrderCanceled, OrderExpired, OrderReduced)) for e in events)


@given(command_lists, users, sides, numbers, numbers, st.sampled_from(SYMBOLS))
def test_a_post_only_order_rests_whole_or_is_rejected(commands, user, side, q, p, symbol):
    matcher, _ = run_all(commands)
    book = matcher.books[symbol]
    before = book.state()
    qty, price = good_qty(BY_SYMBOL[symbol], q), band_price(symbol, p)
    events = matcher.handle(PlaceOrder(user, symbol, side, qty, price, TimeInForce.POST))
    if isinstance(events[0], OrderRejected):
        assert len(events) == 1 and book.state() == before
    else:
        assert not any(isinstance(e, (Match, OrderCanceled)) for e in events)
        assert book.orders[events[0].order_id].leaves_qty == qty


@given(st.lists(st.tuples(users, numbers), min_size=20, max_size=40),
       st.lists(st.tuples(st.sampled_from(["cancel"] * 4 + ["take", "place"]), users, numbers),
                min_size=30, max_size=60))
def test_a_crowded_level_keeps_time_priority_through_cancels_and_takes(crowd, steps):
    """Many orders at one price, most canceled from the middle of the level's queue (each unlinks
    an order between two others): the book must still match in time priority."""
    matcher, reference = Matcher(ENGINE_ID, INSTRUMENTS), ReferenceMatcher(ENGINE_ID, INSTRUMENTS)
    script = [("place", user, n) for user, n in crowd] + steps
    for ts, (kind, user, n) in enumerate(script, 1):
        resting = reference.books["ETH-USD"].bids
        if kind == "cancel" and resting:
            order = resting[-1 - n % len(resting)] if n % 8 else resting[0]
            command = CancelOrder(order.user, "ETH-USD", order.order_id, ts_received=ts)
        elif kind == "take":
            command = PlaceOrder(user, "ETH-USD", Side.SELL, 1 + n % 4, 105, TimeInForce.IOC,
                                 SelfTradePrevention.CANCEL_OLDEST, ts_received=ts)
        else:
            command = PlaceOrder(user, "ETH-USD", Side.BUY, 1 + n % 3, 105, ts_received=ts)
        handle_both(matcher, reference, command)
