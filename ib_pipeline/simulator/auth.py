"""The gateway's session and authentication state.

The real Client Portal Gateway has two layers of "logged in", and clients must cope with each
failing on its own:

- The **SSO (web) session**: established by a user logging in through a browser. Without it every
  endpoint but ``/iserver/auth/status`` and ``/logout`` answers 401. The simulator starts with it
  (unless configured unauthenticated); ``/logout`` ends it; only `Simulator.login` (or
  ``POST /sim/login``), standing in for the browser login, restores it.
- The **brokerage (iserver) session**: what ``/iserver/*`` needs. It ends when the session sits
  idle longer than the timeout (measured on the simulator's clock, so tests move a FixedClock
  instead of sleeping) or when the ``session_drop_at`` fault fires. A client restores it with
  ``POST /iserver/auth/ssodh/init`` or ``POST /iserver/reauthenticate`` (what ibind and IBeam do),
  provided the SSO session is still alive.

A fresh brokerage session has forgotten everything: ``/iserver/accounts`` must be queried again
before snapshots and orders, every conid gets a new snapshot pre-flight, and the first live-orders
call answers an empty, non-snapshot list. ``/portfolio/accounts`` priming belongs to the SSO layer.

With a bearer token configured (the OAuth flavour of the Web API) every /v1/api request must also
carry ``Authorization: Bearer <token>``. The token is compared in constant time and never
logged, echoed or stored anywhere but here.
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime, timedelta
from typing import Any

from ib_pipeline.clock import Clock
from ib_pipeline.simulator.answers import error_body

NOT_AUTHENTICATED: dict[str, Any] = error_body("not authenticated", 401)
"""The body of every 401 the gateway sends."""

SERVER_INFO: dict[str, str] = {
    "serverName": "JifSim01",
    "serverVersion": "Build 10.25.0p, Dec 5, 2023 5:48:12 PM",
}
MAC_ADDRESS = "02:00:5E:10:00:01"


class GatewaySession:
    """One user's gateway session; thread-safe (the server loop and test threads both use it)."""

    def __init__(
        self,
        clock: Clock,
        *,
        logged_in: bool = True,
        timeout_s: float | None = 300.0,
        token: str | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
        self._token = token
        self._sso = False
        self._brokerage = False
        self._iserver_primed = False
        self._portfolio_primed = False
        self._preflighted: set[int] = set()
        self._live_orders_served = False
        self._last_activity: datetime = clock.now()
        self._expirations = 0
        self._drops = 0
        if logged_in:
            self.login()

    def __repr__(self) -> str:
        return (
            f"GatewaySession(sso={self._sso}, brokerage={self._brokerage}, "
            f"token={'required' if self._token else 'none'})"
        )

    # -- authentication ------------------------------------------------------------------------

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def token_ok(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the configured bearer token (always True
        when no token is configured)."""
        if self._token is None:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token.encode())

    def touch(self) -> None:
        """Register activity now; first ends the brokerage session if it sat idle too long."""
        with self._lock:
            now = self._clock.now()
            if (
                self._brokerage
                and self._timeout is not None
                and now - self._last_activity > self._timeout
            ):
                self._end_brokerage()
                self._expirations += 1
            self._last_activity = max(self._last_activity, now)

    def login(self) -> None:
        """The user logs in through the browser: SSO and a fresh brokerage session."""
        with self._lock:
            self._sso = True
            self._portfolio_primed = False
            self._start_brokerage()
            self._last_activity = self._clock.now()

    def logout(self) -> None:
        """``/logout``: everything ends; only a new browser login brings it back."""
        with self._lock:
            self._sso = False
            self._portfolio_primed = False
            self._end_brokerage()

    def reauthenticate(self) -> bool:
        """``/iserver/auth/ssodh/init`` or ``/iserver/reauthenticate``: a fresh brokerage session
        if the SSO session is alive. Returns whether the session is now authenticated."""
        with self._lock:
            if not self._sso:
                return False
            if not self._brokerage:
                self._start_brokerage()
            self._last_activity = self._clock.now()
            return True

    def drop_brokerage(self) -> None:
        """The ``session_drop_at`` fault: the brokerage session is gone, SSO stays."""
        with self._lock:
            if self._brokerage:
                self._drops += 1
            self._end_brokerage()

    def _start_brokerage(self) -> None:
        self._brokerage = True
        self._iserver_primed = False
        self._preflighted.clear()
        self._live_orders_served = False

    def _end_brokerage(self) -> None:
        self._brokerage = False
        self._iserver_primed = False
        self._preflighted.clear()
        self._live_orders_served = False

    @property
    def sso_logged_in(self) -> bool:
        with self._lock:
            return self._sso

    @property
    def authenticated(self) -> bool:
        """Whether ``/iserver/*`` endpoints are usable."""
        with self._lock:
            return self._sso and self._brokerage

    def auth_status(self) -> dict[str, Any]:
        """The body of ``/iserver/auth/status`` (and of ``authStatus`` inside ``/tickle``)."""
        with self._lock:
            authenticated = self._sso and self._brokerage
            return {
                "authenticated": authenticated,
                "competing": False,
                "connected": self._sso,
                "message": "" if authenticated else ("" if not self._sso else "session expired"),
                "MAC": MAC_ADDRESS,
                "serverInfo": dict(SERVER_INFO),
                "fail": "",
                "hardware_info": f"3c9a2b1f|{MAC_ADDRESS}",
            }

    # -- priming and per-session memory -------------------------------------------------------

    def prime_iserver(self) -> None:
        """``/iserver/accounts`` was queried in this brokerage session."""
        with self._lock:
            self._iserver_primed = True

    @property
    def iserver_primed(self) -> bool:
        with self._lock:
            return self._iserver_primed

    def forget_iserver_priming(self) -> None:
        """The ``accounts_reset_at`` fault: the gateway wants ``/iserver/accounts`` again."""
        with self._lock:
            self._iserver_primed = False

    def prime_portfolio(self) -> None:
        with self._lock:
            self._portfolio_primed = True

    @property
    def portfolio_primed(self) -> bool:
        with self._lock:
            return self._portfolio_primed

    def preflight(self, conids: list[int]) -> set[int]:
        """Mark ``conids`` as requested; return those that had NOT been requested before in this
        brokerage session (they get the pre-flight answer)."""
        with self._lock:
            fresh = {c for c in conids if c not in self._preflighted}
            self._preflighted.update(conids)
            return fresh

    def first_live_orders_call(self) -> bool:
        """True exactly once per brokerage session: the gateway's first live-orders answer is an
        empty list with ``snapshot: false`` while it starts streaming orders."""
        with self._lock:
            first = not self._live_orders_served
            self._live_orders_served = True
            return first

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sso_logged_in": self._sso,
                "authenticated": self._sso and self._brokerage,
                "iserver_primed": self._iserver_primed,
                "portfolio_primed": self._portfolio_primed,
                "token_required": self._token is not None,
                "expirations": self._expirations,
                "drops": self._drops,
                "last_activity": self._last_activity.isoformat(),
            }
