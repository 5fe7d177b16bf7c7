"""What every route module shares: the route table entry, JSON in and out, the error bodies.

A route declares its needs (`Access`, `Priming`, its pacing `Limit`) next to its handler, and the
server's middleware enforces them before the handler runs, so a handler only ever sees a request
that is allowed, paced and primed. Handlers never raise for bad input: they answer the gateway's
error body through `bad_request` and friends.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from aiohttp import web

from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.state import SimState

API_PREFIX = "/v1/api"
_DIGITS = re.compile(r"[0-9]+")
STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)

Handler = Callable[[web.Request, SimState], Awaitable[web.StreamResponse]]


class Access(Enum):
    """Which layer of the gateway session a route needs (see `ib_pipeline.simulator.session`)."""

    PUBLIC = "public"  # answers whatever the session state
    SSO = "sso"  # needs the browser login
    BROKERAGE = "brokerage"  # needs the brokerage (iserver) session


class Priming(Enum):
    """Which "query this first" call a route needs in the current session."""

    NONE = "none"
    ISERVER = "iserver"  # GET /iserver/accounts
    PORTFOLIO = "portfolio"  # GET /portfolio/accounts


@dataclass(frozen=True)
class Route:
    """One operation: method, path under /v1/api, handler and what it needs."""

    method: str
    path: str
    handler: Handler
    access: Access
    priming: Priming = Priming.NONE
    limit: Limit | None = None

    @property
    def endpoint(self) -> str:
        """The stats key, e.g. ``GET /iserver/marketdata/history``."""
        return f"{self.method} {self.path}"


def json_response(body: Any, status: int = 200) -> web.Response:
    """Encode ``body`` with orjson (history bodies with NaN use `history.encode_body`)."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def answer(result: tuple[int, Any]) -> web.Response:
    """Answer a ``(status, body)`` pair."""
    status, body = result
    return json_response(body, status)


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message, "statusCode": status}, status)


def bad_request(detail: str) -> web.Response:
    """The gateway's 400: ``{"error": "Bad Request: ...", "statusCode": 400}``."""
    return error_response(400, f"Bad Request: {detail}")


class BodyError(ValueError):
    """The request body is not the JSON the route needs."""


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or None if it has none; BodyError if it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError("the request body is not valid JSON") from None


def parse_count(text: str) -> int | None:
    """A non-negative decimal integer written in ASCII digits, or None (``str.isdigit`` would
    also accept digits such as ``"²"`` that ``int`` refuses)."""
    return int(text) if _DIGITS.fullmatch(text) else None


def query_bool(value: str | None, name: str, default: bool = False) -> bool:
    """A ``true``/``false`` query parameter; BodyError naming the parameter otherwise."""
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BodyError(f"{name} must be true or false, got {value!r}")
