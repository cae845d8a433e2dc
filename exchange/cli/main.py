"""The `exchange` command: one subcommand per role, plus tools. Adapters only: load, call, report."""

from __future__ import annotations

import signal

import click

from exchange.cli.common import CONFIG_ENV, DEFAULT_CONFIG, config_option, load, names
from exchange.journal.cli import journal_group
from exchange.config import hash_key, load_config, new_key
from exchange.errors import ExchangeError
from exchange.wire.security.curve_keys import public_key, server_secret_key


@click.group()
@click.version_option(package_name="exchange")
def cli() -> None:
    """An exchange: price-time matching, a SQLite journal and market data over ZeroMQ."""


@cli.command()
@click.argument("config_file", required=False, metavar="[CONFIG]", type=click.Path(dir_okay=False))
@config_option
def up(config_file: str | None, config_path: str) -> None:
    """Start the whole mesh of a config and keep it running until Ctrl-C.

    CONFIG is the same as --config (either names the file).
    """
    from exchange import launcher
    from exchange.wire import sockets

    config_path = config_file or config_path
    config = load(config_path)
    sockets.setup_logging("launcher", config.var_dir)
    launcher.run(config, config_path)


ROLE_MODULES = {"gateway": "exchange.gateway.role", "engine": "exchange.engine.role",
                "journal-writer": "exchange.journal.role", "notifier": "exchange.marketdata.notifier"}


def _role(role: str, name_help: str | None = None, name_required: bool = False):
    """The command that runs ``role``; with ``name_help`` it takes --name (which engine, which notifier)."""

    def command(config_path: str, name: str | None = None) -> None:
        import importlib

        from exchange.wire import sockets

        config = load(config_path)
        if name_required and not name:
            raise click.ClickException(f"--name is required; engines are {names(e.name for e in config.engines)}")
        try:
            if role == "engine":
                config.engine(name)
            elif role == "notifier" and name:
                config.notifier.replica(name)
        except ExchangeError as e:
            raise click.ClickException(str(e)) from None
        label = f"{role}-{name}" if name_help and name else role
        sockets.setup_logging(label, config.var_dir)
        module = importlib.import_module(ROLE_MODULES[role])
        try:
            if name_help:
                module.run(config, name)
            else:
                module.run(config)
        except ExchangeError as e:  # e.g. its mesh secret key file is missing
            raise click.ClickException(str(e)) from None

    command.__doc__ = f"Run the {role} role (normally started by `exchange up`)."
    command = config_option(command)
    if name_help:
        command = click.option("--name", default=None, help=name_help)(command)
    return command


cli.command("gateway")(_role("gateway"))
cli.command("engine")(_role("engine", "Which engine.", name_required=True))
cli.command("journal-writer")(_role("journal-writer"))
cli.command("notifier")(_role("notifier", "Which replica (notifier.replicas); none: the first notifier."))


@cli.command()
@click.argument("symbol")
@config_option
@click.option("--plain", is_flag=True, help="One line per event instead of a live view (the default when"
              " the output is not a terminal).")
@click.option("--depth", is_flag=True, help="With --plain, also print every price level change.")
@click.option("--mine", "user", metavar="USER", default=None,
              help="Also show USER's own order updates from the private feed (needs their CURVE secret key).")
@click.option("--secret-key", envvar="EXCHANGE_CURVE_SECRET", default=None, metavar="Z85",
              help="USER's CURVE secret key (or set EXCHANGE_CURVE_SECRET).")
@click.option("--notifier", "replica", metavar="NAME", default=None,
              help="Watch through this notifier replica (notifier.replicas) instead of the first notifier.")
@click.option("--every-notifier", is_flag=True,
              help="Take the book from the first notifier and every replica at once, as A/B lines.")
def watch(symbol: str, config_path: str, plain: bool, depth: bool, user: str | None,
          secret_key: str | None, replica: str | None, every_notifier: bool) -> None:
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
            mine = private_feed(config, notifier, user, secret_key.encode())
        except ExchangeError as e:  # the key is not the user's, or the notifier refused it
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


@cli.group()
def keys() -> None:
    """CURVE keys: make a key pair, the mesh's key pairs, or show the notifier's or the gateway's public key."""


@keys.command("new")
def keys_new() -> None:
    """Make a CURVE key pair: the public half goes in the config, the secret stays with its owner."""
    import zmq

    public, secret = zmq.curve_keypair()
    click.echo(f"public: {public.decode()}\nsecret: {secret.decode()}")


@keys.command("mesh")
@config_option
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Where to write each role's secret key file, <role>.key_secret (mode 0600).")
@click.option("--force", is_flag=True, help="Replace the secret key files that exist already (every role"
              " then needs its new one).")
