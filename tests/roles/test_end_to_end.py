"""Two users cross over real TCP; the trade reaches a SUB client and the journal."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

from exchange.client.order_entry import ZmqClient
from exchange.client.text import TextClient
from exchange.marketdata.feed import MarketDataClient
from exchange.core.messages import Trade
from exchange.gateway.protocol.messages import Ack, Fill, LoginOk, LoginRequest, Out, PlaceRequest, Rej
from exchange.core.orders import Side
from exchange.journal.readers import wait_for_tables


def wait_for_trade(md: MarketDataClient, timeout: float = 10.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = md.receive(timeout=deadline - time.monotonic())
        trades = [e for e in message.events if isinstance(e, Trade)]
        if trades:
            return message, trades
    raise TimeoutError("no trade on the feed")


def subscribed(mesh, symbol: str) -> MarketDataClient:
    """A SUB client that has provably joined: it has seen a top-of-book message it caused."""
    md = MarketDataClient(mesh.config.notifier.publish, [symbol], channels=("trade", "bbo"))
    with TextClient(mesh.host, mesh.port) as carol:
        assert carol.request("LOGIN carol carol-key") == "OK LOGIN carol"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # PUB/SUB drops until the subscription arrives
            ack = carol.request(f"BUY {symbol} 1 @ 0.01 #probe-{time.monotonic_ns()}")
            assert ack.startswith("ACK"), ack
            assert carol.request(f"CANCEL {ack.split()[1]}").startswith("OUT")
            try:
                md.receive(timeout=0.5)
            except TimeoutError:
                continue
            while True:  # drain what the probes published
                try:
                    md.receive(timeout=0.3)
                except TimeoutError:
                    return md
    raise TimeoutError("the subscriber never joined")


def test_two_users_cross_and_everyone_hears_of_it(mesh):
    md = subscribed(mesh, "AAPL")
    with TextClient(mesh.host, mesh.port) as alice, TextClient(mesh.host, mesh.port) as bob:
        assert alice.request("LOGIN alice alice-key") == "OK LOGIN alice"
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        ack = alice.request("SELL AAPL 10 @ 187.50 #a1")
        assert ack.startswith("ACK ") and ack.endswith(" #a1 SELL AAPL 10 @ 187.50 GTC")
        sell_id = ack.split()[1]
        ack = bob.request("BUY AAPL 4 @ 187.50 #b1")
        buy_id = ack.split()[1]
        assert ack == f"ACK {buy_id} #b1 BUY AAPL 4 @ 187.50 GTC"
        bob_fill = bob.next_pushed()
        trade_id = bob_fill.split()[-1]
        assert bob_fill == f"FILL {buy_id} #b1 4 @ 187.50 LEAVES 0 TRADE {trade_id}"
        assert bob.next_pushed() == f"OUT {buy_id} #b1 FILLED"
        assert alice.next_pushed() == f"FILL {sell_id} #a1 4 @ 187.50 LEAVES 6 TRADE {trade_id}"

        message, trades = wait_for_trade(md)
        assert [(t.trade_id, t.price, t.qty) for t in trades] == [(trade_id, 18750, 4)]
        assert trades[0].seq > 0 and message.chan_seq >= 1
        md.close()

        assert alice.request(f"CANCEL {sell_id}") == f"OUT {sell_id} #a1 CANCELED"

    wait_for_tables(mesh.config.journal.path)
    db = sqlite3.connect(mesh.config.journal.path)
    kinds = [k for (k,) in db.execute("SELECT kind FROM commands WHERE symbol='AAPL' AND user != 'carol'"
                                      " ORDER BY batch, position")]
    assert kinds == ["PlaceOrder", "PlaceOrder"]  # the cancel names no symbol: the engine finds it
    assert db.execute("SELECT COUNT(*) FROM commands WHERE order_id=?", (sell_id,)).fetchone() == (1,)
    rows = db.execute("SELECT kind, user, order_id, price, qty FROM events WHERE order_id IN (?, ?)"
                      " ORDER BY seq", (sell_id, buy_id)).fetchall()
    assert rows == [
        ("OrderAccepted", "alice", sell_id, "187.50", "10"),
        ("OrderAccepted", "bob", buy_id, "187.50", "4"),
        ("OrderFilled", "alice", sell_id, "187.50", "4"),
        ("OrderFilled", "bob", buy_id, "187.50", "4"),
        ("OrderCanceled", "alice", sell_id, None, "6"),
    ]
    assert db.execute("SELECT trade_id, price, qty FROM events WHERE kind='Trade' AND trade_id=?",
                      (trade_id,)).fetchall() == [(trade_id, "187.50", "4")]
    seqs = [s for (s,) in db.execute("SELECT seq FROM events WHERE engine='e2' ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_programs_trade_over_zmq_with_the_same_meaning(mesh):
    with ZmqClient(mesh.config.gateway.zmq) as alice, TextClient(mesh.host, mesh.port) as bob:
        alice.send(LoginRequest("alice", "alice-key"))
        assert alice.receive() == LoginOk("alice")
        alice.send(PlaceRequest(Side.SELL, "BTC-USD", "0.25", "43000.10", client_order_id="z1"))
        ack = alice.receive()
        assert isinstance(ack, Ack) and ack.client_order_id == "z1" and ack.qty == "0.2500"
        assert bob.request("LOGIN bob bob-key") == "OK LOGIN bob"
        assert bob.request("BUY BTC-USD 0.25 @ 43000.10").startswith("ACK")
        fill = alice.receive()
        assert isinstance(fill, Fill) and (fill.order_id, fill.qty, fill.leaves_qty) == (ack.order_id, "0.2500", "0.0000")
        assert alice.receive() == Out(ack.order_id, "z1", "FILLED")
        alice.send(PlaceRequest(Side.SELL, "BTC-USD", "0.00001", "43000.10"))
        rej = alice.receive()
        assert isinstance(rej, Rej) and rej.code.value == "BAD_QTY"


BURST_CLIENT = """
import json, sys, time
import msgspec, zmq
from exchange.gateway.protocol.grammar import parse_bytes
from exchange.gateway.protocol.messages import Ack, AnyReply, Rej
endpoint, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
encode, decode = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder(AnyReply).decode
ctx = zmq.Context()
socks = []
for k in range(4):
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    user = ("alice", "bob", "carol")[(4 * worker + k) % 3]
    sock.send(encode(parse_bytes(f"LOGIN {user} {user}-key".encode(), 1024)))
    sock.recv()
    socks.append(sock)
