"""A LOGIN for a name nobody has costs what a known user's wrong key costs, and off the event loop
(docs/security.md): its answer's timing must not tell which names exist."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from exchange.config import hash_key
from exchange.gateway import access
from test_sessions import CONFIG, Client, Exchange


@pytest.fixture
def scrypt_costs(monkeypatch):
    """The cost n of every hashlib.scrypt call, in order, in a process where no gateway ran yet."""
    costs: list[int] = []
    real = hashlib.scrypt

    def counted(*args, **kwargs):
        costs.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    access._unknown_user_hash.cache_clear()
    yield costs
    access._unknown_user_hash.cache_clear()


def test_an_unknown_name_runs_no_scrypt_on_the_event_loop(scrypt_costs):
    exchange = Exchange(deferred=True)  # the gateway starts: its stand-in hash is made now
    scrypt_costs.clear()
    Client(exchange).say("LOGIN nobody some-key")  # the first unknown name it sees
    assert scrypt_costs == [] and len(exchange.blocking) == 1  # the one check waits for the pool
    exchange.run_blocking()
    assert len(scrypt_costs) == 1


def test_an_unknown_name_is_checked_at_the_cost_of_the_users_key_hashes(scrypt_costs):
    users = [msgspec.structs.replace(user, key_hash=hash_key(f"{user.name}-key", n=2**10)) for user in CONFIG.users]
    exchange = Exchange(config=msgspec.structs.replace(CONFIG, users=users))
    scrypt_costs.clear()
    Client(exchange, "10.0.0.1").say("LOGIN alice wrong-key")
    Client(exchange, "10.0.0.2").say("LOGIN nobody wrong-key")
    assert scrypt_costs == [2**10, 2**10]
