"""The async IBKR Web API client: one method per endpoint, every request through `IbkrClient.call`.

``async with IbkrClient(settings) as client:`` checks the session is authenticated and keeps it
alive until closed (README, "The client"). `call` is the one request pipeline: priming, the
shared `Pacer`, retries (`retry`), classification of the answer into a payload or a typed error
(`errors`), and the ``on_response`` hook. The helper modules (`history`, `snapshots`,
`portfolio`, `orders`) are given `call`, never the client. Methods return the decoded JSON as
sent; helpers return `RawResponse` objects. Turning payloads into tables is `normalize`'s job.

Answers are read as a stream and refused past ``settings.max_response_bytes``
(`ResponseTooLargeError`); the gateway's HTML login page, or a redirect to ``/sso/Login``, is
"not logged in" (`NotAuthenticatedError`, saying where to log in), never "invalid JSON". While
open, a client holds its gateway's cross-process lease (`lease`), so that two processes never
spend one session's budget twice.

What this module must never do: put the access token anywhere but the Authorization header
(not in URLs, logs, reprs, errors or hook arguments), resend an order the gateway may have
acted on, or let a caller bypass the pacer.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import os
import re
import ssl
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from ib_pipeline.calendars import US_EQUITY, TradingHours
from ib_pipeline.clock import Clock, SystemClock
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr import history as _history
from ib_pipeline.ibkr import orders as _orders
from ib_pipeline.ibkr import portfolio as _portfolio
from ib_pipeline.ibkr import snapshots as _snapshots
from ib_pipeline.ibkr.endpoints import Endpoint, Priming
from ib_pipeline.ibkr.errors import (
    ConfigurationError,
    DataNotAvailableError,
    GatewayError,
    IbkrError,
    InvalidPayloadError,
    NoDataError,
    NotAuthenticatedError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TlsVerificationError,
    TransportError,
    excerpt,
    redact,
)
from ib_pipeline.ibkr.gateway_session import (
    AccountListing,
    SessionKeeper,
    choose_account,
    login_url,
    priming_asked_for,
)
from ib_pipeline.ibkr.history import HistoryRange, HistoryRequest
from ib_pipeline.ibkr.lease import GatewayLease
from ib_pipeline.ibkr.orders import PlacedOrder
from ib_pipeline.ibkr.pacing import Pacer, shared_pacer
from ib_pipeline.ibkr.response import ErrorBodyFilter, RawResponse, ResponseHook
from ib_pipeline.ibkr.retry import Transient, call_with_retries, mark
from ib_pipeline.ibkr.settings import MIB, ClientSettings, Secret

log = logging.getLogger(__name__)

USER_AGENT = "ib-pipeline/0.1 (+httpx)"

ABANDONED_HOLD_FACTOR = 2.0
"""A request abandoned on a read timeout keeps its concurrency slot this many read timeouts
longer (`pacing.Lease`): the gateway is assumed to finish it within three timeouts in all."""


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LOGIN_PATH = re.compile(r"/sso/login|/login", re.IGNORECASE)


class _PrimingRequestedError(GatewayError):
    """Internal: the gateway answered "query /accounts first"; the pipeline re-primes once."""

    def __init__(self, message: str, *, endpoint: str, which: frozenset[Priming], text: str):
        super().__init__(message, endpoint=endpoint)
        self.which = which
        self.text = text


class ClientStats:
    """What one client did: requests and retries per endpoint, and 429s."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.rate_limited = 0


