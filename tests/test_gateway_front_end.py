"""The gateway's trusted front ends and LOGOUT, in memory: a front end's LOGIN is throttled by the
address it gives for its user, nobody else may give one, and LOGOUT ends a session at once, in
turn, as a disconnect does."""

from __future__ import annotations

from exchange.core.messages import CancelAll
from exchange.core.orders import CancelReason
from exchange.gateway.protocol.grammar import decode_request
from exchange.gateway.protocol.messages import ClientRequest, LoginRequest, LogoutRequest, PingRequest, Rej
from exchange.gateway.session_table import FRONT_END_IDLE_S
from exchange.web.sessions import PING_EVERY_S
from exchange.wire.messages import encode
from test_sessions import CONFIG, Client, Exchange, configured


class FrontEnd(Client):
    """A session on the gateway's endpoint for front ends (the web role's, from its own address)."""

    def __init__(self, exchange: Exchange, address: str = "127.0.0.1"):
        self.exchange = exchange
        self.lines: list[str] = []
        self.disconnected = False
        self.session = exchange.entry.open(self.write, self.disconnect, address, front_end=True)


def send(client: Client, request: ClientRequest) -> list[str]:
    """Send a request as a ZMQ frame, as the ZMQ transport does; every line received since the last call."""
    decoded = decode_request(encode(request), CONFIG.gateway.max_line)
    if isinstance(decoded, Rej):
        client.exchange.entry.on_error(client.session, decoded)
    else:
        client.exchange.entry.on_request(client.session, decoded)
    client.exchange.release()
    return client.take()


def test_a_front_ends_logins_are_throttled_by_the_address_it_gives_for_each_user():
    exchange = Exchange()
    for _ in range(5):  # max_failed_logins for alice from one address: all through the one front end
        assert send(FrontEnd(exchange), LoginRequest("alice", "wrong", address="203.0.113.7")) == [
            "REJ BAD_LOGIN unknown user or wrong key"]
    assert send(FrontEnd(exchange), LoginRequest("alice", "alice-key", address="203.0.113.7")) == [
        "REJ LOGIN_THROTTLED too many failed logins for alice from this address; try again in 60 s"]
    assert send(FrontEnd(exchange), LoginRequest("alice", "alice-key", address="198.51.100.1")) == [
        "OK LOGIN alice"]
    assert Client(exchange, "127.0.0.1").say("LOGIN alice alice-key") == ["OK LOGIN alice"]  # the front end's own


def test_nobody_but_a_front_end_may_say_where_a_login_comes_from():
    exchange = Exchange()
    refusal = ["REJ NOT_ALLOWED only a front end of the gateway may say where a LOGIN comes from;"
               " leave `address` out"]
    for client in (Client(exchange, "10.0.0.1"), Client(exchange, "10.0.0.1", user="alice")):  # LOGIN, CURVE key
        assert send(client, LoginRequest("alice", "wrong", address="203.0.113.7")) == refusal
        assert client.session.user in (None, "alice") and not client.disconnected
    for _ in range(5):  # none of those counted as failed logins for anyone
        send(Client(exchange, "10.0.0.1"), LoginRequest("bob", "wrong", address="203.0.113.8"))
    assert Client(exchange, "10.0.0.1").say("LOGIN bob bob-key") == ["OK LOGIN bob"]
    assert send(Client(exchange, "10.0.0.2"), LoginRequest("carol", "carol-key")) == ["OK LOGIN carol"]


def test_a_front_end_gives_an_ip_address_or_nothing():
    exchange = Exchange()
    assert send(FrontEnd(exchange), LoginRequest("alice", "alice-key", address="nowhere")) == [
        "REJ MALFORMED address 'nowhere' is not allowed"]
    assert send(FrontEnd(exchange), LoginRequest("alice", "alice-key", address="2001:db8::1")) == ["OK LOGIN alice"]
    assert send(FrontEnd(exchange), LoginRequest("alice", "alice-key")) == ["OK LOGIN alice"]


def test_logout_answers_then_ends_the_session_so_the_user_may_log_in_again():
    exchange = Exchange(config=configured(users={"alice": {"max_sessions": 1}}))
    alice = exchange.session("alice")
    assert Client(exchange).say("LOGIN alice alice-key")[0].startswith("REJ MAX_SESSIONS")
    assert alice.say("logout") == ["OK LOGOUT alice"]
    assert alice.disconnected and alice.session.closed and alice.session.id not in exchange.entry.sessions
    assert Client(exchange).say("LOGIN alice alice-key") == ["OK LOGIN alice"]


