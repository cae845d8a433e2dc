"""The gateway's logic in memory, with a real matcher behind it: replies, order, resends, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.config import load_config
from exchange.core.matching import Matcher
from exchange.core.messages import ORDER_EVENTS, OrderAccepted
from exchange.protocol import format_reply, parse_line
from exchange.sessions import OrderEntry
from exchange.wire import Reply

CONFIG = load_config(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")


class Exchange:
    """OrderEntry wired to real matchers; engine answers wait in ``outbox`` until ``release()``."""

    def __init__(self, gateway: str = "gw/1"):
        instruments = CONFIG.instrument_map()
        self.matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments]) for e in CONFIG.engines}
        self.now = 0.0
        self.outbox: list[Reply] = []
        self.reachable = True
        self.entry = OrderEntry(CONFIG, self.send, gateway, clock=lambda: self.now)
        self.gateway = gateway

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        if not self.reachable:
            return False
        events = self.matchers[engine].handle(command)
        self.outbox.append(Reply(session_id, request_id, [e for e in events if isinstance(e, ORDER_EVENTS)],
                                 self.gateway))
        return True

    def release(self) -> None:
        outbox, self.outbox = self.outbox, []
        for reply in outbox:
            self.entry.on_reply(reply)

    def session(self, user: str | None = None) -> "Client":
        client = Client(self)
        if user:
            assert client.say(f"LOGIN {user} {user}-key") == [f"OK LOGIN {user}"]
        return client


class Client:
    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self.lines: list[str] = []
        self.session = exchange.entry.open(lambda replies: self.lines.extend(map(format_reply, replies)))

    def say(self, line: str, release: bool = True) -> list[str]:
        """Send a line, release the engines' answers, return every line received since the last call."""
        self.exchange.entry.on_request(self.session, parse_line(line))
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
    assert alice.say("CANCELALL") == ["REJ BUSY the engines are busy; try again"]


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
