"""Where an acknowledgement's time goes: sampled ACKs followed through the journal's timestamps.

For every ``TRACE_EVERY``-th measured ACK of a new order, the load generator keeps when the order
was due and when its ACK arrived. The journal adds when the gateway read the line
(``commands.ts_received``), when the engine had matched the batch holding it
(``batches.ts_matched``) and when the journal writer began writing that batch
(``batches.ts_written``). The four stages between these five moments add up to the ack latency.
They are wall clocks of different processes, so they mean something only on one machine (or with
clocks synchronised far better than the figures).
"""

from __future__ import annotations

import sqlite3

from exchange.bench import latency
from exchange.journal.schema import readonly_uri

TRACE_EVERY = 8

STAGES = (
    ("load generator → gateway", "from the scheduled send until the gateway read the line: the load"
     " generator's own lag, the TCP hop, the gateway's event loop"),
    ("gateway → engine matched", "the gateway's turn, the hop to the engine, its queue, matching the batch"
     " (with accounts on, also the ledger shard's hold, journaled before the order goes on)"),
    ("engine → journal writing", "the hop to the journal writer and its queue"),
    ("journal → ACK read", "SQLite insert and commit, the watermark back to the engine, the release,"
     " the hop to the gateway, its turn, the hop to the client"),
)

# one pass over the placements (no index serves (user, client order id): the write path pays for none)
_QUERY = ("SELECT c.user, c.client_order_id, c.ts_received, b.ts_matched, b.ts_written FROM commands c"
          " JOIN batches b ON b.engine = c.engine AND b.batch = c.batch WHERE c.kind = 'PlaceOrder'")


def ack_stages(journal_path: str, traced: list[tuple[str, str, int, int]]) -> dict:
    """{stage: {count, p50, p90, p99, max} in µs} for the traced ACKs (user, client order id,
    due wall ns, ACK read wall ns); empty if the journal has no batch timestamps."""
    durations: list[list[int]] = [[] for _ in STAGES]
    conn = sqlite3.connect(readonly_uri(journal_path), uri=True)
    wanted = {(user, cid) for user, cid, _, _ in traced}
    try:
        rows = {(user, cid): row for user, cid, *row in conn.execute(_QUERY) if (user, cid) in wanted}
        for user, cid, due, acked in traced:
            row = rows.get((user, cid))
            if row is None or None in row:
                continue
            moments = (due, *row, acked)
            for i in range(len(STAGES)):
                durations[i].append((moments[i + 1] - moments[i]) // 1000)
    except sqlite3.OperationalError:  # a journal without batch timestamps
        return {}
    finally:
        conn.close()
    out = {}
    for (name, _), values in zip(STAGES, durations):
        values.sort()
        out[name] = {"count": len(values), **{f"p{q * 100:g}": latency.pick(values, q) for q in (0.5, 0.9, 0.99)},
                     "max": values[-1] if values else 0}
    return out
