"""Which engine gets which command: a logged-in user's requests, and a closed session's cancels.

STATUS and ORDERS are answered from the order views, BOOK by the notifier (exchange.gateway.book_requests).

An order lives on the engine that owns its instrument; an order id names its engine (``"2-41"``
is engine 2's). A placement whose client order id the gateway has seen is a resend: the same
order gets the original answer (so a client may resend an order whose ACK it never got), a
different one is refused DUPLICATE_ID. A cancel or replace by client order id of a placement
not yet acknowledged follows it to its engine. With accounts on, each command goes by way of
its user's ledger shard (exchange.gateway.ledger_routes): a placement wrapped in a HoldOrder with
its FUNDS budget, a replace in a HoldReplace; requests about accounts go to
exchange.gateway.account_requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exchange.config import Config
from exchange.core.instruments import Instrument
from exchange.core.ledger_messages import HoldOrder, HoldReplace
from exchange.core.messages import CancelAll, OrderAccepted, PlaceOrder
from exchange.core.orders import CancelReason
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.account_requests import AccountRequests
from exchange.gateway.book_requests import BookRequests
from exchange.gateway.in_flight import InFlight
from exchange.gateway.order_views import OrderViews, not_yours
from exchange.gateway.protocol.accounts import funds
from exchange.gateway.protocol.messages import (
    BalanceRequest, BookRequest, CancelAllRequest, CancelRequest, ClientRequest, DepositRequest, OrdersRequest,
    PlaceRequest, ReplaceRequest, StatusRequest, WithdrawRequest,
)
from exchange.gateway.protocol.translate import (
    cancel_all_command, cancel_command, place_command, replace_command, reply_for_event,
)
from exchange.gateway.sessions import Session

log = logging.getLogger(__name__)


class Dispatcher:
    """Turns requests into commands for the engines that own them, sent through ``in_flight``."""

    def __init__(self, config: Config, instruments: dict[str, Instrument], views: OrderViews, in_flight: InFlight,
                 books: BookRequests, guarded: Callable = lambda session, fn, *args: fn(*args)):
        self.engines = [e.name for e in config.engines]
        self.instruments = instruments
        self.owner = {symbol: e.name for e in config.engines for symbol in e.instruments}
        self.engine_by_id = {str(e.id): e.name for e in config.engines}
        self.views = views
        self.in_flight = in_flight
        self.books = books
        self.terms = config.terms()  # empty with accounts off
        self.accounts = AccountRequests(config, in_flight, guarded)

    def dispatch(self, session: Session, user: str, request: ClientRequest, slot: list):
        """Send ``user``'s request on; return its replies now, a callable that makes them in the
        slot's turn, or None when the engine's answer will fill the slot. ProtocolError if refused."""
        ts = time.time_ns()
        placements = self.in_flight.placements
        if isinstance(request, (PlaceRequest, CancelRequest, ReplaceRequest, CancelAllRequest)):
            self.accounts.check_trader(user)
        match request:
            case PlaceRequest():
                instrument = self.instrument(request.symbol)
                terms = self.terms.get(request.symbol)
                budget = funds(request.funds, instrument, terms) if request.funds is not None else 0
                # with accounts on the shard holds the budget (quote units) and gives the engine its own
                command = place_command(request, instrument, user, ts, session.max_open_orders, 0 if terms else budget)
                key = (user, request.client_order_id) if request.client_order_id else None
                # taken: within its window or its order still open (as the engine decides); an id past
                # both may name a new order, though the views have not forgotten it yet
                if key and (key in placements or self.views.client_order_ids.taken(key, ts)):
                    return self._resent(session, slot, key, command)
                return self.in_flight.forward(session, slot, self.owner[request.symbol], command, key,
                                              HoldOrder(command, budget) if terms else None)
            case CancelRequest():
                key = (user, request.client_order_id)
                if request.client_order_id and key in placements:
                    # placed but not yet acknowledged: the engine gets the cancel after the order
                    return self.in_flight.forward(session, slot, self.owner[placements[key].command.symbol],
                                                  cancel_command("", user, ts, request.client_order_id))
                order_id = request.order_id or self.views.client_order_ids.get(key, "")
                engine = self.engine_of(order_id)
                if engine is None:
                    raise not_yours(user, request.order_id, request.client_order_id)
                # an order this gateway has not seen may still be the user's: the engine decides
                return self.in_flight.forward(session, slot, engine,
                                              cancel_command(order_id, user, ts, request.client_order_id))
            case ReplaceRequest():
                key = (user, request.client_order_id)
                if request.client_order_id and key in placements:  # not yet acknowledged
                    symbol, order_id, cid = placements[key].command.symbol, "", request.client_order_id
                else:
                    view = self.views.own(user, request.order_id, request.client_order_id)
                    symbol, order_id, cid = view.symbol, view.order_id, view.client_order_id
                command = replace_command(request, self.instruments[symbol], order_id, user, ts)
                # the shard also gets the order's client order id, by which it knows the order before it
                # has settled its acceptance
                return self.in_flight.forward(session, slot, self.owner[symbol], command,
                                              sent=HoldReplace(command, cid) if self.terms else None)
            case CancelAllRequest():
                if request.symbol is not None and request.symbol not in self.instruments:
                    raise ProtocolError(RejectCode.UNKNOWN_SYMBOL, f"no instrument {request.symbol}")
                engines = [self.owner[request.symbol]] if request.symbol else self.engines
                return self.in_flight.forward_to_all(session, slot, engines,
                                                     cancel_all_command(request.symbol, user, ts))
            case StatusRequest():
                # answered in turn, after the replies to earlier requests (which may create the order)
                return lambda: self.views.status(user, request)
            case OrdersRequest():
                if request.symbol is not None:
                    self.instrument(request.symbol)
                return lambda: self.views.open_orders(user, request)  # in turn, as STATUS
            case BookRequest():
                self.instrument(request.symbol)
                return self.books.ask(session, slot, request)
            case BalanceRequest() | DepositRequest() | WithdrawRequest():
                return self.accounts.dispatch(session, user, request, slot, ts)
        raise ProtocolError(RejectCode.MALFORMED, f"unexpected request {type(request).__name__}")

    def instrument(self, symbol: str) -> Instrument:
        """The instrument ``symbol`` names; ProtocolError UNKNOWN_SYMBOL if none."""
        instrument = self.instruments.get(symbol)
        if instrument is None:
            raise ProtocolError(RejectCode.UNKNOWN_SYMBOL, f"no instrument {symbol}; there are"
                                f" {', '.join(self.instruments)}")
        return instrument

    def engine_of(self, order_id: str) -> str | None:
        return self.engine_by_id.get(order_id.split("-", 1)[0])

    def _resent(self, session: Session, slot: list, key: tuple[str, str], command: PlaceOrder):
        """A placement with a client order id seen before: the same order gets the original answer;
        a different one is refused."""
        pending = self.in_flight.placements.get(key)
        if pending is not None:
            if same_order(pending.command, command):
                pending.also.append((session, slot))
                return None
        else:
            view = self.views.orders.get(self.views.client_order_ids[key])
            if view is not None and same_order(view.accepted, command):
                return [reply_for_event(view.accepted, self.instruments[view.symbol])]
        raise ProtocolError(RejectCode.DUPLICATE_ID, f"client order id #{key[1]} was already used")

    def cancel_on_disconnect(self, session: Session, order_ids: list[str]) -> None:
        """Cancel those of ``order_ids`` that are still open: one CancelAll per engine, reason DISCONNECT."""
        by_engine: dict[str, list[str]] = {}
        for order_id in order_ids:
            view = self.views.orders.get(order_id)
            engine = self.engine_of(order_id)
            if view is not None and view.leaves_qty and engine is not None:
                by_engine.setdefault(engine, []).append(order_id)
        for engine, ids in by_engine.items():
            log.info("session %d of %s ended: canceling its %d open orders on %s", session.id, session.user,
                     len(ids), engine)
            self.in_flight.send_own(engine, CancelAll(session.user, None, time.time_ns(), CancelReason.DISCONNECT,
                                                      tuple(ids)))


def same_order(original: PlaceOrder | OrderAccepted, again: PlaceOrder) -> bool:
    """Whether ``again`` places the order ``original`` placed (or accepted): a resend, not a new order."""
    return (original.side, original.symbol, original.qty, original.price, original.tif) == (
        again.side, again.symbol, again.qty, again.price, again.tif)
