#!/usr/bin/env python3
"""The ledger core's own work per command, beside the matcher's, on the stream of bench_core.

With accounts on, every order is held by its user's ledger shard before its engine and every
engine event is settled by the shards after it (docs/accounts.md). This measures what that costs
in the pure cores alone, with no socket, journal or process: the floor under what the ledger
shards cost in ``exchange bench``, and the part of it that is Python work rather than messages.

The stream is scripts/bench_core.py's (``make_stream``: one instrument, about 67 % passive
limits, 25 % cancels, 8 % orders that sweep). Its 250 users are spread over ``--shards`` ledger
shards (two, as in the demo config) by the mesh's rule (``shard_of``), each funded with more than
it can spend. The loop is the mesh's, in one process:

- a placement is a ``HoldOrder`` on its user's shard (timed: **hold**), and what the shard held
  goes on to the matcher; a cancel goes to the matcher as it is;
- the matcher handles it (timed: **match**);
- every ``--settle-every`` commands (a shard's loop turn gathers about that many at ``--max``),
  each shard takes the events of its own users out of what the matcher made (``Ledger.own_events``,
  as the role does) and settles them as one ``SettleEvents`` (timed: **settle**).

After each run the shards' invariants must hold (no negative balance, every asset summing to
zero, held = what open orders hold, clearing netting to zero across shards) or the run fails.

With ``--wire``, each run also passes the stream through the roles' own ``Shard`` (exchange.ledger.shard),
with every message encoded and decoded as it is between the processes, but no socket (timed:
**shards on the wire**): each turn of ``--settle-every`` commands, the gateway's requests as one
frame per shard, the shards' held orders encoded for the engine, the engine's batch decoded and
its events matched and encoded as one EventBatch, which each shard decodes, settles and journals
(seal: its batch encoded). What this adds to hold + settle is the shards' work besides the core.
Of that, **the codec alone** is the encoding and decoding by themselves: the same frames (the
gateway's, the engine's batches once per shard) decoded again, and what the shards sent (their
batches and the held orders) encoded again from its decoded form, timed after the run.

    .venv/bin/python scripts/bench_ledger.py                          # 200,000 commands, 3 runs
    .venv/bin/python scripts/bench_ledger.py --commands 20000 --runs 1 --json out.json
    .venv/bin/python scripts/bench_ledger.py --commands 100000 --wire   # and the shards on the wire
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import ENGINE_ID, INSTRUMENT, make_stream  # noqa: E402 (the stream generator)

from exchange.core.assets import Asset, FeeRates, Terms, grid_problem  # noqa: E402
from exchange.core.ledger import Ledger, shard_of  # noqa: E402
from exchange.core.ledger_messages import (  # noqa: E402
    CLEARING_ACCOUNT, DepositFunds, HoldOrder, OrderHeld, OrderSettled, SettleEvents,
)
from exchange.core.matching import Matcher  # noqa: E402
from exchange.core.messages import PlaceOrder  # noqa: E402
from exchange.journal.readers import EnginePosition  # noqa: E402
from exchange.ledger.shard import Shard  # noqa: E402
from exchange.errors import WireError  # noqa: E402
from exchange.wire.messages import Decoder, Durable, Entry, EventBatch, Request, encode  # noqa: E402

ENGINE = "e1"
QUOTE = Asset("USD", "0.00001")  # one lot (0.001) at one tick (0.01)
BASE = Asset("BTC", "0.001")
RATES = FeeRates(maker_bps="1", taker_bps="2.5")  # the demo config's
FUNDS = 10 ** 15  # units of each asset per user: more than the stream can spend
PARTS = ("hold", "match", "settle")


def terms() -> Terms:
    problem = grid_problem(INSTRUMENT, BASE, QUOTE)
    if problem:
        raise SystemExit(f"the bench's assets do not fit its instrument: {problem}")
    return Terms(INSTRUMENT, BASE, QUOTE, RATES)


def run_once(commands: list, shards: int, settle_every: int) -> dict:
    """One pass over ``commands`` with fresh shards and matcher: seconds per part and counts."""
    venue = [terms()]
    ledgers = [Ledger(n, shards, venue) for n in range(shards)]
    users = sorted({command.user for command in commands})
    shard_by_user = {user: ledgers[shard_of(user, shards)] for user in users}
    for user, ledger in shard_by_user.items():
        for asset in (QUOTE.name, BASE.name):
            ledger.handle(DepositFunds(user, asset, FUNDS, f"bench:{user}:{asset}"))
    handle = Matcher(ENGINE_ID, [INSTRUMENT]).handle
    clock = time.perf_counter
    hold = match = settle = 0.0
    held = refused = settled = 0
    pending: list = []
    since_settle = 0
    gc.collect()
    for command in commands:
        if type(command) is PlaceOrder:
            start = clock()
            outcome = shard_by_user[command.user].handle(HoldOrder(command))[0]
            hold += clock() - start
            if type(outcome) is not OrderHeld:
                refused += 1
                continue
            held += 1
            command = outcome.command
        start = clock()
        pending += handle(command)
        match += clock() - start
        since_settle += 1
        if since_settle == settle_every and pending:
            start = clock()
            settled += _settle(ledgers, pending)
            settle += clock() - start
            pending, since_settle = [], 0
    if pending:
        start = clock()
        settled += _settle(ledgers, pending)
        settle += clock() - start
    problems = _problems(ledgers)
    if refused:
        problems.append(f"{refused} orders were refused their hold (the users are funded for all)")
    return {"seconds": {"hold": hold, "match": match, "settle": settle}, "held": held,
            "settled": settled, "problems": problems}


def run_on_the_wire(commands: list, shards: int, settle_every: int) -> dict:
    """One pass of ``commands`` through fresh role-side Shards and a matcher, every message encoded and
    decoded as between the processes: seconds of the shards' part, and problems found after."""
    venue = [terms()]
    owner = {INSTRUMENT.symbol: ENGINE}
    roles = [Shard(Ledger(n, shards, venue), 1, EnginePosition(), owner) for n in range(shards)]
    for user in sorted({command.user for command in commands}):
        for asset in (QUOTE.name, BASE.name):
            roles[shard_of(user, shards)].handle_own(DepositFunds(user, asset, FUNDS, f"bench:{user}:{asset}"))
    for role in roles:
        role.seal()
        role.on_durable(Durable(role.name, 1, role.batch, role.ledger.seq))
    handle = Matcher(ENGINE_ID, [INSTRUMENT]).handle
    to_engine, to_shards = Decoder(list[Request]), [Decoder(EventBatch) for _ in roles]
    clock = time.perf_counter
    spent = 0.0
    taken: list[bytes] = []  # what the shards decoded: the gateway's frames; each engine batch once per shard
    sent: list[bytes] = []  # what they encoded: their own batches, and the held orders for the engine
    batch = last_seq = 0
    gc.collect()
    for start in range(0, len(commands), settle_every):
        frames: list[list[Request]] = [[] for _ in roles]
        for n, command in enumerate(commands[start:start + settle_every], start):  # as the gateway sends them
            held = HoldOrder(command) if type(command) is PlaceOrder else command
            frames[shard_of(command.user, shards)].append(Request("gw/1", 1, n, held, engine=ENGINE))
        frames = [encode(requests) for requests in frames]
        began = clock()
        forwards = []
        for role, frame in zip(roles, frames):
            role.handle_requests([[frame]])
            own, released = role.seal()
            if own is not None:
                sent.append(own)
            if released is not None:
                forwards += [encode(requests) for requests in released.forwards.values()]
        spent += clock() - began
        taken += frames
        sent += forwards
        entries, first = [], last_seq + 1  # the engine: not timed
        for frame in forwards:
            for request in to_engine.decode(frame):
                events = handle(request.command)
                entries.append(Entry(request.gateway, request.session, request.request_id, request.command, events))
                last_seq = events[-1].seq if events else last_seq
        batch += 1
        released_batch = encode(EventBatch(ENGINE, 1, batch, first, last_seq, entries))
        began = clock()
        for role, decoder in zip(roles, to_shards):
            role.settle(decoder.decode(released_batch))
            role.settle_pending()
            own = role.seal()[0]
            if own is not None:
                sent.append(own)
            role.on_durable(Durable(role.name, 1, role.batch, role.ledger.seq))
        spent += clock() - began
        taken += [released_batch] * len(roles)
    return {"seconds": spent, "codec": codec_seconds(taken, sent),
            "problems": _problems([role.ledger for role in roles])}


