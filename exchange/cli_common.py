"""What every `exchange` subcommand shares: the --config option and loading the file for click."""

from __future__ import annotations

import click

from exchange.config import Config, load_config
from exchange.errors import ExchangeError

DEFAULT_CONFIG = "configs/local.yaml"
config_option = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                             type=click.Path(dir_okay=False), help="The mesh's YAML file.")


def load(path: str) -> Config:
    """The config at ``path``, or a ClickException naming what is wrong with it."""
    try:
        return load_config(path)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
