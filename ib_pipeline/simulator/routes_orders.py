"""Order endpoints: place, reply to a confirmation question, live orders, cancel.

The order flow itself lives in `ib_pipeline.simulator.broker_orders`; this module reads the JSON
bodies and query parameters and implements the live-orders quirk: the first call of a brokerage
session answers an empty list with ``snapshot: false``.

What it must never do: validate, fill or book an order (`broker_orders` and the `Broker` do).
"""

from __future__ import annotations

from aiohttp import web

from ib_pipeline.simulator.pacing import Limit
from ib_pipeline.simulator.routes_base import (
    Access,
    Priming,
    Route,
    json_response,
    respond,
    respond_to_body,
)
from ib_pipeline.simulator.state import SimState


async def place_order(request: web.Request, state: SimState) -> web.Response:
    account_id = request.match_info["accountId"]
    return await respond_to_body(request, lambda body: state.broker.orders.place(account_id, body))


async def reply(request: web.Request, state: SimState) -> web.Response:
    reply_id = request.match_info["replyId"]
    return await respond_to_body(request, lambda body: state.broker.orders.reply(reply_id, body))


async def live_orders(request: web.Request, state: SimState) -> web.Response:
    if state.session.first_live_orders_call():
        return json_response({"orders": [], "snapshot": False})
    orders = state.broker.orders.live_orders(request.query.get("filters"))
    return json_response({"orders": orders, "snapshot": True})


async def cancel_order(request: web.Request, state: SimState) -> web.Response:
    info = request.match_info
    return respond(state.broker.orders.cancel(info["accountId"], info["orderId"]))


ROUTES = (
    Route(
        "POST",
        "/iserver/account/{accountId}/orders",
        place_order,
        Access.BROKERAGE,
        Priming.ISERVER,
    ),
    Route("POST", "/iserver/reply/{replyId}", reply, Access.BROKERAGE, Priming.ISERVER),
    Route(
        "GET",
        "/iserver/account/orders",
        live_orders,
        Access.BROKERAGE,
        Priming.ISERVER,
        Limit.LIVE_ORDERS,
    ),
    Route(
        "DELETE",
        "/iserver/account/{accountId}/order/{orderId}",
        cancel_order,
        Access.BROKERAGE,
        Priming.ISERVER,
    ),
)
