"""Dagster resources: the IBKR client (`IbkrClientResource`) and the warehouse
(`WarehouseResource`), so assets never build HTTP clients or pick folders themselves.

`IbkrClientResource` holds the client's configuration (Dagster config, with secrets from
``dg.EnvVar``) and builds `IbkrClient`/`SyncIbkrClient` objects from it, so every asset talks
to the gateway through the same paced, retried, session-keeping client::

    defs = dg.Definitions(
        assets=[...],
        resources={"ibkr": IbkrClientResource(access_token=dg.EnvVar("IBKR_ACCESS_TOKEN"))},
    )

    @dg.asset
    async def bars(ibkr: IbkrClientResource) -> None:
        async with ibkr.get_client() as client:
            ...

Clients created in the same event loop share one pacer (see `ib_pipeline.ibkr.pacing`), so
assets running concurrently in one process stay within the gateway's limits together.

What this module must never do: hold a client or a connection across runs (each
``get_client`` builds a fresh one for the caller's event loop), or log configuration values
that may be secret.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from ib_pipeline.clock import Clock
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import ConfigurationError
from ib_pipeline.ibkr.response import ResponseHook
from ib_pipeline.ibkr.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_ENV,
    ClientSettings,
    PacingLimits,
    RetryPolicy,
    Secret,
    Timeouts,
    is_loopback_host,
)
from ib_pipeline.ibkr.sync import SyncIbkrClient
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.settings import DEFAULT_WAREHOUSE_ROOT, WarehouseSettings
from ib_pipeline.storage.store import Store

_PACING = PacingLimits()
_RETRY = RetryPolicy()
_TIMEOUTS = Timeouts()


class IbkrClientResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Configuration of the IBKR client; builds clients for assets.

    Defaults equal `ClientSettings`' (the bundled simulator on 127.0.0.1:5000). Pass
    ``access_token=dg.EnvVar("IBKR_ACCESS_TOKEN")`` for an OAuth gateway; Dagster keeps EnvVar
    values out of its UI and logs.
    """

    base_url: str = Field(default=DEFAULT_BASE_URL, description="API root of the gateway.")
    ca_bundle: str | None = Field(
        default=None, description="PEM CA bundle that signed the gateway's certificate."
    )
    insecure: bool = Field(
        default=False, description="Skip TLS verification (refused unless the host is loopback)."
    )
    access_token: str | None = Field(
        default=None,
        description="OAuth bearer token; use dg.EnvVar, never a literal.",
        repr=False,  # inside a run Dagster has resolved the EnvVar: the value itself
    )
    token_env: str | None = Field(
        default=DEFAULT_TOKEN_ENV,
        description="Environment variable read for the token when access_token is unset.",
    )
    account: str | None = Field(
        default=None, description="Account id; default: the first the gateway lists."
    )
    timeout_s: float = Field(default=_TIMEOUTS.read, description="Read timeout per request.")
    global_per_s: float = Field(
        default=_PACING.global_per_s, description="Requests per second across all endpoints."
    )
    history_concurrency: int = Field(
        default=_PACING.history_concurrency, description="History requests in flight at once."
    )
    unpaced: bool = Field(
        default=False,
        description="No client pacing at all: only for a simulator with its pacing off, on a "
        "loopback host (refused otherwise).",
    )
    max_attempts: int = Field(
        default=_RETRY.max_attempts, description="Attempts per request, the first included."
    )
    keepalive_interval_s: float | None = Field(
        default=60.0, description="Seconds between /tickle calls while a client is open."
    )
    allow_trading: bool = Field(default=False, description="Allow placing orders (paper).")
    allow_live_trading: bool = Field(
        default=False, description="Also allow orders on live (non-paper) accounts."
    )

    def settings(self) -> ClientSettings:
        """The `ClientSettings` this configuration describes (validated)."""
        return ClientSettings(
            base_url=self.base_url,
            ca_bundle=Path(self.ca_bundle) if self.ca_bundle else None,
            insecure=self.insecure,
            access_token=self._token(),
            token_env=self.token_env,
            account=self.account,
            timeouts=Timeouts(read=self.timeout_s),
            pacing=self._pacing(),
            retry=RetryPolicy(max_attempts=self.max_attempts),
            allow_trading=self.allow_trading,
            allow_live_trading=self.allow_live_trading,
            keepalive_interval_s=self.keepalive_interval_s,
        )

    def _pacing(self) -> PacingLimits:
        """The published limits (with this resource's rate and concurrency), or none at all
        when ``unpaced``, which a real gateway would answer with a penalty box: refused unless
        the host is loopback (the simulator)."""
        if not self.unpaced:
            return PacingLimits(
                global_per_s=self.global_per_s, history_concurrency=self.history_concurrency
            )
        host = urlsplit(self.base_url).hostname or ""
        if not is_loopback_host(host):
            raise ConfigurationError(
                f"unpaced=True is only allowed for a simulator on a loopback host, not "
                f"{host!r}: the real gateway answers unpaced requests with a 10-15 minute "
                f"penalty box"
            )
        return PacingLimits.unpaced()

    def _token(self) -> Secret | None:
        """The token as a `Secret`. Inside a Dagster run ``dg.EnvVar`` is already resolved to
        its value; used directly (a test, a notebook) it is still an EnvVar and is read here."""
        token = self.access_token
        if isinstance(token, dg.EnvVar):
            value = token.get_value()
            if not value:
                raise ConfigurationError(
                    f"environment variable {token.env_var_name} (access_token) is unset or empty"
                )
            return Secret(value)
        return Secret(token) if token else None

    def get_client(
        self, *, on_response: ResponseHook | None = None, clock: Clock | None = None
    ) -> IbkrClient:
        """A new async client (not yet open): ``async with resource.get_client() as client``.
        ``on_response`` lands raw payloads (see `ib_pipeline.ibkr.response.ResponseHook`)."""
        return IbkrClient(self.settings(), on_response=on_response, clock=clock)

    def get_sync_client(
        self, *, on_response: ResponseHook | None = None, clock: Clock | None = None
    ) -> SyncIbkrClient:
        """A new blocking client (not yet open): ``with resource.get_sync_client() as ib``."""
        return SyncIbkrClient(self.settings(), on_response=on_response, clock=clock)


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A warehouse root (a folder or an fsspec URL) and whether the raw zone is kept."""

    root: str = Field(
        default=DEFAULT_WAREHOUSE_ROOT,
        description="Warehouse root: a folder (./warehouse) or an fsspec URL (s3://bucket/wh).",
    )
    raw_zone: bool = Field(
        default=True, description="Keep every API response under <root>/raw for replay."
    )
    catalog: bool = Field(
        default=True,
        description=(
            "Rebuild <root>/warehouse.duckdb after every load that changes its views. Off: "
            "the caller builds it (the demo builds it once, after its last run)."
        ),
    )

    @classmethod
    def from_env(cls) -> WarehouseResource:
        """The resource the environment describes (``IB_PIPELINE_WAREHOUSE``,
        ``IB_PIPELINE_RAW_ZONE``)."""
        settings = WarehouseSettings.from_env()
        return cls(root=settings.root, raw_zone=settings.raw_zone)

    def store(self, clock: Clock) -> Store:
        """A store on the root whose validation and manifests use ``clock`` (and which
        rebuilds the catalog after its loads unless ``catalog`` is off)."""
        return Store(self.root, clock=clock, catalog=self.catalog)

    def raw(self) -> RawZone:
        """The raw zone of the root (a no-op hook when ``raw_zone`` is off)."""
        return RawZone(self.root, enabled=self.raw_zone)
