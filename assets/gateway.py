"""Is the gateway there and logged in? One probe, one wording, for the sensor and the backfill.

`gateway_status` answers with a one-line message that says what is wrong and what to do; the
gateway sensor shows it as its skip reason, and `require_gateway` raises it as a
`GatewayUnavailableError` before a backfill starts a run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from assets.resources import IbkrClientResource
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import IbkrError, NotAuthenticatedError, TransportError
from ib_pipeline.ibkr.gateway_session import login_url

BASE_URL_ENV = "IB_PIPELINE_BASE_URL"


class GatewayUnavailableError(IbkrError):
    """The gateway is not reachable, or not logged in; the message says what to do."""


@dataclass(frozen=True)
class GatewayStatus:
    healthy: bool
    message: str


PROBE_ATTEMPTS = 2
"""Attempts of the probe's requests: a gateway that refuses twice is down, and the user waiting
for `ib-pipeline backfill` to say so should not sit through five backoffs."""


async def _probe(ibkr: IbkrClientResource, keep_alive: bool) -> str:
    """Opening the client checks authentication (restoring a dropped brokerage session when it
    can); ``keep_alive`` also tickles the session. The probe takes no gateway lease: a couple of
    session calls do not compete with the load that holds it (a sensor tick must not wait for
    a backfill to end)."""
    settings = ibkr.settings()
    probe = settings.with_changes(
        retry=replace(
            settings.retry, max_attempts=min(settings.retry.max_attempts, PROBE_ATTEMPTS)
        ),
        gateway_lease=False,
    )
    async with IbkrClient(probe) as client:
        if not keep_alive:
            return f"GATEWAY OK: {ibkr.base_url} is authenticated"
        status = await client.auth_status()
        await client.tickle()
    competing = isinstance(status, dict) and bool(status.get("competing"))
    note = " (another session competes for it)" if competing else ""
    return f"GATEWAY OK: {ibkr.base_url} is authenticated{note}; session kept alive"


def gateway_status(ibkr: IbkrClientResource, *, keep_alive: bool = True) -> GatewayStatus:
    """Whether the gateway ``ibkr`` points at is usable, and a one-line message saying so."""
    url = ibkr.base_url
    try:
        return GatewayStatus(True, asyncio.run(_probe(ibkr, keep_alive)))
    except NotAuthenticatedError as error:
        return GatewayStatus(
            False,
            f"LOGIN NEEDED: the gateway at {url} is not authenticated; open {login_url(url)} "
            f"in a browser and log in ({error})",
        )
    except TransportError as error:
        return GatewayStatus(
            False,
            f"GATEWAY DOWN: no gateway at {url} ({error}); start `ib-pipeline sim` (or "
            f"`make sim`) or the Client Portal Gateway, or set {BASE_URL_ENV}",
        )
    except IbkrError as error:
        return GatewayStatus(
            False, f"GATEWAY ERROR: the gateway at {url} answered with an error: {error}"
        )


def require_gateway(ibkr: IbkrClientResource) -> None:
    """Raise `GatewayUnavailableError` (one line) unless the gateway is reachable and logged in."""
    status = gateway_status(ibkr, keep_alive=False)
    if not status.healthy:
        raise GatewayUnavailableError(" ".join(status.message.split()))
