"""`exchange keys …`: CURVE key pairs for users and roles, and the servers' public keys."""

from __future__ import annotations

import os

import click

from exchange.cli.common import config_option, load
from exchange.config import load_config
from exchange.errors import ExchangeError
from exchange.wire.security.curve_keys import public_key, server_secret_key


@click.group()
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
    click.echo(config_section(_from_config(directory, config_path), public_keys), nl=False)


def _from_config(directory: str, config_path: str) -> str:
    """``directory`` (relative to the current folder, or absolute) as the config reads it: a relative path
    relative to the config's folder, which stays relative so that the folder can be copied to a host."""
    if os.path.isabs(directory):
        return directory
    return os.path.relpath(os.path.abspath(directory), os.path.dirname(os.path.abspath(config_path)))


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
    except OSError as e:  # a file where its folder should be, a folder where the file should be, no permission
        raise click.ClickException(f"{e.filename or path}: {e.strerror}") from None
