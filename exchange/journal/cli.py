"""`exchange journal …`: inspect the SQLite journal (exchange.journal.queries, exchange.journal.verify)."""

from __future__ import annotations

import click

from exchange.cli.common import config_option, load
from exchange.errors import ExchangeError

db_option = click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False),
                         help="The journal file; default: journal.path of the config.")
output_options = (
    click.option("--json", "as_json", is_flag=True,
                 help="Print JSON, for programs: an array of row objects (stats: one object)."),
    click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header row, for programs."),
)


class _Time(click.ParamType):
    """An ISO-8601 time (UTC unless it names an offset), as int ns since the UNIX epoch."""

    name = "TIME"

    def convert(self, value, param, ctx):
        from exchange.journal.queries import to_ns

        if isinstance(value, int):
            return value
        try:
            return to_ns(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


filter_options = (
    click.option("--symbol", default=None, help="Only this instrument."),
    click.option("--user", default=None, help="Only this user's."),
    click.option("--order-id", default=None, help="Only this order's (an exchange order id like 1-42)."),
    click.option("--since", "since_ns", type=_Time(), default=None,
                 help="From this ISO-8601 time on, inclusive (UTC unless given, e.g. 2026-11-25T13:52Z)."),
    click.option("--until", "until_ns", type=_Time(), default=None, help="Before this ISO-8601 time."),
    click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0, max=2**63 - 1),
                 help="At most this many rows; 0 for all."),  # (SQLite's LIMIT is a 64-bit integer)
    click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first)."),
)


def with_options(*options):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def open_from_config(config_path: str, db_path: str | None):
    """(config, journal path, read-only connection); one ClickException for any library error."""
    from exchange.journal.queries import open_journal

    config = load(config_path)
    path = db_path or config.journal.path
    try:
        return config, path, open_journal(path)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None


def emit(rows: list[dict], columns: tuple[str, ...], as_json: bool, as_csv: bool, empty: str) -> None:
    """Rows as JSON, CSV, or an aligned table for people (times in ISO-8601 UTC)."""
    import csv
    import io
    import json

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other; give one")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(_table(rows))


def _table(rows: list[dict]) -> str:
    from exchange.journal.queries import to_iso

    columns = list(rows[0])
    cells = [[_cell(column, row[column], to_iso) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[n]) for line in cells)) for n, column in enumerate(columns)]
    numeric = [all(_is_number(row[column]) for row in rows if row[column] is not None) for column in columns]

    def line(values) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w)
                         for v, w, right in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line("-" * w for w in widths), *(line(values) for values in cells)])


def _cell(column: str, value, to_iso) -> str:
    if value is None:
        return ""
    if column.startswith("ts_") and isinstance(value, int):
        return to_iso(value)
    return str(value)


def _is_number(value) -> bool:
    """Whether to right-align: ints and decimal text like the journal's prices, quantities and deltas."""
    return isinstance(value, int) or (isinstance(value, str) and value.lstrip("+-").replace(".", "", 1).isdigit())


@click.group("journal")
def journal_group() -> None:
    """Inspect the SQLite journal: orders, trades, events and stats; verify that it is whole."""


def _event_kinds() -> list[str]:
    from typing import get_args

    from exchange.core.ledger_messages import AnyLedgerEvent
    from exchange.core.messages import AnyEvent, Match

    # the tables list a Match as the two OrderFilled and the Trade it stands for: no row is a Match
    return [kind.__name__ for kind in (*get_args(AnyEvent), *get_args(AnyLedgerEvent)) if kind is not Match]


def lag_note(conn) -> str:
    """A line saying how far the journal's tables are behind its log, or "" if they hold all of it."""
    from exchange.journal.readers import index_lag

    lag = index_lag(conn)
    if not lag:
        return ""
    streams = ", ".join(f"{stream} up to batch {indexed} of {logged}" for stream, (logged, indexed) in sorted(lag.items()))
    return (f"note: these tables are behind the journal's log ({streams}); the journal writer is indexing the"
            " rest, or will when it next starts")


def _query(name: str, columns: str, empty: str, what: str, extra=()):
    """One `exchange journal NAME` command: filters in, rows of journal_queries.NAME out (with the
    CSV header journal_queries.COLUMNS, even when no row matches)."""
    @with_options(config_option, db_option, *filter_options, *extra, *output_options)
    def command(config_path: str, db_path: str | None, as_json: bool, as_csv: bool, symbol: str | None,
                **filters) -> None:
        from exchange.journal import queries

        config, _, conn = open_from_config(config_path, db_path)
        try:
            rows = getattr(queries, name)(conn, config.instrument_map(),
                                                  symbol=symbol and symbol.upper(), **filters)
            behind = lag_note(conn)
        finally:
            conn.close()
        emit(rows, getattr(queries, columns), as_json, as_csv, empty)
        if behind:
            click.echo(behind, err=True)

    command.__doc__ = what
    return journal_group.command(name)(command)