def codec_seconds(taken: list[bytes], sent: list[bytes]) -> float:
    """Seconds to decode ``taken`` and to encode what ``sent`` holds, and nothing else: each frame is
    an EventBatch or a list of Requests (the held orders for an engine, the gateway's requests)."""
    batches, requests = Decoder(EventBatch), Decoder(list[Request])

    def decoder(frame: bytes) -> Decoder:
        try:
            batches.decode(frame)
            return batches
        except WireError:
            return requests

    taken = [(decoder(frame).decode, frame) for frame in taken]
    sent = [decoder(frame).decode(frame) for frame in sent]
    gc.collect()
    start = time.perf_counter()
    for decode, frame in taken:
        decode(frame)
    for message in sent:
        encode(message)
    return time.perf_counter() - start


def _problems(ledgers: list[Ledger]) -> list[str]:
    """Each shard's broken invariants, and clearing that does not net to zero across the shards."""
    problems = [f"shard {ledger.shard}: {problem}" for ledger in ledgers for problem in ledger.problems()]
    for asset in (QUOTE.name, BASE.name):
        net = sum(ledger.balances.get((CLEARING_ACCOUNT, asset), 0) for ledger in ledgers)
        if net:
            problems.append(f"{CLEARING_ACCOUNT} {asset} nets to {net} across shards")
    return problems


