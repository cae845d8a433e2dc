"""A slow, obviously correct model of the accounts, to test exchange.core.ledger against.

It keeps, per user and asset, one total (what the user owns) and derives everything else:
``held`` is recomputed from the open orders every time it is asked for, and ``available`` is the
total minus that. Fees are exact fractions (``fractions.Fraction``) per order, rounded only when
charged: an order has paid ``ceil(exact fee so far)`` in all; rebates round towards zero. It
reads the engine's order events directly. It shares nothing with the core but the vocabulary
(events, sides, instruments and assets for their grids); the rules it follows are those of
docs/accounts.md:
- a limit buy holds value(leaves, price) + (the most fee it can still be charged); a sell holds
  leaves in the base; a market buy holds its budget until it ends;
- a replace holds, first, the value of the added lots at the new price plus the price rise on
  the kept lots, plus the taker fee on that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from exchange.core.assets import Terms
from exchange.core.messages import (
    OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderReduced, OrderReplaced,
)
from exchange.core.orders import Side

BUY = Side.BUY


@dataclass
class Money:
    """What the model needs of an instrument: grids in units and fee rates as fractions."""

    base: str
    quote: str
    base_per_lot: int
    cents_per_lot_tick: int
    maker: Fraction
    taker: Fraction
    max_price: int

    @classmethod
    def of(cls, terms: Terms) -> Money:
        lot = Fraction(terms.instrument.lot_size)
        tick = Fraction(terms.instrument.tick_size)
        base_per_lot = lot / Fraction(terms.base.unit)
        per_lot_tick = lot * tick / Fraction(terms.quote.unit)
        assert base_per_lot.denominator == per_lot_tick.denominator == 1
        return cls(terms.base.name, terms.quote.name, int(base_per_lot), int(per_lot_tick),
                   Fraction(terms.rates.maker_bps) / 10_000, Fraction(terms.rates.taker_bps) / 10_000,
                   terms.instrument.max_price)

    def value(self, qty: int, price: int) -> int:
        return qty * price * self.cents_per_lot_tick

    def with_taker_fee(self, value: int) -> int:
        return value + math.ceil(value * self.taker)


def charged(exact: Fraction) -> int:
    """What an order with an exact fee so far has paid: charges round up, rebates towards zero."""
    return math.ceil(exact)


@dataclass
class RefOrder:
    user: str
    symbol: str
    side: Side
    price: int | None
    qty: int
    leaves_qty: int
    budget_left: int = 0  # a market buy: what is still held
    fee: Fraction = Fraction(0)


class ReferenceAccounts:
    def __init__(self, money: dict[str, Money]):
        self.money = money
        self.totals: dict[tuple[str, str], int] = {}
        self.fees: dict[str, int] = {}
        self.orders: dict[str, RefOrder] = {}
        self.market_budgets: dict[tuple[str, str], int] = {}  # (user, symbol) → budget of the next market buy

    def total(self, user: str, asset: str) -> int:
        return self.totals.get((user, asset), 0)

    def _add(self, user: str, asset: str, amount: int) -> None:
        self.totals[(user, asset)] = self.total(user, asset) + amount

    def need(self, order: RefOrder) -> int:
        money = self.money[order.symbol]
        if order.side is not BUY:
            return order.leaves_qty * money.base_per_lot
        if order.price is None:
            return order.budget_left
        value = money.value(order.leaves_qty, order.price)
        return value + charged(order.fee + value * money.taker) - charged(order.fee)

    def held(self, user: str, asset: str) -> int:
        return sum(self.need(o) for o in self.orders.values()
                   if o.user == user and self._asset(o) == asset)

    def available(self, user: str, asset: str) -> int:
        return self.total(user, asset) - self.held(user, asset)

    def _asset(self, order: RefOrder) -> str:
        money = self.money[order.symbol]
        return money.quote if order.side is BUY else money.base

    # -- decisions ---------------------------------------------------------------------------------

    def deposit(self, user: str, asset: str, amount: int) -> None:
        self._add(user, asset, amount)

    def withdraw(self, user: str, asset: str, amount: int) -> bool:
        if amount > self.available(user, asset):
            return False
        self._add(user, asset, -amount)
        return True

    def order_needs(self, user: str, symbol: str, side: Side, qty: int, price: int | None) -> int:
        """What a new order must hold (a market buy: the budget it will get)."""
        money = self.money[symbol]
        if side is not BUY:
            return qty * money.base_per_lot
        if price is None:
            return min(self.available(user, money.quote), money.with_taker_fee(money.value(qty, money.max_price)))
        return money.with_taker_fee(money.value(qty, price))

    def replace_needs(self, order_id: str, qty: int, price: int | None) -> int:
        order = self.orders[order_id]
        money = self.money[order.symbol]
        if order.side is not BUY:
            return max(0, qty - order.qty) * money.base_per_lot
        new_price = order.price if price is None else price
        kept = max(0, min(order.qty, qty) - (order.qty - order.leaves_qty))
        value = money.value(max(0, qty - order.qty), new_price) + money.value(kept, max(0, new_price - order.price))
        return money.with_taker_fee(value)

    # -- what the engine did ------------------------------------------------------------------------

    def on_event(self, event, market_budget: int = 0) -> None:
        match event:
            case OrderAccepted():
                self.orders[event.order_id] = RefOrder(event.user, event.symbol, event.side, event.price,
                                                       event.qty, event.qty, market_budget)
            case OrderFilled():
                order = self.orders[event.order_id]
                money = self.money[order.symbol]
                value = money.value(event.last_qty, event.last_price)
                before = charged(order.fee)
                order.fee += value * (money.maker if event.maker else money.taker)
                fee = charged(order.fee) - before
                amount = event.last_qty * money.base_per_lot
                sign = 1 if order.side is BUY else -1
                self._add(order.user, money.base, sign * amount)
                self._add(order.user, money.quote, -sign * value - fee)
                self.fees[money.quote] = self.fees.get(money.quote, 0) + fee
                order.budget_left -= value + fee if order.price is None and order.side is BUY else 0
                order.leaves_qty -= event.last_qty
                if not order.leaves_qty:
                    del self.orders[event.order_id]
            case OrderCanceled() | OrderExpired():
                self.orders.pop(event.order_id, None)
            case OrderReduced():
                order = self.orders[event.order_id]
                order.qty -= event.reduced_qty
                order.leaves_qty -= event.reduced_qty
            case OrderReplaced():
                order = self.orders[event.order_id]
                order.qty, order.price, order.leaves_qty = event.qty, event.price, event.leaves_qty
