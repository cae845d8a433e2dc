"""`exchange accounts deposit` and `withdraw` against the gateway's real text server and order entry
on a free port, with the real ledger core of each shard behind them (in this process: the ledger
role is not needed to check what the commands send, print and exit with)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from click.testing import CliRunner
from ledger_journal import previous_version_checkpoint

from exchange.cli.accounts_transfers import deposit, withdraw
from exchange.config import load_config
from exchange.core.ledger import Ledger
from exchange.core.ledger_checkpoint import restore
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.text_server import TextConnection
from exchange.testing.mesh import loopback_config
from exchange.wire.messages import Reply


class Gateway:
    """The gateway's text server and OrderEntry on their own event loop; each shard a real Ledger."""

    def __init__(self, config):
        self.config = config
        terms, assets = list(config.terms().values()), list(config.asset_map().values())
        self.ledgers = {s.name: Ledger(s.shard, len(config.ledgers), terms, assets) for s in config.ledgers}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.entry = OrderEntry(self.config, self.send, "gw/1")
        host, port = self.config.gateway.text.rsplit(":", 1)
        self.server = self.loop.run_until_complete(self.loop.create_server(
            lambda: TextConnection(self.entry, self.config.gateway), host, int(port)))
        self.ready.set()
        self.loop.run_forever()

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        events = self.ledgers[self.config.ledger_of(command.user).name].handle(command)
        self.loop.call_soon(self.entry.on_reply, Reply(session_id, request_id, events, "gw/1"))
        return True

    def __enter__(self) -> Gateway:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def mesh(tmp_path):
    path = loopback_config(tmp_path, accounts=True)
    with Gateway(load_config(path)) as gateway:
        yield str(path), gateway


def run(command, config_path: str, *args: str, key: str = "ops-key", user: str = "ops"):
    return CliRunner().invoke(command, [*args, "--user", user, "--config", config_path], env={"EXCHANGE_KEY": key})


def test_a_deposit_is_applied_once_per_reference_and_a_retry_prints_its_outcome_again(mesh):
    path, gateway = mesh
    result = run(deposit, path, "bob", "USD", "250", "--ref", "wire-1")
    assert (result.exit_code, result.output) == (0, "OK DEPOSIT bob USD 250.000000 REF wire-1 ENTRY 1\n")
    assert gateway.ledgers["ledger-0"].balance("bob", "USD") == (250_000_000, 0)
    again = run(deposit, path, "bob", "USD", "250.00", "--ref", "wire-1")  # the same amount, however written
    assert (again.exit_code, again.output) == (0, "OK DEPOSIT bob USD 250.000000 REF wire-1 ENTRY 1\n")
    assert gateway.ledgers["ledger-0"].balance("bob", "USD") == (250_000_000, 0)


def test_a_reference_reused_for_another_transfer_is_refused_and_says_so(mesh):
    path, gateway = mesh
    assert run(deposit, path, "bob", "USD", "250", "--ref", "wire-1").exit_code == 0
    other = run(deposit, path, "bob", "USD", "300", "--ref", "wire-1")
    assert other.exit_code == 1
    assert other.output == ("Error: DEPOSIT refused: REJ DUPLICATE_ID reference wire-1 was already used for a deposit"
                            " of 250.000000 USD (entry 1); nothing was done now. A reference names one transfer of"
                            " a user: this is not that transfer sent again (that would be answered OK), so choose"
                            " another --ref; `exchange accounts ledger bob` shows the entry\n")
    assert gateway.ledgers["ledger-0"].balance("bob", "USD") == (250_000_000, 0)
    carols = run(deposit, path, "carol", "USD", "300", "--ref", "wire-1")  # another user's wire-1: its own
    assert (carols.exit_code, carols.output) == (0, "OK DEPOSIT carol USD 300.000000 REF wire-1 ENTRY 2\n")


