"""The gateway sensor: is the gateway reachable and logged in; keep its session alive.

The Client Portal Gateway logs out after ~5 minutes without requests and resets its session
daily. Every minute this sensor checks the session, calls ``/tickle``, and skips with a reason
that differs between up (``GATEWAY OK``) and down (``GATEWAY DOWN``, ``LOGIN NEEDED``: what is
wrong and what to do), so the UI's tick history shows when a human must act. It never requests
runs and never fetches data. It runs by default; turn it off in the UI if no gateway runs.
"""

import dagster as dg

from assets.gateway import gateway_status
from assets.resources import IbkrClientResource

GATEWAY_SENSOR = "gateway_sensor"
INTERVAL_S = 60


@dg.sensor(
    name=GATEWAY_SENSOR,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Checks the gateway's login every minute, keeps its session alive (/tickle) "
    "and says in its skip reason when the gateway is down or a browser login is needed.",
)
def gateway_sensor(context: dg.SensorEvaluationContext, ibkr: IbkrClientResource) -> dg.SkipReason:
    status = gateway_status(ibkr)
    if status.healthy:
        context.log.info(status.message)
    else:
        context.log.warning(status.message)
    return dg.SkipReason(status.message)
