"""Every error the IBKR client and the normalisers raise, in one hierarchy.

Callers catch the level they care about: ``IbkrError`` for "anything went wrong talking to
IBKR", or one leaf for a specific reaction (log in again, wait out the penalty box, quarantine
a payload). The tree::

    IbkrError                        anything raised by ib_pipeline.ibkr
    ├── ConfigurationError           the settings are unusable (before any request is sent)
    ├── GatewayBusyError             another process held the gateway's lease past the timeout
    ├── TransportError               no usable HTTP answer after the allowed retries
    │   ├── TlsVerificationError     the gateway's certificate failed verification (no retry)
    │   └── RequestTimeoutError      the gateway did not answer within the timeout
    ├── GatewayError                 the gateway answered with an error status or error body
    │   ├── NotAuthenticatedError    no authenticated brokerage session (log in, then retry);
    │   │                            also the gateway's HTML login page or a redirect to it
    │   ├── RateLimitedError         HTTP 429: the pacing limit was exceeded (penalty box)
    │   ├── AccountsNotPrimedError   "query /accounts first" persisted after re-priming
    │   ├── DataNotAvailableError    "Chart data is not available" persisted after retries
    │   └── ResponseTooLargeError    the body exceeded ``max_response_bytes`` (no retry)
    ├── InvalidPayloadError          a payload cannot be decoded or parsed (also a ValueError)
    ├── NoDataError                  the gateway has no data for the request ("No data.")
    ├── SnapshotNotReadyError        snapshot pre-flight: fields never arrived for some conids
    └── OrderError                   anything that stops an order from being placed
        ├── TradingDisabledError     the client was not created with trading allowed
        ├── OrderRejectedError       the gateway refused the order (``{"error": ...}``)
        └── OrderConfirmationRefusedError
                                     the gateway asked a question the caller did not accept

Messages name the endpoint, the HTTP status and an excerpt of the body so a log line is enough
to diagnose a failure. They must never carry a secret: the access token is scrubbed from every
excerpt by the client (see `redact`), and no error is ever built from request headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EXCERPT_CHARS = 300
"""How much of a response body an error message quotes."""


def excerpt(body: str | bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """A single-line, bounded excerpt of a response body for error messages."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class IbkrError(Exception):
    """Base class of every error raised by the IBKR client and normalisers.

    ``endpoint`` names the API endpoint involved (``None`` for pure functions), ``status`` the
    HTTP status when there was one, ``body`` an excerpt of the response body.
    ``retry_scope`` is set by the client for the retry policy (see `ib_pipeline.ibkr.retry`).
    """

    retry_scope: int = 0

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.body = body


class ConfigurationError(IbkrError, ValueError):
    """Raised when settings are contradictory or unsafe, e.g. insecure TLS for a remote host,
    an unknown environment value, or a missing account. Raised before any request is sent.
    Also a ``ValueError``."""


class GatewayBusyError(IbkrError):
    """Raised by `IbkrClient.open` when another process held the gateway's cross-process lease
    (`ib_pipeline.ibkr.lease`) for longer than ``lease_timeout_s``. ``holder`` is its pid, when
    known."""

    def __init__(self, message: str, *, holder: int | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class TransportError(IbkrError):
    """Raised when no usable HTTP answer arrived after the allowed retries: connection refused
    or dropped, truncated body. The last underlying exception is chained as ``__cause__``."""


class TlsVerificationError(TransportError):
    """Raised when the gateway's TLS certificate fails verification (wrong or missing CA
    bundle). Never retried: the setting has to change."""


class RequestTimeoutError(TransportError):
    """Raised when the gateway did not answer within the configured timeout on every attempt."""


class GatewayError(IbkrError):
    """Raised when the gateway answered with an HTTP error status (after retries for 5xx), or
    with an error body the client has no more specific class for. ``status`` holds the status."""


class NotAuthenticatedError(GatewayError):
    """Raised when the gateway has no authenticated brokerage session: at start-up (auth status
    says so), or when a 401 arrives mid-run and re-checking the session confirms it is gone."""


class RateLimitedError(GatewayError):
    """Raised when HTTP 429 answers persisted past the retry budget. ``retry_after`` holds the
    gateway's Retry-After in seconds when it sent one. The client pauses every request while
    the penalty lasts, so seeing this means the limits are set too high for the gateway."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = 429,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, body=body)
        self.retry_after = retry_after


class AccountsNotPrimedError(GatewayError):
    """Raised when the gateway still answers "query /accounts first" after the client has
    re-primed ``/iserver/accounts`` and ``/portfolio/accounts`` once."""


class DataNotAvailableError(GatewayError):
    """Raised when the history endpoint kept answering "Chart data is not available" (a
    transient state of the gateway's data farm) on every attempt."""


class ResponseTooLargeError(GatewayError):
    """Raised when a response body exceeds ``ClientSettings.max_response_bytes`` (environment:
    ``IB_PIPELINE_MAX_RESPONSE_MB``). The body is read as a stream and dropped at the cap, so
    memory stays bounded; the request is not retried. ``limit`` holds the cap in bytes."""

    def __init__(
        self, message: str, *, endpoint: str | None = None, status: int | None = None, limit: int
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.limit = limit


class InvalidPayloadError(IbkrError, ValueError):
    """Raised when a payload cannot be used: invalid or truncated JSON from the gateway (after
    retries), or, in the normalisers, a wrong type, a missing required key or an unparseable
    string. The message names the field and quotes the value. Well-formed numbers that are bad
    market data (NaN, high < low, negative volume) are NOT errors: the warehouse's contracts
    quarantine those rows."""


class NoDataError(IbkrError):
    """Raised by the single-request history method when the gateway answers ``"No data."``.
    Range helpers treat that answer as an empty range instead of raising."""


class SnapshotNotReadyError(IbkrError):
    """Raised when snapshot pre-flight polling ran out of attempts and some conids never
    delivered any requested field. ``conids`` lists them."""

    def __init__(self, message: str, *, conids: Sequence[int], endpoint: str | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.conids = tuple(conids)


class OrderError(IbkrError):
    """Base class of the errors that stop an order from being placed."""


class TradingDisabledError(OrderError):
    """Raised before any request when an order is placed (or a reply confirmed) by a client not
    created with ``allow_trading=True``, or on a live (non-paper) account without
    ``allow_live_trading=True``."""


class OrderRejectedError(OrderError):
    """Raised when the gateway refuses an order: HTTP 200 with ``{"error": "..."}``."""


class OrderConfirmationRefusedError(OrderError):
    """Raised when the gateway asked to confirm an order with message ids the caller did not
    list as acceptable. The client answered ``confirmed: false`` (which discards the order)
    before raising. ``message_ids`` and ``messages`` carry what the gateway asked."""

    def __init__(
        self,
        message: str,
        *,
        message_ids: Sequence[str],
        messages: Sequence[str],
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.message_ids = tuple(message_ids)
        self.messages = tuple(messages)
