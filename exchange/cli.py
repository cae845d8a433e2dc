"""The `exchange` command: one subcommand per role, plus tools. Adapters only: load, call, report."""

from __future__ import annotations

import signal

import click

from exchange.config import Config, hash_key, load_config, new_key
from exchange.errors import ExchangeError

DEFAULT_CONFIG = "configs/local.yaml"
config_option = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                             type=click.Path(dir_okay=False), help="The mesh's YAML file.")


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None


@click.group()
@click.version_option(package_name="exchange")
def cli() -> None:
    """An exchange: price-time matching, a SQLite journal and market data over ZeroMQ."""


@cli.command()
@click.argument("config_path", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
def up(config_path: str) -> None:
    """Start the whole mesh described by CONFIG_PATH and keep it running until Ctrl-C."""
    from exchange import launcher, mesh

    config = _load(config_path)
    mesh.setup_logging("launcher", config.var_dir)
    launcher.run(config, config_path)


def _role(role: str, needs_name: bool):
    @config_option
    @click.option("--name", default=None, help="Which engine (engines only)." if needs_name else "Unused.")
    def command(config_path: str, name: str | None) -> None:
        import importlib

        from exchange import mesh

        config = _load(config_path)
        if needs_name and not name:
            raise click.ClickException(f"--name is required; engines are {[e.name for e in config.engines]}")
        if needs_name:
            try:
                config.engine(name)
            except ExchangeError as e:
                raise click.ClickException(str(e)) from None
        label = f"{role}-{name}" if needs_name else role
        mesh.setup_logging(label, config.var_dir)
        importlib.import_module(f"exchange.{role.replace('-', '_')}").run(config, name or role)

    command.__doc__ = f"Run the {role} role (normally started by `exchange up`)."
    return command


cli.command("gateway")(_role("gateway", False))
cli.command("engine")(_role("engine", True))
cli.command("journal-writer")(_role("journal-writer", False))
cli.command("notifier")(_role("notifier", False))


@cli.command()
@click.argument("symbol")
@config_option
def watch(symbol: str, config_path: str) -> None:
    """Print trades and best bid/offer changes of SYMBOL as they happen (Ctrl-C stops)."""
    from exchange.watch import watch as run_watch

    config = _load(config_path)
    symbol = symbol.upper()
    if symbol not in config.instrument_map():
        raise click.ClickException(f"no instrument {symbol}; there are {', '.join(config.instrument_map())}")
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    click.echo(f"watching {symbol} on {config.notifier.publish} (Ctrl-C stops)", err=True)
    run_watch(config, symbol, lambda line: click.echo(line), lambda: bool(stopping))


@cli.group()
def users() -> None:
    """Manage users and their API keys."""


@users.command("add")
@click.argument("name")
def users_add(name: str) -> None:
    """Make a new API key for NAME: prints the key once and the config line holding only its hash."""
    key = new_key()
    click.echo(f"API key for {name} (shown once; give it to the user): {key}", err=True)
    click.echo(f"  - name: {name}\n    key_hash: {hash_key(key)}")
