"""The cross-process lease of one gateway: one process at a time spends its session's budget.

Why: the gateway's limits (10 requests/s, 5 history requests in flight, ...) belong to its
session, not to a client. The `Pacer` shares them between the clients of one event loop, but
two processes (two ``ib-pipeline backfill``, a backfill beside a Dagster run) each paced to the
full limit together send twice the allowed rate, trip the 10-15 minute penalty box, and wake
in lockstep to trip it again (issue 10, item 7).

The choice: an exclusive ``fcntl.flock`` on a file named after the gateway's origin
(``scheme://host:port``) in a per-user runtime folder (``$XDG_RUNTIME_DIR/ib-pipeline``, else
``<tmp>/ib-pipeline-<uid>``), held while a client is open. A second process's client waits in
`GatewayLease.acquire` until the first closes, logging once that it waits and for which
process (the holder writes its pid into the file). Within one process the lease is shared
(counted), so the clients of one run never wait for each other; their budget is shared by the
`Pacer` as before.

Why a lock rather than a shared token bucket (a small file or sqlite that every process takes
tokens from): the gateway's limits are not only a rate. History concurrency, the per-endpoint
intervals and the penalty pause after a 429 would all have to be shared across processes, on a
clock every process agrees on, and a process killed mid-request would leave its tokens taken.
A lock covers every limit at once, costs nothing per request, and the kernel releases it when
its holder dies, however it dies. What it costs: two loaders against one gateway run one after
the other instead of interleaved, at the same total speed (the session's budget is the limit
either way).

What this module must never do: hold the lease after its client closed, or lock anything but
its own files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

from ib_pipeline.ibkr.errors import GatewayBusyError

log = logging.getLogger(__name__)

RUNTIME_DIR_ENV = "XDG_RUNTIME_DIR"
POLL_S = 0.05
"""How often a waiting client tries the lock again."""


def runtime_dir() -> Path:
    """The per-user folder of the lease files (created with mode 0700)."""
    base = os.environ.get(RUNTIME_DIR_ENV)
    folder = (
        Path(base) / "ib-pipeline"
        if base and Path(base).is_dir()
        else Path(tempfile.gettempdir()) / f"ib-pipeline-{os.getuid()}"
    )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def lease_path(origin: str, folder: Path | None = None) -> Path:
    """The lock file of ``origin``: readable name plus a short hash (one file per origin)."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", origin).strip("_")
    digest = hashlib.sha256(origin.encode()).hexdigest()[:12]
    return (folder or runtime_dir()) / f"gateway-{readable}-{digest}.lock"


class _Held:
    """The lock of one origin held by this process, and how many clients share it."""

    __slots__ = ("count", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.count = 0


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child does not hold its parent's leases (it must queue like anyone else)."""
    global _GUARD  # noqa: PLW0603 (a lock held by another thread at fork is never released)
    _HELD.clear()
    _GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _try_lock(path: Path) -> bool:
    """Take the lock of ``path`` for this process if it is free (or already ours)."""
    with _GUARD:
        held = _HELD.get(path)
        if held is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            held = _HELD[path] = _Held(fd)
        held.count += 1
        return True


def _release(path: Path) -> None:
    with _GUARD:
        held = _HELD.get(path)
        if held is None:
            return
        held.count -= 1
        if held.count <= 0:
            del _HELD[path]
            with contextlib.suppress(OSError):
                os.ftruncate(held.fd, 0)
            os.close(held.fd)  # releases the flock


def holder_pid(path: Path) -> int | None:
    """The pid the lease file names (its holder, or its last holder), if any."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class GatewayLease:
    """The lease of one gateway origin, for one client: `acquire` once, `release` once."""

    def __init__(self, origin: str, *, folder: Path | None = None) -> None:
        self.origin = origin
        self.path = lease_path(origin, folder)
        self.held = False
        self.waited_s = 0.0
        """How long `acquire` waited for another process."""

    async def acquire(self, timeout_s: float | None = None) -> None:
        """Take the lease, waiting while another process holds it (logging once whom for);
        `GatewayBusyError` after ``timeout_s`` seconds (None: no limit)."""
        if self.held:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        announced = False
        while not _try_lock(self.path):
            holder = holder_pid(self.path)
            waited = loop.time() - started
            if timeout_s is not None and waited >= timeout_s:
                raise GatewayBusyError(
                    f"the gateway {self.origin} is in use by process {holder or '?'} (lease "
                    f"{self.path}) and was not released within {timeout_s:g} s",
                    holder=holder,
                )
            if not announced:
                log.warning(
                    "waiting for process %s, which is using the gateway %s (lease %s); its "
                    "session's request budget is shared, so this client starts when it ends",
                    holder or "?",
                    self.origin,
                    self.path,
                )
                announced = True
            await asyncio.sleep(POLL_S)
        self.waited_s = loop.time() - started
        if announced:
            log.info("lease of %s acquired after %.1f s", self.origin, self.waited_s)
        self.held = True

    def release(self) -> None:
        """Give the lease back (idempotent)."""
        if self.held:
            self.held = False
            _release(self.path)