def keys_mesh(config_path: str, directory: str, force: bool) -> None:
    """Make a CURVE key pair per role of the config for encrypted internal links; print the mesh_curve section.

    Secret key files that exist already are kept (and their public keys printed) unless --force.
    Give each host the files of the roles it runs; paste the printed section into the config.
    """
    from exchange.wire.security.mesh_keys import config_section, make_key_pairs

    try:
        config = load_config(config_path, mesh_keys=False)
        public_keys, kept = make_key_pairs(config, directory, force)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or directory}: {e.strerror}") from None
    made = [role for role in public_keys if role not in kept]
    if made:
        click.echo(f"wrote secret keys of {', '.join(made)} to {directory}/ (mode 0600)", err=True)
    if kept:
        click.echo(f"kept the secret keys of {', '.join(kept)} that were in {directory}/ (--force replaces"
                   f" them)", err=True)
    click.echo(config_section(directory, public_keys), nl=False)


create_option = click.option("--create", is_flag=True, help="Make the secret key file first if there is none"
                             " yet (the role makes it at its first start otherwise).")


@keys.command("notifier")
@config_option
@create_option
def keys_notifier(config_path: str, create: bool) -> None:
    """Print the public key of the notifier's private feed, which clients need (--create makes the key)."""
    _print_server_key(load(config_path).notifier.secret_key_file, "notifier", create)


@keys.command("gateway")
@config_option
@create_option
def keys_gateway(config_path: str, create: bool) -> None:
    """Print the public key of the gateway's ZMQ order entry, which CURVE clients need (--create makes the key)."""
    _print_server_key(load(config_path).gateway.secret_key_file, "gateway", create)


def _print_server_key(path: str, role: str, create: bool) -> None:
    from pathlib import Path


    if not create and not Path(path).exists():
        raise click.ClickException(f"{path}: no key yet; the {role} makes it when it first starts, or run"
                                   f" `exchange keys {role} --create`")
    try:
        click.echo(public_key(server_secret_key(path)).decode())
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None


@cli.group()
def users() -> None:
    """Manage users and their API keys."""


@users.command("list")
@config_option
def users_list(config_path: str) -> None:
    """List the config's users: name, whether they have a private-feed key, and their own limits."""
    config = load(config_path)
    for user in config.users:
        limits = [f"{what} {value:g}" for what, value in (("max_open_orders", user.max_open_orders),
                                                          ("max_sessions", user.max_sessions),
                                                          ("max_rate", user.max_rate)) if value is not None]
        if user.cancel_on_disconnect:
            limits.append("cancel_on_disconnect")
        feed = "private feed key" if user.curve_public_key else "no private feed key"
        click.echo(f"{user.name}  {feed}{'  ' + ', '.join(limits) if limits else ''}")
    if not config.users:
        click.echo(f"no users in {config_path}; add one with `exchange users add NAME`", err=True)


@users.command("add")
@click.argument("name")
@config_option
@click.option("--dry-run", is_flag=True, help="Only print the lines for the config; change no file.")
def users_add(name: str, config_path: str, dry_run: bool) -> None:
    """Add user NAME to the config with a new API key and CURVE key pair; print the secrets once.

    The config file gets only the key's hash and the public key, and is checked before it is
    replaced. Running roles read users at start: restart the gateway and notifiers to admit NAME.
    """
    import zmq

    from exchange.config_users import add_user, check_name, user_block

    try:
        check_name(name)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    key = new_key()
    public, secret = zmq.curve_keypair()
    block = user_block(name, hash_key(key), public.decode())
    if dry_run:
        click.echo(block, nl=False)
    else:
        try:
            add_user(config_path, name, block)
        except ExchangeError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"added {name} to {config_path}", err=True)
    click.echo(f"API key for {name} (shown once; give it to the user): {key}", err=True)
    click.echo(f"CURVE secret key for {name}'s private feed (shown once): {secret.decode()}", err=True)


@users.command("remove")
@click.argument("name")
@config_option
def users_remove(name: str, config_path: str) -> None:
    """Remove user NAME from the config (their orders stay; restart the gateway to lock them out)."""
    from exchange.config_users import remove_user

    try:
        remove_user(config_path, name)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"removed {name} from {config_path}", err=True)


@cli.group("config")
def config_group() -> None:
    """Check a config file without starting anything."""


