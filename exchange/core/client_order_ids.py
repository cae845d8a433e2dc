"""Which client order ids a user may not use again yet: the uniqueness window.

A client order id names one order of its user. It is reserved from the order's acceptance while
the order is open, and for ``window`` nanoseconds after its acceptance, measured on the clock of
the commands (their ``ts_received``, stamped by the gateway; never a clock read here). After that
the user may use it for a new order. A resent order therefore meets its original (DUPLICATE_ID)
for ``window`` after it was first accepted, and an open order can always be named by its id.

Memory is bounded by the ids accepted within about two windows plus the open orders' ids: each
``add`` forgets the ids whose window has passed and whose order is closed; an id whose order is
still open is looked at again one window later. Forgetting happens only in ``add``, on
acceptance, so a matcher rebuilt from events (``OrderAccepted`` carries the same ``ts_event``)
forgets exactly what the live one forgot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

Key = tuple[str, str]  # (user, client order id)
DEFAULT_WINDOW_NS = 300 * 10**9  # five minutes


# (ts, user, client order id, order id, symbol, ts accepted): look at this id again once the window
# has passed since ts. Plain tuples, so a checkpoint encodes ``due`` as it is.
Entry = tuple[int, str, str, str, str, int]


class ClientOrderIds:
    """(user, client order id) → order id, for every id that is or may still be reserved.

    ``due`` holds the ids in the order they are to be looked at again; ``reserved`` maps each key
    to the newest entry for it in ``due``, and the older entries of a key are stale (skipped). So
    ``due`` alone is the whole state: ``from_due`` rebuilds ``reserved`` from it.
    """

    def __init__(self, window: int, is_open: Callable[[str, str], bool]):
        self.window = window  # ns
        self.is_open = is_open  # (order id, symbol) → whether the order is still open
        self.reserved: dict[Key, Entry] = {}
        self.due: deque[Entry] = deque()

    def taken(self, key: Key, ts: int) -> str:
        """The order id that holds ``key`` at time ``ts``, or "" if a new order may use it."""
        entry = self.reserved.get(key)
        if entry is None:
            return ""
        if ts - entry[5] < self.window or self.is_open(entry[3], entry[4]):
            return entry[3]
        return ""

    def add(self, key: Key, order_id: str, symbol: str, ts: int) -> None:
        """``order_id`` was accepted at ``ts`` with this key; forget what the window lets go."""
        due, reserved, cutoff = self.due, self.reserved, ts - self.window
        later = []
        while due and due[0][0] <= cutoff:
            entry = due.popleft()
            old_key = (entry[1], entry[2])
            if reserved.get(old_key) is not entry:
                continue  # stale: the key was taken again, or looked at again, since
            if self.is_open(entry[3], entry[4]):
                later.append((ts, *entry[1:]))
            else:
                del reserved[old_key]
        for entry in later:
            reserved[(entry[1], entry[2])] = entry
        due.extend(later)
        entry = (ts, key[0], key[1], order_id, symbol, ts)
        reserved[key] = entry
        due.append(entry)

    def from_due(self, entries) -> None:
        """Take the state ``due`` held (as a checkpoint stored it)."""
        self.due = deque(tuple(entry) for entry in entries)
        self.reserved = {(entry[1], entry[2]): entry for entry in self.due}

    def get(self, key: Key, default: str = "") -> str:
        entry = self.reserved.get(key)
        return entry[3] if entry is not None else default

    def __getitem__(self, key: Key) -> str:
        return self.reserved[key][3]

    def __contains__(self, key: object) -> bool:
        return key in self.reserved

    def __len__(self) -> int:
        return len(self.reserved)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.reserved)

    def order_ids(self) -> dict[Key, str]:
        return {key: entry[3] for key, entry in self.reserved.items()}

    def state(self) -> tuple:
        """Everything that defines this window's future behaviour, for digests."""
        return (self.window, tuple(self.due))
