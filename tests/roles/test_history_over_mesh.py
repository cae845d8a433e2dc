"""An engine rebuilds its books from the journal writer's history service, not from the journal file:
started on a "host" of its own (its own folder and config copy, naming a journal file that is not
there), it recovers its resting orders after a crash. Roles run by hand, without the launcher."""

from __future__ import annotations

import time

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.testing.mesh import Role, loopback_config, wait_for_mesh


def test_an_engine_that_cannot_see_the_journal_file_rebuilds_its_books_over_the_mesh(tmp_path):
    path = loopback_config(tmp_path)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    engine_host = tmp_path / "engine-host"
    engine_host.mkdir()
    engine_config = engine_host / "mesh.yaml"
    engine_config.write_text(path.read_text()
                             .replace(str(config.journal.path), str(engine_host / "no-journal-here" / "journal.db"))
                             .replace(f"var_dir: {tmp_path / 'var'}", f"var_dir: {engine_host / 'var'}"))
    assert load_config(engine_config).journal.path != config.journal.path
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
        roles["e2"].wait_for(r"read the history over the mesh: no checkpoint, 1 chunks of events, to seq [1-9]")
        with TextClient(host, int(port), timeout=10) as bob:
            assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
            deadline = time.monotonic() + 20
            while not (reply := bob.request("BUY AAPL 2 @ 190.00 IOC", timeout=20)).startswith("ACK"):
                assert time.monotonic() < deadline, reply  # BUSY while the gateway reconnects
                time.sleep(0.2)
            assert bob.next_pushed(timeout=20).startswith(f"FILL {reply.split()[1]} 2 @ 190.00 LEAVES 0")
        assert not (engine_host / "no-journal-here").exists()
    finally:
        for role in roles.values():
            role.kill()
