"""An order for an engine that is down is refused at once, and never runs when the engine returns.

The roles run without the launcher here (which would restart the engine at once): journal
writer, both engines and the gateway, each `python -m exchange <role>`, killed in the end.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from exchange.client.text import TextClient
from exchange.config import load_config
from exchange.testing.mesh import Role, loopback_config, wait_for_mesh, wait_until


def first_answer(host: str, port: int, line: str, deadline: float, wanted: str = "") -> str:
    """The reply to ``line`` on a new session of alice's; tried again on a new session, until
    ``deadline``, while no reply comes within a few seconds or the reply does not start with
    ``wanted`` (each try with its own client order id: ``line`` has a ``{}`` for it)."""
    replies = []

    def answered() -> bool:
        with TextClient(host, port, timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            try:
                replies.append(alice.request(line.format(len(replies)), timeout=3))
            except TimeoutError:
                replies.append("nothing")
        return replies[-1].startswith(wanted)

    wait_until(answered, max(0.0, deadline - time.monotonic()), f"an answer {wanted!r} to {line}")
    return replies[-1]


def test_an_order_for_a_dead_engine_is_refused_at_once_and_never_runs_later(tmp_path):
    path = loopback_config(tmp_path, request_timeout=60.0)
    config = load_config(path)
    host, port = config.gateway.text.rsplit(":", 1)
    port = int(port)
    roles: dict[str, Role] = {}
    try:
        roles["journal"] = Role(path, "journal-writer")
        for engine in config.engines:
            roles[engine.name] = Role(path, "engine", engine.name)
        roles["gateway"] = Role(path, "gateway")
        wait_for_mesh(config, roles["gateway"].process, books=False)  # no notifier here
        first_answer(host, port, "BUY AAPL 1 @ 1.00 #up{}", time.monotonic() + 20, "ACK")

        engine = next(e.name for e in config.engines if "AAPL" in e.instruments)
        roles[engine].kill()
        reply = first_answer(host, port, "BUY AAPL 1 @ 1.00 #down{}", time.monotonic() + 20)
        assert reply.startswith("REJ #down") and reply.split()[2] == "BUSY", reply

        roles[engine] = Role(path, "engine", engine)
        first_answer(host, port, "BUY AAPL 1 @ 1.00 #back{}", time.monotonic() + 30, "ACK")
        with TextClient(host, port, timeout=10) as alice:
            assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
            assert alice.request("STATUS #down0").split()[2] == "NOT_YOUR_ORDER"
    finally:
        for role in roles.values():
            role.stop()
    with closing(sqlite3.connect(config.journal.path)) as db:
        placed = [cid for (cid,) in db.execute("SELECT client_order_id FROM commands WHERE kind='PlaceOrder'")]
    assert not [cid for cid in placed if cid.startswith("down")], placed
    assert any(cid.startswith("back") for cid in placed), placed
