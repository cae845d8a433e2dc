"""The gateway with accounts on, in memory: every command of a user goes to the user's ledger shard,
and the shards' answers (refused holds, balances, transfers) become the lines clients read.

The demo config has two shards: alice (and the admin ops) on shard 1, bob and carol on shard 0.
``Shards`` records what the gateway sends each way (through the real Routes), and plays a shard
that passes held orders on to real matchers (giving an order without a client order id one of
its own, ``~<shard>-<n>``) or answers with what a test gives it.
"""

from __future__ import annotations

import msgspec
import pytest

from exchange.core.ledger_messages import (
    DepositFunds, Entry, EntryKind, FundsDeposited, HoldOrder, HoldRejected, HoldReplace, TransferRejected,
    TransferRepeated, WithdrawFunds,
)
from exchange.core.matching import Matcher
from exchange.core.messages import ORDER_EVENTS, CancelAll, CancelOrder, PlaceOrder
from exchange.core.orders import Side, TimeInForce
from exchange.errors import RejectCode
from exchange.gateway.ledger_routes import Routes
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.protocol.grammar import decode_request
from exchange.testing.mesh import toy_config
from exchange.wire.messages import Balance, Balances, GetBalances, Reply, Request
from test_sessions import Client, Exchange

CONFIG = toy_config(accounts=True)
GATEWAY = "gw/1"


class Shards:
    """OrderEntry whose requests go through the real Routes; ``sent`` holds (way, Request) in order."""

    def __init__(self, config=CONFIG):
        self.routes = Routes(config)
        instruments = config.instrument_map()
        self.matchers = {e.name: Matcher(e.id, [instruments[s] for s in e.instruments]) for e in config.engines}
        self.sent: list[tuple[str, Request]] = []
        self.full: set[str] = set()  # ways with no room
        self.assigned = 0
        self.now = 0.0
        self.entry = OrderEntry(config, self.send, GATEWAY, clock=lambda: self.now)

    def send(self, engine: str, command, session_id: int, request_id: int) -> bool:
        way, request = self.routes.route(GATEWAY, engine, command, session_id, request_id)
        if way in self.full:
            return False
        self.sent.append((way, request))
        return True

    def release(self) -> None:
        """Answers come only when a test gives them (``answer``, ``pass_on``)."""

    def take(self) -> list[tuple[str, Request]]:
        sent, self.sent = self.sent, []
        return sent

    def answer(self, request: Request, *events) -> None:
        self.entry.on_reply(Reply(request.session, request.request_id, list(events), GATEWAY))

    def pass_on(self) -> None:
        """Each shard holds every order sent (enough funds for all) and its engine answers."""
        for way, request in self.take():
            self.execute(way, request)

    def execute(self, way: str, request: Request) -> None:
        """The shard holds this order (or passes this cancel on), and its engine answers."""
        command = request.command
        if isinstance(command, (HoldOrder, HoldReplace)):
            command = command.order if isinstance(command, HoldOrder) else command.replace
        if isinstance(command, PlaceOrder) and not command.client_order_id:
            self.assigned += 1
            command = msgspec.structs.replace(command, client_order_id=f"~{way[-1]}-{self.assigned}")
        events = self.matchers[request.engine].handle(command)
        self.answer(request, *[e for e in events if isinstance(e, ORDER_EVENTS)])

    def session(self, user: str, option: str = "") -> Client:
        client = Client(self)
        assert client.say(f"LOGIN {user} {user}-key {option}".rstrip()) == [
            f"OK LOGIN {user}" + (" CANCEL_ON_DISCONNECT" if option else "")]
        return client


@pytest.fixture
def shards() -> Shards:
    return Shards()


def test_the_demo_users_are_on_both_shards():
    assert {u.name: CONFIG.ledger_of(u.name).name for u in CONFIG.users} == {
        "alice": "ledger-1", "bob": "ledger-0", "carol": "ledger-0", "ops": "ledger-1"}


def test_each_users_orders_go_to_their_own_shard_held_and_naming_their_engine(shards):
    alice, bob = shards.session("alice"), shards.session("bob")
    assert alice.say("BUY BTC-USD 0.5 @ 43000 #a1") == []  # the answer comes from the engine, later
    bob.say("SELL AAPL 3 @ 190 #b1")
    (alice_way, alice_request), (bob_way, bob_request) = shards.take()
    assert (alice_way, alice_request.engine) == ("ledger-1", "e1")
    assert alice_request.command == HoldOrder(PlaceOrder(
        "alice", "BTC-USD", Side.BUY, 5000, 4300000, TimeInForce.GTC, None, "a1", alice_request.command.order.ts_received))
    assert (bob_way, bob_request.engine) == ("ledger-0", "e2")
    assert isinstance(bob_request.command, HoldOrder) and bob_request.command.order.user == "bob"


