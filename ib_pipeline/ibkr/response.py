"""One request's raw answer (`RawResponse`), and the `Call` that produces it.

Helpers (history ranges, all positions, snapshots with pre-flight, order placement) are given a
`Call`, the client's paced and retried request pipeline, never the client itself; they return
`RawResponse` objects so a caller can land exactly what the gateway sent, with the parameters
that produced it, and re-normalise it later without calling the gateway again.

A `RawResponse` never holds a secret: parameters are query, path and body values only, never
headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ib_pipeline.ibkr.endpoints import Endpoint

ResponseHook = Callable[[str, dict[str, Any], Any, datetime], Awaitable[None] | None]
"""``on_response(endpoint, request_params, payload, fetched_at)``: called after every accepted
answer of a data endpoint (not for auth status, tickle or logout). May be sync or async; its
exceptions propagate to the caller of the request."""

ErrorBodyFilter = Callable[[str], bool]
"""Decides whether a 200 ``{"error": text}`` answer is a payload the caller interprets."""


@dataclass(frozen=True)
class RawResponse:
    """One decoded answer: ``endpoint`` (e.g. ``"history"``), the ``params`` of the request
    (query, path and body values), the decoded JSON ``payload`` and when it was ``fetched_at``
    (UTC, from the client's clock)."""

    endpoint: str
    params: Mapping[str, Any]
    payload: Any
    fetched_at: datetime


class Call(Protocol):
    """Send one request to ``endpoint`` through the client's whole pipeline (priming, pacing,
    retries, the response hook) and return its answer: the client's ``call`` method."""

    def __call__(
        self,
        endpoint: Endpoint,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        error_ok: ErrorBodyFilter | None = None,
    ) -> Awaitable[RawResponse]: ...