def test_logout_waits_its_turn_and_nothing_after_it_is_answered():
    exchange = Exchange()
    alice = exchange.session("alice")
    assert alice.say("BUY AAPL 1 @ 5.00 #b", release=False) == []  # its answer is on its way
    assert send(alice, LogoutRequest()) == ["ACK 2-1 #b BUY AAPL 1 @ 5.00 GTC", "OK LOGOUT alice"]
    assert alice.say("PING") == [] and alice.session.closed
    assert list(exchange.matchers["e2"].books["AAPL"].orders) == ["2-1"]  # the order stays: she did not ask


def test_nothing_behind_a_logout_is_answered_even_while_a_login_is_checked():
    exchange = Exchange(deferred=True)
    alice = Client(exchange)
    for line in ("LOGIN alice alice-key", "LOGOUT", "BUY AAPL 1 @ 5.00", "PING"):
        alice.say(line)
    exchange.run_blocking()
    exchange.release()
    assert alice.take() == ["OK LOGIN alice", "OK LOGOUT alice"]
    assert alice.session.closed and exchange.sent == []


def test_no_bad_line_nor_refusal_behind_a_logout_is_answered_while_a_login_is_checked():
    exchange = Exchange(config=configured(gateway={"max_burst": 3}), deferred=True)
    mallory = Client(exchange)
    for line in ("LOGIN bob wrong-key", "LOGOUT", "HELLO", "", "PING"):  # the last two: over the rate
        mallory.say(line)
    exchange.run_blocking()
    exchange.run_timers()
    assert mallory.take() == ["REJ BAD_LOGIN unknown user or wrong key", "OK LOGOUT"]
    assert mallory.session.closed


def test_logout_is_a_disconnect_for_cancel_on_disconnect():
    exchange = Exchange()
    alice = Client(exchange)
    assert alice.say("LOGIN alice alice-key CANCEL_ON_DISCONNECT") == ["OK LOGIN alice CANCEL_ON_DISCONNECT"]
    alice.say("BUY AAPL 1 @ 5.00")
    assert alice.say("LOGOUT") == ["OK LOGOUT alice"]
    cancels = [c for c in exchange.sent if isinstance(c, CancelAll)]
    assert [(c.user, c.reason, c.order_ids) for c in cancels] == [("alice", CancelReason.DISCONNECT, ("2-1",))]
    assert exchange.matchers["e2"].books["AAPL"].orders == {}


def test_logout_before_any_login_ends_the_session_too():
    exchange = Exchange()
    nobody = Client(exchange)
    assert nobody.say("LOGOUT") == ["OK LOGOUT"]
    assert nobody.disconnected and nobody.session.closed
    assert Client(exchange).say("LOGOUT now") == ["REJ MALFORMED usage: LOGOUT"]


def test_a_front_ends_session_that_sends_nothing_ends_sooner_than_others_and_the_web_role_pings_in_time():
    """The gateway cannot see a front end's DEALER go: a front end that died leaves its browsers' sessions
    open until they idle out, which for a front end's sessions is FRONT_END_IDLE_S, whatever
    ``gateway.idle_timeout`` says; the web role pings each session well within it."""
    for idle_timeout in (300.0, 0.0):  # the default, and "never"
        exchange = Exchange(config=configured(gateway={"idle_timeout": idle_timeout}))
        browser, pinged, client = FrontEnd(exchange), FrontEnd(exchange), exchange.session("carol")
        assert send(browser, LoginRequest("alice", "alice-key")) == ["OK LOGIN alice"]
        assert send(pinged, LoginRequest("bob", "bob-key")) == ["OK LOGIN bob"]
        exchange.now = FRONT_END_IDLE_S - 1
        send(pinged, PingRequest())
        assert exchange.entry.expire_idle() == 0
        exchange.now = FRONT_END_IDLE_S + 1
        assert exchange.entry.expire_idle() == 1  # the browser's session whose front end went quiet
        assert browser.take() == [f"BYE IDLE_TIMEOUT no request in {FRONT_END_IDLE_S:g} s; send PING to stay"
                                  " connected"] and browser.disconnected
        assert not pinged.disconnected and not client.disconnected  # others keep the gateway's idle timeout
    assert PING_EVERY_S * 3 <= FRONT_END_IDLE_S
