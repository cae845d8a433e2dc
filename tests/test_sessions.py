"""The gateway's logic in memory, with a real matcher behind it: replies, order, resends, timeouts."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from exchange.testing.mesh import toy_config
from exchange.config import load_config
from exchange.core.matching import Matcher
from exchange.core.messages import ORDER_EVENTS, CancelAll, OrderAccepted, PlaceOrder
from exchange.core.orders import CancelReason, OrderStatus, Side
from exchange.errors import ProtocolError, RejectCode
from exchange.gateway.protocol.grammar import format_reply, parse_bytes
from exchange.gateway.protocol.messages import Rej
from exchange.gateway.order_entry import OrderEntry
from exchange.wire.messages import BookSnapshot, Reply, SnapshotRefused

CONFIG = toy_config()  # configs/local.yaml without the demo's price bands


class Exchange:
    """OrderEntry wired to real matchers; engine answers wait in ``outbox`` until ``release()``.

    Logins are checked at once unless ``deferred``: then scrypt runs and delayed answers wait in
    ``blocking`` and ``timers`` until ``run_blocking()`` and ``run_timers()``.
    """

    def __init__(self, gateway: str = "gw/1", config=CONFIG, deferred: bool = False):
        instruments = config.instrument_map()
        self.matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments],
                                         round(e.client_order_id_window * 1e9)) for e in config.engines}
        self.now = 0.0
        self.outbox: list[Reply] = []
        self.sent: list = []  # every command, in order
        self.reachable = True
        self.blocking: list = []
        self.timers: list = []
        self.books_asked: list[str] = []  # SnapshotRequests to the notifier, until ``answer_books()``
        self.notifier_takes = True
        self.entry = OrderEntry(config, self.send, gateway, clock=lambda: self.now,
                                run_blocking=(lambda fn, done: self.blocking.append((fn, done))) if deferred else None,
                                later=(lambda delay, fn: self.timers.append((delay, fn))) if deferred else None,
                                ask_book=self.ask_book)
        self.gateway = gateway

    def run_blocking(self) -> None:
        blocking, self.blocking = self.blocking, []
        for fn, done in blocking:
            done(fn())

    def run_timers(self) -> None:
        timers, self.timers = self.timers, []
        for _, fn in timers:
            fn()

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        if not self.reachable:
            return False
        self.sent.append(command)
        events = self.matchers[engine].handle(command)
        self.outbox.append(Reply(session_id, request_id, [e for e in events if isinstance(e, ORDER_EVENTS)],
                                 self.gateway))
        return True

    def ask_book(self, symbol: str) -> bool:
        if self.notifier_takes:
            self.books_asked.append(symbol)
        return self.notifier_takes

    def answer_books(self) -> None:
        """The notifier answers every SnapshotRequest with the engine's book as it is now (all released)."""
        asked, self.books_asked = self.books_asked, []
        for symbol in asked:
            book = next(m.books[symbol] for m in self.matchers.values() if symbol in m.books)
            self.entry.on_book(BookSnapshot(symbol, 1, 0, {}, book.depth(Side.BUY), book.depth(Side.SELL), None, None))

    def release(self) -> None:
        outbox, self.outbox = self.outbox, []
        for reply in outbox:
            self.entry.on_reply(reply)

    def session(self, user: str | None = None, cancel_on_disconnect: bool = False) -> "Client":
        client = Client(self)
        if user:
            option = " CANCEL_ON_DISCONNECT" if cancel_on_disconnect else ""
            assert client.say(f"LOGIN {user} {user}-key{option}")[0].startswith(f"OK LOGIN {user}")
        return client


class Client:
    def __init__(self, exchange: Exchange, address: str = "10.0.0.1", user: str | None = None,
                 login_timeout: float = 0.0):
        self.exchange = exchange
        self.lines: list[str] = []
        self.disconnected = False
        self.session = exchange.entry.open(self.write, self.disconnect, address, user, login_timeout=login_timeout)

    def write(self, replies) -> None:
        for reply in replies:
            self.lines.extend(format_reply(reply).split("\n"))

    def disconnect(self) -> None:
        self.disconnected = True

    def close(self) -> None:
        """The client goes away (the transport tells the gateway)."""
        self.exchange.entry.close(self.session)

    def say(self, line: str, release: bool = True) -> list[str]:
        """Send a line, release the engines' answers, return every line received since the last call."""
        request = parse_bytes(line.encode(), CONFIG.gateway.max_line)  # as the gateway does
        if isinstance(request, Rej):
            self.exchange.entry.on_error(self.session, request)
        else:
            self.exchange.entry.on_request(self.session, request)
        if release:
            self.exchange.release()
        return self.take()

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@pytest.fixture
def exchange() -> Exchange:
    return Exchange()


