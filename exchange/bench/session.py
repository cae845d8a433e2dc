"""One order entry session of the load generator: the order mix it sends, and the checks on what
it is told.

The gateway answers each session in request order, so replies are matched to requests in order;
every answer must name the request's client order id and be of the right kind. Fills are checked
per order (filled + leaves = one of the order's quantities).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from exchange.bench.stages import TRACE_EVERY

if TYPE_CHECKING:
    from exchange.bench.load import Worker

MAX_RESTING = 100  # per session: past this, the mix cancels instead of adding
FINISHED_KEPT = 10_000  # per session: done orders whose late lines are still checked

NEW, CROSS, CANCEL, REPLACE, LOGIN, PING = range(6)


class _Resting:
    """Client order ids of resting orders: add, remove and pick at random, all O(1)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def add(self, cid: bytes) -> None:
        self.index[cid] = len(self.items)
        self.items.append(cid)

    def discard(self, cid: bytes) -> None:
        i = self.index.pop(cid, None)
        if i is not None:
            last = self.items.pop()
            if i < len(self.items):
                self.items[i] = last
                self.index[last] = i

    def __len__(self) -> int:
        return len(self.items)


class _Order:
    __slots__ = ("buy", "symbol", "qtys", "filled", "leaves", "resting", "largest")

    def __init__(self, buy: bool, symbol: int, qty: int, resting: bool):
        self.buy, self.symbol, self.qtys, self.filled, self.leaves = buy, symbol, [qty], 0, qty
        self.largest = qty  # the largest quantity asked for, replaces in flight included
        self.resting = resting  # a GTC order: it counts towards the instrument's max_open_orders until done


