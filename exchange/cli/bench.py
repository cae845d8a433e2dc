"""`exchange bench`: drive a mesh with a realistic order mix and report throughput, latency and checks."""

from __future__ import annotations

import os
import signal
import sys

import click

from exchange.cli.common import DAY_S, FiniteFloatRange, config_option, load
from exchange.errors import ExchangeError

MAX_RATE = 10_000_000.0  # requests/s: far above what a mesh takes, and a schedule whose steps are still finite


@click.command()
@config_option
@click.option("--connect", is_flag=True,
              help="Load the mesh already running from --config instead of starting a fresh one.")
@click.option("--rate", type=FiniteFloatRange(min=1, max=MAX_RATE), default=10_000, show_default=True,
              help="Requests offered per second over all sessions, on a fixed schedule (open loop).")
@click.option("--max", "as_fast", is_flag=True,
              help="As fast as possible instead: --window requests outstanding per session.")
@click.option("--duration", type=FiniteFloatRange(min=1, max=DAY_S), default=10, show_default=True,
              help="Seconds measured, after the warmup.")
@click.option("--warmup", type=FiniteFloatRange(min=0, max=DAY_S), default=2, show_default=True,
              help="Seconds of load before measuring.")
@click.option("--sessions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Order entry sessions (TCP text, or ZMQ with --zmq).")
@click.option("--zmq", "over_zmq", is_flag=True,
              help="Sessions use the gateway's ZMQ order entry (DEALER, msgpack) instead of the text port.")
@click.option("--gateways", type=click.IntRange(min=1), default=1, show_default=True,
              help="Gateways in the started mesh (the first and replicas); the sessions take them in turn.")
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
@click.option("--accounts", "accounts", type=click.Choice(["compare", "on", "off"]), default=None,
              help="With a config that has accounts: run the load without and then with them and report"
                   " both (compare, the default), or only on or off. Its users are funded first.")
def bench(config_path: str, connect: bool, rate: float, as_fast: bool, duration: float, warmup: float,
          sessions: int, over_zmq: bool, gateways: int, subscribers: int, instruments: tuple[str, ...], workers: int,
          window: int,
          users: tuple[str, ...], seed: int, json_path: str | None, plot_path: str | None,
          profile_dir: str | None, work_dir: str | None, accounts: str | None) -> None:
    """Drive a mesh with a realistic order mix over TCP (or ZMQ); report throughput, latency and checks.

    Starts a fresh mesh from --config (free loopback ports, a journal of its own) unless
    --connect. Exits 1 if a consistency check fails: every request answered exactly once, with
    the right kind of answer; fills add up; the journal holds what the sessions were told.
    """
    from exchange import bench as bench_lib

    # SIGTERM (a `kill`, a CI timeout) stops the run as Ctrl-C would: the mesh it started stops too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
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
    if json_path and json_path != "-":
        _check_writable("--json", json_path)
    if plot_path:
        _check_writable("--plot", plot_path)
    config = load(config_path)
    modes = [False, True] if config.accounts and not connect and accounts in (None, "compare") else [
        accounts != "off" if config.accounts and not connect else config.accounts]
    if accounts and not config.accounts:
        raise click.ClickException(f"--accounts: {config_path} has no accounts (no `assets:`)")
    if accounts and connect:
        raise click.ClickException("--accounts starts meshes of its own; it does not go with --connect")
    common = dict(config_path=config_path, connect=connect, rate=None if as_fast else rate, duration=duration,
                  warmup=warmup, sessions=sessions, zmq=over_zmq, gateways=gateways, subscribers=subscribers,
                  instruments=symbols or None, workers=workers, window=window, seed=seed, users=pairs or None,
                  profile_dir=profile_dir, progress=lambda line: click.echo(line, err=True))
    results = []
    for mode in modes:
        if len(modes) > 1:
            click.echo(f"== accounts {'on' if mode else 'off'} ==", err=json_path == "-")
        keep = work_dir and (f"{work_dir}/accounts-{'on' if mode else 'off'}" if len(modes) > 1 else work_dir)
        options = bench_lib.BenchOptions(accounts=mode, work_dir=keep, **common)
        try:
            result = bench_lib.run(options)
        except (ExchangeError, ValueError, RuntimeError, TimeoutError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(bench_lib.summary(result), err=json_path == "-")
        results.append(result)
    if len(results) == 2:
        click.echo(bench_lib.accounts_cost(*results), err=json_path == "-")
    result = results[-1]
    if json_path:  # one result as an object; without and with accounts as a list of the two
        text = result.to_json() if len(results) == 1 else "[" + ",\n".join(r.to_json() for r in results) + "]"
        if json_path == "-":
            click.echo(text)
        else:
            try:
                with open(json_path, "w") as f:
                    click.echo(text, file=f)
            except OSError as e:  # checked before the run, but a disk can fill up, a folder go
                raise _cannot_write("--json", json_path, e) from None
    if plot_path:
        try:
            bench_lib.plot(result, plot_path)
        except OSError as e:
            raise _cannot_write("--plot", plot_path, e) from None
        click.echo(f"plot: {plot_path}", err=True)
    if not all(r.ok for r in results):
        raise SystemExit(1)


def _check_writable(option: str, path: str) -> None:
    """Refuse now, not after the whole run, a file the result could not be written to: open it to
    append (which changes nothing in a file that is there), and remove it again if that made it."""
    existed = os.path.lexists(path)
    try:
        open(path, "a").close()
    except OSError as e:
        raise _cannot_write(option, path, e) from None
    if not existed:
        os.unlink(path)


def _cannot_write(option: str, path: str, error: OSError) -> click.ClickException:
    return click.ClickException(f"{option} {path}: {error.strerror}")
