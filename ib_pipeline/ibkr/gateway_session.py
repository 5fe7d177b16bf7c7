"""Session upkeep: is the gateway logged in, is it primed, is it kept alive.

The Client Portal Gateway needs care before and during work, and this module is where the
client gives it:

- **Authentication.** Before work, ``/iserver/auth/status`` must say ``authenticated``. If only
  the brokerage layer is down (``connected`` but not authenticated), one
  ``/iserver/auth/ssodh/init`` restores it; otherwise the user must log in through the browser
  and `NotAuthenticatedError` says so. A 401 mid-run triggers the same check once.
- **Priming.** ``/iserver/accounts`` must be called once per brokerage session before snapshots
  and orders, ``/portfolio/accounts`` before ``/portfolio/{accountId}/...``. Priming happens
  lazily, once, before the first endpoint that needs it, and again after the gateway says it
  forgot ("Please query /accounts first") or after the brokerage session was re-established.
- **Keep-alive.** Sessions time out after ~5 minutes without requests; while a client is open a
  background task calls ``/tickle`` every ``keepalive_interval_s`` seconds.

What this module must never do: send requests outside the client's paced pipeline (it is given
a ``send`` function, never the client), or log anything that identifies the user's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.endpoints import Endpoint, Priming
from ib_pipeline.ibkr.errors import (
    AccountsNotPrimedError,
    ConfigurationError,
    NotAuthenticatedError,
)
from ib_pipeline.ibkr.response import RawResponse

log = logging.getLogger(__name__)

Send = Callable[[Endpoint, Mapping[str, Any] | None], Awaitable[RawResponse]]
"""Send one request through the client's pipeline (pacing, retries, hook) without priming or
session recovery: ``send(endpoint, json_body)``."""

_NEEDS_PRIMING = re.compile(r"query\s+/?(?:iserver/|portfolio/)?accounts\s+first", re.IGNORECASE)


def priming_asked_for(text: str) -> frozenset[Priming] | None:
    """Which priming an error text asks for ("Please query /accounts first"), or None."""
    match = _NEEDS_PRIMING.search(text)
    if match is None:
        return None
    if "portfolio" in match.group(0).lower():
        return frozenset({Priming.PORTFOLIO_ACCOUNTS})
    return frozenset({Priming.ISERVER_ACCOUNTS})


def choose_account(listing: Mapping[str, Any], wanted: str | None) -> str:
    """The account to use from an ``/iserver/accounts`` answer: ``wanted`` (checked against
    the listed accounts), else the first one listed."""
    ids = listing.get("accounts")
    if not isinstance(ids, list) or not ids or not all(isinstance(a, str) for a in ids):
        raise ConfigurationError(f"/iserver/accounts lists no accounts: {ids!r:.100}")
    if wanted is None:
        return str(ids[0])
    if wanted not in ids:
        raise ConfigurationError(
            f"account {wanted!r} is not one of the gateway's accounts: {', '.join(ids)}"
        )
    return wanted


def login_url(base_url: str) -> str:
    """Where a user logs in: the gateway's origin (``https://localhost:5000``)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


