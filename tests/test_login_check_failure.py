"""A LOGIN whose key check raises (scrypt refuses the cost of a key_hash: ``ValueError: n must be a
power of 2``) is a failed login: it is answered BAD_LOGIN, logged once with the user's name (never
the key), and the throttle forgets the check, so nothing waits for it forever.

The config refuses such a hash now, so neither test writes one: in memory, the key check reads dave's
hash as if its cost were 1000 (scrypt's own error); on a real mesh, a sitecustomize on PYTHONPATH makes
the gateway's key check raise for dave's hash."""

from __future__ import annotations

import logging
import textwrap

import msgspec

from exchange.client.text import TextClient
from exchange.config import UserConfig, hash_key
from exchange.gateway import access
from exchange.testing.mesh import Mesh, loopback_config
from test_sessions import CONFIG, Client, Exchange

BAD_COST = "scrypt$1000$" + "00" * 16 + "$" + "00" * 32  # 1000 is no power of 2: hashlib.scrypt raises ValueError
REFUSED = "REJ BAD_LOGIN unknown user or wrong key"
DAVE_HASH = hash_key("dave-key", n=2)


def test_a_key_check_that_raises_is_a_failed_login_and_the_throttle_forgets_it(caplog, monkeypatch):
    real_verify_key = access.verify_key

    def verify_key(key: str, key_hash: str) -> bool:  # dave's hash is checked as if its cost were 1000
        return real_verify_key(key, BAD_COST if key_hash == DAVE_HASH else key_hash)

    monkeypatch.setattr(access, "verify_key", verify_key)
    config = msgspec.structs.replace(CONFIG, users=[*CONFIG.users, UserConfig(name="dave", key_hash=DAVE_HASH)])
    exchange = Exchange(config=config, deferred=True)
    logins = exchange.entry.logins
    clients = [Client(exchange, address="203.0.113.7") for _ in range(2)]
    for client in clients:  # the second LOGIN with the same key waits for the first one's check
        client.say("LOGIN dave secret-dave-key")
    assert len(exchange.blocking) == 1 and logins.checking and logins.running
    with caplog.at_level(logging.INFO, logger="exchange.gateway.access"):
        exchange.run_blocking()
    exchange.run_timers()
    assert [client.take() for client in clients] == [[REFUSED], [REFUSED]]
    assert not logins.checking and not logins.running and not logins.waiting
    unchecked = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(unchecked) == 1 and "'dave'" in unchecked[0] and "power of 2" in unchecked[0], unchecked
    assert "secret-dave-key" not in caplog.text
    # one failure counted, like a wrong key's; other users still log in
    assert len(logins.throttle.failures[("pair", "203.0.113.7", "dave")]) == 1
    alice = Client(exchange)
    alice.say("LOGIN alice alice-key")
    exchange.run_blocking()
    assert alice.take() == ["OK LOGIN alice"]


INJECT = """\
    import os

    import exchange.config as config

    _real, _broken = config.verify_key, os.environ["EXCHANGE_TEST_UNCHECKABLE_HASH"]


    def verify_key(key, key_hash):
        if key_hash == _broken:
            raise ValueError("n must be a power of 2 and less than 2**32 (injected)")  # scrypt's words
        return _real(key, key_hash)


    config.verify_key = verify_key
"""


def test_the_gateway_answers_a_login_whose_key_check_raises(tmp_path, monkeypatch):
    """The real gateway, its key checks on its thread pool: every such LOGIN is answered, and the
    gateway goes on checking other keys."""
    dave_hash = DAVE_HASH
    path = loopback_config(tmp_path)
    text = path.read_text()
    assert text.rstrip().splitlines()[-1].startswith("    ")  # users is the last section
    path.write_text(text.rstrip("\n") + f"\n  - name: dave\n    key_hash: {dave_hash}\n")
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(textwrap.dedent(INJECT))
    monkeypatch.setenv("PYTHONPATH", str(inject))  # the launcher's roles inherit it
    monkeypatch.setenv("EXCHANGE_TEST_UNCHECKABLE_HASH", dave_hash)
    with Mesh(path) as mesh:
        with TextClient(mesh.host, mesh.port, timeout=15) as client:
            for _ in range(3):  # more than the thread pool's threads: none of them is lost
                assert client.request("LOGIN dave dave-key", timeout=15) == REFUSED
            assert client.request("LOGIN carol carol-key", timeout=15).startswith("OK LOGIN carol")
        assert "'dave'" in mesh.log() and "dave-key" not in mesh.log()
