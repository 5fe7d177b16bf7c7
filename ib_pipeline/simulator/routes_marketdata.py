"""Market data and contracts: snapshot (with its pre-flight), history, contract search.

The market core (`snapshot`, `history`, `search`) builds the payloads; this module parses the
HTTP request, applies the gateway's request limits (100 conids, 50 fields per snapshot) and the
per-session pre-flight, and answers the gateway's 400 for malformed requests.

What it must never do: compute or format market values (the core modules do), or check the
session and pacing (the middleware does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ib_pipeline.simulator import answers
from ib_pipeline.simulator.answers import Answer
from ib_pipeline.simulator.futures import futures_listing, secdef_info
from ib_pipeline.simulator.history import history_response
from ib_pipeline.simulator.instruments import by_conid
from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.params import parse_count
from ib_pipeline.simulator.routes_base import (
    Access,
    BodyError,
    Priming,
    Route,
    bad_request,
    json_response,
    query_bool,
    respond,
    respond_to_body,
)
from ib_pipeline.simulator.search import SEARCH_ERRORS, secdef_search
from ib_pipeline.simulator.snapshot import snapshot_fields, snapshot_preflight
from ib_pipeline.simulator.state import SimState

MAX_SNAPSHOT_CONIDS = 100
MAX_SNAPSHOT_FIELDS = 50
DEFAULT_SNAPSHOT_FIELDS = ("31", "55", "84", "86")
"""Fields answered when a snapshot request names none."""


async def snapshot(request: web.Request, state: SimState) -> web.Response:
    raw_conids = request.query.get("conids", "").strip()
    if not raw_conids:
        return bad_request("conids is required (comma-separated contract ids)")
    conids: list[int] = []
    for part in raw_conids.split(","):
        conid = parse_count(part.strip())
        if conid is None:
            return bad_request(f"conid {part.strip()!r} is not a number")
        conids.append(conid)
    if len(conids) > MAX_SNAPSHOT_CONIDS:
        return bad_request(f"at most {MAX_SNAPSHOT_CONIDS} conids per request, got {len(conids)}")
    fields = [f.strip() for f in request.query.get("fields", "").split(",") if f.strip()]
    if len(fields) > MAX_SNAPSHOT_FIELDS:
        return bad_request(f"at most {MAX_SNAPSHOT_FIELDS} fields per request, got {len(fields)}")
    for conid in conids:
        try:
            by_conid(conid)
        except KeyError:
            return bad_request(f"conid {conid} is invalid")
    conids = list(dict.fromkeys(conids))
    fresh = state.session.preflight(conids)
    wanted = fields or list(DEFAULT_SNAPSHOT_FIELDS)
    body = [
        snapshot_preflight(c)
        if c in fresh
        else {**snapshot_fields(state.market, c, wanted), **state.quote_override(c)}
        for c in conids
    ]
    return json_response(body)


async def history(request: web.Request, state: SimState) -> web.Response:
    return respond(history_response(state.market, request.query, state.history_bad_data()))


async def search_get(request: web.Request, state: SimState) -> web.Response:
    return respond(_search(request.query, state))


async def search_post(request: web.Request, state: SimState) -> web.Response:
    """The same search with a JSON body (its parameters in the query string if it has none)."""
    return await respond_to_body(
        request, lambda body: _search(dict(request.query) if body is None else body, state)
    )


def _search(params: Any, state: SimState) -> Answer:
    if not isinstance(params, Mapping):
        return answers.bad_request('the body must be a JSON object such as {"symbol": "AAPL"}')
    symbol = params.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        return SEARCH_ERRORS["missing_symbol"]
    sec_type = params.get("secType")
    if sec_type is not None and not isinstance(sec_type, str):
        return answers.bad_request("secType must be a string such as STK")
    name = params.get("name", False)
    if not isinstance(name, bool):
        try:
            name = query_bool(str(name), "name")
        except BodyError as exc:
            return answers.bad_request(str(exc))
    today = state.clock.now().date()
    return 200, secdef_search(symbol.strip(), sec_type or None, name, today=today)


async def trsrv_futures(request: web.Request, state: SimState) -> web.Response:
    return respond(futures_listing(request.query.get("symbols"), state.clock.now().date()))


async def secdef_info_get(request: web.Request, state: SimState) -> web.Response:
    return respond(secdef_info(request.query))


async def unsubscribe_all(request: web.Request, state: SimState) -> web.Response:
    return json_response({"unsubscribed": True})


ROUTES = (
    Route(
        "GET",
        "/iserver/marketdata/snapshot",
        snapshot,
        Access.BROKERAGE,
        Priming.ISERVER,
        Limit.SNAPSHOT,
    ),
    Route("GET", "/iserver/marketdata/history", history, Access.BROKERAGE, limit=Limit.HISTORY),
    Route("GET", "/iserver/secdef/search", search_get, Access.BROKERAGE),
    Route("POST", "/iserver/secdef/search", search_post, Access.BROKERAGE),
    Route("GET", "/iserver/marketdata/unsubscribeall", unsubscribe_all, Access.BROKERAGE),
    Route("GET", "/trsrv/futures", trsrv_futures, Access.SSO),
    Route("GET", "/iserver/secdef/info", secdef_info_get, Access.BROKERAGE),
)
