"""Settings of the IBKR client, with every default in one place.

Like httpx's ``Timeout`` and ``Limits``, settings are explicit frozen objects rather than
keyword arguments scattered through call sites: `Timeouts`, `PacingLimits`, `RetryPolicy` and
`ClientSettings`, which holds the others. `ClientSettings.from_env` builds them from the
``IB_PIPELINE_*`` variables declared in `ib_pipeline.environment.ClientEnvironment`.

Defaults point at the bundled simulator, ``http://127.0.0.1:5000/v1/api`` (plain HTTP on
loopback, so a fresh checkout works without certificates). The real Client Portal Gateway is
``https://localhost:5000/v1/api`` (`REAL_GATEWAY_URL`) with a self-signed certificate: pass its
CA bundle (``ca_bundle``), or turn verification off with ``insecure=True``, which is refused for
any host that is not loopback. For the same reason a bearer token is never sent over plain
``http://`` to a host that is not loopback: such settings are refused before any request.

What this module must never do: expose the access token. It lives in a `Secret` whose repr and
str are ``***``; only the HTTP layer calls `Secret.reveal`.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ib_pipeline.ibkr.errors import ConfigurationError

DEFAULT_BASE_URL = "http://127.0.0.1:5000/v1/api"
"""The bundled simulator's default address (``ib-pipeline sim``)."""

REAL_GATEWAY_URL = "https://localhost:5000/v1/api"
"""Where a locally running Client Portal Gateway listens."""

DEFAULT_TOKEN_ENV = "IBKR_ACCESS_TOKEN"
"""The environment variable an OAuth bearer access token is read from by default."""

MIB = 1024 * 1024

DEFAULT_MAX_RESPONSE_BYTES = 64 * MIB
"""The largest response body the client reads (64 MiB). The biggest answers of the API are far
smaller: 1000 history bars are ~100 KB, a 100-conid snapshot ~50 KB, a positions page ~100 KB.
A larger body is a broken or hostile gateway, and reading it whole would cost memory in
proportion (a 150 MB body cost 1.4 GB of RSS): the request fails with `ResponseTooLargeError`."""