def test_replies_come_in_request_order_and_fills_follow_their_ack(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 10.00")
    bob.say("BUY AAPL 2 @ 10.00 #b1", release=False)
    assert bob.say("PING", release=False) == []  # held behind the unanswered BUY
    exchange.release()
    assert bob.take() == ["ACK 2-2 #b1 BUY AAPL 2 @ 10.00 GTC", "FILL 2-2 #b1 2 @ 10.00 LEAVES 0 TRADE 2-1",
                          "OUT 2-2 #b1 FILLED", "PONG"]
    assert alice.take() == ["FILL 2-1 2 @ 10.00 LEAVES 3 TRADE 2-1"]


def test_an_order_resent_with_its_client_order_id_gets_the_original_answer(exchange):
    alice = exchange.session("alice")
    first = alice.say("BUY AAPL 3 @ 9.00 #again")
    assert first == ["ACK 2-1 #again BUY AAPL 3 @ 9.00 GTC"]
    assert alice.say("BUY AAPL 3 @ 9.00 #again") == first
    assert len(exchange.matchers["e2"].books["AAPL"].orders) == 1  # placed once
    assert alice.say("BUY AAPL 4 @ 9.00 #again") == [
        "REJ #again DUPLICATE_ID client order id #again was already used"]


def test_a_resend_while_the_first_is_in_flight_waits_for_the_same_answer(exchange):
    alice = exchange.session("alice")
    alice.say("SELL AAPL 1 @ 11.00 #x", release=False)
    alice.say("SELL AAPL 1 @ 11.00 #x", release=False)
    exchange.release()
    assert alice.take() == ["ACK 2-1 #x SELL AAPL 1 @ 11.00 GTC"] * 2
    assert len(exchange.matchers["e2"].books["AAPL"].orders) == 1


def test_a_resend_from_another_session_of_the_user_gets_the_ack_before_the_orders_fills(exchange):
    bob = exchange.session("bob")
    bob.say("SELL AAPL 5 @ 10.00")
    lost, again, other = exchange.session("alice"), exchange.session("alice"), exchange.session("alice")
    lost.say("BUY AAPL 2 @ 10.00 #r", release=False)
    lost.close()  # its connection dropped before the answer
    assert again.say("BUY AAPL 2 @ 10.00 #r", release=False) == []  # a resend: it waits for the same answer
    exchange.release()
    fills = ["FILL 2-2 #r 2 @ 10.00 LEAVES 0 TRADE 2-1", "OUT 2-2 #r FILLED"]
    assert again.take() == ["ACK 2-2 #r BUY AAPL 2 @ 10.00 GTC", *fills]
    assert other.take() == fills


def test_replies_to_another_incarnations_requests_only_update_the_views(exchange):
    alice = exchange.session("alice")
    alice.say("SELL AAPL 2 @ 12.00 #v", release=False)
    exchange.outbox = [Reply(r.session, r.request_id, r.events, "gw/0") for r in exchange.outbox]
    exchange.release()
    assert alice.take() == []  # not our request: no ACK in a stranger's slot
    assert exchange.entry.orders["2-1"].client_order_id == "v"


def test_an_unanswered_request_times_out_with_an_unknown_outcome(exchange):
    alice = exchange.session("alice")
    alice.say("BUY AAPL 1 @ 5.00 #t", release=False)
    exchange.outbox.clear()  # the engine died with the command in its queue
    exchange.now = 11.0
    assert exchange.entry.expire(10.0) == 1
    [line] = alice.take()
    assert line.startswith("REJ #t UNAVAILABLE no answer from the engine in 10 s; the outcome is unknown")
    assert alice.say("PING") == ["PONG"]


def test_a_busy_engine_is_a_busy_reject(exchange):
    alice = exchange.session("alice")
    exchange.reachable = False
    assert alice.say("BUY AAPL 1 @ 5.00") == ["REJ BUSY engine e2 is busy; try again"]
    assert alice.say("CANCELALL") == ["REJ BUSY engines e1, e2 are busy; try again"]


def test_cancel_all_counts_over_every_engine_and_pushes_each_cancel(exchange):
    alice, other = exchange.session("alice"), exchange.session("alice")
    alice.say("BUY AAPL 1 @ 5.00")
    alice.say("BUY BTC-USD 1 @ 5.00")
    other.take()
    lines = alice.say("CANCELALL")
    assert lines[0] == "OK CANCELALL 2"
    assert sorted(lines[1:]) == ["OUT 1-1 CANCELED CANCEL_ALL", "OUT 2-1 CANCELED CANCEL_ALL"]
    assert sorted(other.take()) == ["OUT 1-1 CANCELED CANCEL_ALL", "OUT 2-1 CANCELED CANCEL_ALL"]


def test_other_sessions_of_the_user_hear_fills_but_never_acks(exchange):
    alice, watcher, bob = exchange.session("alice"), exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 1 @ 10.00")
    bob.say("BUY AAPL 1 @ 10.00")
    assert watcher.take() == ["FILL 2-1 1 @ 10.00 LEAVES 0 TRADE 2-1", "OUT 2-1 FILLED"]


def test_another_gateway_incarnation_learns_orders_from_the_journal_events(exchange):
    alice = exchange.session("alice")
    alice.say("SELL AAPL 1 @ 11.00 #j1")
    journaled = [exchange.entry.orders["2-1"].accepted]
    restarted = Exchange("gw/2")
    restarted.matchers = exchange.matchers
    assert restarted.entry.load(journaled) == 1
    again = restarted.session("alice")
    assert again.say("SELL AAPL 1 @ 11.00 #j1") == ["ACK 2-1 #j1 SELL AAPL 1 @ 11.00 GTC"]
    assert again.say("STATUS #j1") == ["STATE 2-1 #j1 NEW 0 1 SELL AAPL @ 11.00"]
    assert len(exchange.matchers["e2"].books["AAPL"].orders) == 1


def test_a_resend_the_engine_knows_but_the_gateway_never_saw_answered_gets_the_original_ack():
    first = Exchange("gw/1")
    first.session("alice").say("BUY AAPL 2 @ 7.00 #lost", release=False)
    first.outbox.clear()  # accepted and journaled, but the answer died with the engine
    second = Exchange("gw/2")
    second.matchers = first.matchers
    order = first.matchers["e2"].books["AAPL"].orders["2-1"]
    journaled = {"2-1": [OrderAccepted(1, 0, "AAPL", "2-1", "alice", order.side, 2, 700, order.tif, order.stp,
                                       "lost")]}
    second.entry.history = lambda order_id: journaled.get(order_id, [])
    alice = second.session("alice")
    assert alice.say("BUY AAPL 2 @ 7.00 #lost") == ["ACK 2-1 #lost BUY AAPL 2 @ 7.00 GTC"]
    assert alice.say("BUY AAPL 3 @ 7.00 #lost") == [
        "REJ #lost DUPLICATE_ID client order id #lost was already used"]
    assert len(first.matchers["e2"].books["AAPL"].orders) == 1


def test_a_fill_before_a_cancel_reaches_the_client_before_the_cancels_answer(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 10.00")
    bob.say("BUY AAPL 2 @ 10.00", release=False)  # fills part of alice's order first ...
    alice.say("CANCEL 2-1", release=False)  # ... then she cancels the rest
    exchange.release()
    assert alice.take() == ["FILL 2-1 2 @ 10.00 LEAVES 3 TRADE 2-1", "OUT 2-1 CANCELED"]


def test_an_unanswered_request_does_not_hold_back_fills_of_other_orders(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 10.00")
    alice.say("BUY BTC-USD 1 @ 5.00", release=False)  # unanswered for now
    exchange.outbox, held = [], exchange.outbox
    bob.say("BUY AAPL 1 @ 10.00")
    assert alice.take() == ["FILL 2-1 1 @ 10.00 LEAVES 4 TRADE 2-1"]
    exchange.outbox = held
    exchange.release()
    assert alice.take() == ["ACK 1-1 BUY BTC-USD 1.0000 @ 5.00 GTC"]


# -- who may do what ----------------------------------------------------------------------------

def configured(gateway: dict | None = None, users: dict | None = None):
    """CONFIG with some gateway settings and some users' settings changed."""
    config = CONFIG
    if gateway:
        config = msgspec.structs.replace(config, gateway=msgspec.structs.replace(config.gateway, **gateway))
    if users:
        config = msgspec.structs.replace(config, users=[
            msgspec.structs.replace(u, **users.get(u.name, {})) for u in config.users])
    return config


def test_someone_elses_order_and_no_order_at_all_get_the_same_answer(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 150.00 #mine")
    alice.say("BUY BTC-USD 1 @ 10.00 #done")
    alice.say("CANCEL #done")
    for verb in ("CANCEL {}", "REPLACE {} 10", "STATUS {}"):
        for existing, missing in (("2-1", "2-99"), ("1-1", "1-99")):  # open, then finished
            assert bob.say(verb.format(existing)) == [
                line.replace(missing, existing) for line in bob.say(verb.format(missing))]
            [line] = bob.say(verb.format(existing))
            assert line.startswith("REJ NOT_YOUR_ORDER no ") and "alice" not in line
    assert bob.say("CANCEL #mine") == ["REJ #mine NOT_YOUR_ORDER no open order #mine of user bob"]
    assert bob.say("CANCELALL") == ["OK CANCELALL 0"]
    assert alice.take() == []
    assert alice.say("STATUS #mine") == ["STATE 2-1 #mine NEW 0 5 SELL AAPL @ 150.00"]


def test_the_key_is_checked_off_the_loop_and_later_requests_wait_for_the_login():
    exchange = Exchange(deferred=True)
    alice = Client(exchange)
    for line in ("LOGIN alice alice-key", "BUY AAPL 1 @ 5.00 #w1", "HELLO", "PING"):
        alice.say(line)
    assert alice.take() == [] and len(exchange.blocking) == 1  # scrypt is running elsewhere
    exchange.run_blocking()
    exchange.release()
    assert alice.take() == ["OK LOGIN alice", "ACK 2-1 #w1 BUY AAPL 1 @ 5.00 GTC",
                            "REJ UNKNOWN_VERB unknown verb 'HELLO'; verbs are LOGIN, BUY, SELL, CANCEL, REPLACE,"
                            " CANCELALL, STATUS, ORDERS, BOOK, PING, BALANCE, DEPOSIT, WITHDRAW, LOGOUT", "PONG"]
    again = Client(exchange)
    assert again.say("LOGIN alice alice-key") == ["OK LOGIN alice"]  # verified before: no scrypt
    assert exchange.blocking == []


def test_a_failed_login_is_answered_after_the_delay_and_the_requests_behind_it_wait():
    exchange = Exchange(deferred=True)
    mallory = Client(exchange)
    mallory.say("LOGIN alice guess")
    mallory.say("BUY AAPL 1 @ 5.00")
    exchange.run_blocking()
    assert mallory.take() == [] and [delay for delay, _ in exchange.timers] == [1.0]
    exchange.run_timers()
    assert mallory.take() == ["REJ BAD_LOGIN unknown user or wrong key",
                              "REJ NOT_LOGGED_IN log in first: LOGIN <user> <key>"]


def test_requests_behind_a_second_login_wait_for_that_logins_answer():
    exchange = Exchange(deferred=True)
    alice = Client(exchange)
    for line in ("LOGIN alice typo", "LOGIN alice alice-key", "STATUS 1-1"):  # one write
        alice.say(line)
    for _ in range(3):  # the first key's check and delay, then the second key's check
        exchange.run_blocking()
        exchange.run_timers()
    assert alice.take() == ["REJ BAD_LOGIN unknown user or wrong key", "OK LOGIN alice",
                            "REJ NOT_YOUR_ORDER no open order 1-1 of user alice"]


def test_an_unknown_user_costs_a_key_check_like_a_known_one():
    exchange = Exchange(deferred=True)
    Client(exchange).say("LOGIN nobody some-key")
    assert len(exchange.blocking) == 1
    exchange.run_blocking()
    exchange.run_timers()


def test_one_users_typos_lock_out_only_that_user_from_that_address():
    exchange = Exchange()
    for _ in range(5):
        assert Client(exchange, "10.0.1.1").say("LOGIN alice wrong") == ["REJ BAD_LOGIN unknown user or wrong key"]
    assert Client(exchange, "10.0.1.1").say("LOGIN alice alice-key") == [
        "REJ LOGIN_THROTTLED too many failed logins for alice from this address; try again in 60 s"]
    assert Client(exchange, "10.0.1.1").say("LOGIN bob bob-key") == ["OK LOGIN bob"]  # same address
    assert Client(exchange, "10.0.9.9").say("LOGIN alice alice-key") == ["OK LOGIN alice"]  # elsewhere
    exchange.now = 61.0  # the failures are older than the window
    assert Client(exchange, "10.0.1.1").say("LOGIN alice alice-key") == ["OK LOGIN alice"]


def test_guessing_one_users_key_from_many_addresses_is_throttled_for_that_name():
    exchange = Exchange()
    for n in range(20):  # 4 × max_failed_logins, never 5 from one address
        Client(exchange, f"10.0.1.{n}").say("LOGIN alice wrong")
    assert Client(exchange, "10.0.9.9").say("LOGIN alice alice-key") == [
        "REJ LOGIN_THROTTLED too many failed logins for alice; try again in 60 s"]
    assert Client(exchange, "10.0.9.9").say("LOGIN bob bob-key") == ["OK LOGIN bob"]


def test_guessing_many_users_keys_from_one_address_is_throttled_for_that_address():
    exchange = Exchange()
    for n in range(20):  # a different name each time: no name reaches its own limit
        Client(exchange, "10.0.2.1").say(f"LOGIN user{n} wrong")
    assert Client(exchange, "10.0.2.1").say("LOGIN bob bob-key") == [
        "REJ LOGIN_THROTTLED too many failed logins from this address; try again in 60 s"]
    assert Client(exchange, "10.0.2.2").say("LOGIN bob bob-key") == ["OK LOGIN bob"]


def test_a_session_over_its_rate_is_refused_rate_limited_until_its_bucket_refills():
    exchange = Exchange(config=configured(gateway={"max_rate": 2.0, "max_burst": 3}))
    alice = exchange.session("alice")  # the LOGIN took one token
    assert alice.say("PING") == alice.say("PING") == ["PONG"]
    assert alice.say("BUY AAPL 1 @ 5.00 #r1") == [
        "REJ #r1 RATE_LIMITED more than 2 requests per second; slow down"]
    alice.session.closed = False
    exchange.entry.on_error(alice.session, Rej(RejectCode.MALFORMED, "bad", "r2"))
    assert alice.take() == ["REJ #r2 RATE_LIMITED more than 2 requests per second; slow down"]
    exchange.now = 0.5
    assert alice.say("PING") == ["PONG"]
    assert alice.say("PING")[0].startswith("REJ RATE_LIMITED")
    assert exchange.sent == []  # nothing over the rate reached an engine


def test_a_users_own_rate_replaces_the_gateways():
    exchange = Exchange(config=configured(gateway={"max_rate": 100.0, "max_burst": 100},
                                          users={"bob": {"max_rate": 1.0}}))
    bob = exchange.session("bob")
    assert bob.say("PING") == ["PONG"]
    assert bob.say("PING")[0].startswith("REJ RATE_LIMITED more than 1 requests per second")


def test_a_user_may_have_at_most_max_sessions():
    exchange = Exchange(config=configured(users={"alice": {"max_sessions": 2}}))
    first, _ = exchange.session("alice"), exchange.session("alice")
    assert Client(exchange).say("LOGIN alice alice-key") == [
        "REJ MAX_SESSIONS user alice has 2 sessions, the most allowed; close one first"]
    assert Client(exchange).say("LOGIN bob bob-key") == ["OK LOGIN bob"]
    first.close()
    assert Client(exchange).say("LOGIN alice alice-key") == ["OK LOGIN alice"]


def test_the_gateway_takes_at_most_max_connections():
    exchange = Exchange(config=configured(gateway={"max_connections": 2}))
    first, _ = Client(exchange), Client(exchange)
    with pytest.raises(ProtocolError) as refused:
        Client(exchange)
    assert (refused.value.code, refused.value.reason) == (
        RejectCode.MAX_CONNECTIONS, "the gateway has 2 connections, the most it takes; try again later")
    first.close()
    Client(exchange)


def test_an_idle_session_is_told_bye_and_closed_and_ping_keeps_one_alive():
    exchange = Exchange(config=configured(gateway={"idle_timeout": 30.0}))
    quiet, chatty = exchange.session("alice"), exchange.session("bob")
    exchange.now = 20.0
    chatty.say("PING")
    exchange.now = 31.0
    assert exchange.entry.expire_idle() == 1
    assert quiet.take() == ["BYE IDLE_TIMEOUT no request in 30 s; send PING to stay connected"]
    assert quiet.disconnected and quiet.session.closed and not chatty.disconnected
    assert quiet.say("PING") == []  # a closed session takes nothing more


def test_a_session_waiting_for_an_answer_is_not_idle_and_gets_the_whole_timeout_after_it():
    exchange = Exchange(config=configured(gateway={"idle_timeout": 30.0}))
    alice = exchange.session("alice")
    assert alice.say("BUY AAPL 1 @ 5.00 #slow", release=False) == []  # its engine is slow to answer
    exchange.now = 45.0
    assert exchange.entry.expire_idle() == 0  # it waits on the exchange, not the other way round
    assert not alice.disconnected and alice.take() == []
    exchange.release()
    assert alice.take()[0].startswith("ACK 2-1 #slow")
    exchange.now = 70.0
    assert exchange.entry.expire_idle() == 0  # 25 s after it was last seen waiting
    exchange.now = 76.0
    assert exchange.entry.expire_idle() == 1
    assert alice.take() == ["BYE IDLE_TIMEOUT no request in 30 s; send PING to stay connected"]


def test_a_session_nobody_logged_in_on_ends_after_its_login_timeout():
    exchange = Exchange(config=configured(gateway={"idle_timeout": 30.0}), deferred=True)
    anonymous, checking, failed = (Client(exchange, login_timeout=5.0) for _ in range(3))
    keyed, text = Client(exchange, user="alice", login_timeout=5.0), Client(exchange)
    failed.say("LOGIN bob wrong")
    exchange.run_blocking()
    exchange.run_timers()
    assert failed.take() == ["REJ BAD_LOGIN unknown user or wrong key"]
    checking.say("LOGIN bob bob-key")  # its key is still being checked at the deadline
    exchange.now = 6.0
    assert exchange.entry.expire_idle() == 2
    bye = ["BYE IDLE_TIMEOUT no request in 5 s; send PING to stay connected"]
    assert anonymous.take() == failed.take() == bye and anonymous.disconnected and failed.disconnected
    assert not any(c.disconnected for c in (checking, keyed, text)) and checking.session.user is None
    exchange.now = 31.0
    assert exchange.entry.expire_idle() == 2  # the others have the idle timeout ...
    assert keyed.disconnected and text.disconnected and not checking.disconnected  # ... but for a LOGIN unanswered
    exchange.run_blocking()
    exchange.run_timers()
    assert checking.take() == ["OK LOGIN bob"]
    exchange.now = 62.0
    assert exchange.entry.expire_idle() == 1 and checking.disconnected


def test_the_users_max_open_orders_goes_into_each_order():
    exchange = Exchange(config=configured(users={"alice": {"max_open_orders": 2}}))
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("BUY AAPL 1 @ 5.00")
    alice.say("BUY AAPL 1 @ 5.01")
    assert alice.say("BUY AAPL 1 @ 5.02") == [
        "REJ MAX_OPEN_ORDERS user alice has 2 open orders on AAPL, the most allowed; cancel one first"]
    assert alice.say("BUY BTC-USD 1 @ 5.00")[0].startswith("ACK")  # per instrument
    bob.say("BUY AAPL 1 @ 5.00")
    assert [c.max_open_orders for c in exchange.sent if isinstance(c, PlaceOrder)] == [2, 2, 2, 2, 0]


def test_a_curve_session_is_its_keys_user_and_login_only_sets_options(exchange):
    keyed = Client(exchange, user="alice")
    assert keyed.say("BUY AAPL 1 @ 5.00 #k") == ["ACK 2-1 #k BUY AAPL 1 @ 5.00 GTC"]
    assert keyed.say("LOGIN bob bob-key") == ["REJ BAD_LOGIN this connection's key is alice's"]
    assert keyed.say("LOGIN alice - CANCEL_ON_DISCONNECT") == ["OK LOGIN alice CANCEL_ON_DISCONNECT"]
    assert keyed.say("LOGIN alice -")[0].startswith("REJ ALREADY_LOGGED_IN")
    assert exchange.entry.orders["2-1"].user == "alice"


# -- cancel on disconnect -----------------------------------------------------------------------

def test_a_session_that_asked_has_its_own_open_orders_canceled_when_it_ends(exchange):
    leaving = Client(exchange)
    assert leaving.say("LOGIN alice alice-key CANCEL_ON_DISCONNECT") == ["OK LOGIN alice CANCEL_ON_DISCONNECT"]
    staying, bob = exchange.session("alice"), exchange.session("bob")
    leaving.say("SELL AAPL 5 @ 10.00 #c1")
    leaving.say("BUY BTC-USD 1 @ 5.00 #c2")
    leaving.say("BUY AAPL 1 @ 1.00 #c3")
    leaving.say("CANCEL #c3")
    bob.say("BUY AAPL 5 @ 10.00")  # fills #c1 completely
    staying.say("BUY AAPL 2 @ 9.00 #s1")
    staying.take()
    leaving.take()
    leaving.close()
    exchange.release()
    cancels = [c for c in exchange.sent if isinstance(c, CancelAll)]
    assert [(c.user, c.reason, c.order_ids) for c in cancels] == [("alice", CancelReason.DISCONNECT, ("1-1",))]
    assert staying.take() == ["OUT 1-1 #c2 CANCELED DISCONNECT"]
    assert list(exchange.matchers["e2"].books["AAPL"].orders) == ["2-4"]  # #s1 stays
    assert exchange.matchers["e1"].books["BTC-USD"].orders == {}
    assert leaving.take() == []


def test_a_session_that_did_not_ask_leaves_its_orders(exchange):
    alice = exchange.session("alice")
    alice.say("BUY AAPL 1 @ 5.00")
    alice.close()
    exchange.release()
    assert not any(isinstance(c, CancelAll) for c in exchange.sent)
    assert list(exchange.matchers["e2"].books["AAPL"].orders) == ["2-1"]


def test_the_users_default_decides_unless_the_login_says_otherwise():
    exchange = Exchange(config=configured(users={"alice": {"cancel_on_disconnect": True}}))
    by_default, declined = Client(exchange), Client(exchange)
    assert by_default.say("LOGIN alice alice-key") == ["OK LOGIN alice CANCEL_ON_DISCONNECT"]
    assert declined.say("login alice alice-key keep_on_disconnect") == ["OK LOGIN alice"]
    by_default.say("BUY AAPL 1 @ 5.00")
    declined.say("BUY AAPL 1 @ 5.01")
    by_default.close()
    declined.close()
    exchange.release()
    assert list(exchange.matchers["e2"].books["AAPL"].orders) == ["2-2"]


def test_an_order_still_on_its_way_when_the_session_ends_is_canceled_once_accepted(exchange):
    alice = Client(exchange)
    alice.say("LOGIN alice alice-key CANCEL_ON_DISCONNECT")
    alice.say("BUY AAPL 1 @ 5.00 #late", release=False)
    alice.close()
    exchange.release()  # the ACK arrives for a session that is gone ...
    exchange.release()  # ... and the gateway cancels the order
    assert exchange.matchers["e2"].books["AAPL"].orders == {}
    assert exchange.entry.orders["2-1"].status is OrderStatus.CANCELED


def test_a_disconnect_cancel_the_engine_had_no_room_for_is_sent_again(exchange):
    alice = Client(exchange)
    alice.say("LOGIN alice alice-key CANCEL_ON_DISCONNECT")
    alice.say("BUY AAPL 1 @ 5.00")
    exchange.reachable = False
    alice.close()
    exchange.reachable = True
    exchange.entry.expire(10.0)
    exchange.release()
    assert exchange.matchers["e2"].books["AAPL"].orders == {}


def test_a_request_the_gateway_could_not_hand_over_is_answered_busy_at_once(exchange):
    alice = exchange.session("alice")
    alice.say("BUY AAPL 1 @ 5.00 #lost", release=False)
    exchange.outbox.clear()  # as if the batch holding it never left the gateway
    exchange.matchers["e2"] = Matcher(2, [CONFIG.instrument_map()["AAPL"]])
    exchange.entry.not_sent("e2", exchange.entry.in_flight.last_id)
    [line] = alice.take()
    assert line.startswith("REJ #lost BUSY"), line
    assert alice.say("BUY AAPL 1 @ 5.00 #lost")[0].startswith("ACK 2-1 #lost")  # the resend is new


def test_a_disconnect_cancel_that_could_not_be_handed_over_is_sent_again(exchange):
    alice = Client(exchange)
    alice.say("LOGIN alice alice-key CANCEL_ON_DISCONNECT")
    alice.say("BUY AAPL 1 @ 5.00")
    placed = exchange.sent[-1]
    alice.close()  # sends the CancelAll ...
    assert isinstance(exchange.sent[-1], CancelAll)
    exchange.outbox.clear()  # ... whose batch never left: the engine still has the order
    exchange.matchers["e2"] = engine = Matcher(2, [CONFIG.instrument_map()["AAPL"]])
    engine.handle(placed)
    exchange.entry.not_sent("e2", exchange.entry.in_flight.last_id)
    assert list(engine.books["AAPL"].orders) == ["2-1"]
    exchange.entry.expire(10.0)  # the gateway sends it again, with the other unsent ones
    exchange.release()
    assert engine.books["AAPL"].orders == {}


def test_cancel_all_waits_in_line_like_an_order_and_counts_until_every_engine_answers():
    config = msgspec.structs.replace(CONFIG, gateway=msgspec.structs.replace(CONFIG.gateway, max_in_flight=2))
    exchange = Exchange(config=config)
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 1 @ 10.00", release=False)
    alice.say("SELL AAPL 1 @ 11.00", release=False)  # e2 has 2 unanswered: its line is full
    busy = bob.say("CANCELALL AAPL", release=False)
    assert busy == ["REJ BUSY engine e2 is busy; try again"]
    assert bob.say("CANCELALL", release=False) == ["REJ BUSY engine e2 is busy; try again"]
    exchange.release()
    alice.take()
    assert bob.say("CANCELALL", release=False) == []  # sent to both engines, answered by neither yet
    assert exchange.entry.waiting_on == {"e1": 1, "e2": 1}
    exchange.release()
    assert bob.take() == ["OK CANCELALL 0"]
    assert exchange.entry.waiting_on == {"e1": 0, "e2": 0}


def test_an_unanswered_cancel_all_stops_counting_when_it_expires():
    exchange = Exchange()
    bob = exchange.session("bob")
    bob.say("CANCELALL", release=False)
    exchange.outbox.clear()  # the engines never answer
    assert exchange.entry.waiting_on == {"e1": 1, "e2": 1}
    exchange.now += 60
    assert exchange.entry.expire(10) == 1
    assert bob.take()[0].startswith("REJ UNAVAILABLE")
    assert exchange.entry.waiting_on == {"e1": 0, "e2": 0}


def test_a_cancel_all_that_could_not_reach_an_engine_says_so_and_which():
    exchange = Exchange()
    alice = exchange.session("alice")
    alice.say("SELL AAPL 1 @ 10.00")  # on e2
    alice.say("SELL BTC-USD 1 @ 10.00")  # on e1
    in_flight = exchange.entry.in_flight
    reachable = in_flight.send
    in_flight.send = lambda engine, *rest: engine != "e2" and reachable(engine, *rest)  # e2 is away
    assert alice.say("CANCELALL") == [
        "REJ BUSY engine e2 is busy: its orders stay; 1 canceled elsewhere; try again",
        "OUT 1-1 CANCELED CANCEL_ALL"]
    assert "2-1" in exchange.matchers["e2"].books["AAPL"].orders  # still open: the answer did not say OK


def test_a_cancel_all_that_times_out_still_tells_what_the_answering_engines_canceled():
    exchange = Exchange()
    alice = exchange.session("alice")
    alice.say("SELL AAPL 1 @ 10.00")
    alice.say("SELL BTC-USD 1 @ 10.00")
    alice.say("CANCELALL", release=False)
    e1_answer = [reply for reply in exchange.outbox if any(e.symbol == "BTC-USD" for e in reply.events)]
    exchange.outbox = e1_answer  # e2's answer is lost
    exchange.release()
    assert alice.take() == []  # waits for e2
    exchange.now += 60
    exchange.entry.expire(10)
    lines = alice.take()
    assert lines[0].startswith("REJ UNAVAILABLE") and lines[1:] == ["OUT 1-1 CANCELED CANCEL_ALL"]


def test_every_order_a_user_cannot_touch_gets_one_reason_on_every_verb(exchange):
    """No such order (on an engine or not), someone else's, a finished one, an unknown #id: CANCEL,
    REPLACE and STATUS (the gateway's answer or the engine's) say the same sentence."""
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 150.00 #theirs")
    bob.say("BUY AAPL 1 @ 10.00 #done")
    bob.say("CANCEL #done")
    for name in ("9-9", "1-4", "2-1", "#theirs", "#never"):
        for verb in ("CANCEL {}", "REPLACE {} 10", "STATUS {}"):
            cid = f"{name} " if name.startswith("#") else ""
            assert bob.say(verb.format(name)) == [f"REJ {cid}NOT_YOUR_ORDER no open order {name} of user bob"]
    for verb in ("CANCEL {}", "REPLACE {} 10"):  # bob's own, finished
        for name in ("2-2", "#done"):
            cid = f"{name} " if name.startswith("#") else ""
            assert bob.say(verb.format(name)) == [f"REJ {cid}NOT_YOUR_ORDER no open order {name} of user bob"]


# -- ORDERS and BOOK ------------------------------------------------------------------------------

def test_orders_lists_the_users_open_orders_oldest_first_from_every_session(exchange):
    alice, again, bob = exchange.session("alice"), exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 150.00 #s1")
    again.say("BUY BTC-USD 0.5 @ 100 #b1")
    alice.say("BUY AAPL 1 @ 1.00 #gone")
    alice.say("CANCEL #gone")
    bob.say("BUY AAPL 2 @ 150.00")  # fills 2 of #s1
    alice.take()
    assert alice.say("ORDERS") == ["STATE 2-1 #s1 PARTIALLY_FILLED 2 3 SELL AAPL @ 150.00",
                                   "STATE 1-1 #b1 NEW 0.0000 0.5000 BUY BTC-USD @ 100.00", "END ORDERS 2 OF 2"]
    assert alice.say("orders btc-usd") == ["STATE 1-1 #b1 NEW 0.0000 0.5000 BUY BTC-USD @ 100.00",
                                           "END ORDERS 1 OF 1"]
    assert bob.say("ORDERS") == ["END ORDERS 0 OF 0"]
    assert bob.say("ORDERS DOGE") == ["REJ UNKNOWN_SYMBOL no instrument DOGE; there are BTC-USD, ETH-USD, AAPL"]


def test_orders_is_answered_in_turn_after_the_orders_placed_before_it(exchange):
    alice = exchange.session("alice")
    alice.say("BUY AAPL 1 @ 1.00 #p1", release=False)
    assert alice.say("ORDERS", release=False) == []
    exchange.release()
    assert alice.take() == ["ACK 2-1 #p1 BUY AAPL 1 @ 1.00 GTC", "STATE 2-1 #p1 NEW 0 1 BUY AAPL @ 1.00",
                            "END ORDERS 1 OF 1"]


def test_orders_lists_at_most_a_thousand_and_says_how_many_there_are(exchange, monkeypatch):
    monkeypatch.setattr("exchange.gateway.order_views.MAX_ORDERS_LISTED", 2)
    alice = exchange.session("alice")
    for i in range(3):
        alice.say(f"BUY AAPL 1 @ 1.0{i}")
    assert alice.say("ORDERS") == ["STATE 2-1 NEW 0 1 BUY AAPL @ 1.00", "STATE 2-2 NEW 0 1 BUY AAPL @ 1.01",
                                   "END ORDERS 2 OF 3"]


def test_book_answers_the_released_depth_best_first_up_to_its_levels(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    for line in ("BUY BTC-USD 0.5 @ 100", "BUY BTC-USD 0.25 @ 100", "BUY BTC-USD 1 @ 99.5", "SELL BTC-USD 2 @ 101",
                 "BUY BTC-USD 1 @ 98"):
        alice.say(line)
    assert bob.say("BOOK BTC-USD 2") == []  # the notifier answers later
    assert exchange.books_asked == ["BTC-USD"]
    exchange.answer_books()
    assert bob.take() == ["BOOK BTC-USD", "BID 100.00 0.7500", "BID 99.50 1.0000", "ASK 101.00 2.0000",
                          "END BOOK BTC-USD"]
    bob.say("book eth-usd")
    exchange.answer_books()
    assert bob.take() == ["BOOK ETH-USD", "END BOOK ETH-USD"]


@pytest.mark.parametrize("line, reply", [
    ("BOOK DOGE", "REJ UNKNOWN_SYMBOL no instrument DOGE; there are BTC-USD, ETH-USD, AAPL"),
    ("BOOK AAPL 0", "REJ MALFORMED levels '0' is not a whole number from 1 to 100; usage: BOOK <symbol> [<levels>]"),
    ("BOOK AAPL 101", "REJ MALFORMED levels '101' is not a whole number from 1 to 100; usage: BOOK <symbol> [<levels>]"),
    ("BOOK", "REJ MALFORMED usage: BOOK <symbol> [<levels>]"),
])
def test_a_book_for_no_instrument_or_outside_the_levels_is_refused_at_once(exchange, line, reply):
    assert exchange.session("bob").say(line) == [reply]
    assert exchange.books_asked == []


def test_books_keep_request_order_and_pushed_lines_never_cut_into_them(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 10.00 #a")
    alice.say("BOOK AAPL")
    alice.say("PING")
    bob.say("BUY AAPL 2 @ 10.00")  # alice's fill is pushed while her BOOK waits
    assert alice.take() == ["FILL 2-1 #a 2 @ 10.00 LEAVES 3 TRADE 2-1"]
    exchange.answer_books()
    assert alice.take() == ["BOOK AAPL", "ASK 10.00 3", "END BOOK AAPL", "PONG"]


def test_one_request_per_symbol_is_on_its_way_and_books_asked_meanwhile_get_the_next(exchange):
    alice, bob = exchange.session("alice"), exchange.session("bob")
    bob.say("BOOK AAPL")
    alice.say("BUY AAPL 1 @ 5.00")  # after bob's request left: the next one must hold it
    alice.say("BOOK AAPL")
    bob.say("BOOK AAPL")
    assert exchange.books_asked == ["AAPL"]
    exchange.answer_books()  # the first answer: for bob's first BOOK only
    assert bob.take() == ["BOOK AAPL", "BID 5.00 1", "END BOOK AAPL"]
    assert alice.take() == [] and exchange.books_asked == ["AAPL"]
    exchange.answer_books()
    assert alice.take() == ["BOOK AAPL", "BID 5.00 1", "END BOOK AAPL"]
    assert bob.take() == ["BOOK AAPL", "BID 5.00 1", "END BOOK AAPL"]


def test_books_are_bounded_per_session_in_all_and_on_their_way(exchange, monkeypatch):
    from exchange.gateway import book_requests
    monkeypatch.setattr(book_requests, "MAX_BOOKS_WAITING", 6)
    alice, bob, carol = exchange.session("alice"), exchange.session("bob"), exchange.session("carol")
    for _ in range(4):
        alice.say("BOOK AAPL")
    assert alice.say("BOOK AAPL") == []  # held behind the four, in order: answered when its turn comes
    for symbol in ("AAPL", "BTC-USD"):
        bob.say(f"BOOK {symbol}")
    assert carol.say("BOOK ETH-USD") == ["REJ BUSY too many BOOK requests wait for their books; try again"]
    assert exchange.books_asked == ["AAPL", "BTC-USD"]  # one request per symbol
    exchange.answer_books()  # answers alice's first; her other three and bob's wait for the next request
    assert alice.take() == ["BOOK AAPL", "END BOOK AAPL"] and bob.take() == []
    assert exchange.books_asked == ["AAPL"]
    exchange.answer_books()
    assert alice.take() == ["BOOK AAPL", "END BOOK AAPL"] * 3 + [
        "REJ BUSY 4 BOOK requests of this session wait for their books; try again once they are answered"]
    assert bob.take() == ["BOOK AAPL", "END BOOK AAPL", "BOOK BTC-USD", "END BOOK BTC-USD"]
    assert carol.say("BOOK ETH-USD") == [] and exchange.books_asked == ["ETH-USD"]


def test_at_most_max_asked_requests_are_on_their_way_and_the_rest_wait_their_turn(exchange, monkeypatch):
    monkeypatch.setattr("exchange.gateway.book_requests.MAX_ASKED", 2)
    bob = exchange.session("bob")
    for symbol in ("AAPL", "BTC-USD", "ETH-USD"):
        bob.say(f"BOOK {symbol}")
    assert exchange.books_asked == ["AAPL", "BTC-USD"]
    exchange.entry.on_book(SnapshotRefused("AAPL", "too many snapshot requests; try again in a moment"))
    assert exchange.books_asked == ["AAPL", "BTC-USD", "ETH-USD"]
    exchange.books_asked = exchange.books_asked[1:]
    exchange.answer_books()
    assert bob.take() == ["REJ UNAVAILABLE no book of AAPL: too many snapshot requests; try again in a moment",
                          "BOOK BTC-USD", "END BOOK BTC-USD", "BOOK ETH-USD", "END BOOK ETH-USD"]


def test_a_book_the_notifier_does_not_take_or_answer_is_unavailable(exchange):
    bob = exchange.session("bob")
    exchange.notifier_takes = False
    assert bob.say("BOOK AAPL") == ["REJ UNAVAILABLE no book of AAPL: the market data service cannot be reached"
                                    " just now; try again"]
    exchange.notifier_takes = True
    bob.say("BOOK AAPL")
    exchange.now += 3.0
    assert exchange.entry.expire_books() == 0
    exchange.now += 0.1
    assert exchange.entry.expire_books() == 1
    assert bob.take() == ["REJ UNAVAILABLE no book of AAPL: no answer from the market data service in 3 s; try again"]
    exchange.answer_books()  # a late answer answers nobody
    assert bob.take() == [] and bob.say("PING") == ["PONG"]


def test_book_and_orders_need_a_login_like_every_other_verb(exchange):
    nobody = Client(exchange)
    assert nobody.say("BOOK AAPL") == ["REJ NOT_LOGGED_IN log in first: LOGIN <user> <key>"]
    assert nobody.say("ORDERS") == ["REJ NOT_LOGGED_IN log in first: LOGIN <user> <key>"]


def test_a_book_of_a_session_that_ended_is_answered_into_nothing_and_frees_its_place(exchange):
    bob = exchange.session("bob")
    bob.say("BOOK AAPL")
    bob.close()
    exchange.answer_books()
    assert bob.take() == [] and exchange.entry.books.waiting == 0 and not exchange.entry.books.per_session


# -- client order ids after their window; cancel on disconnect of orders whose answer came late ---------


class Clock:
    """The gateway's wall clock for stamping commands, moved by hand."""

    def __init__(self):
        self.ns = 1_000 * 10**9

    def time_ns(self) -> int:
        return self.ns


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import types

    import exchange.gateway.dispatch as dispatch

    moved = Clock()
    monkeypatch.setattr(dispatch, "time", types.SimpleNamespace(time_ns=moved.time_ns))
    return moved


def with_window(seconds: float):
    return msgspec.structs.replace(CONFIG, engines=[
        msgspec.structs.replace(e, client_order_id_window=seconds) for e in CONFIG.engines])


@pytest.mark.parametrize("again", ["BUY AAPL 1 @ 5.00 #w", "BUY AAPL 2 @ 6.00 #w"])
def test_a_client_order_id_past_its_window_and_its_order_names_a_new_order(clock, again):
    """The same order or another one: either is placed anew, as the engine would (the gateway used
    to answer the old order's ACK, or DUPLICATE_ID, until some later acceptance purged the id)."""
    exchange = Exchange(config=with_window(1.0))
    alice = exchange.session("alice")
    assert alice.say("BUY AAPL 1 @ 5.00 #w") == ["ACK 2-1 #w BUY AAPL 1 @ 5.00 GTC"]
    assert alice.say("CANCEL #w") == ["OUT 2-1 #w CANCELED"]
    assert alice.say("BUY AAPL 1 @ 5.00 #w") == ["ACK 2-1 #w BUY AAPL 1 @ 5.00 GTC"]  # a resend, within the window
    clock.ns += 5 * 10**9
    assert alice.say(again)[0].startswith("ACK 2-2 #w")
    assert len(exchange.matchers["e2"].books["AAPL"].orders) == 1


def test_an_order_accepted_after_its_request_timed_out_is_still_canceled_when_its_session_ends():
    exchange = Exchange()
    alice = exchange.session("alice", cancel_on_disconnect=True)
    alice.say("BUY AAPL 1 @ 5.00 #slow", release=False)
    exchange.now = 11.0
    exchange.entry.expire(10.0)
    assert alice.take()[0].startswith("REJ #slow UNAVAILABLE")
    exchange.release()  # the engine's answer, late: the order is open
    assert exchange.entry.orders["2-1"].status is OrderStatus.NEW
    alice.close()
    exchange.release()
    assert exchange.matchers["e2"].books["AAPL"].orders == {}


def test_a_disconnect_cancel_that_could_not_be_handed_over_leaves_no_answer_slot_behind():
    exchange = Exchange()
    own = exchange.entry.in_flight.nobody
    alice = exchange.session("alice", cancel_on_disconnect=True)
    alice.say("BUY AAPL 1 @ 5.00")
    alice.close()  # its CancelAll DISCONNECT was sent ...
    exchange.outbox.clear()  # ... but never left the gateway
    exchange.entry.not_sent("e2", exchange.entry.in_flight.last_id)
    exchange.entry.expire(10.0)  # sent again
    exchange.release()
    for _ in range(5):  # later sessions end as usual, and their cancels are answered
        bob = exchange.session("bob", cancel_on_disconnect=True)
        bob.say("BUY AAPL 1 @ 4.00")
        bob.close()
        exchange.release()
    assert exchange.entry.in_flight.pending == {} and len(own.queue) == 0
    assert exchange.matchers["e2"].books["AAPL"].orders == {}


def test_limits_in_refusals_read_as_written_in_the_config_never_in_exponent_notation():
    exchange = Exchange(config=configured(gateway={"max_rate": 1_000_000.0, "max_burst": 2,
                                                   "idle_timeout": 10_000_000.0}))
    alice = exchange.session("alice")  # the LOGIN took one token
    assert alice.say("PING") == ["PONG"]
    assert alice.say("BUY AAPL 1 @ 5.00 #r1") == [
        "REJ #r1 RATE_LIMITED more than 1000000 requests per second; slow down"]
    exchange.now = 20_000_000.0
    assert exchange.entry.expire_idle() == 1
    assert alice.take() == ["BYE IDLE_TIMEOUT no request in 10000000 s; send PING to stay connected"]
    slow = Exchange(config=configured(gateway={"max_rate": 0.25, "max_burst": 1})).session("bob")
    assert slow.say("PING") == ["REJ RATE_LIMITED more than 0.25 requests per second; slow down"]
