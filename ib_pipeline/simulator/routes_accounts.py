"""Account lists: ``/iserver/accounts`` and ``/portfolio/accounts``.

Besides answering, each call primes its half of the session (the gateway requires them before
snapshots/orders and before the portfolio endpoints respectively).

What it must never do: build the account payloads (the `Broker` does) or check the session
(the middleware does).
"""

from __future__ import annotations

from aiohttp import web

from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.routes_base import Access, Route, json_response
from ib_pipeline.simulator.state import SimState


async def iserver_accounts(request: web.Request, state: SimState) -> web.Response:
    body = state.broker.iserver_accounts_payload(state.session_id)
    state.session.prime_iserver()
    return json_response(body)


async def portfolio_accounts(request: web.Request, state: SimState) -> web.Response:
    body = state.broker.portfolio_accounts_payload()
    state.session.prime_portfolio()
    return json_response(body)


ROUTES = (
    Route("GET", "/iserver/accounts", iserver_accounts, Access.BROKERAGE),
    Route(
        "GET",
        "/portfolio/accounts",
        portfolio_accounts,
        Access.SSO,
        limit=Limit.PORTFOLIO_ACCOUNTS,
    ),
)