def test_a_withdrawal_takes_from_the_available_balance_and_no_more(mesh, tmp_path):
    path, gateway = mesh
    key_file = tmp_path / "ops.key"
    key_file.write_text("ops-key\n")
    assert run(deposit, path, "alice", "BTC", "1.5", "--ref", "in-1").exit_code == 0
    too_much = CliRunner().invoke(withdraw, ["alice", "BTC", "2", "--ref", "out-1", "--user", "ops",
                                             "--key-file", str(key_file), "--config", path])
    assert too_much.exit_code == 1
    assert too_much.output == ("Error: WITHDRAW refused: REJ INSUFFICIENT_FUNDS withdrawal needs 2.00000000 BTC,"
                               " 1.50000000 available\n")
    result = run(withdraw, path, "alice", "BTC", "0.5", "--ref", "out-2")
    assert (result.exit_code, result.output) == (0, "OK WITHDRAW alice BTC 0.50000000 REF out-2 ENTRY 2\n")
    assert gateway.ledgers["ledger-1"].balance("alice", "BTC") == (100_000_000, 0)


def test_only_an_admin_may_and_a_wrong_key_is_told(mesh):
    path, gateway = mesh
    not_admin = run(deposit, path, "alice", "USD", "1000000", "--ref", "r1", user="alice", key="alice-key")
    assert not_admin.exit_code == 1
    assert not_admin.output == "Error: DEPOSIT refused: REJ NOT_ALLOWED DEPOSIT is for admin users; alice is not one\n"
    wrong_key = run(deposit, path, "alice", "USD", "1", "--ref", "r1", key="not-the-key")
    assert wrong_key.exit_code == 1
    assert wrong_key.output == "Error: the gateway refused the login of ops: REJ BAD_LOGIN unknown user or wrong key\n"
    assert all(not ledger.balances for ledger in gateway.ledgers.values())


def test_a_refusal_the_gateway_can_tell_is_one_error_line(mesh):
    path, _ = mesh
    result = run(deposit, path, "bob", "USD", "0.0000001", "--ref", "r1")
    assert result.exit_code == 1
    assert result.output == ("Error: DEPOSIT refused: REJ MALFORMED amount 0.0000001 is not a multiple of USD's"
                             " unit 0.000001\n")


def test_no_gateway_is_one_error_line(tmp_path):
    path = str(loopback_config(tmp_path, accounts=True))  # nothing listens on its free port
    result = run(deposit, path, "bob", "USD", "1", "--ref", "r1")
    assert result.exit_code == 1 and result.output.startswith("Error: cannot reach the gateway at 127.0.0.1:")


def test_the_key_never_comes_from_the_command_line(tmp_path):
    path = str(loopback_config(tmp_path, accounts=True))
    result = CliRunner().invoke(deposit, ["bob", "USD", "1", "--ref", "r1", "--user", "ops", "--config", path],
                                env={"EXCHANGE_KEY": ""})
    assert result.exit_code == 1
    assert result.output == "Error: the admin's key is needed: --key-file FILE, or set EXCHANGE_KEY\n"
    assert "--key " not in CliRunner().invoke(deposit, ["--help"]).output


class FakeTextPort:
    """A text port on ``address`` that serves one connection with ``serve`` (a thread), keeping the
    lines it read."""

    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.server = socket.create_server((host, int(port)))
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.close()
        self.thread.join(10)


class GatewayThatAnswers(FakeTextPort):
    """Answers the login, then the transfer with ``answer`` (a BYE, say, from a gateway that ends the
    session while the transfer waits for its ledger shard), or with none, closing the connection (as
    a gateway that stops, or restarts, while the transfer is on its way)."""

    def __init__(self, address: str, answer: bytes | None):
        self.answer = answer
        super().__init__(address)

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rwb") as stream:
            self.lines.append(stream.readline().decode())
            stream.write(b"OK LOGIN ops\n")
            stream.flush()
            self.lines.append(stream.readline().decode())
            if self.answer is not None:
                stream.write(self.answer)
                stream.flush()


