#!/usr/bin/env python3
"""The matching core beside the PyPI package ``matching-engine`` 0.1.1, on the same stream.

Both cores handle the seeded single-instrument stream of scripts/bench_core.py (``make_stream``),
in the same invocation, timed alternately (ours, peer, ours, peer, ...) so that noise from other
processes hits both alike. matching-engine needs Python >= 3.12, so it runs in its own venv,
``.venv-peer`` at the top of the repository, created (and the package installed into it with pip)
when missing; our core runs in this interpreter. The peer side is this same script started with
``--peer-worker`` by the venv's python: it reads the translated stream from a file in a temporary
folder and answers one JSON line per request on its stdout.

What is timed, on each side, on a fresh engine per run: only the loop that hands every command to
the core and counts the events it returns (``Matcher.handle`` here, ``MatchingEngine.process`` of a
pre-built ``SequencedCommand`` there). Every event is constructed: each core makes one event per
match carrying both orders (ours a Match, the peer a Trade). The
stream is generated and translated before any timing; peak memory is measured by tracemalloc in a
separate, untimed pass on each side (the same method for both, the stream itself not counted).

Before timing, an untimed pass on each side lists every trade as (price, quantity, maker order,
taker order), orders named by the position of the command that placed them; the two lists must be
equal or the run fails, naming the first trade that differs.

The translation. The stream uses only what both cores do the same way: GTC, IOC and FOK limit
orders, market IOC orders, cancels of resting orders by their owner, one instrument, and
self-trade prevention that cancels the incoming order (our default CANCEL_NEWEST, the peer's
default CANCEL_TAKER; FOK counts liquidity up to the user's own first order on both). Users
become integer accounts; the peer's client-assigned order id is the 1-based position of the
placing command; a market order has price 0 there. Where the two differ without a trade at stake,
the difference is left as it is: a market order that meets an empty side is rejected here
(NO_LIQUIDITY) and accepted then canceled there; a FOK that cannot fill is accepted then expired
here and rejected there.

    .venv/bin/python scripts/bench_core_peer.py                          # 300,000 commands, 5 runs
    .venv/bin/python scripts/bench_core_peer.py --commands 3000 --runs 1 --json out.json
    .venv/bin/python scripts/bench_core_peer.py --memory     # untimed: what each core holds at our peak
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgspec  # both interpreters have it; everything of ours is imported in ``main`` only

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-peer"
PEER_REQUIREMENTS = ["matching-engine==0.1.1", "msgspec"]
PEER_VERSION = "0.1.1"
TARGET_RATIO = 1.3
PYTHON312 = ["python3.12", "/root/.pyenv/versions/3.12.1/bin/python3.12"]


class PeerUnavailable(Exception):
    """The peer's venv cannot be made: no Python >= 3.12, or the package cannot be installed."""


# -- the peer's side (runs in .venv-peer, imports nothing of ours) ---------------------------------


def peer_worker(stream_file: str) -> None:
    """Load the translated stream, then answer requests from stdin, one JSON line each."""
    import matching_engine
    from matching_engine.domain import (
        CancelOrder, NewOrder, OrderType, SequencedCommand, Side, TimeInForce,
    )
    from matching_engine.engine import MatchingEngine
    from matching_engine.events import Trade

    sides = {"buy": Side.BUY, "sell": Side.SELL}
    tifs = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
    commands = []
    for seq, row in enumerate(msgspec.msgpack.decode(Path(stream_file).read_bytes()), 1):
        if row[1] == "cancel":
            ts, _, order_id, account = row
            command = CancelOrder(order_id, account)
        else:
            ts, _, order_id, account, side, price, qty, tif = row
            order_type = OrderType.MARKET if price == 0 else OrderType.LIMIT
            command = NewOrder(order_id, account, sides[side], price, qty, order_type, tifs[tif])
        commands.append(SequencedCommand(seq, ts, command))

    def answer(reply: dict) -> None:
        print(json.dumps(reply), flush=True)

    answer({"python": platform.python_version(), "matching_engine": matching_engine.__version__,
            "msgspec": msgspec.__version__})
    for line in sys.stdin:
        request = line.split()
        if request[0] == "run":
            process = MatchingEngine().process
            gc.collect()
            events = 0
            start = time.perf_counter()
            for command in commands:
                events += len(process(command))
            answer({"seconds": time.perf_counter() - start, "events": events})
        elif request[0] == "trades":
            process = MatchingEngine().process
            trades = [(e.price, e.qty, e.maker_order_id, e.taker_order_id)
                      for command in commands for e in process(command) if type(e) is Trade]
            Path(request[1]).write_bytes(msgspec.msgpack.encode(trades))
            answer({"trades": len(trades)})
        elif request[0] == "memory-at":  # what holds the memory just before command number K (0-based)
            answer({"held": memory_held(lambda: MatchingEngine().process, commands, int(request[1]))})
        elif request[0] == "memory":
            gc.collect()
            tracemalloc.start()
            process = MatchingEngine().process
            for command in commands:
                process(command)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            answer({"peak": peak})


