"""Questions people ask about accounts, answered from the journal's ``entries`` (lists of dicts).

A user's accounts are ``<user>:available`` and ``<user>:held`` on their ledger shard's stream;
each ``entries`` row holds the account's balance after it, so a balance is its newest row (the
newest row of that account and asset). Amounts come out as decimal text in the asset's unit.
"""

from __future__ import annotations

import sqlite3

from exchange.config import Config
from exchange.core.ledger_messages import (
    FEE_ACCOUNT, HoldReleased, OrderHeld, OrderSettled, ReplaceHeld, Transfer, available_account,
    held_account,
)
from exchange.errors import ExchangeError
from exchange.journal.ledger_readers import decode_ledger_event
from exchange.journal.schema import has_table

BALANCE_COLUMNS = ("user", "asset", "available", "held")
ENTRY_COLUMNS = ("entry_id", "ts_event", "kind", "account", "asset", "delta", "balance", "order_id", "trade_id",
                 "ref")


def check_accounts(config: Config, user: str | None = None, asset: str | None = None,
                   conn: sqlite3.Connection | None = None) -> None:
    """Raise ExchangeError unless accounts are on, ``user`` (if given) is a user of the config (or,
    with ``conn``, one whose accounts the journal holds: a user removed from the config keeps their
    money) and ``asset`` (if given) one of its assets."""
    if not config.accounts:
        raise ExchangeError("accounts are off: the config has no `assets:` (docs/accounts.md), so there are"
                            " no balances")
    if user is not None and config.user(user) is None and (conn is None or user not in journal_users(conn)):
        raise ExchangeError(f"no user {user}; the users are {', '.join(u.name for u in config.users) or 'none'}")
    if asset is not None and asset not in config.asset_map():
        raise ExchangeError(f"no asset {asset}; the assets are {', '.join(config.asset_map())}")


def journal_users(conn: sqlite3.Connection) -> list[str]:
    """Every user with an account in the journal's ``entries``, in name order (a scan: there is no
    index by account, which every commit would pay for)."""
    if not has_table(conn, "entries"):
        return []
    accounts = (account for (account,) in conn.execute("SELECT DISTINCT account FROM entries"))
    return sorted({account.rsplit(":", 1)[0] for account in accounts if not account.startswith("*")})


def _latest(conn: sqlite3.Connection, stream: str, account: str, asset: str) -> int | None:
    row = conn.execute("SELECT balance FROM entries WHERE account=? AND asset=? AND stream=?"
                       " ORDER BY entry_id DESC, row DESC LIMIT 1", (account, asset, stream)).fetchone()
    return None if row is None else row[0]


def balances(conn: sqlite3.Connection, config: Config, user: str | None = None) -> list[dict]:
    """Available and held per asset of ``user``, or of every user with any entry (the config's, then
    those the config no longer has) and then the venue's ``*fee`` account (its available is its
    balance, summed over the shards)."""
    check_accounts(config, user, conn=conn)
    assets = config.asset_map()
    if not has_table(conn, "entries"):
        return []
    rows = []
    configured = [u.name for u in config.users]
    for name in [user] if user else [*configured, *(u for u in journal_users(conn) if u not in configured)]:
        stream = config.ledger_of(name).name
        found = {asset: (_latest(conn, stream, available_account(name), asset),
                         _latest(conn, stream, held_account(name), asset)) for asset in assets}
        if user is None and all(a is None and h is None for a, h in found.values()):
            continue  # never had an entry
        rows += [{"user": name, "asset": asset, "available": assets[asset].format(available or 0),
                  "held": assets[asset].format(held or 0)} for asset, (available, held) in found.items()]
    if user is None:
        for asset, unit in assets.items():
            fees = [_latest(conn, ledger.name, FEE_ACCOUNT, asset) for ledger in config.ledgers]
            if any(fee is not None for fee in fees):
                rows.append({"user": FEE_ACCOUNT, "asset": asset, "available": unit.format(sum(f or 0 for f in fees)),
                             "held": None})
    return rows


def entries(conn: sqlite3.Connection, config: Config, user: str, asset: str | None = None,
            limit: int | None = 50) -> list[dict]:
    """``user``'s entry rows, newest first: kind, account (available or held), delta and balance
    after, with the order, trade or transfer reference each came from where the journal says."""
    check_accounts(config, user, asset, conn=conn)
    if not has_table(conn, "entries"):
        return []
    assets = config.asset_map()
    where, args = "", [config.ledger_of(user).name, available_account(user), held_account(user)]
    if asset is not None:
        where, args = " AND e.asset=?", [*args, asset]
    if limit:
        where, args = where + " ORDER BY e.entry_id DESC, e.row DESC LIMIT ?", [*args, limit]
    else:
        where += " ORDER BY e.entry_id DESC, e.row DESC"
    rows = []
    for entry_id, ts, kind, account, asset_, delta, balance, body in conn.execute(
            "SELECT e.entry_id, e.ts_event, e.kind, e.account, e.asset, e.delta, e.balance, v.body FROM entries e"
            " JOIN events v ON v.engine = e.stream AND v.seq = e.seq WHERE e.stream=? AND e.account IN (?, ?)"
            + where, args):
        unit = assets[asset_]
        order_id, trade_id, ref = _source(conn, decode_ledger_event(body), kind)
        rows.append({"entry_id": entry_id, "ts_event": ts, "kind": kind, "account": account.rsplit(":", 1)[1],
                     "asset": asset_, "delta": f"{'+' if delta > 0 else ''}{unit.format(delta)}",
                     "balance": unit.format(balance), "order_id": order_id, "trade_id": trade_id, "ref": ref})
    return rows


def _source(conn: sqlite3.Connection, event, kind: str) -> tuple[str | None, str | None, str | None]:
    """(order_id, trade_id, ref) of the ledger event an entry is in: the trade of a fill's TRADE and
    FEE entries is looked up in its engine's events; ref is a transfer's reference, or an order's
    client order id (#…) while the order has no order id yet."""
    match event:
        case OrderSettled():
            trade_id = None
            if kind in ("TRADE", "FEE"):
                row = conn.execute("SELECT trade_id FROM events WHERE engine=? AND seq=?",
                                   (event.engine, event.engine_seq)).fetchone()
                trade_id = row and row[0]
            return event.order_id or None, trade_id, f"#{event.client_order_id}"
        case OrderHeld() | ReplaceHeld():
            return event.hold.order_id or getattr(event.command, "order_id", None) or None, None, \
                f"#{event.hold.client_order_id}"
        case HoldReleased():
            return None, None, f"#{event.client_order_id}"
        case Transfer():
            return None, None, event.ref
    return None, None, None
