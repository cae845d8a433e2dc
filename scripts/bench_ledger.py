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

    .venv/bin/python scripts/bench_ledger.py                          # 200,000 commands, 3 runs
    .venv/bin/python scripts/bench_ledger.py --commands 20000 --runs 1 --json out.json
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
    problems = [f"shard {ledger.shard}: {problem}" for ledger in ledgers for problem in ledger.problems()]
    for asset in (QUOTE.name, BASE.name):
        net = sum(ledger.balances.get((CLEARING_ACCOUNT, asset), 0) for ledger in ledgers)
        if net:
            problems.append(f"{CLEARING_ACCOUNT} {asset} nets to {net} across shards")
    if refused:
        problems.append(f"{refused} orders were refused their hold (the users are funded for all)")
    return {"seconds": {"hold": hold, "match": match, "settle": settle}, "held": held,
            "settled": settled, "problems": problems}


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
        runs.append(result)
        seconds = result["seconds"]
        print(f"run {n}: " + ", ".join(f"{part} {seconds[part] / len(commands) * 1e6:.2f}" for part in PARTS)
              + " µs per command")
    figures = summary(runs, len(commands))
    print(f"median of {args.runs} runs (min..max), µs per command of the stream:")
    for part, values in figures["us_per_command"].items():
        label = "hold + settle" if part == "ledger" else part
        print(f"  {label:<14} {values['median']:6.2f} ({values['min']:.2f}..{values['max']:.2f})")
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
