"""The `exchange` command: one subcommand per role, plus tools. Adapters only: load, call, report."""

from __future__ import annotations

import errno
import re
import signal

import click

from exchange.cli.accounts import accounts_group
from exchange.cli.accounts_transfers import deposit, withdraw
from exchange.cli.bench import bench
from exchange.cli.common import config_option, load, names
from exchange.cli.config_file import config_group, users
from exchange.cli.keys import keys
from exchange.errors import ExchangeError
from exchange.journal.cli import journal_group
from exchange.launcher import CANNOT_START_EXIT


@click.group()
@click.version_option(package_name="exchange")
def cli() -> None:
    """An exchange: price-time matching, a SQLite journal and market data over ZeroMQ."""


@cli.command()
@click.argument("config_file", required=False, metavar="[CONFIG]", type=click.Path(dir_okay=False))
@config_option
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="Start only the roles the config's `hosts:` section places on host NAME (this machine);"
                   " more than once to run several hosts' roles here. Required with `hosts:`.")
def up(config_file: str | None, config_path: str, hosts: tuple[str, ...]) -> None:
    """Start the whole mesh of a config (or, with --host, this machine's part of it) and keep it
    running until Ctrl-C.

    CONFIG is the same as --config (either names the file).
    """
    from exchange import launcher

    config_path = config_file or config_path
    config = load(config_path)
    placed = _hosts_to_run(config, list(dict.fromkeys(hosts)))
    _setup_logging("-".join(["launcher", *(placed or [])]), config.var_dir)
    try:
        launcher.run(config, config_path, placed)
    except launcher.RoleCannotStart as e:
        raise click.ClickException(str(e)) from None


def _setup_logging(label: str, var_dir: str | None) -> None:
    """Log to stderr and to var_dir/<label>.log; a var_dir that cannot be made or written in (a file
    in the way, no permission) is one error line naming the path, not a traceback."""
    from exchange.wire import sockets

    try:
        sockets.setup_logging(label, var_dir)
    except OSError as e:
        raise click.ClickException(f"{e.filename or var_dir}: {e.strerror}; var_dir must be a folder this"
                                   " user can make and write the logs in") from None


def _hosts_to_run(config, hosts: list[str]) -> list[str] | None:
    """The hosts whose roles `exchange up` starts here (None: every role, the config has no `hosts:`)."""
    from exchange.config import roles_on
    from exchange.launcher import not_here

    known = names(f"{name} ({host.address})" for name, host in config.hosts.items())
    if not config.hosts:
        if hosts:
            raise click.ClickException("the config has no `hosts:` section, so every role runs on this"
                                       " machine: leave out --host")
        return None
    if not hosts:
        raise click.ClickException(f"the config places its roles on hosts {known}: on each machine start"
                                   " that host's roles with `exchange up CONFIG --host NAME` (--host more"
                                   " than once runs several hosts' roles on one machine)")
    for host in hosts:
        if host not in config.hosts:
            raise click.ClickException(f"no host {host!r} in the config's `hosts:`; there are {known}")
        if not roles_on(config, host):
            raise click.ClickException(f"the config places no role on host {host}")
    strangers = not_here(config, hosts)
    if strangers:
        raise click.ClickException(f"this machine has no address of host {names(strangers)}: is this that"
                                   " host? (its roles could not bind)")
    return hosts


ROLE_MODULES = {"gateway": "exchange.gateway.role", "engine": "exchange.engine.role",
                "journal-writer": "exchange.journal.role", "notifier": "exchange.marketdata.notifier",
                "ledger": "exchange.ledger.role", "web": "exchange.web.role"}


class CannotStart(click.ClickException):
    """A role cannot start, and starting it again would not help: the launcher stops instead of restarting it."""

    exit_code = CANNOT_START_EXIT


def _role(role: str, name_help: str | None = None, name_required: bool = False):
    """The command that runs ``role``; with ``name_help`` it takes --name (which engine, notifier, gateway)."""

    def command(config_path: str, name: str | None = None) -> None:
        import importlib

        import zmq

        config = load(config_path)
        if name_required and not name:
            names_of = (names(e.name for e in config.engines) if role == "engine"
                        else names(str(s.shard) for s in config.ledgers))
            raise click.ClickException(f"--name is required; {role}s are {names_of}")
        try:
            if role == "engine":
                config.engine(name)
            elif role == "ledger":
                config.ledger(name)
            elif role in ("notifier", "gateway") and name:
                getattr(config, role).replica(name)
        except ExchangeError as e:
            raise click.ClickException(str(e)) from None
        label = f"{role}-{name}" if name_help and name else role
        _setup_logging(label, config.var_dir)
        module = importlib.import_module(ROLE_MODULES[role])
        try:
            if name_help:
                module.run(config, name)
            else:
                module.run(config)
        except ExchangeError as e:  # e.g. its mesh secret key file is missing
            raise click.ClickException(str(e)) from None
        except (OSError, zmq.ZMQError) as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise CannotStart(_in_use(config, label, e)) from None

    command.__doc__ = f"Run the {role} role (normally started by `exchange up`)."
    command = config_option(command)
    if name_help:
        command = click.option("--name", default=None, help=name_help)(command)
    return command


