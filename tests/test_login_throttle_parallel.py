"""The failed-login throttle against LOGINs on parallel connections, in memory: a LOGIN that would
fill a limit if the key checks still running all failed waits for them (docs/security.md), so
opening many connections at once buys no more guesses, nor more key checks queued on the gateway's
threads, than one at a time; and honest LOGINs sent at once are all checked, none refused."""

from __future__ import annotations

from test_sessions import Client, Exchange

THROTTLED_FOR_ALICE = "REJ LOGIN_THROTTLED too many failed logins for alice from this address; try again in 60 s"


def say_at_once(exchange: Exchange, logins: list[tuple[str, str]]) -> tuple[list[Client], int]:
    """One connection per (address, LOGIN line), each sent before any key check ends; the clients and
    how many key checks were started."""
    clients = [Client(exchange, address=address) for address, _ in logins]
    for client, (_, line) in zip(clients, logins):
        client.say(line)
    return clients, len(exchange.blocking)


def answers(exchange: Exchange, clients: list[Client]) -> list[str]:
    """Let the key checks (those started as others end too) and the failure delays run; every
    client's one answer, in order."""
    while exchange.blocking:
        exchange.run_blocking()
    exchange.run_timers()
    return [line for client in clients for line in client.take()]


def test_parallel_logins_from_one_address_are_throttled_like_sequential_ones():
    exchange = Exchange(deferred=True)
    limit = exchange.entry.config.gateway.max_failed_logins  # 5
    clients, checked = say_at_once(exchange, [("203.0.113.7", f"LOGIN alice guess-{n}") for n in range(30)])
    assert checked == limit, f"{checked} keys of alice were checked from one address"
    assert answers(exchange, clients) == ["REJ BAD_LOGIN unknown user or wrong key"] * limit + [
        THROTTLED_FOR_ALICE] * (30 - limit)


def test_parallel_logins_for_many_names_from_one_address_are_held_to_the_address_limit():
    exchange = Exchange(deferred=True)
    clients, checked = say_at_once(exchange, [("203.0.113.7", f"LOGIN user{n} wrong") for n in range(30)])
    assert checked == 20  # 4 × max_failed_logins
    refused = answers(exchange, clients)[20:]
    assert refused == ["REJ LOGIN_THROTTLED too many failed logins from this address; try again in 60 s"] * 10


def test_parallel_logins_for_one_name_from_many_addresses_are_held_to_the_name_limit():
    exchange = Exchange(deferred=True)
    clients, checked = say_at_once(exchange, [(f"10.0.{n}.1", f"LOGIN alice wrong-{n}") for n in range(30)])
    assert checked == 20  # 4 × max_failed_logins
    refused = answers(exchange, clients)[20:]
    assert refused == ["REJ LOGIN_THROTTLED too many failed logins for alice; try again in 60 s"] * 10


def test_a_right_key_among_parallel_wrong_ones_logs_in_and_is_not_counted_as_a_failure():
    exchange = Exchange(deferred=True)
    logins = [("203.0.113.7", "LOGIN alice alice-key")] + [("203.0.113.7", f"LOGIN alice guess-{n}") for n in range(4)]
    clients, checked = say_at_once(exchange, logins)
    assert checked == 5
    # five checks running: a sixth LOGIN with the right key takes the answer of the one running
    late, checked = say_at_once(exchange, [("203.0.113.7", "LOGIN alice alice-key")])
    assert checked == 5
    assert answers(exchange, clients + late) == ["OK LOGIN alice"] + ["REJ BAD_LOGIN unknown user or wrong key"] * 4 + [
        "OK LOGIN alice"]
    # four failures counted, not five: one more guess may be tried, then no more
    clients, checked = say_at_once(exchange, [("203.0.113.7", f"LOGIN alice guess-{n}") for n in (4, 5)])
    assert checked == 1
    assert answers(exchange, clients) == ["REJ BAD_LOGIN unknown user or wrong key", THROTTLED_FOR_ALICE]


def test_honest_logins_sent_at_once_are_all_checked_and_none_refused():
    """Many users behind one address (an office, a load generator) logging in at once: the LOGINs
    past a limit's worth wait for the checks running, and every one is let in."""
    exchange = Exchange(deferred=True)
    names = [user.name for user in exchange.entry.config.users if not user.admin][:3]
    logins = [("203.0.113.7", f"LOGIN {name} {name}-key") for name in names for _ in range(10)]
    clients, checked = say_at_once(exchange, logins)
    assert checked == len(names)  # one check per key: the LOGINs with the same key take its answer
    assert answers(exchange, clients) == [f"OK LOGIN {name}" for name in names for _ in range(10)]


def test_logins_past_a_limits_worth_wait_and_are_then_checked():
    exchange = Exchange(deferred=True)
    clients, checked = say_at_once(exchange, [("203.0.113.7", f"LOGIN user{n} wrong") for n in range(25)]
                                   + [("203.0.113.7", "LOGIN alice alice-key")])
    assert checked == 20  # the address's limit (4 × max_failed_logins); the rest wait
    said = answers(exchange, clients)
    assert said[:20] == ["REJ BAD_LOGIN unknown user or wrong key"] * 20
    # once 20 failures are counted, the address is throttled, right key or not
    assert said[20:] == ["REJ LOGIN_THROTTLED too many failed logins from this address; try again in 60 s"] * 6
