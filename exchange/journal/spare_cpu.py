"""Whether the rest of the machine leaves CPU idle: the journal writer builds its tables (work that
nothing waits for) in its idle moments only when it does, so that under a flood it does not take the
cores the gateway, engines and ledger shards need.

Linux only (``/proc/stat`` for the machine, ``/proc/self/stat`` for this process); where they cannot
be read, there is always CPU to spare (the writer indexes whenever it is idle). A container limited
to fewer cores than the machine has sees the machine's: it then finds more to spare than it has.
"""

from __future__ import annotations

from collections.abc import Callable

SAMPLE_S = 0.5  # how often the machine's CPU is sampled
MIN_SPARE_CORES = 0.5  # what the other processes must leave idle, in cores, for idle indexing


def machine_ticks() -> tuple[int, int, int]:
    """(busy ticks, all ticks, CPUs) over all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        lines = f.read().split(b"\n")
    fields = [int(n) for n in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    total, idle = sum(fields), fields[3] + fields[4]
    cpus = sum(1 for line in lines[1:] if line.startswith(b"cpu"))
    return total - idle, total, max(cpus, 1)


def own_ticks() -> int:
    """CPU ticks this process (all its threads) has used, from /proc/self/stat."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": state is field 3
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


class SpareCpu:
    """``spare(now)``: whether the other processes left at least MIN_SPARE_CORES idle over the last sample."""

    def __init__(self, machine: Callable[[], tuple[int, int, int]] = machine_ticks,
                 own: Callable[[], int] = own_ticks):
        self.machine, self.own = machine, own
        self.at = None  # time of the last sample
        self.last: tuple[int, int, int] | None = None  # (busy, total, own) then
        self.has_spare = True
        self.others_cores = 0.0  # what the other processes used over the last sample, in cores

    def spare(self, now: float) -> bool:
        if self.at is not None and now - self.at < SAMPLE_S:
            return self.has_spare
        self.at = now
        try:
            busy, total, cpus = self.machine()
            own = self.own()
        except (OSError, ValueError, IndexError):
            self.last, self.has_spare = None, True
            return True
        if self.last is not None and total > self.last[1]:
            elapsed = (total - self.last[1]) / cpus  # ticks per CPU
            others = (busy - self.last[0]) - (own - self.last[2])
            self.others_cores = max(others, 0) / elapsed
            self.has_spare = cpus - self.others_cores >= MIN_SPARE_CORES
        self.last = (busy, total, own)
        return self.has_spare