class IbkrClient:
    """An async client of one gateway. Create it, then ``async with client:``.

    ``transport`` replaces httpx's network transport (e.g. ``httpx.MockTransport`` in tests;
    TLS and connection-pool settings then belong to it); ``on_response`` is called after every
    accepted answer of a data endpoint (`response.ResponseHook`); ``clock`` stamps
    ``fetched_at`` (default: the wall clock); ``environ`` replaces ``os.environ`` when the
    access token is read from ``settings.token_env``.
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_response: ResponseHook | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else ClientSettings()
        self._token: Secret | None = self.settings.resolve_token(environ)
        self._verify = _tls_verify(self.settings)
        self._transport = transport
        self._on_response = on_response
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._http: httpx.AsyncClient | None = None
        self._pacer: Pacer | None = None
        self._lease: GatewayLease | None = (
            GatewayLease(self.settings.origin)
            if self.settings.gateway_lease and transport is None
            else None
        )
        self.stats = ClientStats()
        bearer_source = None
        if self._token is not None:
            bearer_source = (
                "the access_token setting"
                if self.settings.access_token is not None
                else f"environment variable {self.settings.token_env}"
            )
        self.session = SessionKeeper(
            self._send_plain,
            base_url=self.settings.base_url,
            bearer_source=bearer_source,
            keepalive_interval_s=self.settings.keepalive_interval_s,
        )

    def __repr__(self) -> str:
        bearer = "set" if self._token is not None else "none"
        return (
            f"IbkrClient(base_url={self.settings.base_url!r}, account={self.settings.account!r}, "
            f"bearer_token={bearer}, open={self._http is not None})"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> IbkrClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, *, check_auth: bool = True) -> None:
        """Open the HTTP connection pool, check the session (unless ``check_auth`` is False)
        and start the keep-alive task. Must be called inside the event loop that will use it."""
        if self._http is not None:
            return
        if self._lease is not None:
            await self._lease.acquire(self.settings.lease_timeout_s)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        t = self.settings.timeouts
        self._http = httpx.AsyncClient(
            base_url=self.settings.base_url.rstrip("/"),
            verify=self._verify,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            headers=headers,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            follow_redirects=False,
            transport=self._transport,
        )
        self._pacer = shared_pacer(self.settings.origin, self.settings.pacing)
        try:
            if check_auth:
                await self.session.ensure_authenticated()
            self.session.start_keepalive()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the keep-alive task and close the connection pool (idempotent)."""
        try:
            await self.session.stop_keepalive()
            http, self._http = self._http, None
            if http is not None:
                await http.aclose()
        finally:
            if self._lease is not None:
                self._lease.release()

    @property
    def pacer(self) -> Pacer:
        """The pacer this client shares with the other clients of its event loop."""
        if self._pacer is None:
            raise RuntimeError("the client is not open: use `async with IbkrClient(...)`")
        return self._pacer

    # -- the request pipeline -----------------------------------------------------------------

    async def call(
        self,
        endpoint: Endpoint,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        error_ok: ErrorBodyFilter | None = None,
    ) -> RawResponse:
        """Send one request to ``endpoint`` through the whole pipeline and return its answer.

        Primes the session first if the endpoint needs it; re-primes once if the gateway asks
        ("query /accounts first"); on a 401 re-checks the session once, then raises
        `NotAuthenticatedError`. ``error_ok`` lets the caller accept some ``{"error": ...}``
        answers as payloads (e.g. "No data." for history).
        """
        reprimed = recovered = False
        while True:
            try:
                await self.session.prime(endpoint.needs)
                return await self._exchange(endpoint, path_params, params, body, error_ok)
            except _PrimingRequestedError as asked:
                if reprimed:
                    raise self.session.still_unprimed(endpoint.name, asked.text) from None
                reprimed = True
                await self.session.reprime(asked.which, endpoint.name, asked.text)
            except NotAuthenticatedError:
                if recovered:
                    raise
                recovered = True
                log.warning("%s answered 401; re-checking the session once", endpoint.name)
                await self.session.recover()

    async def _send_plain(self, endpoint: Endpoint, body: Mapping[str, Any] | None) -> RawResponse:
        """Session upkeep requests: paced and retried, never primed or recovered."""
        return await self._exchange(endpoint, None, None, body, None)

    async def _exchange(
        self,
        endpoint: Endpoint,
        path_params: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        error_ok: ErrorBodyFilter | None,
    ) -> RawResponse:
        path = endpoint.url_path(**(path_params or {}))
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}

        async def attempt() -> Any:
            return await self._attempt(endpoint, path, query, body, error_ok)

        def count_retry(error: BaseException) -> None:
            self.stats.retries[endpoint.name] += 1

        payload = await call_with_retries(
            attempt,
            policy=self.settings.retry,
            idempotent=endpoint.idempotent,
            endpoint=endpoint.name,
            on_retry=count_retry,
        )
        request_params: dict[str, Any] = {**(path_params or {}), **query}
        if body is not None:
            request_params.update(body)
        response = RawResponse(endpoint.name, request_params, payload, self._clock.now())
        if endpoint.landed and self._on_response is not None:
            outcome = self._on_response(
                endpoint.name, dict(request_params), payload, response.fetched_at
            )
            if outcome is not None:
                await outcome
        return response

    async def _attempt(
        self,
        endpoint: Endpoint,
        path: str,
        query: Mapping[str, str],
        body: Mapping[str, Any] | None,
        error_ok: ErrorBodyFilter | None,
    ) -> Any:
        http = self._http
        if http is None:
            raise RuntimeError("the client is not open: use `async with IbkrClient(...)`")
        async with self.pacer.slot(endpoint.group) as lease:
            self.stats.requests[endpoint.name] += 1
            request = http.build_request(endpoint.method, path, params=query or None, json=body)
            try:
                response = await http.send(request, stream=True)
                try:
                    content = await self._read_capped(endpoint, path, response)
                finally:
                    await response.aclose()
            except httpx.HTTPError as error:
                if isinstance(error, httpx.ReadTimeout):
                    # The gateway has the request and may still be working on it (and counting
                    # it against its limits): its slot stays taken while it is given time to
                    # finish, up to three times the timeout in all.
                    lease.abandon(ABANDONED_HOLD_FACTOR * self.settings.timeouts.read)
                raise self._transport_error(endpoint, path, error) from error
        return self._interpret(endpoint, path, response, content, error_ok)

    async def _read_capped(self, endpoint: Endpoint, path: str, response: httpx.Response) -> bytes:
        """The body, read chunk by chunk and dropped as soon as it exceeds the cap."""
        cap = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(endpoint, path, response.status_code, f"{declared} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._too_large(endpoint, path, response.status_code, f"over {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(
        self, endpoint: Endpoint, path: str, status: int, size: str
    ) -> ResponseTooLargeError:
        cap = self.settings.max_response_bytes
        return ResponseTooLargeError(
            f"{self._where(endpoint, path)}: HTTP {status} answer of {size} exceeds the "
            f"response size limit of {cap} bytes ({cap / MIB:g} MiB); the request is not "
            f"retried. Raise ClientSettings.max_response_bytes (IB_PIPELINE_MAX_RESPONSE_MB) if "
            f"the answer is legitimate",
            endpoint=endpoint.name,
            status=status,
            limit=cap,
        )

    def _where(self, endpoint: Endpoint, path: str) -> str:
        """``history (GET https://host:5000/v1/api/iserver/marketdata/history)``."""
        return f"{endpoint.name} ({endpoint.method} {self.settings.base_url.rstrip('/')}{path})"

    def _transport_error(self, endpoint: Endpoint, path: str, error: httpx.HTTPError) -> IbkrError:
        where = self._where(endpoint, path)
        detail = self._scrub(str(error) or type(error).__name__)
        if isinstance(error, httpx.ConnectError) and _is_certificate_error(error):
            hint = (
                "pass ca_bundle= the CA bundle of the gateway's certificate"
                if not self.settings.insecure
                else "check the gateway's certificate"
            )
            return mark(
                TlsVerificationError(
                    f"{where}: TLS certificate verification failed ({detail}); {hint}, or "
                    f"insecure=True for a loopback gateway",
                    endpoint=endpoint.name,
                ),
                Transient.NEVER,
            )
        if isinstance(error, httpx.TimeoutException):
            scope = (
                Transient.ALWAYS
                if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout)
                else Transient.IDEMPOTENT
            )
            return mark(
                RequestTimeoutError(
                    f"{where}: no answer within the timeout ({type(error).__name__})",
                    endpoint=endpoint.name,
                ),
                scope,
            )
        scope = Transient.ALWAYS if isinstance(error, httpx.ConnectError) else Transient.IDEMPOTENT
        return mark(
            TransportError(f"{where}: {type(error).__name__}: {detail}", endpoint=endpoint.name),
            scope,
        )

    def _interpret(
        self,
        endpoint: Endpoint,
        path: str,
        response: httpx.Response,
        content: bytes,
        error_ok: ErrorBodyFilter | None,
    ) -> Any:
        status = response.status_code
        where = self._where(endpoint, path)
        text = content.decode(response.encoding or "utf-8", "replace")
        body_text = self._scrub(excerpt(text))
        login = self._login_page(response, text)
        if login is not None:
            raise NotAuthenticatedError(
                f"{where}: the gateway is not logged in (it answered {login}): log in at "
                f"{login_url(self.settings.base_url)} in a browser (or with IBeam), then retry",
                endpoint=endpoint.name,
                status=status,
                body=body_text,
            )
        if status == 429:
            return self._rate_limited(endpoint, response, where, body_text)
        if status == 401:
            raise NotAuthenticatedError(
                f"{where}: HTTP 401: {body_text}",
                endpoint=endpoint.name,
                status=401,
                body=body_text,
            )
        if status >= 400:
            which = priming_asked_for(text)
            if which is not None:
                raise _PrimingRequestedError(
                    f"{where}: HTTP {status}: {body_text}",
                    endpoint=endpoint.name,
                    which=which,
                    text=body_text,
                )
            scope = Transient.IDEMPOTENT if status >= 500 else Transient.NEVER
            kind = DataNotAvailableError if _chart_data_unavailable(text) else GatewayError
            raise mark(
                kind(
                    f"{where}: HTTP {status}: {body_text}",
                    endpoint=endpoint.name,
                    status=status,
                    body=body_text,
                ),
                scope,
            )
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            payload = None
            invalid = True
        else:
            invalid = payload is None
        if invalid:
            raise mark(
                InvalidPayloadError(
                    f"{where}: HTTP {status} with invalid or truncated JSON: {body_text!r}",
                    endpoint=endpoint.name,
                    status=status,
                    body=body_text,
                ),
                Transient.IDEMPOTENT,
            )
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            self._check_error_body(endpoint, payload["error"], where, status, error_ok)
        return payload

    def _login_page(self, response: httpx.Response, text: str) -> str | None:
        """What shows the gateway is not logged in (a redirect to its login, or an HTML page
        where JSON was expected), or None."""
        if response.status_code in _REDIRECTS:
            location = self._scrub(response.headers.get("Location", ""))
            if not location or _LOGIN_PATH.search(location):
                return f"HTTP {response.status_code}, a redirect to {location or 'its login'!r}"
            return None
        content_type = response.headers.get("Content-Type", "").lower()
        looks_html = text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))
        if response.status_code < 400 and ("text/html" in content_type or looks_html):
            return f"HTTP {response.status_code} with an HTML page, not JSON"
        return None

    def _check_error_body(
        self,
        endpoint: Endpoint,
        text: str,
        where: str,
        status: int,
        error_ok: ErrorBodyFilter | None,
    ) -> None:
        message = f"{where}: HTTP {status} with error {self._scrub(excerpt(text))!r}"
        which = priming_asked_for(text)
        if which is not None:
            raise _PrimingRequestedError(message, endpoint=endpoint.name, which=which, text=text)
        if _chart_data_unavailable(text):
            raise mark(
                DataNotAvailableError(message, endpoint=endpoint.name, status=status),
                Transient.IDEMPOTENT,
            )
        if error_ok is not None and error_ok(text):
            return
        raise GatewayError(message, endpoint=endpoint.name, status=status, body=excerpt(text))

    def _rate_limited(
        self, endpoint: Endpoint, response: httpx.Response, where: str, body_text: str
    ) -> Any:
        self.stats.rate_limited += 1
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        policy = self.settings.retry
        pause = retry_after if retry_after is not None else policy.rate_limit_pause_s
        error = RateLimitedError(
            f"{where}: HTTP 429 (rate limited, Retry-After {retry_after}): {body_text}",
            endpoint=endpoint.name,
            body=body_text,
            retry_after=retry_after,
        )
        if pause > policy.max_retry_after_s:
            raise mark(error, Transient.NEVER)
        if pause >= self.pacer.limits.penalty_box_s and self.pacer.waited_out_a_box:
            # waited out once already: something else spends this session's budget
            error.message = error.args[0] + (
                "; the penalty box again after waiting one out: another client is using this "
                "gateway session beyond its limits; not waiting again"
            )
            error.args = (error.message,)
            raise mark(error, Transient.NEVER)
        self.pacer.penalize(pause)
        raise mark(error, Transient.ALWAYS)

    def _scrub(self, text: str) -> str:
        return redact(text, [self._token.reveal() if self._token is not None else None])

    # -- session ------------------------------------------------------------------------------

    async def auth_status(self) -> Any:
        """``POST /iserver/auth/status``: ``{authenticated, connected, competing, ...}``."""
        return (await self.call(ep.AUTH_STATUS)).payload

    async def tickle(self) -> Any:
        """``POST /tickle``: keeps the session alive (the client does this by itself)."""
        return (await self.call(ep.TICKLE)).payload

    async def logout(self) -> Any:
        """``POST /logout``: ends the gateway session; a browser login is needed afterwards."""
        return (await self.call(ep.LOGOUT)).payload

    # -- accounts -----------------------------------------------------------------------------

    async def accounts(self) -> Any:
        """``GET /iserver/accounts``: the brokerage accounts (also primes the session)."""
        response = await self.call(ep.ACCOUNTS)
        self.session.accounts_payload = response.payload
        return response.payload

    async def portfolio_accounts(self) -> Any:
        """``GET /portfolio/accounts``: portfolio accounts (primes ``/portfolio/...``)."""
        return (await self.call(ep.PORTFOLIO_ACCOUNTS)).payload

    async def account_id(self) -> str:
        """The account to use: ``settings.account`` (checked against the gateway's list, and
        refused if it is an advisor's group or allocation profile), else the gateway's
        ``selectedAccount``, else the first real account ``/iserver/accounts`` lists (never the
        group ``All``)."""
        return choose_account(await self.session.accounts(), self.settings.account)

    async def account_listing(self, accounts_payload: Any = None) -> AccountListing:
        """What the gateway lists, sorted into real accounts, groups and allocation profiles
        (`AccountListing`): ``/iserver/accounts`` (``accounts_payload`` when the caller just
        fetched it) and ``/portfolio/accounts`` (the real accounts), both primed once per
        session, so this costs no request after priming."""
        return await self.session.account_listing(accounts_payload)

    # -- contracts ----------------------------------------------------------------------------

    async def search_contracts(
        self, symbol: str, *, name: bool = False, sec_type: str | None = None
    ) -> Any:
        """``/iserver/secdef/search``: contracts matching ``symbol`` (or a company name when
        ``name`` is True), optionally of one ``sec_type`` (STK, FUT, CASH, ...)."""
        if not symbol or not symbol.strip():
            raise ValueError("search_contracts: symbol must be a non-empty string")
        params = {"symbol": symbol, "name": name, "secType": sec_type}
        return (await self.call(ep.CONTRACT_SEARCH, params=params)).payload

    @property
    def clock(self) -> Clock:
        """The clock the client stamps answers with (the simulator's, in tests)."""
        return self._clock

    async def futures(self, symbols: Sequence[str]) -> Any:
        """``/trsrv/futures?symbols=ES,NQ``: ``{"ES": [{symbol, conid, underlyingConid,
        expirationDate, ltd, ...}], ...}``, the non-expired contract months of each root
        (dates as ``yyyymmdd``); expired months are not listed."""
        wanted = [s.strip().upper() for s in symbols if s and s.strip()]
        if not wanted:
            raise ValueError("futures: symbols must name at least one futures root")
        return (await self.call(ep.FUTURES, params={"symbols": ",".join(wanted)})).payload

    async def secdef_info(
        self,
        conid: int,
        sec_type: str,
        *,
        month: str | None = None,
        exchange: str | None = None,
    ) -> Any:
        """``/iserver/secdef/info``: a list of contract details of ``conid``; for a futures
        root (``sec_type="FUT"``) ``month`` (``MAR25``) picks the contract month."""
        params = {"conid": str(conid), "sectype": sec_type, "month": month, "exchange": exchange}
        return (await self.call(ep.SECDEF_INFO, params=params)).payload

    # -- market data --------------------------------------------------------------------------

    async def snapshot(self, conids: Sequence[int], fields: Sequence[str]) -> Any:
        """One ``GET /iserver/marketdata/snapshot`` (at most 100 conids and 50 fields). The
        first request for a conid answers a pre-flight without fields: see `snapshots`."""
        params = _snapshots.snapshot_params(conids, fields)
        return (await self.call(ep.SNAPSHOT, params=params)).payload

    async def snapshots(
        self, conids: Sequence[int], fields: Sequence[str] = _snapshots.DEFAULT_FIELDS
    ) -> list[RawResponse]:
        """Snapshots of any number of conids: batches of 100, each polled until every conid
        delivered at least one field (`SnapshotNotReadyError` names those that never did)."""
        return await _snapshots.fetch_snapshots(
            self.call,
            conids,
            fields,
            max_polls=self.settings.snapshot_max_polls,
            poll_interval_s=self.settings.snapshot_poll_interval_s,
        )

    async def history(
        self,
        conid: int,
        period: str,
        bar: str,
        *,
        start_time: datetime | None = None,
        outside_rth: bool | None = None,
        exchange: str | None = None,
        source: str | None = None,
    ) -> Any:
        """One ``GET /iserver/marketdata/history`` (at most 1000 bars, the most recent ones
        ending at ``start_time`` or now). Raises `NoDataError` on ``"No data."``."""
        response = await self.history_page(
            conid,
            period,
            bar,
            start_time=start_time,
            outside_rth=outside_rth,
            exchange=exchange,
            source=source,
        )
        if _history.is_no_data(response.payload):
            raise NoDataError(
                f"history: no data for conid {conid} ({period} of {bar} bars ending "
                f"{start_time.isoformat() if start_time else 'now'})",
                endpoint=ep.HISTORY.name,
            )
        return response.payload

    async def history_page(
        self,
        conid: int,
        period: str,
        bar: str,
        *,
        start_time: datetime | None = None,
        outside_rth: bool | None = None,
        exchange: str | None = None,
        source: str | None = None,
    ) -> RawResponse:
        """Like `history`, returning the `RawResponse` and ``"No data."`` as a payload."""
        return await _history.fetch_page(
            self.call,
            conid,
            period,
            bar,
            start_time=start_time,
            outside_rth=outside_rth,
            exchange=exchange,
            source=source,
        )

    async def history_range(
        self,
        conid: int,
        bar_size: str,
        start: datetime,
        end: datetime,
        *,
        outside_rth: bool = False,
        source: str | None = "Trades",
        exchange: str | None = None,
        hours: TradingHours = US_EQUITY,
    ) -> HistoryRange:
        """Every bar of ``bar_size`` with ``start <= ts < end``, paged backward with
        ``startTime`` using as few requests as possible (see `history`)."""
        request = HistoryRequest(
            conid=conid,
            bar_size=bar_size,
            start=start,
            end=end,
            outside_rth=outside_rth,
            source=source,
            exchange=exchange,
            hours=hours,
        )
        return await _history.fetch_range(self.call, request)

    async def history_ranges(self, requests: Iterable[HistoryRequest]) -> list[HistoryRange]:
        """Several ranges fetched concurrently (bounded by the history concurrency limit)."""
        return await _history.fetch_ranges(self.call, requests)

    # -- portfolio ----------------------------------------------------------------------------

    async def positions(self, page: int = 0, account: str | None = None) -> Any:
        """``GET /portfolio/{accountId}/positions/{pageId}``: one page of up to 100 positions."""
        account = account or await self.account_id()
        return (await _portfolio.positions_page(self.call, account, page)).payload

    async def all_positions(self, account: str | None = None) -> list[RawResponse]:
        """Every positions page, until a short or empty page."""
        return await _portfolio.all_positions(
            self.call,
            account or await self.account_id(),
            page_size=self.settings.positions_page_size,
        )

    async def account_summary(self, account: str | None = None) -> Any:
        """``GET /portfolio/{accountId}/summary``."""
        account = account or await self.account_id()
        return (await self.call(ep.ACCOUNT_SUMMARY, path_params={"accountId": account})).payload

    # -- orders -------------------------------------------------------------------------------

    async def live_orders(self) -> Any:
        """``GET /iserver/account/orders``: ``{"orders": [...], "snapshot": bool}``."""
        return (await self.call(ep.LIVE_ORDERS)).payload

    async def live_orders_settled(self) -> RawResponse:
        """Live orders, polling past the gateway's first empty ``snapshot: false`` answer
        (at most ``settings.live_orders_max_polls`` calls)."""
        return await _orders.live_orders_settled(
            self.call, max_polls=self.settings.live_orders_max_polls
        )

    async def place_order(
        self,
        order: Mapping[str, Any],
        *,
        account: str | None = None,
        accept_message_ids: Iterable[str] = (),
    ) -> PlacedOrder:
        """Place one order, answering confirmation questions whose message ids are all in
        ``accept_message_ids`` and refusing (``confirmed: false``) any other.

        Raises `TradingDisabledError` unless the client allows trading (and live trading for a
        non-paper account), `OrderRejectedError`, or `OrderConfirmationRefusedError`.
        """
        return await _orders.place_order(
            self.call,
            self.session.accounts,
            order,
            settings=self.settings,
            account=account,
            accept_message_ids=frozenset(accept_message_ids),
        )

    async def reply(self, reply_id: str, *, confirmed: bool) -> Any:
        """``POST /iserver/reply/{replyId}``: answer an order confirmation question. Confirming
        is trading, so it needs ``allow_trading`` like `place_order`."""
        _orders.require_trading_allowed(self.settings, "reply")
        return (await _orders.send_reply(self.call, reply_id, confirmed)).payload


