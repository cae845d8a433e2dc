"""What a bench run yields: ``BenchResult``, its figures and checks, and its JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from exchange.bench.target import ROLES


@dataclass
class BenchResult:
    options: dict
    machine: dict
    counts: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    latency_us: dict = field(default_factory=dict)  # kind → {count, p50, p90, p99, p99.9, max, mean}
    ack_stages_us: dict = field(default_factory=dict)  # stage → {count, p50, p90, p99, max}: bench.stages
    market_data: dict = field(default_factory=dict)
    journal: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)  # label → cores used (CPU seconds per second)
    cpu_wait: dict = field(default_factory=dict)  # role → share of the window its main thread waited for a CPU
    series: list = field(default_factory=list)  # per second: offered, acked, p99
    checks: dict = field(default_factory=dict)  # name → list of faults (empty: passed)
    profiles: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # kind → [(percentile, µs)] for the plot

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())

    def roles_cores(self) -> float:
        """Cores the exchange's own processes used in the measured window: the roles, not the load
        generators, subscribers, this process, or the machine-wide figures ``cpu`` also holds."""
        return sum(cores for label, cores in self.cpu.items() if label.split(" ", 1)[0] in ROLES)

    def roles_us_per_ack(self) -> float | None:
        """CPU µs of the roles per acknowledged request (None without acknowledgements)."""
        acked = self.throughput.get("acked_per_s")
        return self.roles_cores() / acked * 1e6 if acked else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)
