"""The crash test's materialising process: runs the small backfill and kills itself with
SIGKILL at a chosen moment (test_prove_crash.py).

Run as a script, it is a zygote: it imports Dagster and the pipeline ONCE (about 3 s), then
serves requests read from stdin, one JSON object per line::

    {"root": "/tmp/.../kill-03", "base_url": "http://127.0.0.1:PORT/v1/api",
     "phase": "rename", "kill_at": 4}

For each it forks a child that installs the test-only hooks below, materialises
`prove_support.materialise_backfill` against the simulator at ``base_url`` (running in the
test's process) into ``root``, and is killed by its own hook at the ``kill_at``-th event of
``phase`` (``phase`` null: no kill; the child reports how many events of each phase it saw).
The zygote answers one JSON line: ``{"signal": N, "counts": {...} | null, "error": str | null}``.

Phases (each counted across the whole backfill, every dataset and the raw zone included):

- ``fetch``: an HTTP response of the gateway has arrived, before the client reads it;
- ``validate``: the store is about to run a dataset's contract (`ib_pipeline.schemas.validate`);
- ``write``: half of the bytes of an atomic write are in its temporary file;
- ``rename``: a complete temporary file is about to be renamed over its target;
- ``manifest``: a partition's data file is in place and its manifest not yet written.

The zygote itself never materialises anything: no DuckDB connection, no Arrow computation, no
thread before a fork (checked). Its first child reports which modules a run imports lazily;
the zygote imports them, so every later child starts warm (about 1.5 s a run instead of 3).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import ib_pipeline.storage.fs as fsmod
import ib_pipeline.storage.store as storemod
from ib_pipeline.clock import FixedClock
from ib_pipeline.storage.paths import MANIFEST_SUFFIX

sys.path.insert(0, str(Path(__file__).parent))
from prove_support import (
    SIM_NOW,
    backfill_definitions,
    materialise_backfill,
)

PHASES = ("fetch", "validate", "write", "rename", "manifest")


def install_hooks(phase: str | None, kill_at: int, counts: Counter[str]) -> None:
    """Count every event of every phase; SIGKILL this process at the chosen one."""

    def step(name: str) -> None:
        counts[name] += 1
        if name == phase and counts[name] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    real_send = httpx.AsyncClient.send  # every request goes through it, streamed or not

    async def send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Response:
        response = await real_send(self, *args, **kwargs)
        step("fetch")
        return response

    real_validate = storemod.validate  # type: ignore[attr-defined]

    def validate(*args: Any, **kwargs: Any) -> Any:
        step("validate")
        return real_validate(*args, **kwargs)

    real_replace = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if fsmod.is_temp_name(Path(src).name):
            step("rename")
        real_replace(src, dst, *args, **kwargs)

    real_open = open

    class HalfThenStep:
        """A file whose write lands half its bytes, then counts a ``write`` event."""

        def __init__(self, handle: Any) -> None:
            self._handle = handle

        def write(self, data: bytes) -> int:
            half = len(data) // 2
            self._handle.write(data[:half])
            self._handle.flush()
            step("write")
            return int(self._handle.write(data[half:])) + half

        def __getattr__(self, name: str) -> Any:
            return getattr(self._handle, name)

        def __enter__(self) -> HalfThenStep:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.__exit__(*exc)

    def killing_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        return HalfThenStep(handle) if "w" in mode else handle

    real_write_atomic: Callable[..., None] = fsmod.LocalRoot.write_atomic

    def write_atomic(self: fsmod.LocalRoot, rel: str, data: bytes) -> None:
        if rel.endswith(MANIFEST_SUFFIX):
            step("manifest")
        real_write_atomic(self, rel, data)

    httpx.AsyncClient.send = send  # type: ignore[method-assign]
    storemod.validate = validate  # type: ignore[attr-defined]
    os.replace = replace
    fsmod.open = killing_open  # type: ignore[attr-defined]
    fsmod.LocalRoot.write_atomic = write_atomic  # type: ignore[method-assign]


def materialise(request: dict[str, Any]) -> dict[str, int]:
    counts: Counter[str] = Counter({name: 0 for name in PHASES})
    install_hooks(request["phase"], int(request["kill_at"]), counts)
    defs = backfill_definitions(
        request["base_url"], Path(request["root"]), FixedClock(SIM_NOW), unpaced=True
    )
    materialise_backfill(defs)
    return dict(counts)


def preload(modules: list[str]) -> None:
    """Import what a run imports lazily (learnt from a first, forked run), so that every
    forked child starts warm. Importing starts no thread."""
    for name in modules:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                continue  # optional back-ends some module probed for
    if threading.active_count() != 1:  # forking a process with threads is not safe
        names = [t.name for t in threading.enumerate()]
        raise RuntimeError(f"the zygote must not run threads before forking: {names}")


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            code = 0
            before = set(sys.modules)
            try:
                counts = materialise(request)
                modules = sorted(set(sys.modules) - before)
                answer: dict[str, Any] = {"counts": counts, "error": None, "modules": modules}
            except BaseException:  # reported to the test, which fails naming it
                answer = {"counts": None, "error": traceback.format_exc()}
                code = 1
            os.write(write_end, json.dumps(answer).encode())
            os._exit(code)
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        answer = json.loads(b"".join(chunks)) if chunks else {"counts": None, "error": None}
        preload(answer.pop("modules", []))
        print(json.dumps({"signal": signum, **answer}), flush=True)


if __name__ == "__main__":
    serve()