def memory_held(new_handle, commands: list, position: int, top: int = 8) -> list:
    """Traced bytes held just before ``commands[position]`` by a fresh core (``new_handle()``, made
    while tracing, as for the peak), by the source line that allocated them: the ``top`` largest as
    [file:line, source, bytes, blocks], then the rest summed. Runs on both sides (imports nothing
    of ours)."""
    import linecache

    gc.collect()
    tracemalloc.start(1)
    handle = new_handle()
    for command in commands[:position]:
        handle(command)
    statistics_ = tracemalloc.take_snapshot().statistics("lineno")
    tracemalloc.stop()
    held = []
    for stat in statistics_[:top]:
        frame = stat.traceback[0]
        held.append([f"{Path(frame.filename).name}:{frame.lineno}",
                     linecache.getline(frame.filename, frame.lineno).strip(), stat.size, stat.count])
    rest = statistics_[top:]
    held.append(["(the rest)", "", sum(s.size for s in rest), sum(s.count for s in rest)])
    return held


# -- our side ----------------------------------------------------------------------------------------


def peak_command(commands: list, new_handle) -> tuple[int, int]:
    """(position, bytes): the command during which traced memory peaks, and that peak, for a fresh
    core made while tracing (``new_handle()``), as ``peak_memory`` measures it."""
    from array import array

    peaks = array("q", [0]) * len(commands)  # made before tracing, so it is not counted
    gc.collect()
    tracemalloc.start()
    handle = new_handle()
    reset, traced = tracemalloc.reset_peak, tracemalloc.get_traced_memory
    for position, command in enumerate(commands):
        reset()
        handle(command)
        peaks[position] = traced()[1]
    tracemalloc.stop()
    position = max(range(len(commands)), key=peaks.__getitem__)
    return position, peaks[position]


def print_memory_held(ours: list, theirs: list, position: int) -> None:
    """Both sides' memory just before command ``position``, largest holders first."""
    print(f"memory held just before command {position:,} (where ours peaks), by the line that allocated it:")
    for name, held in (("ours", ours), ("matching-engine", theirs)):
        print(f"  {name}: {sum(row[2] for row in held) / 1024:,.1f} KiB")
        for where, source, size, blocks in held:
            print(f"    {size / 1024:>6,.1f} KiB {blocks:>6,} blocks  {where:<22} {source[:70]}")


