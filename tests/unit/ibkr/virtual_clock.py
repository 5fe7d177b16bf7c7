"""An asyncio event loop on virtual time, for tests of timing logic that must hold under load.

`VirtualClockLoop.time()` starts at 0 and advances only when the loop turns: by `TURN_S`, or,
when it would wait for its next timer, straight to that timer's deadline. Timers (``asyncio.sleep``,
``call_later``, aiolimiter, tenacity's sleeps) therefore fire in exactly the order and at
exactly the times the code under test scheduled, however busy the machine is, and without
waiting for real. Real I/O still works (it is polled without blocking), but a test on this loop
should have none: with ``httpx.MockTransport`` the client sends nothing over the network.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

TURN_S = 1e-6
"""Virtual time one turn of the loop takes. Time must move on every turn, as it does for real:
code that re-checks a condition "as soon as possible" (aiolimiter re-arming a timer for a
rounding error's worth of capacity) would otherwise spin forever at one instant."""


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; a wait for a timer advances the loop's clock instead."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:  # no timer: only a thread-safe call can wake the loop, so wait
            return super().select(None)
        self._clock[0] += max(timeout, TURN_S)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual (see the module docstring)."""

    def __init__(self) -> None:
        self._clock = [0.0]
        super().__init__(_VirtualSelector(self._clock))

    def time(self) -> float:
        return self._clock[0]


def run_in_virtual_time(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a fresh `VirtualClockLoop`, then close the loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
