"""`exchange config check` and `exchange users …`: checking a config file, and editing its users."""

from __future__ import annotations

import click

from exchange.cli.common import config_option, load, names
from exchange.config import hash_key, new_key, plain
from exchange.errors import ExchangeError


@click.group()
def users() -> None:
    """Manage users and their API keys."""


@users.command("list")
@config_option
def users_list(config_path: str) -> None:
    """List the config's users: name, whether they have a private-feed key, and their own limits."""
    config = load(config_path)
    for user in config.users:
        limits = [f"{what} {plain(value)}" for what, value in (("max_open_orders", user.max_open_orders),
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
    try:  # a dry run too: it refuses what the add would
        add_user(config_path, name, block, dry_run)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
    if dry_run:
        click.echo(block, nl=False)
    else:
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


@click.group("config")
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
               f" mesh links {'CURVE' if config.mesh_curve else 'plain'}{_placement(config)}")


def _placement(config) -> str:
    """"; hosts core (journal-writer, …), feed-1 (notifier)", or nothing without `hosts:`."""
    from exchange.config import roles_on

    return "; hosts " + ", ".join(f"{host} ({names(roles_on(config, host))})" for host in config.hosts) \
        if config.hosts else ""