class Session(asyncio.Protocol):
    """One text session: sends what the worker schedules, matches replies to requests in order."""

    def __init__(self, worker: Worker, tag: str, user: str, key: str):
        self.w, self.tag, self.user, self.key = worker, tag, user, key
        self.prefix = tag.encode()
        self.count = 0
        self.outstanding: deque[tuple[int, int, bytes]] = deque()  # (t_sched ns, kind, cid)
        self.orders: dict[bytes, _Order] = {}  # open, or answered but maybe still to hear of
        self.finished: OrderedDict[bytes, _Order] = OrderedDict()  # the last FINISHED_KEPT done ones
        self.resting = _Resting()
        self.crossing: dict[bytes, int] = {}  # cid → t_sched, until its first fill
        self.open_gtc = [0] * len(worker.loads)  # per instrument: GTC orders sent and not yet done
        self.out: list[bytes] = []
        self.buffer = b""
        self.transport = None
        self.logged_in = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.request(f"LOGIN {self.user} {self.key}".encode(), LOGIN, b"", time.perf_counter_ns())
        self.flush()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.outstanding:
            self.w.fault(f"{self.tag}: the gateway closed the session with {len(self.outstanding)} unanswered")
        if not self.logged_in.done():
            self.logged_in.set_exception(ConnectionError(f"{self.tag}: connection lost"))

    def request(self, line: bytes, kind: int, cid: bytes, t_sched: int) -> None:
        self.outstanding.append((t_sched, kind, cid))
        self.out.append(line)
        self.w.sent[kind] += 1

    def flush(self) -> None:
        if self.out and not self.closed:
            self.out.append(b"")
            self.transport.write(b"\n".join(self.out))
            self.out = []

    def next_request(self, t_sched: int) -> None:
        """Choose, format and queue the next order entry request of the mix."""
        w = self.w
        roll = w.random.random()
        if self.resting.items and (roll < 0.15 or len(self.resting) > MAX_RESTING):
            cid = self.resting.items[w.random.randrange(len(self.resting))]
            self.resting.discard(cid)
            self.request(b"CANCEL #" + cid, CANCEL, cid, t_sched)
            return
        if self.resting.items and roll < 0.25:
            cid = self.resting.items[w.random.randrange(len(self.resting))]
            order = self.orders[cid]
            mid, offset = w.mid(t_sched, order.symbol), w.offset(order.symbol)
            price = mid - offset if order.buy else mid + offset
            _, prices, qtys = w.instruments[order.symbol]
            # never below a quantity asked before: that much may be filled by now (BAD_QTY)
            sizes = [lots * w.units[order.symbol] for lots in w.loads[order.symbol].lots]
            choice = w.random.choice([n for n, qty in enumerate(sizes, 1) if qty >= order.largest] or [10])
            order.largest = max(order.largest, sizes[choice - 1])
            self.request(b"REPLACE #%s %s @ %s" % (cid, qtys[choice], prices(price)), REPLACE, cid, t_sched)
            return
        symbol = w.random.randrange(len(w.instruments))
        name, prices, qtys = w.instruments[symbol]
        mid = w.mid(t_sched, symbol)
        self.count += 1
        cid = b"%sn%d" % (self.prefix, self.count)
        buy = w.random.random() < 0.5
        choice = w.random.randint(1, 10)
        max_resting = w.loads[symbol].max_resting
        resting = not (roll < 0.40 or (max_resting is not None and self.open_gtc[symbol] >= max_resting))
        if not resting:  # crossing: takes liquidity a few ticks through the mid
            through = min(5, w.loads[symbol].offset)
            price = mid + through if buy else mid - through
            line = b"%s %s %s @ %s IOC #%s" % (b"BUY" if buy else b"SELL", name, qtys[choice], prices(price), cid)
            self.crossing[cid] = t_sched
            kind = CROSS
        else:  # passive, near the mid
            price = mid - w.offset(symbol) if buy else mid + w.offset(symbol)
            line = b"%s %s %s @ %s #%s" % (b"BUY" if buy else b"SELL", name, qtys[choice], prices(price), cid)
            kind = NEW
            self.open_gtc[symbol] += 1
        self.orders[cid] = _Order(buy, symbol, w.units[symbol] * w.loads[symbol].lots[choice - 1], resting)
        self.request(line, kind, cid, t_sched)

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        now = time.perf_counter_ns()
        answered = 0
        for line in lines:
            words = line.split(b" ")
            first = words[0]
            if first == b"FILL":
                self.on_fill(words, now)
            elif first == b"OUT" and not (words[-1] == b"CANCELED" and len(words) <= 4):
                self.on_out(words)
            elif first == b"REDUCED":
                pass
            else:
                self.on_reply(words, line, now)
                answered += 1
        if answered and self.w.rate is None and self.w.running:
            for _ in range(answered):
                self.next_request(time.perf_counter_ns())
            self.flush()

    def on_reply(self, words: list[bytes], line: bytes, now: int) -> None:
        w = self.w
        if not self.outstanding:
            w.fault(f"{self.tag}: a reply to no request: {line[:80]!r}")
            return
        t_sched, kind, cid = self.outstanding.popleft()
        w.answered += 1
        measured = t_sched >= w.measure_from
        latency_us = (now - t_sched) // 1000
        first = words[0]
        if first == b"REJ":
            code = words[2] if words[1][:1] == b"#" else words[1]
            if cid and words[1] != b"#" + cid:
                w.fault(f"{self.tag}: {line[:80]!r} answers a request for #{cid.decode()}")
            w.rejects[code.decode()] += 1
            if code.decode() not in w.reject_reasons:
                w.reject_reasons[code.decode()] = line.split(code, 1)[1].strip().decode(errors="replace")
            if kind in (NEW, CROSS):
                self.finish(cid, finished=False)
            return
        if first == b"ACK" and kind in (NEW, CROSS, REPLACE) and words[2] == b"#" + cid:
            w.acked_in_second[int(now - w.start) // 1_000_000_000] += 1
            if kind == REPLACE:
                if words[3] != b"REPLACED":
                    w.fault(f"{self.tag}: REPLACE #{cid.decode()} answered {line[:80]!r}")
                    return
                w.answers["replaced"] += 1
                order = self.orders.get(cid)
                if order is not None:
                    order.qtys.append(_units(words[6]))
                if measured:
                    w.latencies["replace"].append(latency_us)
                return
            if words[3] == b"REPLACED":
                w.fault(f"{self.tag}: an order got {line[:80]!r}")
                return
            w.answers["accepted"] += 1
            if kind == NEW and cid in self.orders:
                self.resting.add(cid)
            w.recent.append(latency_us)
            if measured:
                w.latencies["ack"].append(latency_us)
                if w.answers["accepted"] % TRACE_EVERY == 0:
                    w.traced.append((self.user, cid.decode(), t_sched, now))
            return
        if first == b"OUT" and kind == CANCEL and words[2] == b"#" + cid:
            w.acked_in_second[int(now - w.start) // 1_000_000_000] += 1
            w.answers["canceled"] += 1
            self.finish(cid)
            if measured:
                w.latencies["cancel"].append(latency_us)
            return
        if (first == b"OK" and kind == LOGIN) or (first == b"PONG" and kind == PING):
            if kind == LOGIN:
                self.logged_in.set_result(True)
            return
        w.fault(f"{self.tag}: request kind {kind} #{cid.decode()} answered {line[:80]!r}")
        if kind == LOGIN and not self.logged_in.done():
            self.logged_in.set_exception(RuntimeError(f"{self.user}: login failed: {line[:80]!r}"))

    def on_fill(self, words: list[bytes], now: int) -> None:
        # FILL <id> #<cid> <qty> @ <price> LEAVES <leaves> TRADE <trade>
        if words[2][:1] != b"#" or not words[2].startswith(b"#" + self.prefix + b"n"):
            return  # an order of another session of this user: that session counts it
        cid = words[2][1:]
        order = self.orders.get(cid)
        if order is None:
            order = self.finished.get(cid)
            if order is None:
                self.w.fault(f"{self.tag}: a fill of an order never placed: {b' '.join(words)[:80]!r}")
                return
            self.w.late_fills += 1  # pushed after the OUT that answered a cancel: see the report
        qty, leaves = _units(words[3]), _units(words[7])
        order.filled += qty
        order.leaves = leaves
        if order.filled + leaves not in order.qtys:
            self.w.fault(f"{self.tag}: #{cid.decode()} filled {order.filled} + leaves {leaves} is none of"
                         f" its quantities {order.qtys}")
        stats = self.w.fills[order.symbol]
        stats[0 if order.buy else 1] += 1
        stats[2 if order.buy else 3] += qty
        t_sched = self.crossing.pop(cid, None)
        if t_sched is not None and t_sched >= self.w.measure_from:
            self.w.latencies["fill"].append((now - t_sched) // 1000)

    def on_out(self, words: list[bytes]) -> None:
        # OUT <id> #<cid> FILLED | EXPIRED <why> | CANCELED <why>
        if words[2][:1] != b"#" or not words[2].startswith(b"#" + self.prefix + b"n"):
            return
        cid = words[2][1:]
        order = self.finish(cid)
        if words[3] == b"FILLED" and order is not None and order.leaves != 0:
            self.w.fault(f"{self.tag}: #{cid.decode()} is OUT FILLED with {order.leaves} left")

    def finish(self, cid: bytes, finished: bool = True) -> _Order | None:
        """Forget an order that is done (``finished``: its late lines are still checked) or refused."""
        order = self.orders.pop(cid, None)
        self.resting.discard(cid)
        self.crossing.pop(cid, None)
        if order is not None:
            if order.resting:
                self.open_gtc[order.symbol] -= 1
            if finished:
                self.finished[cid] = order
                if len(self.finished) > FINISHED_KEPT:
                    self.finished.popitem(last=False)
        return order


def _units(text: bytes) -> int:
    """Decimal text on the instrument's grid → an integer in units of its last decimal place."""
    return int(text.replace(b".", b""))