def _in_use(config, label: str, error: Exception) -> str:
    """What role ``label`` says when an address it binds is another process's (``error``, EADDRINUSE
    from zmq or from asyncio's create_server): the address and the config's key that binds it."""
    from exchange.config import bound_at, placed_roles

    named = re.search(r"\(addr='([^']+)'\)", str(error))  # pyzmq's: (addr='tcp://127.0.0.1:7003')
    if named is None:  # asyncio's: error while attempting to bind on address ('127.0.0.1', 7001): …
        named = re.search(r"address \('([^']*)', (\d+)", str(error))
        address = f"tcp://{named.group(1)}:{named.group(2)}" if named else None
    else:
        address = named.group(1)
    if address is None:
        return f"an address of {label} is already in use ({error}): another process listens there"
    bindings = [(placed, key, endpoint) for placed in placed_roles(config) for key, endpoint, _ in placed.bound
                if (bound_at(endpoint) or endpoint) == (bound_at(address) or address)]
    bindings.sort(key=lambda binding: binding[0].role != label)  # its own key first
    if not bindings:
        return f"{address} is already in use: another process listens there"
    placed, key, endpoint = bindings[0]
    shown = endpoint.removeprefix("tcp://") if key in ("text", "listen") else endpoint  # as the config writes it
    return (f"{shown} is already in use (`{placed.at}.{key}`): another process listens there; stop it, or"
            " change that port in the config")


cli.command("gateway")(_role("gateway", "Which replica (gateway.replicas); none: the first gateway."))
cli.command("engine")(_role("engine", "Which engine.", name_required=True))
cli.command("journal-writer")(_role("journal-writer"))
cli.command("ledger")(_role("ledger", "Which ledger shard (its number).", name_required=True))
cli.command("notifier")(_role("notifier", "Which replica (notifier.replicas); none: the first notifier."))
cli.command("web")(_role("web"))


@cli.command()
@click.argument("symbol")
@config_option
@click.option("--plain", is_flag=True, help="One line per event instead of a live view (the default when"
              " the output is not a terminal).")
@click.option("--depth", is_flag=True, help="With --plain, also print every price level change.")
@click.option("--mine", "user", metavar="USER", default=None,
              help="Also show USER's own order updates (and balances, with accounts on) from the private feed"
                   " (needs their CURVE secret key).")
@click.option("--secret-key", envvar="EXCHANGE_CURVE_SECRET", default=None, metavar="Z85",
              help="USER's CURVE secret key (or set EXCHANGE_CURVE_SECRET).")
@click.option("--notifier-key", envvar="EXCHANGE_NOTIFIER_KEY", default=None, metavar="Z85",
              help="With --mine, the notifier's public key, as `exchange keys notifier` prints it on its host"
                   " (or set EXCHANGE_NOTIFIER_KEY); without it, read from notifier.secret_key_file if that"
                   " file is on this machine.")
@click.option("--notifier", "replica", metavar="NAME", default=None,
              help="Watch through this notifier replica (notifier.replicas) instead of the first notifier.")
@click.option("--every-notifier", is_flag=True,
              help="Take the book from the first notifier and every replica at once, as A/B lines.")
def watch(symbol: str, config_path: str, plain: bool, depth: bool, user: str | None,
          secret_key: str | None, notifier_key: str | None, replica: str | None, every_notifier: bool) -> None:
    """Show SYMBOL's book, last trades and feed health live (Ctrl-C stops)."""
    import sys

    from exchange.marketdata.watch import Watch, private_feed, run_live, run_plain

    config = load(config_path)
    symbol = symbol.upper()
    if symbol not in config.instrument_map():
        raise click.ClickException(f"no instrument {symbol}; there are {', '.join(config.instrument_map())}")
    if replica and every_notifier:
        raise click.ClickException("--notifier and --every-notifier exclude each other")
    try:
        notifier = config.notifier.replica(replica)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    mine = None
    if user:
        if not secret_key:
            raise click.ClickException("--mine needs the user's CURVE secret key: --secret-key or"
                                       " EXCHANGE_CURVE_SECRET")
        try:
            mine = private_feed(config, notifier, user, secret_key.encode(), notifier_key)
        except ExchangeError as e:  # the key is not the user's, no notifier key here, or the notifier refused it
            raise click.ClickException(str(e)) from None
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    view = Watch(config, symbol, mine, replica, every_notifier)
    try:
        if plain or not sys.stdout.isatty():
            click.echo(f"watching {symbol} on {', '.join(view.feed.lines)} (Ctrl-C stops)", err=True)
            run_plain(view, click.echo, lambda: bool(stopping), depth)
        else:
            run_live(view, lambda: bool(stopping))
    finally:
        view.close()


cli.add_command(keys)
cli.add_command(users)
cli.add_command(config_group)
cli.add_command(bench)
cli.add_command(journal_group)
accounts_group.add_command(deposit)
accounts_group.add_command(withdraw)
cli.add_command(accounts_group)
