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
- **Accounts.** An advisor (FA) or multi-account login lists more than accounts in
  ``/iserver/accounts``: the group ``All``, user groups (``GROUP1``) and allocation profiles
  (``UPRO_BUY_785_...``), described by its ``groups`` and ``profiles`` fields.
  `choose_account` and `AccountListing` tell them apart: the default account is the gateway's
  ``selectedAccount`` (else the first real account), never a group or a profile, and
  ``/portfolio/accounts`` is the list of real accounts.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
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


ALL_GROUP = "All"
"""The built-in group of an advisor login: every sub-account, not an account itself."""


@dataclass(frozen=True)
class AccountListing:
    """An ``/iserver/accounts`` answer sorted by kind.

    ``listed``: every entry, in the gateway's order; ``real``: the real accounts (those
    ``/portfolio/accounts`` lists when its answer is known, else every entry that is neither a
    group nor a profile); ``groups`` (``All`` and user groups) and ``profiles`` (allocation
    profiles/models) as the answer's ``groups`` and ``profiles`` fields name them;
    ``selected``: the gateway's ``selectedAccount``.
    """

    listed: tuple[str, ...]
    real: tuple[str, ...]
    groups: frozenset[str] = frozenset()
    profiles: frozenset[str] = frozenset()
    selected: str | None = None

    @classmethod
    def from_payloads(cls, iserver: Mapping[str, Any], portfolio: Any = None) -> AccountListing:
        """From an ``/iserver/accounts`` answer and, when known, a ``/portfolio/accounts``
        answer (a list of ``{"id"/"accountId": ...}``)."""
        ids = iserver.get("accounts")
        if not isinstance(ids, list) or not ids or not all(isinstance(a, str) for a in ids):
            raise ConfigurationError(f"/iserver/accounts lists no accounts: {ids!r:.100}")
        groups = set(_names(iserver.get("groups")))
        if ALL_GROUP in ids:
            groups.add(ALL_GROUP)
        profiles = set(_names(iserver.get("profiles")))
        real = [a for a in ids if a not in groups and a not in profiles]
        portfolio_ids = _portfolio_ids(portfolio)
        if portfolio_ids:
            real = [a for a in real if a in portfolio_ids]
            real += [a for a in portfolio_ids if a not in real]
        selected = iserver.get("selectedAccount")
        return cls(
            listed=tuple(ids),
            real=tuple(real),
            groups=frozenset(groups),
            profiles=frozenset(profiles),
            selected=selected if isinstance(selected, str) and selected else None,
        )

    def kind(self, entry: str) -> str | None:
        """What a listed entry that is not an account is ("an account group", "an allocation
        profile"), or None for an account (or an entry the gateway does not list)."""
        if entry in self.groups:
            return "an account group"
        if entry in self.profiles:
            return "an allocation profile"
        if entry in self.listed and entry not in self.real:
            return "not a real account (/portfolio/accounts does not list it)"
        return None

    def not_accounts(self) -> dict[str, str]:
        """Every listed entry that is not a real account, with what it is."""
        return {e: kind for e in self.listed if (kind := self.kind(e)) is not None}

    def default(self) -> str:
        """The account in use: ``selectedAccount`` when it is a real account, else the first
        real account; never ``All``."""
        if self.selected is not None and self.selected in self.real:
            return self.selected
        if not self.real:
            raise ConfigurationError(
                f"/iserver/accounts lists no real account, only groups and profiles: "
                f"{', '.join(self.listed)}"
            )
        return self.real[0]

    def check(self, wanted: str) -> str:
        """``wanted`` if it is one of the real accounts; ConfigurationError naming it and
        saying what it is otherwise."""
        kind = self.kind(wanted)
        if kind is not None:
            raise ConfigurationError(
                f"account {wanted!r} is {kind} of this advisor login, not an account: it has no "
                f"positions or summary of its own; name real accounts instead: "
                f"{', '.join(self.real)}"
            )
        if wanted not in self.real:
            raise ConfigurationError(
                f"account {wanted!r} is not one of the gateway's accounts: {', '.join(self.real)}"
            )
        return wanted


def _names(value: Any) -> Sequence[str]:
    """Entry ids of a ``groups``/``profiles`` field: a list of ids, or of objects with a name."""
    if isinstance(value, Mapping):
        value = list(value)
    if not isinstance(value, list):
        return []
    names: list[str] = []
    for item in value:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping):
            name = item.get("name", item.get("id"))
            if isinstance(name, str):
                names.append(name)
    return names


def _portfolio_ids(payload: Any) -> list[str]:
    if not isinstance(payload, list):
        return []
    ids: list[str] = []
    for entry in payload:
        if isinstance(entry, Mapping):
            value = entry.get("accountId", entry.get("id"))
            if isinstance(value, str) and value and value not in ids:
                ids.append(value)
    return ids


def choose_account(listing: Mapping[str, Any], wanted: str | None) -> str:
    """The account to use from an ``/iserver/accounts`` answer: ``wanted`` (checked against
    the listed accounts, refused if it is a group or profile), else the gateway's
    ``selectedAccount``, else the first real account (`AccountListing`)."""
    accounts = AccountListing.from_payloads(listing)
    return accounts.default() if wanted is None else accounts.check(wanted)


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
        self.portfolio_accounts_payload: Any = None
        """The last ``/portfolio/accounts`` answer (the real accounts)."""
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
            if error.status == 401:
                raise self.not_authenticated("auth status answered 401", error.status) from None
            raise  # the login page or a redirect to it: its message says where to log in
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
                else:
                    self.portfolio_accounts_payload = response.payload
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

    async def account_listing(self, accounts_payload: Any = None) -> AccountListing:
        """The ``/iserver/accounts`` answer (``accounts_payload``, else the primed one) and the
        primed ``/portfolio/accounts`` answer, sorted."""
        if isinstance(accounts_payload, Mapping):
            self.accounts_payload = accounts_payload
            self._primed.add(Priming.ISERVER_ACCOUNTS)
        listing = await self.accounts()
        await self.prime(frozenset({Priming.PORTFOLIO_ACCOUNTS}))
        return AccountListing.from_payloads(listing, self.portfolio_accounts_payload)

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