answered = [0] * 4
def read(timeout_ms):
    for k, sock in enumerate(socks):
        while sock.poll(timeout_ms if k == 0 else 0):
            if isinstance(decode(sock.recv()), (Ack, Rej)):
                answered[k] += 1
deadline = time.monotonic() + 20
for i in range(n):
    for k, sock in enumerate(socks):  # blocks when the gateway does not read this client
        sock.send(encode(parse_bytes(f"BUY AAPL 1 @ {50 + i % 10}.00 #w{worker}k{k}i{i}".encode(), 1024)))
    if i % 50 == 0:
        read(0)
        time.sleep(0.02)
while sum(answered) < 4 * n and time.monotonic() < deadline:
    read(100)
print(json.dumps(answered))
"""


def test_zmq_clients_bursting_past_their_queues_all_get_every_answer(mesh, tmp_path):
    """Two processes with four DEALERs each send bursts of orders, reading between bursts: the
    gateway keeps reading every client while it writes replies on the same ROUTER (whose FD is
    edge-triggered, and a write can take the edge that announces new requests). It once stopped
    reading a client for good, whose sends then blocked at its queue's 1,000 messages."""
    script = tmp_path / "burst.py"
    script.write_text(BURST_CLIENT)
    n = 1500
    workers = [subprocess.Popen([sys.executable, str(script), mesh.config.gateway.zmq, str(w), str(n)],
                                stdout=subprocess.PIPE, text=True) for w in range(2)]
    try:
        outputs = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
            w.wait()
    assert [json.loads(o) for o in outputs] == [[n] * 4, [n] * 4]
