"""The raw answer of one request, as the warehouse's raw zone keeps it for replay.

Higher-level helpers (history ranges, all positions, snapshots with pre-flight, order placement)
return these so a caller can land exactly what the gateway sent, together with the parameters
that produced it, and re-normalise it later without calling the gateway again.

A `RawResponse` never holds a secret: parameters are query, path and body values only, never
headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ResponseHook = Callable[[str, dict[str, Any], Any, datetime], Awaitable[None] | None]
"""``on_response(endpoint, request_params, payload, fetched_at)``: called after every accepted
answer of a data endpoint (not for auth status, tickle or logout). May be sync or async; its
exceptions propagate to the caller of the request."""


@dataclass(frozen=True)
class RawResponse:
    """One decoded answer: ``endpoint`` (e.g. ``"history"``), the ``params`` of the request
    (query, path and body values), the decoded JSON ``payload`` and when it was ``fetched_at``
    (UTC, from the client's clock)."""

    endpoint: str
    params: Mapping[str, Any]
    payload: Any
    fetched_at: datetime