def test_a_place_then_cancel_of_one_client_order_id_leave_by_one_shard_in_that_order(shards):
    bob = shards.session("bob")
    bob.say("BUY ETH-USD 1 @ 2500 #b1")
    bob.say("CANCEL #b1")  # before the ACK: it follows the order to its engine, through the shard
    bob.say("REPLACE #b1 2")
    sent = shards.take()
    assert [(way, request.engine, type(request.command).__name__) for way, request in sent] == [
        ("ledger-0", "e1", "HoldOrder"), ("ledger-0", "e1", "CancelOrder"), ("ledger-0", "e1", "HoldReplace")]
    assert sent[1][1].command.client_order_id == "b1" and sent[2][1].command.replace.qty == 2000


def test_a_cancelall_and_a_disconnects_cancels_go_to_each_engine_by_way_of_the_shard(shards):
    carol = shards.session("carol", "CANCEL_ON_DISCONNECT")
    carol.say("BUY AAPL 1 @ 100 #c1")
    shards.pass_on()
    assert carol.take() == ["ACK 2-1 #c1 BUY AAPL 1 @ 100.00 GTC"]
    carol.say("CANCELALL")
    assert sorted((way, r.engine, type(r.command).__name__) for way, r in shards.take()) == [
        ("ledger-0", "e1", "CancelAll"), ("ledger-0", "e2", "CancelAll")]
    carol.close()
    [(way, request)] = shards.take()
    assert (way, request.engine) == ("ledger-0", "e2")
    assert isinstance(request.command, CancelAll) and request.command.order_ids == ("2-1",)