class SessionKeeper:
    """Authentication checks, priming and keep-alive for one client."""

    def __init__(
        self,
        send: Send,
        *,
        base_url: str,
        bearer_source: str | None,
        keepalive_interval_s: float | None,
    ) -> None:
        self._send = send
        self._base_url = base_url
        self._bearer_source = bearer_source
        self._keepalive_interval_s = keepalive_interval_s
        self._primed: set[Priming] = set()
        self._prime_lock = asyncio.Lock()
        self._recover_lock = asyncio.Lock()
        self._keepalive: asyncio.Task[None] | None = None
        self.accounts_payload: Any = None
        """The last ``/iserver/accounts`` answer (account list, ``isPaper``, ...)."""
        self.recoveries = 0

    # -- authentication ---------------------------------------------------------------------

    def not_authenticated(self, detail: str, status: int | None = None) -> NotAuthenticatedError:
        """The error telling the user what to do, without any credential in it."""
        if self._bearer_source is not None:
            how = f"check the bearer token ({self._bearer_source}): it was refused or has expired"
        else:
            how = f"log in at {login_url(self._base_url)} in a browser (or with IBeam), then retry"
        return NotAuthenticatedError(
            f"the gateway at {self._base_url} is not authenticated ({detail}): {how}",
            endpoint=ep.AUTH_STATUS.name,
            status=status,
        )

    async def auth_status(self) -> Mapping[str, Any]:
        try:
            response = await self._send(ep.AUTH_STATUS, None)
        except NotAuthenticatedError as error:
            raise self.not_authenticated("auth status answered 401", error.status) from None
        if not isinstance(response.payload, Mapping):
            raise self.not_authenticated(f"unexpected auth status {response.payload!r:.100}")
        return response.payload

    async def ensure_authenticated(self) -> None:
        """Succeed if the session is authenticated, re-establishing the brokerage session once
        if only that layer is down; raise `NotAuthenticatedError` otherwise."""
        status = await self.auth_status()
        if status.get("authenticated") is True:
            return
        if status.get("connected") is True:
            log.info("brokerage session is down; re-establishing it with /iserver/auth/ssodh/init")
            try:
                await self._send(ep.REAUTHENTICATE, {"publish": True, "compete": True})
            except NotAuthenticatedError:
                raise self.not_authenticated("re-authentication answered 401") from None
            status = await self.auth_status()
            if status.get("authenticated") is True:
                self.forget({Priming.ISERVER_ACCOUNTS})
                return
        detail = ", ".join(f"{k}={status.get(k)!r}" for k in ("authenticated", "connected"))
        message = status.get("message")
        if message:
            detail += f", message={message!r:.100}"
        raise self.not_authenticated(detail)

    async def recover(self) -> None:
        """After a 401 mid-run: re-check the session once (concurrent callers share one check)."""
        async with self._recover_lock:
            self.recoveries += 1
            await self.ensure_authenticated()

    # -- priming ------------------------------------------------------------------------------

    def forget(self, which: set[Priming] | frozenset[Priming]) -> None:
        """The gateway no longer remembers these primings (new session, or it said so)."""
        self._primed.difference_update(which)

    async def prime(self, needs: frozenset[Priming]) -> None:
        """Make sure every priming in ``needs`` happened in this session."""
        if needs <= self._primed:
            return
        async with self._prime_lock:
            for priming in sorted(needs - self._primed, key=lambda p: p.value):
                endpoint = (
                    ep.ACCOUNTS if priming is Priming.ISERVER_ACCOUNTS else ep.PORTFOLIO_ACCOUNTS
                )
                response = await self._send(endpoint, None)
                if priming is Priming.ISERVER_ACCOUNTS:
                    self.accounts_payload = response.payload
                self._primed.add(priming)

    async def reprime(self, which: frozenset[Priming], endpoint: str, text: str) -> None:
        """The gateway asked for priming again: forget it and prime once more."""
        log.info("gateway asked for priming (%s) on %s; re-priming", text[:80], endpoint)
        self.forget(which)
        await self.prime(which)

    def still_unprimed(self, endpoint: str, text: str) -> AccountsNotPrimedError:
        return AccountsNotPrimedError(
            f"{endpoint}: the gateway still answers {text!r:.200} after re-priming the accounts",
            endpoint=endpoint,
        )

    async def accounts(self) -> Mapping[str, Any]:
        """The primed ``/iserver/accounts`` answer."""
        await self.prime(frozenset({Priming.ISERVER_ACCOUNTS}))
        if not isinstance(self.accounts_payload, Mapping):
            raise ConfigurationError(
                f"/iserver/accounts answered {self.accounts_payload!r:.100}, not an object"
            )
        return self.accounts_payload

    # -- keep-alive ---------------------------------------------------------------------------

    def start_keepalive(self) -> None:
        if self._keepalive is None and self._keepalive_interval_s:
            self._keepalive = asyncio.get_running_loop().create_task(
                self._keepalive_loop(self._keepalive_interval_s), name="ibkr-keepalive"
            )

    async def stop_keepalive(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keepalive_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                response = await self._send(ep.TICKLE, None)
            except Exception as error:  # reported, never fatal: the next real request recovers
                log.warning("keep-alive /tickle failed: %s", error)
                continue
            if not _tickle_authenticated(response.payload):
                log.warning(
                    "keep-alive /tickle reports the brokerage session is not authenticated; "
                    "the next request will try to re-establish it"
                )


def _tickle_authenticated(payload: Any) -> bool:
    if not isinstance(payload, Mapping):
        return False
    iserver = payload.get("iserver")
    status = iserver.get("authStatus") if isinstance(iserver, Mapping) else None
    return isinstance(status, Mapping) and status.get("authenticated") is True