def _settle(ledgers: list[Ledger], events: list) -> int:
    """Each shard settles its own users' share of ``events`` (one SettleEvents); OrderSettled made."""
    first, last = events[0].seq, events[-1].seq
    made = 0
    for ledger in ledgers:
        for event in ledger.handle(SettleEvents(ENGINE, 1, first, last, ledger.own_events(events))):
            made += type(event) is OrderSettled
    return made


def summary(runs: list[dict], commands: int) -> dict:
    """Median (min, max) µs per command of each part and of the ledger's two, over the runs."""
    def spread(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    per_command = {part: spread([r["seconds"][part] / commands * 1e6 for r in runs]) for part in PARTS}
    per_command["ledger"] = spread([(r["seconds"]["hold"] + r["seconds"]["settle"]) / commands * 1e6
                                    for r in runs])
    for part in ("wire", "codec"):
        if part in runs[0]["seconds"]:
            per_command[part] = spread([r["seconds"][part] / commands * 1e6 for r in runs])
    first = runs[0]
    return {
        "us_per_command": per_command,
        "us_per_hold": spread([r["seconds"]["hold"] / r["held"] * 1e6 for r in runs]),
        "us_per_settled_event": spread([r["seconds"]["settle"] / max(1, r["settled"]) * 1e6 for r in runs]),
        "holds_per_command": first["held"] / commands,
        "settled_events_per_command": first["settled"] / commands,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200_000, help="commands in the stream")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (the median is reported)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the stream generator")
    parser.add_argument("--shards", type=int, default=2, help="ledger shards the users are spread over")
    parser.add_argument("--settle-every", type=int, default=40,
                        help="commands between settlements (one SettleEvents per shard each time)")
    parser.add_argument("--wire", action="store_true",
                        help="also run the stream through the roles' Shard, messages encoded as between processes")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.commands < 1 or args.runs < 1 or args.shards < 1 or args.settle_every < 1:
        parser.error("--commands, --runs, --shards and --settle-every must be at least 1")

    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
    commands, _ = make_stream(args.commands, args.seed)
    print(f"stream: {len(commands):,} commands, seed {args.seed}; {args.shards} ledger shards,"
          f" settlement every {args.settle_every} commands")
    runs = []
    for n in range(1, args.runs + 1):
        result = run_once(commands, args.shards, args.settle_every)
        if result["problems"]:
            print(f"run {n}: the ledgers are wrong:", *result["problems"][:10], sep="\n  ")
            return 1
        if args.wire:
            wire = run_on_the_wire(commands, args.shards, args.settle_every)
            if wire["problems"]:
                print(f"run {n}: the shards on the wire are wrong:", *wire["problems"][:10], sep="\n  ")
                return 1
            result["seconds"]["wire"] = wire["seconds"]
            result["seconds"]["codec"] = wire["codec"]
        runs.append(result)
        seconds = result["seconds"]
        print(f"run {n}: " + ", ".join(f"{part} {seconds[part] / len(commands) * 1e6:.2f}" for part in seconds)
              + " µs per command")
    figures = summary(runs, len(commands))
    print(f"median of {args.runs} runs (min..max), µs per command of the stream:")
    for part, values in figures["us_per_command"].items():
        label = {"ledger": "hold + settle", "wire": "shards on the wire", "codec": "  the codec alone"}.get(part, part)
        print(f"  {label:<18} {values['median']:6.2f} ({values['min']:.2f}..{values['max']:.2f})")
    print(f"  a hold: {figures['us_per_hold']['median']:.2f} µs ({figures['holds_per_command']:.2f} per command);"
          f" a settled event: {figures['us_per_settled_event']['median']:.2f} µs"
          f" ({figures['settled_events_per_command']:.2f} per command, over all shards)")
    print(f"load average after the runs {os.getloadavg()[0]:.2f} (other processes share the cpus)")
    if args.json:
        args.json.write_text(json.dumps({"commands": len(commands), "seed": args.seed, "shards": args.shards,
                                         "settle_every": args.settle_every, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
