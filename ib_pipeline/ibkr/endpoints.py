"""The table of gateway endpoints the client calls, and what each one needs.

One row per endpoint: HTTP method, path template, which pacing group limits it, whether it is
safe to retry after an answer may have been produced (idempotent), which session priming the
gateway requires before it, and whether its payloads are handed to the raw-landing hook.
Keeping these facts in one table is what lets the request pipeline in `client` treat every
endpoint alike. Nothing here sends a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PacingGroup(Enum):
    """Per-endpoint limits on top of the global request rate (see `pacing.Pacer`)."""

    NONE = "none"
    HISTORY = "history"  # a concurrency cap
    SNAPSHOT = "snapshot"
    LIVE_ORDERS = "live_orders"
    PORTFOLIO_ACCOUNTS = "portfolio_accounts"
    TICKLE = "tickle"
    SSO_VALIDATE = "sso_validate"


class Priming(Enum):
    """Calls the gateway wants once per session before some endpoints."""

    ISERVER_ACCOUNTS = "iserver_accounts"  # GET /iserver/accounts
    PORTFOLIO_ACCOUNTS = "portfolio_accounts"  # GET /portfolio/accounts


@dataclass(frozen=True)
class Endpoint:
    """One gateway endpoint.

    ``name`` is the stable identifier passed to the ``on_response`` hook and used in errors.
    ``idempotent`` False means a request that may have reached the gateway is never resent
    (only connection failures before sending and 429s are retried).
    """

    name: str
    method: str
    path: str
    group: PacingGroup = PacingGroup.NONE
    idempotent: bool = True
    needs: frozenset[Priming] = frozenset()
    landed: bool = True

    def url_path(self, **path_params: str) -> str:
        """The path with its ``{placeholders}`` filled in."""
        return self.path.format(**path_params)


_ISERVER = frozenset({Priming.ISERVER_ACCOUNTS})
_PORTFOLIO = frozenset({Priming.PORTFOLIO_ACCOUNTS})

AUTH_STATUS = Endpoint("auth_status", "POST", "/iserver/auth/status", landed=False)
REAUTHENTICATE = Endpoint("ssodh_init", "POST", "/iserver/auth/ssodh/init", landed=False)
TICKLE = Endpoint("tickle", "POST", "/tickle", PacingGroup.TICKLE, landed=False)
LOGOUT = Endpoint("logout", "POST", "/logout", idempotent=False, landed=False)
SSO_VALIDATE = Endpoint("sso_validate", "GET", "/sso/validate", PacingGroup.SSO_VALIDATE)
ACCOUNTS = Endpoint("accounts", "GET", "/iserver/accounts")
PORTFOLIO_ACCOUNTS = Endpoint(
    "portfolio_accounts", "GET", "/portfolio/accounts", PacingGroup.PORTFOLIO_ACCOUNTS
)
PLACE_ORDER = Endpoint(
    "place_order", "POST", "/iserver/account/{accountId}/orders", idempotent=False, needs=_ISERVER
)
REPLY = Endpoint("reply", "POST", "/iserver/reply/{replyId}", idempotent=False, needs=_ISERVER)
LIVE_ORDERS = Endpoint(
    "live_orders", "GET", "/iserver/account/orders", PacingGroup.LIVE_ORDERS, needs=_ISERVER
)
POSITIONS = Endpoint(
    "positions", "GET", "/portfolio/{accountId}/positions/{pageId}", needs=_PORTFOLIO
)
ACCOUNT_SUMMARY = Endpoint(
    "account_summary", "GET", "/portfolio/{accountId}/summary", needs=_PORTFOLIO
)
SNAPSHOT = Endpoint(
    "snapshot", "GET", "/iserver/marketdata/snapshot", PacingGroup.SNAPSHOT, needs=_ISERVER
)
HISTORY = Endpoint("history", "GET", "/iserver/marketdata/history", PacingGroup.HISTORY)
CONTRACT_SEARCH = Endpoint("contract_search", "GET", "/iserver/secdef/search")
"""GET with query parameters, as current IBKR documentation and clients use it (the brief's
spec shows POST with a JSON body; the gateway accepts both)."""
FUTURES = Endpoint("futures", "GET", "/trsrv/futures", landed=False)
"""``?symbols=ES,NQ``: every non-expired contract month of each futures root, by root."""
SECDEF_INFO = Endpoint("secdef_info", "GET", "/iserver/secdef/info", landed=False)
"""``?conid&sectype[&month&exchange]``: contract details; on a futures root with ``month``
(``MAR25``) the contract month's own conid, last trade date and multiplier."""
