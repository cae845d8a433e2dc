"""`exchange accounts deposit` and `withdraw`: an admin user moves funds in or out of a user's account.

Adapters only: they log in to the gateway's text port as the admin (its key from a file or the
EXCHANGE_KEY environment variable, never from the command line), send one DEPOSIT or WITHDRAW
line (docs/protocol.md) and print the answer; a refusal exits 1. The ledger applies a transfer
once per user and reference, and answers the same transfer sent again with the first one's
``OK`` line, so a transfer whose answer was lost is sent again with the same --ref: when the
outcome is unknown (no answer in time, the connection lost once the line may have gone, the
gateway could not tell) the command says so and exits 3, and the same command run again prints
the outcome, exit 0 if it was applied (then or now).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from exchange.cli.common import DAY_S, FiniteFloatRange, config_option, load
from exchange.client.text import TextClient

KEY_ENV = "EXCHANGE_KEY"


class OutcomeUnknown(click.ClickException):
    """The transfer may or may not be applied: it is to be sent again with the same reference."""

    exit_code = 3


def _key(key_file: str | None) -> str:
    """The admin's API key: the first line of ``key_file``, else $EXCHANGE_KEY."""
    if key_file:
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as e:
            raise click.ClickException(f"cannot read the key file {key_file}: {e.strerror}") from None
        if not lines or not lines[0].strip():
            raise click.ClickException(f"the key file {key_file} is empty")
        return lines[0].strip()
    key = os.environ.get(KEY_ENV, "")
    if not key:
        raise click.ClickException(f"the admin's key is needed: --key-file FILE, or set {KEY_ENV}")
    return key


_UNKNOWN = ("REJ UNAVAILABLE", "REJ INTERNAL")  # refusals that do not say whether it was applied


def transfer(verb: str, config_path: str, admin: str, key_file: str | None, target: str, asset: str,
             amount: str, ref: str, timeout: float) -> None:
    """Log in as ``admin``, send one ``verb`` line, print its answer; ClickException (exit 1) if refused."""
    key = _key(key_file)
    config = load(config_path)
    host, port = config.gateway.text.rsplit(":", 1)
    line = f"{verb} {target} {asset} {amount} {ref}"
    if len(line.split()) != 5:
        raise click.ClickException("USER, ASSET, AMOUNT and --ref are one word each")
    again = f"the {verb} may or may not be applied: run the same command again (same --ref {ref})"
    sent = False
    try:
        with TextClient(host, int(port), timeout=timeout) as client:
            login = client.request(f"LOGIN {admin} {key}")
            if not login.startswith("OK LOGIN"):
                raise click.ClickException(f"the gateway refused the login of {admin}: {login}")
            sent = True  # from here on, the line may have reached the gateway
            answer = client.request(line)
    except TimeoutError:
        if not sent:  # connecting or logging in: the line never went out
            raise click.ClickException(f"no answer from the gateway at {config.gateway.text} in {timeout:g} s;"
                                       f" nothing was sent") from None
        raise OutcomeUnknown(f"no answer from the gateway in {timeout:g} s; {again}") from None
    except OSError as e:  # refused, reset, unreachable
        if sent:
            raise OutcomeUnknown(f"the connection to the gateway was lost ({e}); {again}") from None
        raise click.ClickException(f"cannot reach the gateway at {config.gateway.text}: {e}") from None
    if not (answer.startswith(f"OK {verb} ") or answer.startswith("REJ ")) or answer.startswith(_UNKNOWN):
        # the engine or shard did not answer in time, a bug, or the session ended (BYE) while it waited
        raise OutcomeUnknown(f"{answer}; {again}")
    if answer.startswith("REJ DUPLICATE_ID"):
        if " was already used for a " in answer:  # the ledger knows what the reference was used for
            advice = ("A reference names one transfer of a user: this is not that transfer sent again (that"
                      " would be answered OK), so choose another --ref")
        else:  # a reference kept from before the ledger recorded what each one was for
            advice = ("The ledger kept this reference from before it recorded what each one was for, so it"
                      " cannot tell a retry from another transfer: if this is that transfer sent again, it was"
                      " applied then, as that entry; if not, choose another --ref")
        raise click.ClickException(f"{verb} refused: {answer}. {advice}; `exchange accounts ledger {target}`"
                                   " shows the entry")
    if not answer.startswith(f"OK {verb} "):
        raise click.ClickException(f"{verb} refused: {answer}")
    click.echo(answer)


def _transfer_command(verb: str, summary: str):
    def command(config_path: str, admin: str, key_file: str | None, user: str, asset: str, amount: str, ref: str,
                timeout: float) -> None:
        transfer(verb, config_path, admin, key_file, user, asset, amount, ref, timeout)

    command.__doc__ = f"""{summary}

    AMOUNT is decimal text in ASSET's unit. Needs an admin user of the config (--user) and its
    API key (--key-file, or the {KEY_ENV} environment variable). Prints the gateway's answer,
    `OK {verb} USER ASSET AMOUNT REF <ref> ENTRY <id>`, the same line again (exit status 0) if
    this very transfer was applied before; a refusal (not enough available, USER's reference
    already used for another transfer, not an admin) is one Error: line and exit status 1. When
    the outcome is unknown (no answer once the line was sent, the connection lost then, REJ
    UNAVAILABLE or INTERNAL, a BYE), the Error: line says so and the exit status is 3: run the
    same command again, with the same --ref.
    """
    for decorator in reversed([
        click.argument("user"), click.argument("asset"), click.argument("amount"),
        click.option("--ref", required=True, help="The transfer's reference, one per transfer of USER: applied"
                     " once, whatever happens; the same command again (same --ref) is a safe retry."),
        click.option("--user", "admin", required=True, envvar="EXCHANGE_USER", show_envvar=True,
                     metavar="ADMIN", help="The admin user to log in as."),
        click.option("--key-file", type=click.Path(dir_okay=False), default=None,
                     help=f"A file whose first line is the admin's API key (else ${KEY_ENV})."),
        # above 0: a timeout of 0 makes the socket not wait at all, so even connecting fails
        click.option("--timeout", type=FiniteFloatRange(min=0, min_open=True, max=DAY_S), default=10.0,
                     show_default=True, help="Seconds to wait for each answer."),
        config_option,
    ]):
        command = decorator(command)
    return command


deposit = click.command("deposit")(_transfer_command(
    "DEPOSIT", "Deposit AMOUNT of ASSET into USER's account (admin only), once per --ref."))
withdraw = click.command("withdraw")(_transfer_command(
    "WITHDRAW", "Withdraw AMOUNT of ASSET from USER's available balance (admin only), once per --ref."))
