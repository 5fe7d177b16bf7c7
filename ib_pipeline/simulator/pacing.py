"""The gateway's pacing: per-endpoint rate limits, the history concurrency cap, the penalty box.

The simulator enforces what IBKR publishes (spec/README.md, "Pacing") so that a client which
trips a limit here would trip it on the real gateway too. Time is physical: every window is
measured on a monotonic clock, never on the simulator's settable market clock (a test that moves
the market clock a day forward must not refill anyone's rate budget).

Rates are token buckets, computed with the generic cell rate algorithm (GCRA): "N per period"
admits a burst of N requests, then one every period/N seconds. That is the semantics of the
leaky-bucket limiters clients use (aiolimiter), so a client paced at or under the published rate
is never refused. History requests are limited by how many are in flight at once, not by rate.

Any violation answers 429 and opens the penalty box: for ``penalty_box_s`` seconds every request,
whatever its endpoint, is refused with 429 and a ``Retry-After`` header. Requests refused by the
box do not extend it. This module never sleeps and never touches HTTP; it only decides.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ib_pipeline.simulator.config import PacingConfig

_EPSILON_S = 1e-6
"""Slack for the float sums of emission intervals (ten 0.1 s steps are not exactly 1 s)."""


class Limit(Enum):
    """The per-endpoint limits, on top of the global one."""

    SNAPSHOT = "snapshot"
    HISTORY = "history"  # concurrency, not rate
    LIVE_ORDERS = "live_orders"
    PORTFOLIO_ACCOUNTS = "portfolio_accounts"
    TICKLE = "tickle"
    SSO_VALIDATE = "sso_validate"


class TokenBucket:
    """``count`` requests per ``period`` seconds with a burst of ``count`` (GCRA)."""

    def __init__(self, count: float, period: float) -> None:
        if count <= 0 or period <= 0:
            raise ValueError(f"a token bucket needs count > 0 and period > 0, got {count}/{period}")
        self.count = count
        self.period = period
        self._interval = period / count
        self._tolerance = period - self._interval
        self._tat = -math.inf  # theoretical arrival time of the next conforming request

    def can_admit(self, now: float) -> bool:
        """Whether a token is available at monotonic time ``now`` (nothing is taken)."""
        return max(self._tat, now) - self._tolerance <= now + _EPSILON_S

    def admit(self, now: float) -> bool:
        """Take one token if available at monotonic time ``now``; False means over the limit."""
        if not self.can_admit(now):
            return False
        self._tat = max(self._tat, now) + self._interval
        return True

    def reset(self) -> None:
        self._tat = -math.inf


@dataclass(frozen=True)
class PacingVerdict:
    """The outcome of admitting one request. ``allowed`` False means answer 429 with
    ``Retry-After: retry_after_s``; ``reason`` says which limit (for logs and stats)."""

    allowed: bool
    reason: str = ""
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


ALLOWED = PacingVerdict(True)


class Pacer:
    """Admits or refuses requests; thread-safe; measures time with ``monotonic``."""

    def __init__(
        self, config: PacingConfig, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._global = TokenBucket(config.global_per_s, 1.0)
        self._buckets: dict[Limit, TokenBucket] = {
            Limit.SNAPSHOT: TokenBucket(config.snapshot_per_s, 1.0),
            Limit.LIVE_ORDERS: TokenBucket(1, config.live_orders_interval_s),
            Limit.PORTFOLIO_ACCOUNTS: TokenBucket(1, config.portfolio_accounts_interval_s),
            Limit.TICKLE: TokenBucket(config.tickle_per_s, 1.0),
            Limit.SSO_VALIDATE: TokenBucket(1, config.sso_validate_interval_s),
        }
        self._history_in_flight = 0
        self._history_high_water = 0
        self._box_until = -math.inf
        self._penalties = 0
        self._last_reason = ""

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def admit(self, limit: Limit | None) -> PacingVerdict:
        """Decide on one request to an endpoint subject to ``limit`` (None: global limit only).

        An admitted HISTORY request counts as in flight until `history_done` is called.
        """
        with self._lock:
            now = self._monotonic()
            if not self.config.enabled:
                if limit is Limit.HISTORY:
                    self._history_started()
                return ALLOWED
            if now < self._box_until:
                return PacingVerdict(False, "penalty box", self._box_until - now)
            reason = self._violation(limit, now)
            if reason:
                return self._open_box(reason, now)
            if limit is Limit.HISTORY:
                self._history_started()
            return ALLOWED

    def history_done(self) -> None:
        """A previously admitted history request has finished (answered or failed)."""
        with self._lock:
            if self._history_in_flight <= 0:
                raise RuntimeError("history_done called with no history request in flight")
            self._history_in_flight -= 1

    def _violation(self, limit: Limit | None, now: float) -> str:
        if limit is Limit.HISTORY and self._history_in_flight >= self.config.history_concurrency:
            return f"more than {self.config.history_concurrency} concurrent history requests"
        bucket = self._buckets.get(limit) if limit is not None else None
        if limit is not None and bucket is not None and not bucket.can_admit(now):
            return f"{limit.value} limit of {_rate_text(bucket)}"
        if not self._global.admit(now):
            return f"global limit of {_rate_text(self._global)}"
        if bucket is not None:
            bucket.admit(now)
        return ""

    def _open_box(self, reason: str, now: float) -> PacingVerdict:
        self._box_until = now + self.config.penalty_box_s
        self._penalties += 1
        self._last_reason = reason
        return PacingVerdict(False, reason, self.config.penalty_box_s)

    def _history_started(self) -> None:
        self._history_in_flight += 1
        self._history_high_water = max(self._history_high_water, self._history_in_flight)

    def penalty_remaining_s(self) -> float:
        with self._lock:
            return max(0.0, self._box_until - self._monotonic())

    def reset(self) -> None:
        """Empty the penalty box, refill every bucket and clear the counters (not in-flight)."""
        with self._lock:
            self._global.reset()
            for bucket in self._buckets.values():
                bucket.reset()
            self._box_until = -math.inf
            self._penalties = 0
            self._last_reason = ""
            self._history_high_water = self._history_in_flight

    def state(self) -> dict[str, object]:
        """Current pacing state, JSON-ready, for /sim/stats."""
        with self._lock:
            remaining = max(0.0, self._box_until - self._monotonic())
            return {
                "enabled": self.config.enabled,
                "in_penalty_box": remaining > 0,
                "penalty_remaining_s": round(remaining, 3),
                "penalties": self._penalties,
                "last_violation": self._last_reason,
                "history_in_flight": self._history_in_flight,
                "history_concurrency_high_water": self._history_high_water,
            }


def _rate_text(bucket: TokenBucket) -> str:
    if bucket.count == 1:
        return f"1 per {bucket.period:g} s"
    return f"{bucket.count:g} per {bucket.period:g} s"
