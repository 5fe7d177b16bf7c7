"""Counters of what the simulator answered, for tests and benchmarks to assert on.

Tests prove "zero 429s", "the client retried each 5xx once" or "no request ever reached the
internal-error path" by reading these counters, over HTTP at ``/sim/stats`` or in-process through
`Simulator.stats()`. Keys are route templates (``GET /iserver/marketdata/history``,
``GET /portfolio/{accountId}/positions/{pageId}``), so ids in paths do not explode the table.

Counting only: nothing here changes how a request is answered.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any


class SimStats:
    """Thread-safe per-endpoint counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._faults: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._internal_errors = 0

    def record_response(self, endpoint: str, status: int) -> None:
        """One request to ``endpoint`` answered with HTTP ``status``."""
        with self._lock:
            self._requests[endpoint] += 1
            self._statuses[endpoint][str(status)] += 1

    def record_dropped(self, endpoint: str) -> None:
        """One request to ``endpoint`` whose connection was closed without an answer."""
        with self._lock:
            self._requests[endpoint] += 1
            self._statuses[endpoint]["dropped"] += 1

    def record_fault(self, endpoint: str, kind: str) -> None:
        with self._lock:
            self._faults[endpoint][kind] += 1

    def record_internal_error(self) -> None:
        """An unexpected exception reached the catch-all (a simulator bug, or unhandled input)."""
        with self._lock:
            self._internal_errors += 1

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
            self._faults.clear()
            self._internal_errors = 0

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain JSON-ready data.

        ``totals`` sums every endpoint: ``requests``, ``429``, ``5xx``, ``401``, ``dropped``,
        ``faults`` (injected, by kind) and ``internal_errors``.
        """
        with self._lock:
            endpoints = {
                name: {
                    "requests": count,
                    "statuses": dict(self._statuses[name]),
                    "faults": dict(self._faults.get(name, {})),
                }
                for name, count in sorted(self._requests.items())
            }
            all_statuses: Counter[str] = Counter()
            for counter in self._statuses.values():
                all_statuses.update(counter)
            all_faults: Counter[str] = Counter()
            for counter in self._faults.values():
                all_faults.update(counter)
            totals = {
                "requests": sum(self._requests.values()),
                "429": all_statuses.get("429", 0),
                "5xx": sum(n for s, n in all_statuses.items() if s.startswith("5")),
                "401": all_statuses.get("401", 0),
                "dropped": all_statuses.get("dropped", 0),
                "faults": dict(all_faults),
                "internal_errors": self._internal_errors,
            }
        return {"totals": totals, "endpoints": endpoints}