@config_group.command("check")
@click.argument("config_file", required=False, metavar="[CONFIG]", type=click.Path(dir_okay=False))
@config_option
def config_check(config_file: str | None, config_path: str) -> None:
    """Load and validate a config (CONFIG or --config) with every check a start makes; say what it holds."""
    config = load(config_file or config_path)
    hosts = sorted({e.split("://")[-1].rsplit(":", 1)[0] for e in config.endpoints()})
    click.echo(f"OK: {config_file or config_path}: {len(config.instruments)} instruments"
               f" ({names(i.symbol for i in config.instruments)}) on {len(config.engines)} engines"
               f" ({names(e.name for e in config.engines)}); {len(config.users)} users"
               f" ({names(u.name for u in config.users)}); notifier processes: {1 + len(config.notifier.replicas)};"
               f" journal {config.journal.path}; binds on {names(hosts)};"
               f" mesh links {'CURVE' if config.mesh_curve else 'plain'}")


@cli.command()
@config_option
@click.option("--connect", is_flag=True,
              help="Load the mesh already running from --config instead of starting a fresh one.")
@click.option("--rate", type=click.FloatRange(min=1), default=10_000, show_default=True,
              help="Requests offered per second over all sessions, on a fixed schedule (open loop).")
@click.option("--max", "as_fast", is_flag=True,
              help="As fast as possible instead: --window requests outstanding per session.")
@click.option("--duration", type=click.FloatRange(min=1), default=10, show_default=True,
              help="Seconds measured, after the warmup.")
@click.option("--warmup", type=click.FloatRange(min=0), default=2, show_default=True,
              help="Seconds of load before measuring.")
@click.option("--sessions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Order entry sessions (TCP text, or ZMQ with --zmq).")
@click.option("--zmq", "over_zmq", is_flag=True,
              help="Sessions use the gateway's ZMQ order entry (DEALER, msgpack) instead of the text port.")
@click.option("--subscribers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Market data subscribers (one process each).")
@click.option("--instruments", multiple=True,
              help="Instruments to trade (repeat or comma-separate); default: all of the config.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Load generator processes the sessions are spread over.")
@click.option("--window", type=click.IntRange(min=1), default=32, show_default=True,
              help="With --max: requests outstanding per session.")
@click.option("--user", "users", multiple=True, metavar="NAME:KEY",
              help="With --connect: log sessions in as these users (default: the demo users).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the order mix.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the whole result as JSON to this file ('-' for stdout).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw the latency percentile curves and throughput over time into this PNG.")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False),
              help="py-spy record every role during the measured window into this folder.")
@click.option("--keep", "work_dir", type=click.Path(file_okay=False),
              help="Keep the started mesh's config, journal and logs in this folder.")
def bench(config_path: str, connect: bool, rate: float, as_fast: bool, duration: float, warmup: float,
          sessions: int, over_zmq: bool, subscribers: int, instruments: tuple[str, ...], workers: int,
          window: int,
          users: tuple[str, ...], seed: int, json_path: str | None, plot_path: str | None,
          profile_dir: str | None, work_dir: str | None) -> None:
    """Drive a mesh with a realistic order mix over TCP (or ZMQ); report throughput, latency and checks.

    Starts a fresh mesh from --config (free loopback ports, a journal of its own) unless
    --connect. Exits 1 if a consistency check fails: every request answered exactly once, with
    the right kind of answer; fills add up; the journal holds what the sessions were told.
    """
    from exchange import bench as bench_lib

    symbols = [s.strip().upper() for group in instruments for s in group.split(",") if s.strip()]
    pairs = []
    for user in users:
        name, sep, key = user.partition(":")
        if not sep or not name or not key:
            raise click.BadParameter(f"{user!r} is not NAME:KEY", param_hint="--user")
        pairs.append((name, key))
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'exchange[plot]'"
                                       " (or pip install 'matplotlib>=3.7')") from None
    load(config_path)
    options = bench_lib.BenchOptions(
        config_path=config_path, connect=connect, rate=None if as_fast else rate, duration=duration,
        warmup=warmup, sessions=sessions, zmq=over_zmq, subscribers=subscribers, instruments=symbols or None,
        workers=workers, window=window, seed=seed, users=pairs or None, work_dir=work_dir,
        profile_dir=profile_dir, progress=lambda line: click.echo(line, err=True))
    try:
        result = bench_lib.run(options)
    except (ExchangeError, ValueError, RuntimeError, TimeoutError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(bench_lib.summary(result), err=json_path == "-")
    if json_path:
        click.echo(result.to_json(), file=None if json_path == "-" else open(json_path, "w"))
    if plot_path:
        bench_lib.plot(result, plot_path)
        click.echo(f"plot: {plot_path}", err=True)
    if not result.ok:
        raise SystemExit(1)


cli.add_command(journal_group)
