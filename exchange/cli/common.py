"""What every `exchange` subcommand shares: the --config option and loading the file for click."""

from __future__ import annotations

import click

from exchange.config import Config, load_config
from exchange.errors import ExchangeError

DEFAULT_CONFIG = "configs/local.yaml"
CONFIG_ENV = "EXCHANGE_CONFIG"
config_option = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                             envvar=CONFIG_ENV, show_envvar=True, type=click.Path(dir_okay=False),
                             help="The mesh's YAML file (relative paths inside it are relative to it).")


def names(items) -> str:
    """Names for a person: "e1, e2", or "none"."""
    return ", ".join(items) or "none"


def load(path: str) -> Config:
    """The config at ``path``, or a ClickException naming what is wrong with it."""
    try:
        return load_config(path)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
