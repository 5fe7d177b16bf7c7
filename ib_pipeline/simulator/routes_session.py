"""Session endpoints: auth status, keep-alive, logout, SSO validation, re-authentication.

Shapes follow the gateway (spec/examples/auth_status_3.json, sso_validate_1.json and IBKR's
documentation of ``/tickle``). Whether a request may reach these handlers at all is decided by
the middleware from each route's `Access`.

What it must never do: hold session state itself (`GatewaySession` does) or decide access.
"""

from __future__ import annotations

from aiohttp import web

from ib_pipeline.simulator.auth import NOT_AUTHENTICATED
from ib_pipeline.simulator.epoch import to_ms
from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.routes_base import Access, Route, json_response
from ib_pipeline.simulator.state import SimState

SSO_LIFETIME_MS = 24 * 3600 * 1000
USER_ID = 123456789
USER_NAME = "simuser1"


async def auth_status(request: web.Request, state: SimState) -> web.Response:
    return json_response(state.session.auth_status())


def _sso_expires_ms(now_ms: int) -> int:
    """Milliseconds left of the SSO session, which the simulator renews at every UTC midnight."""
    return SSO_LIFETIME_MS - now_ms % SSO_LIFETIME_MS


async def tickle(request: web.Request, state: SimState) -> web.Response:
    now_ms = to_ms(state.clock.now())
    return json_response(
        {
            "session": state.session_id.replace(".", ""),
            "ssoExpires": _sso_expires_ms(now_ms),
            "collission": False,
            "userId": USER_ID,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": state.session.auth_status()},
        }
    )


async def logout(request: web.Request, state: SimState) -> web.Response:
    state.session.logout()
    return json_response({"status": True})


async def sso_validate(request: web.Request, state: SimState) -> web.Response:
    now_ms = to_ms(state.clock.now())
    return json_response(
        {
            "USER_ID": USER_ID,
            "USER_NAME": USER_NAME,
            "RESULT": True,
            "AUTH_TIME": now_ms - 60_000,
            "SF_ENABLED": False,
            "IS_FREE_TRIAL": False,
            "CREDENTIAL": USER_NAME,
            "IP": "127.0.0.1",
            "EXPIRES": _sso_expires_ms(now_ms),
            "QUALIFIED_FOR_MOBILE_AUTH": None,
            "LANDING_APP": "UNIVERSAL",
            "IS_MASTER": False,
            "lastAccessed": now_ms,
            "LOGIN_TYPE": 2,
            "PAPER_USER_NAME": USER_NAME,
            "features": {
                "env": "PROD",
                "wlms": True,
                "realtime": True,
                "bond": True,
                "optionChains": True,
                "calendar": True,
                "newMf": True,
            },
            "region": "NJ",
        }
    )


async def ssodh_init(request: web.Request, state: SimState) -> web.Response:
    """Start (or restart) the brokerage session, as ibind's ``initialize_brokerage_session``."""
    if not state.session.reauthenticate():
        return json_response(NOT_AUTHENTICATED, 401)
    return json_response(state.session.auth_status())


async def reauthenticate(request: web.Request, state: SimState) -> web.Response:
    if not state.session.reauthenticate():
        return json_response(NOT_AUTHENTICATED, 401)
    return json_response({"message": "triggered"})


ROUTES = (
    Route("POST", "/iserver/auth/status", auth_status, Access.PUBLIC),
    Route("GET", "/iserver/auth/status", auth_status, Access.PUBLIC),
    Route("POST", "/tickle", tickle, Access.SSO, limit=Limit.TICKLE),
    Route("GET", "/tickle", tickle, Access.SSO, limit=Limit.TICKLE),
    Route("POST", "/logout", logout, Access.PUBLIC),
    Route("GET", "/logout", logout, Access.PUBLIC),
    Route("GET", "/sso/validate", sso_validate, Access.SSO, limit=Limit.SSO_VALIDATE),
    Route("POST", "/iserver/auth/ssodh/init", ssodh_init, Access.SSO),
    Route("POST", "/iserver/reauthenticate", reauthenticate, Access.SSO),
    Route("GET", "/iserver/reauthenticate", reauthenticate, Access.SSO),
)
