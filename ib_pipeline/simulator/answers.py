"""The gateway's answers as plain data: ``(status, body)`` pairs, error bodies, the JSON encoder.

The payload builders (`broker`, `broker_orders`, `history`, `search`) return answers without
touching HTTP, and the route handlers send them; both need the same error shapes, so they are
written once here. The gateway's errors all look alike: ``{"error": "..."}``, with a
``statusCode`` member on most 4xx (``{"error": "Bad Request: ...", "statusCode": 400}``), and
without it on some (``{"error": "No data."}``, order rejections, "Please query /accounts first").

What it must never do: import aiohttp or build HTTP responses (`routes_base` does), or decide
which answer a request gets.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

Answer = tuple[int, Any]
"""An HTTP status and a JSON-serialisable body."""


def error_body(message: str, status: int | None = None) -> dict[str, Any]:
    """``{"error": message}``, plus ``"statusCode": status`` when ``status`` is given."""
    body: dict[str, Any] = {"error": message}
    if status is not None:
        body["statusCode"] = status
    return body


def bad_request(detail: str) -> Answer:
    """The gateway's 400: ``{"error": "Bad Request: <detail>", "statusCode": 400}``."""
    return 400, error_body(f"Bad Request: {detail}", 400)


def account_not_found(account_id: str) -> Answer:
    """The 400 for an account id in a path that the broker does not have."""
    return bad_request(f"account {account_id} not found")


def not_an_account(account_id: str) -> Answer:
    """The 400 for a group or allocation profile of an advisor login in a portfolio path: they
    are listed by /iserver/accounts but have no positions or summary of their own (the body is
    a guess: see `real_world.GUESSES`)."""
    return bad_request(f"{account_id} is an account group or allocation profile, not an account")


class NonFiniteJson(dict[str, Any]):
    """A response body holding NaN or infinite floats (bad-data responses only). `encode_body`
    writes them as the literal tokens ``NaN``/``Infinity``, which strict JSON lacks."""


def encode_body(body: Any) -> bytes:
    """Serialise a response body: orjson for everything, except `NonFiniteJson` bodies, which go
    through the standard library so NaN/Infinity survive (orjson would write ``null``)."""
    if isinstance(body, NonFiniteJson):
        return json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    return orjson.dumps(body)
