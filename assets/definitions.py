"""The Dagster definitions of a universe: what ``dagster dev`` shows through the thin entry
`ib_pipeline.definitions` (``workspace.yaml``).

`build_definitions` composes the assets (contracts, one ``bars_<size>`` per bar size, quotes,
the portfolio, orders), their checks, the schedules, the gateway sensor, the resources (from
``IB_PIPELINE_*`` unless replaced) and the in-process executor (one gateway session paces every
request of a run). Nothing here runs at import: an invalid universe or setting fails when the
definitions are built, naming the bad value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import dagster as dg

from assets.bars import bars_asset_name, build_bars_asset
from assets.checks import (
    build_bars_freshness_check,
    build_bars_realtime_check,
    build_quotes_freshness_check,
    build_quotes_realtime_check,
)
from assets.contracts import build_contracts_asset
from assets.orders import build_orders_asset
from assets.portfolio import build_portfolio_assets
from assets.progress import NullProgress
from assets.quotes import QUOTES_ASSET, build_quotes_asset
from assets.resources import IbkrClientResource, WarehouseResource
from assets.schedules import build_schedules, schedule_hours
from assets.sensors import gateway_sensor
from ib_pipeline.clock import SystemClock
from ib_pipeline.ibkr.settings import ClientSettings
from ib_pipeline.universe import Universe, load_universe


def ibkr_resource_from_env(environ: Mapping[str, str] | None = None) -> IbkrClientResource:
    """The ``ibkr`` resource the ``IB_PIPELINE_*`` variables describe. The access token is
    never copied into configuration: the client reads it from ``token_env`` when it starts."""
    settings = ClientSettings.from_env(environ)
    return IbkrClientResource(
        base_url=settings.base_url,
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle is not None else None,
        insecure=settings.insecure,
        token_env=settings.token_env,
        account=settings.account,
        timeout_s=settings.timeouts.read,
        global_per_s=settings.pacing.global_per_s,
        history_concurrency=settings.pacing.history_concurrency,
        keepalive_interval_s=settings.keepalive_interval_s,
        allow_trading=settings.allow_trading,
        allow_live_trading=settings.allow_live_trading,
    )


_DEFAULT_RESOURCES: dict[str, Callable[[], Any]] = {
    "ibkr": ibkr_resource_from_env,
    "warehouse": WarehouseResource.from_env,
    "clock": SystemClock,
    "progress": NullProgress,
}


def default_resources(replaced: Collection[str] = ()) -> dict[str, Any]:
    """The resources of the definitions, from the environment, except those ``replaced`` (so
    a bad ``IB_PIPELINE_*`` setting cannot break definitions that do not use it)."""
    return {name: make() for name, make in _DEFAULT_RESOURCES.items() if name not in replaced}


def build_definitions(
    universe: Universe | None = None, *, resources: Mapping[str, Any] | None = None
) -> dg.Definitions:
    """The definitions of ``universe`` (default: `load_universe`), with ``resources``
    replacing the defaults of the same name."""
    chosen = universe if universe is not None else load_universe()
    contracts = build_contracts_asset(chosen)
    bars = [(bar, build_bars_asset(bar, chosen)) for bar in chosen.bar_sizes]
    quotes = build_quotes_asset(chosen)
    portfolio = build_portfolio_assets(chosen)
    orders = build_orders_asset(chosen)
    hours = schedule_hours(chosen)
    checks = [build_bars_freshness_check(bars_asset_name(bar), bar, hours) for bar, _ in bars]
    checks.append(build_quotes_freshness_check(QUOTES_ASSET, hours))
    checks += [build_bars_realtime_check(bars_asset_name(bar), bar) for bar, _ in bars]
    checks.append(build_quotes_realtime_check(QUOTES_ASSET))
    schedules = build_schedules(
        chosen, [(bar.label, asset) for bar, asset in bars], quotes, [portfolio, orders]
    )
    return dg.Definitions(
        assets=[contracts, *(asset for _, asset in bars), quotes, portfolio, orders],
        asset_checks=checks,
        schedules=schedules,
        sensors=[gateway_sensor],
        resources={**default_resources(resources or {}), **(resources or {})},
        executor=dg.in_process_executor,
    )
