"""`exchange accounts …`: balances and ledger entries of users, read-only from the journal
(exchange.journal.account_queries). One click group, so more subcommands join it with
``accounts_group.command``."""

from __future__ import annotations

import click

from exchange.cli.common import config_option, load
from exchange.errors import ExchangeError
from exchange.journal.cli import db_option, emit, lag_note, open_from_config, output_options, with_options


@click.group("accounts")
def accounts_group() -> None:
    """Users' balances and their ledger entries, with accounts on (docs/accounts.md)."""


def _rows(config_path: str, db_path: str | None, query: str, **args) -> tuple[list[dict], str]:
    """Rows of ``account_queries.<query>`` on the config's journal, and the note that its tables are
    behind its log ("" if not: a deposit answered OK may not be in them yet); one Error: line for
    any mistake."""
    from exchange.journal import account_queries
    from exchange.journal.schema import one_reading

    try:  # before opening the journal: with accounts off, say that rather than anything about a file (the
        # user is checked with the journal open: one the config no longer has may still have money there)
        account_queries.check_accounts(load(config_path), None, args.get("asset"))
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    config, _, conn = open_from_config(config_path, db_path)
    try:
        with one_reading(conn):  # the rows and the note of one moment of the journal
            return getattr(account_queries, query)(conn, config, **args), lag_note(conn)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()


@accounts_group.command("balances")
@click.argument("user", required=False)
@with_options(config_option, db_option, *output_options)
def balances(user: str | None, config_path: str, db_path: str | None, as_json: bool, as_csv: bool) -> None:
    """Available and held balances per asset of USER, or of every user and the venue's *fee account."""
    from exchange.journal.account_queries import BALANCE_COLUMNS

    rows, behind = _rows(config_path, db_path, "balances", user=user)
    emit(rows, BALANCE_COLUMNS, as_json, as_csv, f"{user or 'nobody'} has no entries yet")
    if behind:
        click.echo(behind, err=True)


@accounts_group.command("ledger")
@click.argument("user")
@click.option("--asset", default=None, help="Only this asset's entries, e.g. USD.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0, max=2**63 - 1),
              help="At most this many rows; 0 for all.")
@with_options(config_option, db_option, *output_options)
def ledger(user: str, asset: str | None, limit: int, config_path: str, db_path: str | None, as_json: bool,
           as_csv: bool) -> None:
    """USER's ledger entries, newest first: kind, account, delta and balance after, and the order,
    trade or transfer reference each came from."""
    from exchange.journal.account_queries import ENTRY_COLUMNS

    rows, behind = _rows(config_path, db_path, "entries", user=user, asset=asset and asset.upper(), limit=limit)
    emit(rows, ENTRY_COLUMNS, as_json, as_csv, f"{user} has no entries yet")
    if behind:
        click.echo(behind, err=True)
