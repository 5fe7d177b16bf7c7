"""Deterministic fault injection: which request fails, and how.

A client is only as good as its handling of a misbehaving gateway, and a test can only check that
handling if the misbehaviour is reproducible. So every /v1/api request is numbered on arrival
(1, 2, 3, ...) and its fate is drawn from a generator seeded with the `FaultSpec`'s seed: the same
spec and the same sequence of requests give the same faults, run after run. Replacing the spec
(`Simulator.set_faults`) restarts the numbering and the draws.

This module only decides; the server carries the decision out (answers 5xx/429, sleeps, closes
the socket, cuts the body, drops the session). It never looks at request contents.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import Enum

from ib_pipeline.simulator.answers import error_body
from ib_pipeline.simulator.config import FaultSpec


class FaultKind(Enum):
    """The per-request faults; at most one applies to a request."""

    SERVER_ERROR = "5xx"
    TOO_MANY_REQUESTS = "429"
    SLOW = "slow"
    DROP = "drop"
    TRUNCATE = "truncate"


SERVER_ERROR_BODIES: tuple[tuple[int, dict[str, object]], ...] = (
    (500, error_body("There was an error processing the request. Please try again.")),
    (503, error_body("Service Unavailable", 503)),
)
"""What an injected 5xx answers: the gateway's generic processing error, or its 503."""


@dataclass(frozen=True)
class FaultDecision:
    """What happens to request number ``request_number``.

    ``kind`` is the per-request fault, if any; ``variant`` picks among equivalent answers (e.g.
    500 or 503). ``drop_session`` / ``reset_accounts`` are the one-shot session faults due at this
    request.
    """

    request_number: int
    kind: FaultKind | None = None
    variant: int = 0
    drop_session: bool = False
    reset_accounts: bool = False

    @property
    def server_error(self) -> tuple[int, dict[str, object]]:
        return SERVER_ERROR_BODIES[self.variant % len(SERVER_ERROR_BODIES)]


class FaultInjector:
    """Numbers requests and draws their faults from ``spec``; thread-safe."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._rng = random.Random(spec.seed)
        self._count = 0
        self._thresholds: list[tuple[float, FaultKind]] = []
        cumulative = 0.0
        for kind, rate in (
            (FaultKind.SERVER_ERROR, spec.rate_5xx),
            (FaultKind.TOO_MANY_REQUESTS, spec.rate_429),
            (FaultKind.SLOW, spec.rate_slow),
            (FaultKind.DROP, spec.rate_drop),
            (FaultKind.TRUNCATE, spec.rate_truncate),
        ):
            if rate > 0:
                cumulative += rate
                self._thresholds.append((cumulative, kind))

    @property
    def requests_seen(self) -> int:
        with self._lock:
            return self._count

    def next(self) -> FaultDecision:
        """Number the next request and decide its fate. Two draws per request, always, so the
        sequence of decisions depends only on the seed and the request count."""
        with self._lock:
            self._count += 1
            number = self._count
            draw = self._rng.random()
            variant = self._rng.randrange(1 << 16)
        kind = None
        for threshold, candidate in self._thresholds:
            if draw < threshold:
                kind = candidate
                break
        return FaultDecision(
            request_number=number,
            kind=kind,
            variant=variant,
            drop_session=self.spec.session_drop_at == number,
            reset_accounts=self.spec.accounts_reset_at == number,
        )
