"""Client-side pacing: every request waits here until the gateway's limits allow it.

Pacing is the client's job, not the caller's: assets and notebooks call methods as fast and as
concurrently as they like, and the `Pacer` spaces the requests so the gateway never answers
429. Rates use aiolimiter's leaky bucket with a capacity of one request (even spacing, no
bursts); the history concurrency cap is an ``asyncio.Semaphore`` held for the whole request.

Sharing: one `Pacer` per event loop and gateway origin (and limits), obtained with
`shared_pacer`. Every client created in the same event loop against the same gateway shares it,
so two assets running concurrently in one process cannot together exceed the limits. Clients in
different event loops (e.g. two threads, each with its own loop, or the sync facade's private
loop) have separate pacers: keep one loop per process to share the budget.

After a 429, `Pacer.penalize` pauses every request of the pacer until the Retry-After has
passed, then runs the global rate at a fraction of normal for a recovery period, so the client
leaves the penalty box instead of hammering it. A long Retry-After (the 10-15 minute penalty
box, ``PacingLimits.penalty_box_s`` or more) is waited out once, plus random jitter so that two
clients boxed together do not wake in the same second, and the reduced rate then lasts for the
rest of the pacer's life; the client refuses to wait out a second one (`Pacer.boxed`).

Processes: the pacer shares one gateway's budget inside one event loop; across processes, the
client's gateway lease (`ib_pipeline.ibkr.lease`) makes them queue.

A history request abandoned on a read timeout keeps its concurrency slot a while longer
(`Lease.abandon`): the gateway is still working on it, and counting it.

What this module must never do: send HTTP, or sleep without a reason it can name.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

from ib_pipeline.ibkr.endpoints import PacingGroup
from ib_pipeline.ibkr.settings import PacingLimits

log = logging.getLogger(__name__)


_INTERVAL_GROUPS = frozenset(
    {
        PacingGroup.LIVE_ORDERS,
        PacingGroup.PORTFOLIO_ACCOUNTS,
        PacingGroup.TICKLE,
        PacingGroup.SSO_VALIDATE,
    }
)
"""Endpoints limited to one request per interval of a second or more."""


def _spacing_limiter(per_second: float) -> AsyncLimiter:
    """A limiter admitting one request every ``1 / per_second`` seconds, never a burst."""
    return AsyncLimiter(1, 1.0 / per_second)


class Lease:
    """The slot of one request, as the request's sender sees it.

    A request the client gives up on without an answer (a read timeout) has reached the
    gateway, which keeps working on it and keeps counting it against its concurrency limit
    (history: 5 at once, the 6th opens the penalty box). Releasing its slot at once would let
    the retry, or another request, run beside it. `abandon` keeps the slot taken for a while
    after the request ends, the time the gateway is given to finish it.
    """

    __slots__ = ("hold_s",)

    def __init__(self) -> None:
        self.hold_s = 0.0

    def abandon(self, hold_s: float) -> None:
        """The request was abandoned: keep its concurrency slot ``hold_s`` seconds longer."""
        self.hold_s = max(self.hold_s, hold_s)


class Pacer:
    """Per-endpoint and global limits of one gateway, for the tasks of one event loop."""

    def __init__(self, limits: PacingLimits, origin: str = "") -> None:
        self.limits = limits
        self.origin = origin
        """The gateway (``scheme://host:port``) of a shared pacer; "" for a private one."""
        self._global = _spacing_limiter(limits.global_per_s)
        self._reduced = _spacing_limiter(limits.global_per_s * limits.after_429_rate_factor)
        self._rates: dict[PacingGroup, AsyncLimiter] = {
            PacingGroup.SNAPSHOT: _spacing_limiter(limits.snapshot_per_s),
            PacingGroup.LIVE_ORDERS: AsyncLimiter(1, limits.live_orders_interval_s),
            PacingGroup.PORTFOLIO_ACCOUNTS: AsyncLimiter(1, limits.portfolio_accounts_interval_s),
            PacingGroup.TICKLE: AsyncLimiter(1, limits.tickle_interval_s),
            PacingGroup.SSO_VALIDATE: AsyncLimiter(1, limits.sso_validate_interval_s),
        }
        self._history = asyncio.Semaphore(limits.history_concurrency)
        self._resume_at = 0.0
        self._reduced_until = 0.0
        self.requests: Counter[str] = Counter()
        """Requests admitted per pacing group (for tests, benchmarks and logs)."""
        self.penalties = 0
        """How many 429 answers this pacer has been told about."""
        self.boxed = 0
        """How many penalty boxes (a Retry-After of ``penalty_box_s`` or more) it waited out."""
        self.lingering = 0
        """Concurrency slots kept past the end of an abandoned request (see `Lease`)."""

    @asynccontextmanager
    async def slot(self, group: PacingGroup) -> AsyncIterator[Lease]:
        """Wait until a request of ``group`` may be sent; hold the slot while it runs (and
        longer if the request was abandoned: see `Lease`).

        Order matters: the concurrency cap first (held for the request's duration), then the
        endpoint's own rate, then the penalty pause, and the global rate last, so a global
        token is never spent by a task that still has to wait for something else. The
        exception are the once-per-interval endpoints (`_INTERVAL_GROUPS`): their token is
        taken last, right before sending, so waiting for a global token can never shorten
        the interval between two of their requests.
        """
        semaphore = self._history if group is PacingGroup.HISTORY else None
        lease: Lease | None = None
        if semaphore is not None:
            await semaphore.acquire()
        try:
            rate = self._rates.get(group)
            late = rate if group in _INTERVAL_GROUPS else None
            if rate is not None and late is None:
                await rate.acquire()
            while True:
                await self._wait_out_penalty()
                await self._global_limiter().acquire()
                if late is not None:
                    await self._after_other_loops(group)
                    await late.acquire()
                    _LAST_SENT[(self.origin, group)] = time.monotonic()
                    late = None
                if self._loop_time() >= self._resume_at:
                    break  # no 429 arrived while this task waited for its tokens
            self.requests[group.value] += 1
            lease = Lease()
            yield lease
        finally:
            if semaphore is not None:
                if lease is not None and lease.hold_s > 0:
                    self.lingering += 1
                    asyncio.get_running_loop().call_later(lease.hold_s, semaphore.release)
                else:
                    semaphore.release()

    def penalize(self, pause_s: float) -> None:
        """A 429 arrived: pause every request for ``pause_s`` seconds, then slow down. A
        penalty box (``pause_s >= limits.penalty_box_s``) adds random jitter to the pause and
        slows down for good."""
        now = self._loop_time()
        self.penalties += 1
        if pause_s >= self.limits.penalty_box_s:
            if now >= self._resume_at:  # not one box reported by several requests in flight
                self.boxed += 1
            jitter = random.uniform(0.0, self.limits.penalty_jitter_s)
            self._resume_at = max(self._resume_at, now + pause_s + jitter)
            self._reduced_until = math.inf
            log.warning(
                "gateway answered 429 with a %.0f s penalty box: pausing all requests for "
                "%.1f s (with jitter), then %.0f%% of the normal rate from then on",
                pause_s,
                self._resume_at - now,
                100 * self.limits.after_429_rate_factor,
            )
            return
        self._resume_at = max(self._resume_at, now + pause_s)
        self._reduced_until = max(
            self._reduced_until, self._resume_at + self.limits.after_429_recovery_s
        )
        log.warning(
            "gateway answered 429: pausing all requests for %.1f s, then %.0f%% of the normal "
            "rate for %.0f s",
            pause_s,
            100 * self.limits.after_429_rate_factor,
            self.limits.after_429_recovery_s,
        )

    @property
    def waited_out_a_box(self) -> bool:
        """Whether a penalty box was waited out already (and is over)."""
        return self.boxed > 0 and self._loop_time() >= self._resume_at

    @property
    def paused_for_s(self) -> float:
        """Seconds left in the current 429 pause (0 when not paused)."""
        return max(0.0, self._resume_at - self._loop_time())

    async def _wait_out_penalty(self) -> None:
        while (remaining := self._resume_at - self._loop_time()) > 0:
            await asyncio.sleep(remaining)

    async def _after_other_loops(self, group: PacingGroup) -> None:
        """Wait out the interval since this process last sent a request of ``group`` to the
        same gateway from ANOTHER event loop: each Dagster run (and each `asyncio.run`) has
        its own loop and pacer, and two runs in a row must not send two
        ``/portfolio/accounts`` within 5 s (a 429 and a 10-minute penalty box)."""
        if not self.origin:
            return
        last = _LAST_SENT.get((self.origin, group))
        if last is None:
            return
        remaining = last + self._interval(group) - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _interval(self, group: PacingGroup) -> float:
        limits = self.limits
        return {
            PacingGroup.LIVE_ORDERS: limits.live_orders_interval_s,
            PacingGroup.PORTFOLIO_ACCOUNTS: limits.portfolio_accounts_interval_s,
            PacingGroup.TICKLE: limits.tickle_interval_s,
            PacingGroup.SSO_VALIDATE: limits.sso_validate_interval_s,
        }[group]

    def _global_limiter(self) -> AsyncLimiter:
        return self._reduced if self._loop_time() < self._reduced_until else self._global

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()


_LAST_SENT: dict[tuple[str, PacingGroup], float] = {}
"""When (``time.monotonic()``) this process last sent a request of each once-per-interval group
to each gateway, whatever the event loop: the intervals hold across runs of one process."""

_SHARED: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, PacingLimits], Pacer]
] = weakref.WeakKeyDictionary()


def shared_pacer(origin: str, limits: PacingLimits) -> Pacer:
    """The pacer shared by every client of the running event loop that talks to ``origin``
    (``scheme://host:port``) with the same ``limits``. Must be called inside the loop."""
    loop = asyncio.get_running_loop()
    pacers = _SHARED.setdefault(loop, {})
    key = (origin, limits)
    pacer = pacers.get(key)
    if pacer is None:
        pacer = pacers[key] = Pacer(limits, origin)
    return pacer
