"""An engine rebuilds its books from the journal writer's history service, not from the journal file:
started on a "host" of its own (its own folder and config copy, naming a journal file that is not
there), it recovers its resting orders after a crash. Roles run by hand, without the launcher."""

from __future__ import annotations

from pathlib import Path

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.testing.mesh import Role, loopback_config, wait_for_mesh, wait_until


def host_of_its_own(tmp_path: Path, path: Path, name: str) -> tuple[Path, Path]:
    """A folder standing for another host, and a copy of the config at ``path`` in it whose journal
    file (and log folder) are in that folder, where no journal is: (folder, config copy)."""
    config = load_config(path)
    host = tmp_path / name
    host.mkdir()
    copy = host / "mesh.yaml"
    copy.write_text(path.read_text()
                    .replace(str(config.journal.path), str(host / "no-journal-here" / "journal.db"))
                    .replace(f"var_dir: {tmp_path / 'var'}", f"var_dir: {host / 'var'}"))
    assert load_config(copy).journal.path != config.journal.path
    return host, copy


def test_an_engine_that_cannot_see_the_journal_file_rebuilds_its_books_over_the_mesh(tmp_path):
    path = loopback_config(tmp_path)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    engine_host, engine_config = host_of_its_own(tmp_path, path, "engine-host")
    roles: dict[str, Role] = {}
    try:
        roles["journal"] = Role(path, "journal-writer")
        for engine in config.engines:
            roles[engine.name] = Role(engine_config, "engine", engine.name, cwd=engine_host)
        roles["gateway"] = Role(path, "gateway")
        wait_for_mesh(config, roles["gateway"].process, books=False)  # no notifier here
        with TextClient(host, int(port), timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert alice.request("SELL AAPL 5 @ 190.00").startswith("ACK")
        roles["e2"].kill()
        roles["e2"] = Role(engine_config, "engine", "e2", cwd=engine_host)
        roles["e2"].wait_for(r"read the history over the mesh: no checkpoint, to seq [1-9]")
        with TextClient(host, int(port), timeout=10) as bob:
            assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
            replies = []  # BUSY while the gateway reconnects to the engine
            wait_until(lambda: replies.append(bob.request("BUY AAPL 2 @ 190.00 IOC", timeout=20))
                       or replies[-1].startswith("ACK"), 20, "an ACK from the restarted engine")
            reply = replies[-1]
            assert bob.next_pushed(timeout=20).startswith(f"FILL {reply.split()[1]} 2 @ 190.00 LEAVES 0")
        assert not (engine_host / "no-journal-here").exists()
    finally:
        for role in roles.values():
            role.kill()


def test_a_gateway_that_cannot_see_the_journal_file_loads_the_orders_it_must_know_over_the_mesh(tmp_path):
    path = loopback_config(tmp_path)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    gateway_host, gateway_config = host_of_its_own(tmp_path, path, "gateway-host")
    roles: dict[str, Role] = {"journal": Role(path, "journal-writer")}
    try:
        for engine in config.engines:
            roles[engine.name] = Role(path, "engine", engine.name)
        roles["gateway"] = Role(gateway_config, "gateway", cwd=gateway_host)
        wait_for_mesh(config, roles["gateway"].process, books=False)  # no notifier here
        with TextClient(host, int(port), timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            order_id = alice.request("SELL AAPL 5 @ 190.00 #before").split()[1]
        roles["gateway"].kill()
        roles["gateway"] = Role(gateway_config, "gateway", cwd=gateway_host)
        wait_for_mesh(config, roles["gateway"].process, books=False)
        assert "1 orders known from the journal" in roles["gateway"].text()
        with TextClient(host, int(port), timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert alice.request("STATUS #before").startswith(f"STATE {order_id} #before NEW 0 5")
            # a client order id still in use is refused, as before the restart
            assert alice.request("SELL AAPL 1 @ 191.00 #before").startswith("REJ #before DUPLICATE")
        assert not (gateway_host / "no-journal-here").exists()
    finally:
        for role in roles.values():
            role.kill()


def balance(client: TextClient, asset: str) -> str:
    lines = client.request_block(f"BALANCE {asset}")
    assert lines[-1] == "END BALANCE 1", lines
    return lines[0]


def test_a_ledger_shard_that_cannot_see_the_journal_file_rebuilds_its_balances_over_the_mesh(tmp_path):
    path = loopback_config(tmp_path, accounts=True)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    ledger_host, ledger_config = host_of_its_own(tmp_path, path, "ledger-host")
    shard_of_alice = config.ledger_of("alice").shard
    roles: dict[str, Role] = {"journal": Role(path, "journal-writer")}
    try:
        for engine in config.engines:
            roles[engine.name] = Role(path, "engine", engine.name)
        for shard in config.ledgers:
            roles[shard.name] = Role(ledger_config, "ledger", str(shard.shard), cwd=ledger_host)
        roles["gateway"] = Role(path, "gateway")
        wait_for_mesh(config, roles["gateway"].process, books=False)  # no notifier here
        with TextClient(host, int(port), timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert alice.request("BUY AAPL 10 @ 100.00").startswith("ACK")
            held = balance(alice, "USD")
            assert "HELD 0.000000" not in held, held
        name = config.ledger_of("alice").name
        roles[name].kill()
        roles[name] = Role(ledger_config, "ledger", str(shard_of_alice), cwd=ledger_host)
        wait_until(lambda: roles[name].text().count("ready: ledger-") == 2, what="the shard started again")
        with TextClient(host, int(port), timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            answers = []  # BUSY while the gateway reconnects to the shard
            wait_until(lambda: answers.append(alice.request_block("BALANCE USD"))
                       or answers[-1][-1] == "END BALANCE 1", 20, "balances from the restarted shard")
            assert answers[-1][0] == held  # the hold, rebuilt from the journal writer's history
        assert not (ledger_host / "no-journal-here").exists()
    finally:
        for role in roles.values():
            role.kill()
