"""The gateway sensor: is the gateway reachable and logged in, and keep its session alive.

Why: the Client Portal Gateway logs out after ~5 minutes without requests and resets its
session daily; a schedule that fires on a logged-out gateway fails with a 401 in the middle of
the night. This sensor checks the session every minute, calls ``/tickle`` so an idle session
stays alive, and says clearly, in its skip reason and in a warning log line, when a human must
log in and at which URL. It never requests runs and never fetches data.

It runs by default (unlike the schedules) since it only reads the session state; turn it off in
the UI if no gateway is running.
"""

import asyncio

import dagster as dg

from assets.resources import IbkrClientResource
from ib_pipeline.ibkr.errors import IbkrError, NotAuthenticatedError, TransportError
from ib_pipeline.ibkr.gateway_session import login_url

GATEWAY_SENSOR = "gateway_sensor"
INTERVAL_S = 60


async def probe_gateway(ibkr: IbkrClientResource) -> str:
    """Check the session (opening the client checks authentication, restoring a dropped
    brokerage session when it can) and tickle it; returns a one-line status."""
    async with ibkr.get_client() as client:
        status = await client.auth_status()
        await client.tickle()
    competing = isinstance(status, dict) and bool(status.get("competing"))
    note = " (another session competes for it)" if competing else ""
    return f"the gateway at {ibkr.base_url} is authenticated{note}; session kept alive"


def gateway_status(ibkr: IbkrClientResource) -> tuple[bool, str]:
    """(healthy, message) for the gateway ``ibkr`` points at."""
    url = ibkr.base_url
    try:
        return True, asyncio.run(probe_gateway(ibkr))
    except NotAuthenticatedError as error:
        return False, (
            f"LOGIN NEEDED: the gateway at {url} is not authenticated; open "
            f"{login_url(url)} in a browser and log in ({error})"
        )
    except TransportError as error:
        return False, (
            f"the gateway at {url} is not reachable ({error}); start it: `ib-pipeline sim` "
            "(or `make sim`) for the bundled simulator, or the Client Portal Gateway"
        )
    except IbkrError as error:
        return False, f"the gateway at {url} answered with an error: {error}"


@dg.sensor(
    name=GATEWAY_SENSOR,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Checks the gateway's login every minute, keeps its session alive (/tickle) "
    "and reports when a browser login is needed, naming the URL.",
)
def gateway_sensor(context: dg.SensorEvaluationContext, ibkr: IbkrClientResource) -> dg.SkipReason:
    healthy, message = gateway_status(ibkr)
    if healthy:
        context.log.info(message)
    else:
        context.log.warning(message)
    return dg.SkipReason(message)
