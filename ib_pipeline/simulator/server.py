"""The simulator's HTTP server: the aiohttp application, its route table and its middleware.

Every request under ``/v1/api`` goes through one middleware, in this order:

1. numbered and given its fault draw (`FaultInjector`), so faults depend only on request order;
2. paced (`Pacer`): over a limit, or in the penalty box, it is answered 429 right away;
3. delayed by the configured latency (slept, so other requests proceed meanwhile);
4. hit by its injected fault, if any: session drop / accounts reset, then 5xx, 429, dropped
   connection, slow answer, or (after the handler) a truncated body;
5. checked: bearer token, session keep-alive and expiry, resting orders matched against the
   market's new prices, the route's `Access` and `Priming` needs;
6. handled by the route.

Whatever happens, an exception never reaches the client as a traceback: unexpected errors are
logged here and answered ``500 {"error": ...}``, and counted so tests can assert none happened.

Outside ``/v1/api``, ``/sim/*`` offers control and inspection for tests and tools (stats, login,
faults, clock). Those are never paced, faulted or authenticated.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import timedelta
from typing import Any

from aiohttp import web

from ib_pipeline.clock import FixedClock, parse_instant
from ib_pipeline.simulator import (
    routes_accounts,
    routes_marketdata,
    routes_orders,
    routes_portfolio,
    routes_session,
)
from ib_pipeline.simulator.answers import error_body
from ib_pipeline.simulator.auth import NOT_AUTHENTICATED
from ib_pipeline.simulator.config import FaultSpec
from ib_pipeline.simulator.faults import FaultDecision, FaultKind
from ib_pipeline.simulator.pacing import Limit, PacingVerdict
from ib_pipeline.simulator.routes_base import (
    API_PREFIX,
    STATE_KEY,
    Access,
    BodyError,
    Priming,
    Route,
    error_response,
    json_response,
    read_json,
)
from ib_pipeline.simulator.state import SimState

log = logging.getLogger(__name__)

ROUTES: tuple[Route, ...] = (
    *routes_session.ROUTES,
    *routes_accounts.ROUTES,
    *routes_marketdata.ROUTES,
    *routes_portfolio.ROUTES,
    *routes_orders.ROUTES,
)
"""Every /v1/api operation the simulator serves."""

TOO_MANY_REQUESTS: dict[str, Any] = error_body("Too many requests", 429)
ACCOUNTS_FIRST: dict[str, Any] = error_body("Please query /accounts first")
PORTFOLIO_ACCOUNTS_FIRST: dict[str, Any] = error_body("Please query /portfolio/accounts first")
UNMATCHED = "unmatched"
_DROPPED: web.RequestKey[bool] = web.RequestKey("sim_dropped", bool)


ROUTE_MAP_KEY: web.AppKey[dict[web.AbstractRoute, Route]] = web.AppKey("sim_routes", dict)


def _bind(route: Route) -> Any:
    """An aiohttp handler that passes the run's state to ``route``'s handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await route.handler(request, request.app[STATE_KEY])

    return handle


def build_app(state: SimState) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application(middlewares=[_gateway_middleware], client_max_size=1 << 20)
    app[STATE_KEY] = state
    route_map: dict[web.AbstractRoute, Route] = {}
    for route in ROUTES:
        registered = app.router.add_route(route.method, API_PREFIX + route.path, _bind(route))
        route_map[registered] = route
    app[ROUTE_MAP_KEY] = route_map
    app.router.add_get("/", _index)
    app.router.add_get("/sim/stats", _sim_stats)
    app.router.add_post("/sim/reset-stats", _sim_reset_stats)
    app.router.add_post("/sim/login", _sim_login)
    app.router.add_post("/sim/faults", _sim_faults)
    app.router.add_get("/sim/clock", _sim_clock)
    app.router.add_post("/sim/clock", _sim_set_clock)
    return app