def test_a_refused_hold_is_a_rej_with_the_client_order_id_and_ends_the_request(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD 5 @ 43000 #a1")
    [(_, request)] = shards.take()
    shards.answer(request, HoldRejected(1, 0, "alice", "BTC-USD", RejectCode.INSUFFICIENT_FUNDS,
                                        "needs 215053.750000 USD, 1200.000000 available", "a1"))
    assert alice.say("PING") == ["REJ #a1 INSUFFICIENT_FUNDS needs 215053.750000 USD, 1200.000000 available",
                                 "PONG"]
    assert not shards.entry.in_flight.pending and not shards.entry.in_flight.placements
    alice.say("BUY BTC-USD 0.1 @ 43000 #a1")  # a refused order does not use up its client order id
    assert isinstance(shards.take()[0][1].command, HoldOrder)


def test_a_resend_refused_by_the_shard_as_a_duplicate_gets_the_original_ack(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD 0.1 @ 43000 #a1")
    shards.pass_on()
    assert alice.take() == ["ACK 1-1 #a1 BUY BTC-USD 0.1000 @ 43000.00 GTC"]
    shards.entry.views.client_order_ids.from_due([])  # as if this gateway had not seen the id (it restarted)
    alice.say("BUY BTC-USD 0.1 @ 43000 #a1")
    [(_, request)] = shards.take()
    shards.answer(request, HoldRejected(2, 0, "alice", "BTC-USD", RejectCode.DUPLICATE_ID,
                                        "client order id #a1 is in use", "a1", "1-1"))
    assert alice.take() == ["ACK 1-1 #a1 BUY BTC-USD 0.1000 @ 43000.00 GTC"]


def test_ledger_given_client_order_ids_are_never_shown(shards):
    alice, bob = shards.session("alice"), shards.session("bob")
    alice.say("SELL BTC-USD 0.5 @ 43000")
    bob.say("BUY BTC-USD 0.2 @ 43000")
    shards.pass_on()
    assert alice.take() == ["ACK 1-1 SELL BTC-USD 0.5000 @ 43000.00 GTC",
                            "FILL 1-1 0.2000 @ 43000.00 LEAVES 0.3000 TRADE 1-1"]
    assert bob.take() == ["ACK 1-2 BUY BTC-USD 0.2000 @ 43000.00 GTC",
                          "FILL 1-2 0.2000 @ 43000.00 LEAVES 0.0000 TRADE 1-1", "OUT 1-2 FILLED"]
    assert shards.entry.orders["1-1"].client_order_id == "~1-1"  # the engine knows it by the shard's id
    assert alice.say("STATUS 1-1") == ["STATE 1-1 PARTIALLY_FILLED 0.2000 0.3000 SELL BTC-USD @ 43000.00"]
    assert alice.say("ORDERS") == ["STATE 1-1 PARTIALLY_FILLED 0.2000 0.3000 SELL BTC-USD @ 43000.00",
                                   "END ORDERS 1 OF 1"]
    alice.say("CANCEL 1-1")
    shards.pass_on()
    assert alice.take() == ["OUT 1-1 CANCELED"]


@pytest.mark.parametrize("line", ["BUY BTC-USD 1 @ 5 #~1-1", "CANCEL #~1-1", "STATUS #~1-1"])
def test_a_client_may_not_name_a_ledger_given_client_order_id(shards, line):
    alice = shards.session("alice")
    assert alice.say(line) == ["REJ MALFORMED client order id '~1-1' may only hold letters, digits and _ . : -"]
    frame = msgspec.msgpack.encode({"type": "CancelRequest", "client_order_id": "~1-1"})
    assert decode_request(frame, 1024).code is RejectCode.MALFORMED
    assert shards.take() == []


def test_balance_asks_the_users_shard_and_prints_one_line_per_asset_then_an_end_line(shards):
    alice = shards.session("alice")
    alice.say("BALANCE")
    alice.say("balance btc")
    (way, everything), (_, btc) = shards.take()
    assert (way, everything.engine, everything.command) == ("ledger-1", "", GetBalances("alice", None))
    assert btc.command == GetBalances("alice", "BTC")
    shards.answer(everything, Balances("alice", [Balance("USD", 9_890_000_000, 110_000_000), Balance("BTC", 0, 0)]))
    shards.answer(btc, Balances("alice", [Balance("BTC", 100_000_000, 50_000_000)]))
    assert alice.take() == ["BALANCE USD AVAILABLE 9890.000000 HELD 110.000000",
                            "BALANCE BTC AVAILABLE 0.00000000 HELD 0.00000000", "END BALANCE 2",
                            "BALANCE BTC AVAILABLE 1.00000000 HELD 0.50000000", "END BALANCE 1"]


def kinds(sent: list[tuple[str, Request]]) -> list[str]:
    return [type(request.command).__name__ for _, request in sent]


def test_a_balance_behind_an_order_is_asked_once_the_order_is_answered_naming_every_engine_seen(shards):
    """So that it shows what the order did: the shard answers once it has settled each engine as far as
    this gateway had taken it in (the events that answered the order among them)."""
    alice, bob = shards.session("alice"), shards.session("bob")
    bob.say("BUY AAPL 1 @ 100 #b1")
    shards.pass_on()
    alice.say("BUY BTC-USD 0.5 @ 43000 #a1")
    alice.say("BALANCE")
    assert kinds(shards.sent) == ["HoldOrder"]  # the BALANCE waits for the order's answer
    shards.pass_on()
    [(way, asked)] = shards.take()
    assert (way, asked.command) == ("ledger-1", GetBalances("alice", None, {"e2": 1, "e1": 1}))
    shards.answer(asked, Balances("alice", [Balance("USD", 9_890_000_000, 110_000_000)]))
    assert alice.take() == ["ACK 1-1 #a1 BUY BTC-USD 0.5000 @ 43000.00 GTC",
                            "BALANCE USD AVAILABLE 9890.000000 HELD 110.000000", "END BALANCE 1"]


def test_balances_wait_for_no_request_sent_after_them_nor_for_each_other(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD 0.5 @ 43000 #a1")
    alice.say("BALANCE")
    alice.say("BALANCE BTC")
    alice.say("BUY ETH-USD 1 @ 2500 #a2")  # after the BALANCEs: they do not wait for it
    first, second = shards.take()
    assert kinds([first, second]) == ["HoldOrder", "HoldOrder"]
    shards.execute(*first)
    assert [request.command for _, request in shards.take()] == [GetBalances("alice", None, {"e1": 1}),
                                                                  GetBalances("alice", "BTC", {"e1": 1})]
    assert alice.take() == ["ACK 1-1 #a1 BUY BTC-USD 0.5000 @ 43000.00 GTC"]


def test_a_balance_behind_an_order_given_up_on_is_asked_after_its_unavailable(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD 0.5 @ 43000 #a1")
    alice.say("BALANCE")
    assert kinds(shards.take()) == ["HoldOrder"]
    shards.now = 11.0
    shards.entry.expire(10.0)
    assert alice.take() == ["REJ #a1 UNAVAILABLE no answer from the engine in 10 s; the outcome is unknown: send"
                            " the same order again with its #client-order-id, or ask STATUS"]
    [(_, asked)] = shards.take()
    assert asked.command == GetBalances("alice", None, {})
    shards.now = 15.0
    assert shards.entry.expire(10.0) == 0  # its own time runs from when it was asked


def test_a_balance_whose_turn_finds_its_shard_busy_is_refused_in_its_turn(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD 0.5 @ 43000 #a1")
    alice.say("BALANCE")
    shards.full.add("ledger-1")
    shards.pass_on()
    assert alice.take() == ["ACK 1-1 #a1 BUY BTC-USD 0.5000 @ 43000.00 GTC",
                            "REJ BUSY ledger shard 1 is busy; try again"]
    assert shards.take() == [] and not shards.entry.in_flight.pending


def test_balance_of_an_asset_the_exchange_does_not_have_is_refused_at_the_gateway(shards):
    alice = shards.session("alice")
    assert alice.say("BALANCE DOGE") == ["REJ MALFORMED no asset DOGE; there are USD, BTC, ETH, AAPL"]
    assert shards.take() == []


def test_an_admin_deposits_to_the_target_users_shard_and_hears_what_happened(shards):
    ops = shards.session("ops")
    ops.say("DEPOSIT bob USD 250.5 wire-17")
    ops.say("WITHDRAW carol BTC 0.01 out-3")
    (way, deposit), (_, withdrawal) = shards.take()
    assert (way, deposit.engine) == ("ledger-0", "")  # bob's shard, not ops's
    assert deposit.command == DepositFunds("bob", "USD", 250_500_000, "wire-17", deposit.command.ts_received)
    assert withdrawal.command == WithdrawFunds("carol", "BTC", 1_000_000, "out-3", withdrawal.command.ts_received)
    shards.answer(deposit, FundsDeposited(4, 0, "bob", "USD", 250_500_000, "wire-17", Entry(17, EntryKind.DEPOSIT, ())))
    shards.answer(withdrawal, TransferRejected(5, 0, "carol", "BTC", 1_000_000, "out-3", RejectCode.INSUFFICIENT_FUNDS,
                                               "withdrawal needs 0.01000000 BTC, 0.00000000 available"))
    assert ops.take() == ["OK DEPOSIT bob USD 250.500000 REF wire-17 ENTRY 17",
                          "REJ INSUFFICIENT_FUNDS withdrawal needs 0.01000000 BTC, 0.00000000 available"]
    ops.say("DEPOSIT bob USD 300 wire-17")  # wire-17 again, for another amount
    [(_, again)] = shards.take()
    shards.answer(again, TransferRejected(6, 0, "bob", "USD", 300_000_000, "wire-17", RejectCode.DUPLICATE_ID,
                                          "reference wire-17 was already used for a deposit of 250.500000 USD"
                                          " (entry 17); nothing was done now"))
    assert ops.take() == ["REJ DUPLICATE_ID reference wire-17 was already used for a deposit of 250.500000 USD"
                          " (entry 17); nothing was done now"]


@pytest.mark.parametrize("kind, line", [
    (EntryKind.DEPOSIT, "OK DEPOSIT bob USD 250.500000 REF wire-17 ENTRY 17"),
    (EntryKind.WITHDRAWAL, "OK WITHDRAW bob USD 250.500000 REF wire-17 ENTRY 17"),
])
def test_a_transfer_sent_again_is_answered_exactly_as_the_first_time(shards, kind, line):
    ops = shards.session("ops")
    ops.say(f"{line.split()[1]} bob USD 250.5 wire-17")
    [(_, again)] = shards.take()
    shards.answer(again, TransferRepeated(6, 0, "bob", "USD", 250_500_000, "wire-17", kind, 17))
    assert ops.take() == [line]


@pytest.mark.parametrize("line, reason", [
    ("DEPOSIT nobody USD 1 r1", "MALFORMED no user nobody"),
    ("DEPOSIT bob DOGE 1 r1", "MALFORMED no asset DOGE; there are USD, BTC, ETH, AAPL"),
    ("WITHDRAW bob USD 0.0000001 r1", "MALFORMED amount 0.0000001 is not a multiple of USD's unit 0.000001"),
    ("DEPOSIT bob USD 0 r1", "MALFORMED amount of USD 0 must be positive"),
    # more units than a message carries: it could not be sent, and the gateway's batch with it
    ("DEPOSIT bob BTC 999999999999 r1",
     "MALFORMED amount 999999999999 is more than the most an amount of BTC may be, 92233720368.54775807"),
])
def test_a_transfer_the_gateway_can_tell_is_wrong_never_reaches_a_shard(shards, line, reason):
    ops = shards.session("ops")
    assert ops.say(line) == [f"REJ {reason}"]
    assert shards.take() == []


def test_only_an_admin_moves_funds_and_an_admin_does_not_trade(shards):
    alice, ops = shards.session("alice"), shards.session("ops")
    assert alice.say("DEPOSIT alice USD 1000000 r1") == ["REJ NOT_ALLOWED DEPOSIT is for admin users; alice is not one"]
    assert alice.say("WITHDRAW bob USD 1 r2") == ["REJ NOT_ALLOWED WITHDRAW is for admin users; alice is not one"]
    refusal = "NOT_ALLOWED ops is an admin user: it deposits and withdraws for others and does not trade"
    assert ops.say("BUY BTC-USD 1 @ 5 #o1") == [f"REJ #o1 {refusal}"]
    assert ops.say("CANCEL 1-1") == [f"REJ {refusal}"]
    assert ops.say("CANCELALL") == [f"REJ {refusal}"]
    assert ops.say("REPLACE 1-1 5") == [f"REJ {refusal}"]
    assert shards.take() == []


def test_a_market_buy_with_funds_holds_the_budget_in_quote_units_and_the_engine_gets_none(shards):
    alice = shards.session("alice")
    alice.say("BUY BTC-USD FUNDS 1000 #f1")
    alice.say("BUY BTC-USD 0.5 FUNDS 1000.25 IOC #f2")
    (_, no_qty), (_, with_qty) = shards.take()
    assert no_qty.command.funds == 1_000_000_000 and with_qty.command.funds == 1_000_250_000
    order = no_qty.command.order
    assert (order.qty, order.price, order.tif, order.funds) == (10_000_000, None, TimeInForce.IOC, 0)  # max_qty
    assert with_qty.command.order.qty == 5000
    assert shards.session("alice").say("BUY BTC-USD FUNDS 1000.0000001") == [
        "REJ MALFORMED amount 1000.0000001 is not a multiple of USD's unit 0.000001"]


@pytest.mark.parametrize("line, reason", [
    ("BUY BTC-USD 1 @ 43000 FUNDS 100", "FUNDS is for market buys only; usage: BUY"),
    ("SELL BTC-USD 1 FUNDS 100", "FUNDS is for market buys only; usage: SELL"),
    ("SELL BTC-USD FUNDS 100", "FUNDS is for market buys only; usage: SELL"),
    ("BUY BTC-USD FUNDS -5", "FUNDS takes an amount like 1000 or 0.25, not '-5'"),
])
def test_funds_only_on_a_market_buy(shards, line, reason):
    alice = shards.session("alice")
    [rej] = alice.say(line)
    assert rej.startswith(f"REJ MALFORMED {reason}")


@pytest.mark.parametrize("fields", [{"side": "SELL", "qty": "1"}, {"side": "BUY", "qty": "1", "price": "5"}])
def test_a_zmq_place_request_with_funds_is_held_to_the_same_rules(fields):
    frame = msgspec.msgpack.encode({"type": "PlaceRequest", "symbol": "BTC-USD", "funds": "100", **fields})
    assert decode_request(frame, 1024).reason == "FUNDS is for market buys only"
    frame = msgspec.msgpack.encode({"type": "PlaceRequest", "symbol": "btc-usd", "side": "BUY", "qty": "",
                                    "funds": "100", "client_order_id": "z1"})
    request = decode_request(frame, 1024)
    assert (request.symbol, request.qty, request.funds, request.client_order_id) == ("BTC-USD", "", "100", "z1")


def test_a_full_way_to_the_shard_is_busy_naming_the_shard_and_nothing_waits(shards):
    alice, bob = shards.session("alice"), shards.session("bob")
    shards.full.add("ledger-1")
    assert alice.say("BUY BTC-USD 1 @ 5 #a1") == ["REJ #a1 BUSY ledger shard 1 is busy; try again"]
    assert alice.say("BALANCE") == ["REJ BUSY ledger shard 1 is busy; try again"]
    assert alice.say("CANCELALL") == ["REJ BUSY ledger shard 1 is busy; try again"]
    bob.say("BUY BTC-USD 1 @ 5 #b1")  # the other shard's users go on
    assert [way for way, _ in shards.take()] == ["ledger-0"]
    assert len(shards.entry.in_flight.pending) == 1  # bob's: the refused requests wait for nothing


def test_requests_in_flight_are_counted_per_engine_and_per_shard():
    config = msgspec.structs.replace(CONFIG, gateway=msgspec.structs.replace(CONFIG.gateway, max_in_flight=1))
    shards = Shards(config)
    # one session per request: a session's replies wait for the replies to its earlier requests
    shards.session("alice").say("BUY BTC-USD 1 @ 5 #a1")
    assert shards.session("alice").say("BUY ETH-USD 1 @ 5 #a2") == ["REJ #a2 BUSY engine e1 is busy; try again"]
    shards.session("alice").say("BUY AAPL 1 @ 5 #a3")  # another engine, the same shard
    shards.session("alice").say("BALANCE")
    assert shards.session("alice").say("BALANCE") == ["REJ BUSY ledger shard 1 is busy; try again"]
    assert [type(r.command).__name__ for _, r in shards.take()] == ["HoldOrder", "HoldOrder", "GetBalances"]


def test_a_shards_answer_to_a_request_given_up_on_is_dropped(shards):
    alice = shards.session("alice")
    alice.say("BALANCE")
    [(_, request)] = shards.take()
    shards.now = 100.0
    shards.entry.expire(10.0)
    assert alice.take() == ["REJ UNAVAILABLE no answer from ledger shard 1 in 10 s; ask BALANCE again"]
    shards.answer(request, Balances("alice", []))
    assert alice.take() == [] and not alice.disconnected


def test_without_accounts_nothing_goes_to_a_shard():
    config = toy_config()
    routes = Routes(config)
    assert routes.ways() == [(e.name, e.commands, e.role) for e in config.engines]
    way, request = routes.route(GATEWAY, "e2", CancelOrder("bob", "", "2-1"), 3, 9)
    assert (way, request) == ("e2", Request(GATEWAY, 3, 9, CancelOrder("bob", "", "2-1")))


def test_with_accounts_the_gateway_pushes_to_the_shards_only():
    assert Routes(CONFIG).ways() == [(s.name, s.commands, s.role) for s in CONFIG.ledgers]


# -- accounts off: pure matching -------------------------------------------------------------------

def test_without_accounts_balance_and_transfers_are_refused_clearly():
    exchange = Exchange()
    alice = exchange.session("alice")
    for line in ("BALANCE", "DEPOSIT bob USD 1 r1", "WITHDRAW bob USD 1 r1"):
        assert alice.say(line) == ["REJ NOT_ALLOWED accounts are off: this exchange keeps no balances"]
    assert exchange.sent == []


def test_without_accounts_funds_is_the_engines_budget_in_price_times_quantity():
    exchange = Exchange()
    alice, bob = exchange.session("alice"), exchange.session("bob")
    alice.say("SELL AAPL 5 @ 10.00")
    assert bob.say("BUY AAPL FUNDS 25 #f1") == [  # 2 for 20.00; a third would cost 30.00
        "ACK 2-2 #f1 BUY AAPL 100000 MKT IOC", "FILL 2-2 #f1 2 @ 10.00 LEAVES 99998 TRADE 2-1",
        "OUT 2-2 #f1 EXPIRED FUNDS"]
    assert exchange.sent[-1].funds == 2500  # 25.00 in AAPL's ticks (0.01) × lots (1)
    assert bob.say("BUY AAPL 1 FUNDS 25 FOK") == [
        "REJ BAD_TIF a market buy with FUNDS is IOC: fill or kill cannot be held to a budget"]
    assert bob.say("BUY AAPL FUNDS 0.001") == ["REJ MALFORMED FUNDS 0.001 is not a multiple of AAPL's tick × lot, 0.01"]


def test_the_private_feeds_lines_hide_ledger_given_client_order_ids_too():
    """`exchange watch --mine` words a user's own events as the gateway does (replies_for_event)."""
    from exchange.core.messages import OrderFilled
    from exchange.gateway.protocol.grammar import format_reply
    from exchange.gateway.protocol.translate import replies_for_event

    last_fill = OrderFilled(9, 0, "AAPL", "2-7", "bob", Side.BUY, "2-3", 2, 1000, 0, 2, False, "~0-4")
    instrument = CONFIG.instrument_map()["AAPL"]
    assert [format_reply(r) for r in replies_for_event(last_fill, instrument)] == [
        "FILL 2-7 2 @ 10.00 LEAVES 0 TRADE 2-3", "OUT 2-7 FILLED"]