class Secret:
    """A string that never shows itself: repr and str are ``Secret('***')``.

    Only the HTTP layer calls `reveal` to build the Authorization header.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def _positive(owner: object, name: str, allow_zero: bool = False) -> None:
    value = getattr(owner, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ConfigurationError(
            f"{type(owner).__name__}.{name} must be {kind} number, got {value!r}"
        )


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for each phase of one request (see httpx.Timeout)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 10.0
    pool: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _positive(self, f.name)


@dataclass(frozen=True)
class PacingLimits:
    """The client's limits: the gateway's published ones, as rates with no bursts.

    The gateway allows 10 requests/s globally, 5 concurrent history requests (clients report
    throttling above 4), 10 snapshots/s, one ``/iserver/account/orders`` and one
    ``/portfolio/accounts`` per 5 s, one ``/tickle`` per second and one ``/sso/validate`` per
    minute; exceeding any opens a 10-15 minute penalty box. The rates are the published ones
    (the loader's purpose is to go as fast as the rules allow), but requests are spaced evenly
    with no bursts, so the client never sends more than the published count in any window; the
    per-interval endpoints keep a 5% margin, and history keeps one slot under the published
    concurrency (four in flight already exceed the global rate at any latency over 0.4 s).

    After a 429 every request of the client waits until the Retry-After has passed, then the
    global rate runs at ``after_429_rate_factor`` of normal for ``after_429_recovery_s``.

    A Retry-After of ``penalty_box_s`` or more is the penalty box: it is waited out once, plus
    a random ``0..penalty_jitter_s`` seconds so that two clients boxed together never wake
    together, and the global rate then stays at ``after_429_rate_factor`` for the rest of the
    pacer's life. A second penalty box is not waited out again: the request fails with
    `RateLimitedError` (something else is spending the session's budget).
    """

    global_per_s: float = 10.0
    history_concurrency: int = 4
    snapshot_per_s: float = 10.0
    live_orders_interval_s: float = 5.25
    portfolio_accounts_interval_s: float = 5.25
    tickle_interval_s: float = 1.05
    sso_validate_interval_s: float = 61.0
    after_429_rate_factor: float = 0.5
    after_429_recovery_s: float = 60.0
    penalty_box_s: float = 30.0
    penalty_jitter_s: float = 10.0

    @classmethod
    def unpaced(cls) -> PacingLimits:
        """Limits so high that no request ever waits: for a simulator whose own pacing is off
        (``ib-pipeline demo --unpaced``, tests), never for a real gateway (whose limits open a
        10-15 minute penalty box). History keeps its concurrency cap, which bounds the work in
        flight rather than a rate."""
        tiny = 1e-6
        return cls(
            global_per_s=1e6,
            snapshot_per_s=1e6,
            live_orders_interval_s=tiny,
            portfolio_accounts_interval_s=tiny,
            tickle_interval_s=tiny,
            sso_validate_interval_s=tiny,
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            _positive(self, f.name, allow_zero=f.name == "penalty_jitter_s")
        if not isinstance(self.history_concurrency, int) or isinstance(
            self.history_concurrency, bool
        ):
            raise ConfigurationError(
                f"PacingLimits.history_concurrency must be an integer, "
                f"got {self.history_concurrency!r}"
            )
        if self.after_429_rate_factor > 1:
            raise ConfigurationError(
                "PacingLimits.after_429_rate_factor must be at most 1, "
                f"got {self.after_429_rate_factor!r}"
            )


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried (timeouts, dropped connections, 5xx, truncated JSON, 429).

    ``max_attempts`` counts the first try. Waits grow exponentially from ``backoff_initial_s``
    up to ``backoff_max_s`` plus up to ``jitter_s`` of random jitter. A 429 waits for its
    Retry-After (``rate_limit_pause_s`` when absent) but never longer than
    ``max_retry_after_s``: a longer penalty raises `RateLimitedError` at once.
    """

    max_attempts: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    jitter_s: float = 0.2
    rate_limit_pause_s: float = 1.0
    max_retry_after_s: float = 900.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _positive(self, f.name, allow_zero=f.name == "jitter_s")
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool):
            raise ConfigurationError(
                f"RetryPolicy.max_attempts must be an integer, got {self.max_attempts!r}"
            )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClientSettings:
    """Everything that shapes an `IbkrClient`.

    - ``base_url``: the gateway's API root (default `DEFAULT_BASE_URL`, the simulator).
    - ``ca_bundle``: PEM file of the CA that signed the gateway's certificate; TLS verification
      is always on unless ``insecure``.
    - ``insecure``: skip TLS verification; refused unless the host is loopback.
    - ``access_token``: an OAuth bearer token; when None, the variable named ``token_env`` is read
      from the environment when the client is created (unset means the local gateway's cookie
      session: nothing is sent).
    - ``account``: the account to use; None means the first account ``/iserver/accounts`` lists.
    - ``allow_trading``: placing orders is refused unless True; ``allow_live_trading`` must also
      be True for a live (non-paper) account.
    - ``keepalive_interval_s``: seconds between ``/tickle`` calls while a client is open; None or
      0 disables the keep-alive task.
    - ``snapshot_max_polls`` / ``snapshot_poll_interval_s``: pre-flight polling of snapshots.
    - ``live_orders_max_polls``: polls of live orders past the first empty ``snapshot:false``.
    - ``positions_page_size``: positions per page on the gateway (a shorter page is the last).
    - ``max_reply_rounds``: order confirmation questions answered before giving up.
    - ``max_response_bytes``: the largest response body read (default
      `DEFAULT_MAX_RESPONSE_BYTES`, 64 MiB; ``IB_PIPELINE_MAX_RESPONSE_MB``); a larger one fails
      its request with `ResponseTooLargeError`, unretried.
    - ``gateway_lease``: hold the cross-process lease of the gateway's origin while the client
      is open (`ib_pipeline.ibkr.lease`), so that processes sharing one gateway session queue
      instead of spending its budget twice. A client given a ``transport=`` takes no lease.
    - ``lease_timeout_s``: how long `IbkrClient.open` waits for another process's lease before
      raising `GatewayBusyError` (None: wait as long as it takes).
    """

    base_url: str = DEFAULT_BASE_URL
    ca_bundle: Path | None = None
    insecure: bool = False
    access_token: Secret | None = None
    token_env: str | None = DEFAULT_TOKEN_ENV
    account: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    pacing: PacingLimits = field(default_factory=PacingLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_trading: bool = False
    allow_live_trading: bool = False
    keepalive_interval_s: float | None = 60.0
    snapshot_max_polls: int = 10
    snapshot_poll_interval_s: float = 0.5
    live_orders_max_polls: int = 3
    positions_page_size: int = 100
    max_reply_rounds: int = 5
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    gateway_lease: bool = True
    lease_timeout_s: float | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"base_url must be an http(s) URL such as {REAL_GATEWAY_URL}, got {self.base_url!r}"
            )
        if parts.username or parts.password:
            raise ConfigurationError("base_url must not carry credentials")
        if self.ca_bundle is not None:
            object.__setattr__(self, "ca_bundle", Path(self.ca_bundle))
        if self.insecure and not is_loopback_host(parts.hostname):
            raise ConfigurationError(
                f"insecure=True (no TLS verification) is only allowed for loopback hosts "
                f"(localhost, 127.0.0.0/8, ::1), not {parts.hostname!r}; pass ca_bundle instead"
            )
        if self.insecure and self.ca_bundle is not None:
            raise ConfigurationError("ca_bundle and insecure=True contradict each other")
        if self.access_token is not None and not isinstance(self.access_token, Secret):
            raise ConfigurationError("access_token must be a Secret (wrap the string in Secret)")
        if self.access_token is not None:
            self.check_token_transport("the access_token setting")
        if self.allow_live_trading and not self.allow_trading:
            raise ConfigurationError("allow_live_trading=True also needs allow_trading=True")
        if self.keepalive_interval_s is not None:
            _positive(self, "keepalive_interval_s", allow_zero=True)
        for name in ("snapshot_max_polls", "live_orders_max_polls", "positions_page_size"):
            _positive(self, name)
        _positive(self, "max_reply_rounds")
        _positive(self, "snapshot_poll_interval_s", allow_zero=True)
        size = self.max_response_bytes
        if not isinstance(size, int) or isinstance(size, bool):
            raise ConfigurationError(
                f"ClientSettings.max_response_bytes must be an integer, "
                f"got {self.max_response_bytes!r}"
            )
        _positive(self, "max_response_bytes")
        if self.lease_timeout_s is not None:
            _positive(self, "lease_timeout_s", allow_zero=True)

    def check_token_transport(self, source: str) -> None:
        """Refuse to send a bearer token (from ``source``) over plain HTTP to a host that is not
        loopback: anyone on the path would read it. Loopback HTTP (the simulator) is allowed."""
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            raise ConfigurationError(
                f"refusing to send the bearer token ({source}) over plain HTTP to "
                f"{self.base_url}: {parts.hostname!r} is not a loopback host; use an https:// "
                f"base_url (IB_PIPELINE_BASE_URL), or unset the token for a cookie session"
            )

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the gateway: the unit the pacing limits apply to."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def resolve_token(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        """The bearer token to send: ``access_token``, else the ``token_env`` variable, else
        None (cookie session). Errors name the variable, never its value."""
        if self.access_token is not None:
            return self.access_token
        if not self.token_env:
            return None
        value = (os.environ if environ is None else environ).get(self.token_env)
        if value is None:
            return None
        if not value.strip():
            raise ConfigurationError(f"environment variable {self.token_env} is set but empty")
        self.check_token_transport(f"environment variable {self.token_env}")
        return Secret(value)

    def with_changes(self, **changes: Any) -> ClientSettings:
        """A copy with some settings changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
        """Settings from the ``IB_PIPELINE_*`` variables of ``environ`` (default ``os.environ``,
        declared in `ClientEnvironment`); keyword overrides win. Unset or empty variables keep
        the defaults; a bad value raises ConfigurationError naming the variable."""
        from ib_pipeline.environment import ClientEnvironment  # noqa: PLC0415 (slow import)

        given = ClientEnvironment.read(environ, ConfigurationError).given()
        values: dict[str, Any] = {}
        if "timeout_s" in given:
            values["timeouts"] = Timeouts(read=given.pop("timeout_s"))
        pacing = {
            target: given.pop(name)
            for name, target in (
                ("global_rate", "global_per_s"),
                ("history_concurrency", "history_concurrency"),
            )
            if name in given
        }
        if pacing:
            values["pacing"] = PacingLimits(**pacing)
        if "keepalive_s" in given:
            values["keepalive_interval_s"] = given.pop("keepalive_s")
        if "max_response_mb" in given:
            values["max_response_bytes"] = max(1, round(given.pop("max_response_mb") * MIB))
        values.update(given)  # the other variables are named after their fields
        values.update(overrides)
        settings = cls(**values)
        settings.resolve_token(environ)  # fail now, naming the variable, if it is set but empty
        return settings
