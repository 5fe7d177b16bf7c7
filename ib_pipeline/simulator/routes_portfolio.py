"""Portfolio endpoints: positions (paged by 100) and the account summary.

Payloads come from the `Broker`; this module validates the path parameters and answers the
gateway's 400 for an unknown account or a page id that is not a number.

What it must never do: value positions or build the payloads (the `Broker` does).
"""

from __future__ import annotations

from aiohttp import web

from ib_pipeline.simulator.answers import account_not_found, not_an_account
from ib_pipeline.simulator.params import parse_count
from ib_pipeline.simulator.routes_base import (
    Access,
    Priming,
    Route,
    bad_request,
    json_response,
    respond,
)
from ib_pipeline.simulator.state import SimState


async def positions(request: web.Request, state: SimState) -> web.Response:
    account_id = request.match_info["accountId"]
    page_text = request.match_info["pageId"]
    if state.broker.is_group_or_profile(account_id):
        return respond(not_an_account(account_id))
    if not state.broker.has_account(account_id):
        return respond(account_not_found(account_id))
    page = parse_count(page_text)
    if page is None:
        return bad_request(f"pageId must be a number starting at 0, got {page_text!r}")
    return json_response(state.positions_page(account_id, page))


async def summary(request: web.Request, state: SimState) -> web.Response:
    account_id = request.match_info["accountId"]
    if state.broker.is_group_or_profile(account_id):
        return respond(not_an_account(account_id))
    if not state.broker.has_account(account_id):
        return respond(account_not_found(account_id))
    return json_response(state.broker.summary_payload(account_id))


ROUTES = (
    Route(
        "GET",
        "/portfolio/{accountId}/positions/{pageId}",
        positions,
        Access.SSO,
        Priming.PORTFOLIO,
    ),
    Route("GET", "/portfolio/{accountId}/summary", summary, Access.SSO, Priming.PORTFOLIO),
)
