"""`python -m exchange` runs the command-line interface."""

from exchange.cli.main import cli

if __name__ == "__main__":
    cli()
