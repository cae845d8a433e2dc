"""scripts/bench_fanout_floor.py: a tiny run really delivers every message to every subscriber."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_fanout_floor.py"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_every_subscriber_gets_every_message_and_the_spread_is_reported(tmp_path, transport):
    out = tmp_path / "floor.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--subscribers", "12", "--processes", "2", "--rate", "40",
         "--duration", "0.5", "--runs", "1", "--transport", transport, "--json", str(out)],
        capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["messages"] == 20
    assert run["lost"] == 0
    assert run["spread_us"]["count"] == 20  # one spread per message, each seen by all 12 sockets
    assert 0 <= run["spread_us"]["p50"] <= run["spread_us"]["max"]
    assert "spread p50" in done.stdout
