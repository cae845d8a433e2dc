"""The partition soak's checks that need the mesh running (exchange.testing.partition, checks 6, 7,
9 and 10): the feed's trades and books against the journal's, STATUS through each gateway of the
orders placed through the other, and the FILLs pushed to the sessions."""

from __future__ import annotations

import contextlib
import random
import time

from exchange.client.text import TextClient
from exchange.config import Config
from exchange.journal.schema import open_readonly
from exchange.testing.mesh import login, wait_until
from exchange.testing.partition_feed import Feed, journal_books, journaled_trades
from exchange.testing.soak import SYMBOLS, Observed

STATUS_SAMPLE = 300  # orders of each kind (ACKed during a fault or before it resumed, or not) asked about
#                     through the other gateway
SHOWN = 5  # faults of one kind shown before a count of the rest


def gateway_addresses(config: Config) -> dict[str, tuple[str, int]]:
    """gateway role → (host, port) of its text protocol."""
    return {role: (section.text.rsplit(":", 1)[0], int(section.text.rsplit(":", 1)[1]))
            for role, section in config.gateway.all()}


def status_faults(config: Config, observed: dict[str, Observed], during: dict[str, list[str]], seed: int
                  ) -> list[str]:
    """Check 9: STATUS through each gateway of the orders placed through the other (``observed``:
    gateway → what its sessions saw; ``during``: gateway → the orders ACKed during faults)."""
    addresses = gateway_addresses(config)
    rng, faults = random.Random(seed), []
    for here, there in (("gateway", "gateway-g2"), ("gateway-g2", "gateway")):
        users, wrong, placed = dict(observed[here].acks), [], during.get(here, [])
        chosen = set(rng.sample(placed, min(STATUS_SAMPLE, len(placed))))
        chosen |= set(rng.sample(sorted(users), min(STATUS_SAMPLE, len(users))))
        for user in sorted({users[o] for o in chosen}):
            ids = sorted(o for o in chosen if users[o] == user)
            with login(*addresses[here], user) as a, login(*addresses[there], user) as b:
                differing = _differing_status(a, b, ids)
            wrong += [f"STATUS {o} of {user}, placed through {here}{' during a fault' if o in placed else ''},"
                      f" is {x!r} there and {y!r} through {there}" for o, (x, y) in differing.items()]
        faults += wrong[:SHOWN] + ([f"... and {len(wrong) - SHOWN} more such STATUS"] if len(wrong) > SHOWN else [])
    return faults


def _differing_status(a: TextClient, b: TextClient, order_ids: list[str]) -> dict[str, tuple[str, str]]:
    """order id → (a's answer, b's) of each STATUS the two sessions do not answer alike, or refuse;
    asked again for up to 10 s, as a gateway may still be taking the last batches."""
    deadline = time.monotonic() + 10
    while True:
        answers = {o: (a.request(f"STATUS {o}"), b.request(f"STATUS {o}")) for o in order_ids}
        differing = {o: (x, y) for o, (x, y) in answers.items() if x != y or x.startswith("REJ")}
        if not differing or time.monotonic() > deadline:
            return differing
        order_ids = list(differing)
        time.sleep(0.2)


def fill_faults(config: Config, observed: dict[str, Observed]) -> list[str]:
    """Check 10: each session that stayed connected was pushed a FILL for every journaled fill of the
    orders it placed."""
    with contextlib.closing(open_readonly(config.journal.path)) as conn:
        fills = conn.execute("SELECT order_id, trade_id FROM events WHERE kind='OrderFilled'").fetchall()
    faults = []
    for gateway, one in observed.items():
        if one.reconnects:
            continue  # what was pushed while a session was away is not pushed again (STATUS tells)
        pushed = {(order_id, trade_id) for order_id, trade_id, _ in one.fills}
        unseen = [(o, t) for o, t in fills if o in one.acks and (o, t) not in pushed]
        faults += [f"{len(unseen)} fills of orders placed through {gateway} were never pushed to their session,"
                   f" e.g. {unseen[:SHOWN]}"] if unseen else []
    return faults


def feed_faults(config: Config, feed: Feed, notifier_cut: bool) -> list[str]:
    """Checks 6 and 7, once the journal has every event: the feed's trades and books."""
    faults = [f"the feed's subscriber failed: {feed.error!r}"] if feed.error else []
    expected = journal_books(config, list(SYMBOLS))
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: feed.books == expected, 20, "the feed's books equal to the journal's")
    faults += [f"the feed's {s} book {feed.books.get(s)} is not the engine's {book}"
               for s, book in expected.items() if feed.books.get(s) != book]
    journal = journaled_trades(config)
    with contextlib.suppress(TimeoutError):  # the feed's last trades
        wait_until(lambda: set(feed.trades) >= set(journal), 15 if not notifier_cut else 2, "the feed's trades")
    lost = sorted(set(journal) - set(feed.trades))
    if notifier_cut and lost and not feed.missed:
        faults.append(f"trades {lost[:10]} (of {len(lost)}) vanished from the feed without a gap in chan_seq")
    if not notifier_cut and (lost or feed.missed):
        faults.append(f"the feed missed {len(lost)} journaled trades ({lost[:10]}) and saw {feed.missed} gaps")
    return faults

