"""Profiles with py-spy: record every role during the measured window, and summarise the records."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def start_profilers(pids: dict[str, int], directory: str, duration: float) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))),
                              "--rate", "100", "--nonblocking", "--format", "raw",
                              "--output", str(Path(directory) / f"{label.replace(' ', '-')}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for label, pid in pids.items()]


def summarise_profiles(directory: str, top: int = 12) -> dict[str, dict]:
    """For each py-spy raw profile in ``directory``: the functions with the largest inclusive
    share of the (non-idle) samples, and those with the largest self share."""
    out = {}
    for path in sorted(Path(directory).glob("*.txt")):
        inclusive: Counter[str] = Counter()
        exclusive: Counter[str] = Counter()
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("process ")]
            total += int(count)
            for name in set(frames):
                inclusive[name] += int(count)
            if frames:
                exclusive[frames[-1]] += int(count)
        if total:
            out[path.stem] = {
                "samples": total,
                "top_inclusive": [(name, round(n / total, 3)) for name, n in inclusive.most_common(top * 2)],
                "top_self": [(name, round(n / total, 3)) for name, n in exclusive.most_common(top)]}
    return out
