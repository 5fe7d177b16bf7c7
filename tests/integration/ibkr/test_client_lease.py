"""Two processes against one gateway (issue 10 item 7): they share its budget through the
gateway lease (`ib_pipeline.ibkr.lease`) instead of each pacing to the full limit. Real
processes against the simulator with its pacing on; the control run (lease off) shows that the
same load without the lease trips the penalty box."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ib_pipeline.ibkr.errors import GatewayBusyError
from ib_pipeline.ibkr.lease import GatewayLease, holder_pid
from ib_pipeline.simulator import Simulator

REQUESTS = 25
"""Per process: 2.5 s at the gateway's 10/s; two at once would send 20/s."""

WORKER = """
import asyncio, json, logging, sys, time
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.settings import ClientSettings, RetryPolicy

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
url, count, lease = sys.argv[1], int(sys.argv[2]), sys.argv[3] != "off"

async def main() -> None:
    settings = ClientSettings(
        base_url=url, keepalive_interval_s=None, token_env=None, gateway_lease=lease,
        retry=RetryPolicy(max_attempts=10, backoff_initial_s=0.01, backoff_max_s=0.05),
    )
    client = IbkrClient(settings)
    async with client:
        print(json.dumps({"event": "open", "at": time.time()}), flush=True)
        if sys.argv[3] == "hold":  # until the test says go (the other process waits by then)
            await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(*(client.call(ep.AUTH_STATUS) for _ in range(count)))
        done = time.time()
    print(json.dumps({"event": "done", "at": done, "rate_limited": client.stats.rate_limited}),
          flush=True)

asyncio.run(main())
"""


def start(sim: Simulator, runtime: Path, mode: str) -> subprocess.Popen[str]:
    """A worker process: ``mode`` is "lease", "hold" (lease, then wait for a line on stdin
    before the requests) or "off" (no lease)."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, sim.base_url, str(REQUESTS), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def events(process: subprocess.Popen[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    out, err = process.communicate("", timeout=60)
    assert process.returncode == 0, err
    opened, done = (json.loads(line) for line in out.splitlines())
    return opened, done, err


def wait_open(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return dict(json.loads(line))


def test_two_processes_queue_behind_the_lease_and_never_trip_a_429(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim()
    first = start(sim, tmp_path, "hold")
    first_open = wait_open(first)  # the first holds the lease now
    second = start(sim, tmp_path, "lease")
    assert second.stderr is not None
    waiting = second.stderr.readline()  # the second says whom it waits for
    assert f"waiting for process {first.pid}" in waiting
    out, err = first.communicate("go\n", timeout=60)
    assert first.returncode == 0, err
    first_done = json.loads(out.splitlines()[0])
    second_open, second_done, _ = events(second)
    assert second_open["at"] >= first_done["at"]  # queued behind the first, never beside it
    assert first_open["at"] < first_done["at"]
    assert first_done["rate_limited"] == 0 and second_done["rate_limited"] == 0
    assert sim.stats()["totals"]["429"] == 0


def test_without_the_lease_the_same_load_trips_the_penalty_box(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    """The control: the test above would fail without the lease."""
    sim = make_sim()
    processes = [start(sim, tmp_path, "off") for _ in range(2)]
    for process in processes:
        events(process)
    assert sim.stats()["totals"]["429"] > 0


async def test_the_lease_is_shared_within_a_process_and_released_on_close(tmp_path: Path) -> None:
    first = GatewayLease("http://127.0.0.1:5999", folder=tmp_path)
    second = GatewayLease("http://127.0.0.1:5999", folder=tmp_path)
    await first.acquire(timeout_s=0)
    await second.acquire(timeout_s=0)  # same process: shared, no wait
    assert holder_pid(first.path) == os.getpid()
    first.release()
    second.release()
    second.release()  # idempotent
    assert holder_pid(first.path) is None  # emptied on the last release


def test_a_busy_lease_times_out_naming_the_holder(tmp_path: Path) -> None:
    """Another process holds the lease: `GatewayBusyError` names it after the timeout."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, time\n"
            "from pathlib import Path\n"
            "from ib_pipeline.ibkr.lease import GatewayLease\n"
            "lease = GatewayLease('http://127.0.0.1:5998', folder=Path(sys.argv[1]))\n"
            "asyncio.run(lease.acquire())\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lease = GatewayLease("http://127.0.0.1:5998", folder=tmp_path)
        started = time.monotonic()
        with pytest.raises(GatewayBusyError, match=f"in use by process {holder.pid}"):
            asyncio.run(lease.acquire(timeout_s=0.3))
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