def peer_python(explicit: str | None) -> Path:
    """The python of ``.venv-peer`` with matching-engine installed, making the venv if needed."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import matching_engine, msgspec; print(matching_engine.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == PEER_VERSION:
            return python
    if not python.exists():
        candidates = [explicit] if explicit else PYTHON312
        base = next((p for p in candidates if _runs(p)), None)
        if base is None:
            raise PeerUnavailable(f"no python >= 3.12 to make {PEER_VENV} with (tried {', '.join(candidates)};"
                                  " name one with --peer-python)")
        print(f"making {PEER_VENV} with {base}", file=sys.stderr)
        done = subprocess.run([base, "-m", "venv", str(PEER_VENV)], capture_output=True, text=True)
        if done.returncode != 0:
            raise PeerUnavailable(f"{base} -m venv {PEER_VENV} failed: {done.stderr.strip()[-500:]}")
    print(f"installing {' '.join(PEER_REQUIREMENTS)} into {PEER_VENV}", file=sys.stderr)
    install = [str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS]
    done = subprocess.run(install, capture_output=True, text=True)  # (pytest may have no real stderr)
    if done.returncode != 0:
        raise PeerUnavailable(f"pip could not install {' '.join(PEER_REQUIREMENTS)} (no network?):"
                              f" {done.stderr.strip()[-500:]}")
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise PeerUnavailable(f"matching-engine does not import in {PEER_VENV}")
    return python


def _runs(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def translate(commands: list, handle) -> tuple[list, list]:
    """The stream as rows for the peer, and our trades, from one untimed pass through ``handle``.

    A row is ``[ts, "cancel", order_id, account]`` or ``[ts, "new", order_id, account, side,
    price, qty, tif]`` (price 0: a market order). A trade is (price, qty, maker, taker), the orders
    named as the peer names them: by the 1-based position of the command that placed them.
    """
    from exchange.core.messages import Match, OrderAccepted, PlaceOrder

    accounts: dict[str, int] = {}
    placed_by: dict[str, int] = {}  # our order id → the position of the command that placed it
    rows: list = []
    trades: list = []
    for position, command in enumerate(commands, 1):
        account = accounts.setdefault(command.user, len(accounts) + 1)
        events = handle(command)
        if type(command) is PlaceOrder:
            rows.append([command.ts_received, "new", position, account, command.side.value.lower(),
                         command.price or 0, command.qty, command.tif.value])
            if type(events[0]) is OrderAccepted:
                placed_by[events[0].order_id] = position
        else:
            rows.append([command.ts_received, "cancel", placed_by[command.order_id], account])
        for event in events:
            if type(event) is Match:
                trades.append((event.price, event.qty, placed_by[event.maker_order_id],
                               placed_by[event.taker_order_id]))
    return rows, trades


def trade_mismatch(ours: list, peer: list) -> str | None:
    """None if both trade lists are equal, else a sentence naming the first difference."""
    def shown(trade) -> str:
        price, qty, maker, taker = trade
        return f"price {price} qty {qty} maker #{maker} taker #{taker}"

    for number, (a, b) in enumerate(zip(ours, peer), 1):
        if tuple(a) != tuple(b):
            return (f"trade {number:,} differs: ours {shown(a)}, matching-engine {shown(b)}"
                    f" (prices in ticks, quantities in lots, orders by the position of their command)")
    if len(ours) != len(peer):
        return (f"ours made {len(ours):,} trades and matching-engine {len(peer):,};"
                f" the first {min(len(ours), len(peer)):,} agree")
    return None


class Peer:
    """The worker in .venv-peer: one request, one JSON answer."""

    def __init__(self, python: Path, stream_file: Path):
        self.process = subprocess.Popen([str(python), __file__, "--peer-worker", str(stream_file)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.versions = self._answer()

    def ask(self, *request: str) -> dict:
        self.process.stdin.write(" ".join(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the matching-engine worker stopped (exit code {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def summary(rates: list[float]) -> dict:
    return {"rates": rates, "median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=300_000, help="commands in the stream")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each core (medians reported)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the stream generator")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--peer-python", metavar="PATH", help="a python >= 3.12 to make .venv-peer with")
    parser.add_argument("--memory", action="store_true",
                        help="only say where the memory is: both sides' holdings where our peak is (no timing)")
    parser.add_argument("--peer-worker", metavar="STREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(args.peer_worker)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_core import ENGINE_ID, INSTRUMENT, cpu_model, make_stream, peak_memory, timed_run

    from exchange.core.matching import Matcher

    try:
        python = peer_python(args.peer_python)
    except PeerUnavailable as problem:
        print(f"matching-engine is not available: {problem}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    commands, _ = make_stream(args.commands, args.seed)
    rows, our_trades = translate(commands, Matcher(ENGINE_ID, [INSTRUMENT]).handle)
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as folder:
        stream_file, trades_file = Path(folder) / "stream.msgpack", Path(folder) / "trades.msgpack"
        stream_file.write_bytes(msgspec.msgpack.encode(rows))
        del rows
        peer = Peer(python, stream_file)
        try:
            print(f"ours: python {platform.python_version()}; matching-engine {peer.versions['matching_engine']}:"
                  f" python {peer.versions['python']}, msgspec {peer.versions['msgspec']};"
                  f" {cpu_model()}, {os.cpu_count()} cpus, load average {load_before:.2f}")
            print(f"stream: {len(commands):,} commands, seed {args.seed}")
            peer.ask("trades", str(trades_file))
            mismatch = trade_mismatch(our_trades, msgspec.msgpack.decode(trades_file.read_bytes()))
            if mismatch:
                print(f"the trades differ: {mismatch}", file=sys.stderr)
                return 1
            print(f"trades: {len(our_trades):,}, the same on both sides (price, qty, maker and taker order)")
            if args.memory:
                def new_handle():
                    return Matcher(ENGINE_ID, [INSTRUMENT]).handle

                position, our_peak = peak_command(commands, new_handle)
                ours_held = memory_held(new_handle, commands, position)
                print_memory_held(ours_held, peer.ask("memory-at", str(position))["held"], position)
                print(f"peak memory (tracemalloc): ours {our_peak / 1024:,.0f} KiB during command {position:,},"
                      f" matching-engine {peer.ask('memory')['peak'] / 1024:,.0f} KiB")
                return 0
            ours, theirs = [], []
            for run in range(1, args.runs + 1):
                seconds, events = timed_run(commands)
                ours.append(len(commands) / seconds)
                answer = peer.ask("run")
                theirs.append(len(commands) / answer["seconds"])
                print(f"run {run}: ours {ours[-1]:>9,.0f} commands/s ({events:,} events),"
                      f" matching-engine {theirs[-1]:>9,.0f} commands/s ({answer['events']:,} events)")
            load_after = os.getloadavg()[0]
            our_peak, peer_peak = peak_memory(commands), peer.ask("memory")["peak"]
        finally:
            peer.close()
    figures = {"ours": summary(ours), "peer": summary(theirs)}
    ratio = figures["ours"]["median"] / figures["peer"]["median"]
    pairs = [a / b for a, b in zip(ours, theirs)]
    for name, side in (("ours", figures["ours"]), ("matching-engine", figures["peer"])):
        print(f"{name:<16} median {side['median']:>9,.0f} commands/s"
              f" (min {side['min']:,.0f}, max {side['max']:,.0f}, {args.runs} runs)")
    print(f"ratio ours/matching-engine: {ratio:.2f} (of the medians); run by run"
          f" {min(pairs):.2f}..{max(pairs):.2f}")
    print(f"peak memory (tracemalloc, one untimed pass): ours {our_peak / 1024:,.0f} KiB,"
          f" matching-engine {peer_peak / 1024:,.0f} KiB")
    met = ratio >= TARGET_RATIO and our_peak <= peer_peak
    print(f"target (ratio >= {TARGET_RATIO} and our peak memory <= matching-engine's):"
          f" {'met' if met else 'not met'}")
    print(f"load average {load_before:.2f} before, {load_after:.2f} after the runs")
    if args.json:
        figures["ours"].update(peak_bytes=our_peak, python=platform.python_version())
        figures["peer"].update(peak_bytes=peer_peak, **peer.versions)
        Path(args.json).write_text(json.dumps({
            "commands": len(commands), "seed": args.seed, "runs": args.runs, **figures,
            "ratio": ratio, "run_ratios": pairs, "trades": len(our_trades), "trades_match": True,
            "target": {"ratio": TARGET_RATIO, "met": met}, "load_average": [load_before, load_after],
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