def test_a_connection_lost_once_the_transfer_was_sent_says_its_outcome_is_unknown(tmp_path):
    path = loopback_config(tmp_path, accounts=True)
    gateway = GatewayThatAnswers(load_config(path).gateway.text, None)  # it hangs up
    try:
        result = run(deposit, str(path), "bob", "USD", "5", "--ref", "wire-9")
    finally:
        gateway.close()
    assert gateway.lines[-1] == "DEPOSIT bob USD 5 wire-9\n"
    assert result.exit_code == 3
    assert result.output.startswith("Error: the connection to the gateway was lost (")
    assert result.output.endswith("the DEPOSIT may or may not be applied: run the same command again (same --ref"
                                  " wire-9)\n")


@pytest.mark.parametrize("answer", [b"BYE IDLE_TIMEOUT no request in 2 s; send PING to stay connected\n",
                                    b"REJ INTERNAL a bug in the gateway; the session is closed\n",
                                    b"PONG\n"])
def test_an_answer_that_is_neither_ok_nor_a_refusal_says_the_outcome_is_unknown(tmp_path, answer):
    path = loopback_config(tmp_path, accounts=True)
    gateway = GatewayThatAnswers(load_config(path).gateway.text, answer)
    try:
        result = run(deposit, str(path), "bob", "USD", "5", "--ref", "wire-11")
    finally:
        gateway.close()
    assert gateway.lines[-1] == "DEPOSIT bob USD 5 wire-11\n"
    assert result.exit_code == 3, result.output
    assert result.output == (f"Error: {answer.decode().strip()}; the DEPOSIT may or may not be applied: run the"
                             " same command again (same --ref wire-11)\n")


class GatewayThatNeverAnswers(FakeTextPort):
    """Takes the connection and answers nothing, not even the login."""

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rb") as stream:
            while line := stream.readline():
                self.lines.append(line.decode())


def test_no_answer_to_the_login_is_a_refusal_nothing_was_sent(tmp_path):
    path = loopback_config(tmp_path, accounts=True)
    gateway = GatewayThatNeverAnswers(load_config(path).gateway.text)
    try:
        result = run(deposit, str(path), "bob", "USD", "5", "--ref", "wire-10", "--timeout", "0.5")
    finally:
        gateway.close()
    assert [line.split()[0] for line in gateway.lines] == ["LOGIN"]
    assert result.exit_code == 1
    assert result.output.endswith("in 0.5 s; nothing was sent\n")


def test_a_retry_of_a_transfer_known_by_a_reference_of_old_is_not_called_another_transfer(mesh):
    """Defect: a reference kept from a checkpoint of before references were per user refuses any
    reuse (its terms are unknown), the exact retry too; the CLI then said that this was not that
    transfer sent again and to choose another --ref, which would apply it a second time."""
    path, gateway = mesh
    first = run(deposit, path, "bob", "USD", "250", "--ref", "wire-1")
    assert (first.exit_code, first.output) == (0, "OK DEPOSIT bob USD 250.000000 REF wire-1 ENTRY 1\n")
    shard = gateway.ledgers["ledger-0"]  # upgraded, and restarted from the older version's checkpoint
    gateway.ledgers["ledger-0"] = restore(shard.terms.values(), previous_version_checkpoint(shard),
                                          shard.assets.values())
    again = run(deposit, path, "bob", "USD", "250", "--ref", "wire-1")
    assert again.exit_code == 1 and "REJ DUPLICATE_ID reference wire-1 was already used (entry 1)" in again.output
    assert "choose another --ref" in again.output and "this is not that transfer sent again" not in again.output
    assert "if this is that transfer sent again, it was applied then" in again.output
    assert gateway.ledgers["ledger-0"].balance("bob", "USD") == (250_000_000, 0)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "1e300", "86401"])
def test_a_timeout_that_is_no_positive_bounded_duration_is_a_usage_error(tmp_path, timeout):
    """Each was a traceback (-1, nan, inf, 1e300) or a false "cannot reach the gateway" (0: a socket
    that does not wait), after the command had tried to connect."""
    path = str(loopback_config(tmp_path, accounts=True))
    for command in (deposit, withdraw):
        result = run(command, path, "bob", "USD", "1", "--ref", "r1", "--timeout", timeout)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--timeout'" in result.output, result.output
        assert "gateway" not in result.output  # refused before it tried to reach one
