"""What every route module shares: the route table entry, JSON in and out, the error responses.

A route declares its needs (`Access`, `Priming`, its pacing `Limit`) next to its handler, and the
server's middleware enforces them before the handler runs, so a handler only ever sees a request
that is allowed, paced and primed. Handlers never raise for bad input: they answer the gateway's
error body through `bad_request` and friends (the bodies themselves come from `answers`).

What it must never do: build a payload or decide an answer; it only carries them over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from aiohttp import web

from ib_pipeline.simulator import answers
from ib_pipeline.simulator.answers import Answer, encode_body, error_body
from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.params import parse_bool
from ib_pipeline.simulator.state import SimState

API_PREFIX = "/v1/api"
STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)

Handler = Callable[[web.Request, SimState], Awaitable[web.StreamResponse]]


class Access(Enum):
    """Which layer of the gateway session a route needs (see `ib_pipeline.simulator.auth`)."""

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
    """``body`` as JSON (`answers.encode_body`: orjson, or NaN-tolerant for bad-data bodies)."""
    return web.Response(body=encode_body(body), status=status, content_type="application/json")


def respond(result: Answer) -> web.Response:
    """Send a ``(status, body)`` answer."""
    status, body = result
    return json_response(body, status)


def error_response(status: int, message: str) -> web.Response:
    """``{"error": message, "statusCode": status}`` with that HTTP status."""
    return json_response(error_body(message, status), status)


def bad_request(detail: str) -> web.Response:
    """The gateway's 400: ``{"error": "Bad Request: ...", "statusCode": 400}``."""
    return respond(answers.bad_request(detail))


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


async def respond_to_body(request: web.Request, handle: Callable[[Any], Answer]) -> web.Response:
    """Send ``handle(body)`` for the request's JSON body (None if it has none), or the gateway's
    400 if the body is not JSON."""
    try:
        payload = await read_json(request)
    except BodyError as exc:
        return bad_request(str(exc))
    return respond(handle(payload))


def query_bool(value: str | None, name: str, default: bool = False) -> bool:
    """A ``true``/``false`` (or ``yes``/``no``, ``1``/``0``) query parameter, ``default`` when
    absent or empty; BodyError naming the parameter otherwise."""
    if value is None or value == "":
        return default
    flag = parse_bool(value, yes_no=True)
    if flag is None:
        raise BodyError(f"{name} must be true or false, got {value!r}")
    return flag