async def start_site(
    state: SimState, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> tuple[web.AppRunner, int]:
    """Start serving ``state`` on ``host:port`` (0 = a free port); return the runner (call
    ``cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses
    if not bound:
        await runner.cleanup()
        raise RuntimeError(f"the simulator could not bind {host}:{port}")
    return runner, int(bound[0][1])


# -- the middleware --------------------------------------------------------------------------


@web.middleware
async def _gateway_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    route = request.app[ROUTE_MAP_KEY].get(request.match_info.route)
    if not request.path.startswith(API_PREFIX + "/"):
        return await _guarded(request, handler, state)
    endpoint = route.endpoint if route else UNMATCHED
    decision = state.faults.next()
    verdict = state.pacer.admit(route.limit if route else None)
    if not verdict.allowed:
        refused = _too_many(verdict)
        state.stats.record_response(endpoint, refused.status)
        return refused
    try:
        response = await _serve(
            request, handler, state=state, route=route, endpoint=endpoint, decision=decision
        )
    finally:
        if route is not None and route.limit is Limit.HISTORY:
            state.pacer.history_done()
    if request.get(_DROPPED):
        state.stats.record_dropped(endpoint)
    else:
        state.stats.record_response(endpoint, response.status)
    return response


async def _serve(
    request: web.Request,
    handler: Any,
    *,
    state: SimState,
    route: Route | None,
    endpoint: str,
    decision: FaultDecision,
) -> web.StreamResponse:
    if state.config.latency_ms > 0:
        await asyncio.sleep(state.config.latency_ms / 1000)
    if decision.drop_session:
        state.session.drop_brokerage()
        state.stats.record_fault(endpoint, "session_drop")
    if decision.reset_accounts:
        state.session.forget_iserver_priming()
        state.stats.record_fault(endpoint, "accounts_reset")
    kind = decision.kind
    if kind is not None and kind is not FaultKind.TRUNCATE:
        state.stats.record_fault(endpoint, kind.value)
    if kind is FaultKind.SERVER_ERROR:
        status, body = decision.server_error
        return json_response(body, status)
    if kind is FaultKind.TOO_MANY_REQUESTS:
        throttled = json_response(TOO_MANY_REQUESTS, 429)
        throttled.headers["Retry-After"] = "1"
        return throttled
    if kind is FaultKind.DROP:
        request[_DROPPED] = True
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
    if kind is FaultKind.SLOW:
        await asyncio.sleep(state.faults.spec.slow_s)
    response = await _guarded(request, handler, state, route)
    if kind is FaultKind.TRUNCATE:
        return _truncated(response, state, endpoint)
    return response


async def _guarded(
    request: web.Request, handler: Any, state: SimState, route: Route | None = None
) -> web.StreamResponse:
    """Run the checks and the handler; turn any exception into a JSON error answer."""
    try:
        if request.path.startswith(API_PREFIX + "/"):
            refusal = _check_session(request, state, route)
            if refusal is not None:
                return refusal
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        answer = error_response(exc.status, exc.reason)
        if "Allow" in exc.headers:
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        state.stats.record_internal_error()
        return error_response(500, "internal simulator error (see the simulator's log)")


def _check_session(
    request: web.Request, state: SimState, route: Route | None
) -> web.Response | None:
    session = state.session
    if not session.token_ok(request.headers.get("Authorization")):
        return json_response(NOT_AUTHENTICATED, 401)
    session.touch()
    state.broker.orders.match()
    if route is None:
        return None  # the router answers 404/405
    if route.access is Access.SSO and not session.sso_logged_in:
        return json_response(NOT_AUTHENTICATED, 401)
    if route.access is Access.BROKERAGE and not session.authenticated:
        return json_response(NOT_AUTHENTICATED, 401)
    if route.priming is Priming.ISERVER and not session.iserver_primed:
        return json_response(ACCOUNTS_FIRST, 500)
    if route.priming is Priming.PORTFOLIO and not session.portfolio_primed:
        return json_response(PORTFOLIO_ACCOUNTS_FIRST, 500)
    return None


def _too_many(verdict: PacingVerdict) -> web.Response:
    response = json_response(TOO_MANY_REQUESTS, 429)
    response.headers["Retry-After"] = verdict.retry_after_header
    return response


def _truncated(response: web.StreamResponse, state: SimState, endpoint: str) -> web.StreamResponse:
    """The same answer with its JSON body cut in half (valid HTTP, invalid JSON)."""
    if not isinstance(response, web.Response) or response.status != 200:
        return response
    body = response.body
    if not isinstance(body, bytes) or len(body) < 2:
        return response
    state.stats.record_fault(endpoint, FaultKind.TRUNCATE.value)
    return web.Response(body=body[: len(body) // 2], status=200, content_type="application/json")


# -- /sim control endpoints ------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    return json_response({"simulator": "ib-pipeline IBKR gateway simulator", "api": API_PREFIX})


async def _sim_stats(request: web.Request) -> web.Response:
    return json_response(sim_stats(request.app[STATE_KEY]))


def sim_stats(state: SimState) -> dict[str, Any]:
    """The body of ``/sim/stats``: counters, pacing and session state, faults, clock."""
    return {
        **state.stats.snapshot(),
        "pacing": state.pacer.state(),
        "session": state.session.state(),
        "faults": str(state.faults.spec),
        "requests_numbered": state.faults.requests_seen,
        "clock": state.clock.now().isoformat(),
    }


async def _sim_reset_stats(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset_stats()
    return json_response({"reset": True})


async def _sim_login(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.session.login()
    return json_response(state.session.auth_status())


async def _sim_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        payload = await read_json(request)
        if not isinstance(payload, dict) or not isinstance(payload.get("faults"), str):
            raise BodyError('the body must be {"faults": "<spec>"}')
        spec = FaultSpec.parse(payload["faults"])
    except ValueError as exc:
        return json_response(error_body(str(exc)), 400)
    state.set_faults(spec)
    return json_response({"faults": str(spec)})


async def _sim_clock(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"now": state.clock.now().isoformat(), "settable": _settable(state)})


async def _sim_set_clock(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    clock = state.clock
    if not isinstance(clock, FixedClock):
        return json_response(error_body("the clock is the wall clock; start with --now"), 409)
    try:
        payload = await read_json(request)
        if not isinstance(payload, dict) or not ({"now", "advance_s"} & payload.keys()):
            raise BodyError('the body must be {"now": "<ISO instant>"} or {"advance_s": <secs>}')
        if "now" in payload:
            clock.set(parse_instant(str(payload["now"])))
        else:
            clock.advance(timedelta(seconds=float(payload["advance_s"])))
    except (ValueError, TypeError, OverflowError) as exc:
        return json_response(error_body(str(exc)), 400)
    return json_response({"now": clock.now().isoformat(), "settable": True})


def _settable(state: SimState) -> bool:
    return isinstance(state.clock, FixedClock)
