"""Retrying failed requests: which failures, how often, how long to wait.

Built on tenacity. A failure is retried when it is transient and retrying cannot do harm:

- 429 (rate limited): always retried, since the gateway refused the request without acting on
  it. The wait itself is the pacer's pause (every request of the client waits out the
  Retry-After, see `pacing.Pacer.penalize`), so tenacity adds no extra sleep.
- connection refused (nothing was sent): always retried.
- timeouts, dropped connections, 5xx, truncated or invalid JSON, "Chart data is not available":
  retried only for idempotent endpoints. Placing an order or answering a confirmation is never
  resent after the gateway may have acted on it.

Everything else (4xx, TLS verification failures, not authenticated) fails at once. After
``max_attempts`` the last typed error is raised unchanged. This module never decides what an
answer means; the client classifies answers into typed errors and marks them retryable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ib_pipeline.ibkr.errors import IbkrError, RateLimitedError
from ib_pipeline.ibkr.settings import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")


class Transient:
    """How far a failure may be retried (stored on the error as ``retry_scope``)."""

    NEVER = 0
    IDEMPOTENT = 1  # only if the endpoint is idempotent
    ALWAYS = 2  # the gateway did not act on the request


def mark(error: IbkrError, scope: int) -> IbkrError:
    """Tag ``error`` with how far it may be retried; returns it for ``raise mark(...)``."""
    error.retry_scope = scope
    return error


def is_retryable(error: BaseException, idempotent: bool) -> bool:
    """Whether ``error`` may be retried for an endpoint that is (or is not) idempotent."""
    scope = error.retry_scope if isinstance(error, IbkrError) else Transient.NEVER
    return scope == Transient.ALWAYS or (scope == Transient.IDEMPOTENT and idempotent)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    idempotent: bool,
    endpoint: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or ``policy.max_attempts`` is used up.

    The last error is re-raised unchanged (a typed `IbkrError`).
    """
    backoff = wait_exponential_jitter(
        multiplier=policy.backoff_initial_s, max=policy.backoff_max_s, jitter=policy.jitter_s
    )

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RateLimitedError):
            return 0.0  # the pacer holds every request until the Retry-After has passed
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is None:
            return
        log.info("retrying %s after attempt %d failed: %s", endpoint, state.attempt_number, error)
        if on_retry is not None:
            on_retry(error)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception(lambda error: is_retryable(error, idempotent)),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
