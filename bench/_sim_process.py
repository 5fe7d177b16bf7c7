"""The simulator in its own process, for benchmarks that must not share a CPU-bound event loop
with the client they measure. Not a benchmark itself: the leading underscore keeps
`bench.run_all` from running it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

_SERVING = re.compile(r"serving (http://\S+/v1/api)")


def start_simulator(*options: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``ib-pipeline sim --port 0 OPTIONS...``; return the process and its base URL."""
    command = [str(Path(sys.executable).parent / "ib-pipeline"), "sim", "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        found = _SERVING.search(line)
        if found:
            return process, found.group(1)
    process.kill()
    raise RuntimeError(f"the simulator did not start: {' '.join(command)}")


def simulator_stats(base_url: str) -> dict[str, Any]:
    """The simulator's counters (``GET /sim/stats``)."""
    stats: dict[str, Any] = httpx.get(base_url.removesuffix("/v1/api") + "/sim/stats").json()
    return stats