_query("orders", "ORDER_COLUMNS", "no orders match",
       "Orders, one row each, from their events: price, qty, filled, leaves, status.",
       extra=(click.option("--client-order-id", default=None, metavar="ID",
                           help="Only orders placed with this client order id (with or without its #)."),))
_query("trades", "TRADE_COLUMNS", "no trades match",
       "Trades with their maker and taker; --user and --order-id match either side.")
_query("events", "EVENT_COLUMNS", "no events match",
       "Journaled events, newest first: the journal's columns and a detail from the body.",
       extra=(click.option("--kind", default=None, help="Only this event kind, e.g. OrderFilled.",
                           type=click.Choice(_event_kinds(), case_sensitive=False)),))


@journal_group.command("stats")
@with_options(config_option, db_option, *output_options)
def journal_stats(config_path: str, db_path: str | None, as_json: bool, as_csv: bool) -> None:
    """Size, time span, sequence ranges per engine, and event counts per instrument and kind.

    --json prints one object with all of it; --csv the counts per instrument and kind.
    """
    import json

    from exchange.journal.queries import COUNT_COLUMNS, stats, to_iso

    _, path, conn = open_from_config(config_path, db_path)
    try:
        found = stats(conn, path)
    finally:
        conn.close()
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other; give one")
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif as_csv:
        emit(found["counts"], COUNT_COLUMNS, False, True, "")
    else:
        span = "no events"
        if found["ts_first"] is not None:
            seconds = (found["ts_last"] - found["ts_first"]) / 1e9
            span = f"{to_iso(found['ts_first'])} .. {to_iso(found['ts_last'])} ({seconds:,.3f} s)"
        click.echo(f"journal   {found['path']}, {found['size_bytes']:,} bytes\n"
                   f"time      {span}\n"
                   f"totals    {found['events']:,} events, {found['commands']:,} commands,"
                   f" {found['batches']:,} batches, {found['checkpoints']:,} checkpoints\n")
        if found["engines"]:
            click.echo(_table(found["engines"]) + "\n")
        if found["counts"]:
            click.echo(_table(found["counts"]))


@journal_group.command("verify")
@with_options(config_option, db_option)
def journal_verify(config_path: str, db_path: str | None) -> None:
    """Check sequences, batches, fills and trades, and replay every engine; with accounts on, check
    every ledger shard's entries, balances and holds too; exit 1 on any fault."""
    from exchange.journal.verify import coverage, verify
    from exchange.journal.ledger_rows import is_ledger_stream
    from exchange.journal.verify_ledger import verify_ledgers
    from exchange.journal.schema import one_reading
    from exchange.journal.verify_log import verify_log

    config, path, conn = open_from_config(config_path, db_path)
    instruments = config.instrument_map()
    try:
        with one_reading(conn):  # the journal as at one moment, though the writer goes on meanwhile
            faults, notes = verify_log(conn)
            faults += verify(conn, {e.name: [instruments[s] for s in e.instruments] for e in config.engines},
                             {e.name: e.id for e in config.engines})
            ledger_faults, ledger_notes = verify_ledgers(conn, config)
            faults += ledger_faults
            notes += ledger_notes
            covered = coverage(conn)  # what the checks reached: the tables may lag the log (a note says)
    finally:
        conn.close()
    for note in notes:
        click.echo(f"note: {note}")
    if faults:
        for fault in faults:
            click.echo(fault)
        click.echo(f"FAULTY: {path}: {len(faults)} fault{'s' if len(faults) != 1 else ''}")
        raise SystemExit(1)
    engines = "; ".join(
        f"{c['stream']} events {c['first_seq'] or 0}..{c['last_seq'] or 0} in {c['batches']} batches"
        for c in covered) or "no events"
    ledgers = ", entries, balances, holds" if any(is_ledger_stream(c["stream"]) for c in covered) else ""
    click.echo(f"OK: {path}: {engines}; log and tables, sequences, orders, trades{ledgers} and replay agree"
               f" ({sum(c['checkpoints'] for c in covered)} checkpoints checked)")


# -- exchange bench: end-to-end load over the text protocol (exchange.bench) ----------------------
