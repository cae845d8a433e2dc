"""What every `exchange` subcommand shares: the --config option, loading the file for click, and
number options that refuse nan."""

from __future__ import annotations

import math

import click

from exchange.config import Config, load_config
from exchange.errors import ExchangeError

DEFAULT_CONFIG = "configs/local.yaml"
CONFIG_ENV = "EXCHANGE_CONFIG"
config_option = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                             envvar=CONFIG_ENV, show_envvar=True, type=click.Path(dir_okay=False),
                             help="The mesh's YAML file (relative paths inside it are relative to it).")


DAY_S = 86_400.0  # the longest a command's wait or run may be: beyond it a typo is likelier than a plan


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan, which compares false with both bounds and so passes
    them (give a ``max``, and inf is refused as above it)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


def names(items) -> str:
    """Names for a person: "e1, e2", or "none"."""
    return ", ".join(items) or "none"


def load(path: str) -> Config:
    """The config at ``path``, or a ClickException naming what is wrong with it."""
    try:
        return load_config(path)
    except ExchangeError as e:
        raise click.ClickException(str(e)) from None