def _chart_data_unavailable(text: str) -> bool:
    """The history farm's transient "Chart data is not available" / "Chart data unavailable"."""
    lowered = text.lower()
    return "chart data is not available" in lowered or "chart data unavailable" in lowered


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _retry_after_s(header: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if header is None or not header.strip():
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_certificate_error(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _tls_verify(settings: ClientSettings) -> ssl.SSLContext | bool:
    """The ``verify`` argument of httpx: a context trusting ``ca_bundle``, False when insecure
    (loopback only, checked by the settings), else the system's CAs (`_system_trust`)."""
    if settings.insecure:
        return False
    if settings.ca_bundle is None:
        return _system_trust(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    path = settings.ca_bundle
    if not path.is_file():
        raise ConfigurationError(f"ca_bundle {str(path)!r} does not exist or is not a file")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigurationError(
            f"ca_bundle {str(path)!r} is not a PEM certificate bundle: {error}"
        ) from None


@functools.lru_cache(maxsize=4)
def _system_trust(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The context httpx builds for ``verify=True`` (certifi's CAs, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``, the arguments, which key the cache), built once per process.

    Why: httpx builds it for every client, even for a plain-HTTP gateway, and parsing the CA
    bundle costs about 25 ms of CPU; a process opens a client per asset, per run, per CLI
    command (hundreds in a test run). One context serves any number of clients: once built,
    the only change made to it is httpcore setting the same ALPN list (HTTP/1.1) on every
    TLS connection."""
    del cert_file, cert_dir  # only the cache key: httpx reads the same variables
    return httpx.create_ssl_context(verify=True)
