"""The IBKR Web API client: one method per endpoint, pacing, retries, session upkeep.

Importable without Dagster. Normalisers in `normalize` turn its payloads into Arrow tables.
Exports are loaded lazily: ``import ib_pipeline.ibkr.errors`` does not load httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ib_pipeline.lazy import lazy_exports

if TYPE_CHECKING:
    from ib_pipeline.ibkr.client import IbkrClient
    from ib_pipeline.ibkr.errors import (
        AccountsNotPrimedError,
        ConfigurationError,
        DataNotAvailableError,
        GatewayError,
        IbkrError,
        InvalidPayloadError,
        NoDataError,
        NotAuthenticatedError,
        OrderConfirmationRefusedError,
        OrderError,
        OrderRejectedError,
        RateLimitedError,
        RequestTimeoutError,
        SnapshotNotReadyError,
        TlsVerificationError,
        TradingDisabledError,
        TransportError,
    )
    from ib_pipeline.ibkr.settings import ClientSettings
    from ib_pipeline.ibkr.sync import SyncIbkrClient

_ERRORS = (
    "AccountsNotPrimedError",
    "ConfigurationError",
    "DataNotAvailableError",
    "GatewayError",
    "IbkrError",
    "InvalidPayloadError",
    "NoDataError",
    "NotAuthenticatedError",
    "OrderConfirmationRefusedError",
    "OrderError",
    "OrderRejectedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SnapshotNotReadyError",
    "TlsVerificationError",
    "TradingDisabledError",
    "TransportError",
)

_EXPORTS = {
    "IbkrClient": "ib_pipeline.ibkr.client",
    "SyncIbkrClient": "ib_pipeline.ibkr.sync",
    "ClientSettings": "ib_pipeline.ibkr.settings",
    **dict.fromkeys(_ERRORS, "ib_pipeline.ibkr.errors"),
}

__all__ = [
    "AccountsNotPrimedError",
    "ClientSettings",
    "ConfigurationError",
    "DataNotAvailableError",
    "GatewayError",
    "IbkrClient",
    "IbkrError",
    "InvalidPayloadError",
    "NoDataError",
    "NotAuthenticatedError",
    "OrderConfirmationRefusedError",
    "OrderError",
    "OrderRejectedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SnapshotNotReadyError",
    "SyncIbkrClient",
    "TlsVerificationError",
    "TradingDisabledError",
    "TransportError",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
