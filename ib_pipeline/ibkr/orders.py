"""Orders: the trading guard, the confirmation (reply) flow, and live-order polling.

Placing an order is the one thing this client does that costs money, so it is guarded twice:
`require_trading_allowed` refuses unless the client was created with ``allow_trading=True``,
and a live (non-paper) account additionally needs ``allow_live_trading=True``. A paper account
is one the gateway flags ``isPaper`` (when it says) whose id starts with ``D``.

The gateway may answer an order with precautionary questions (``[{"id", "message",
"messageIds"}]``), each to be confirmed with ``POST /iserver/reply/{id}``. The client confirms
only questions whose message ids the caller listed in ``accept_message_ids``; for any other it
answers ``{"confirmed": false}``, which makes the gateway discard the order (so nothing is left
pending), and raises `OrderConfirmationRefusedError` carrying the question's text.

What this module must never do: place or confirm an order without the guard, or resend an
order request after the gateway may have acted on it (order endpoints are not idempotent, so
the pipeline never retries them after a timeout or 5xx).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.errors import (
    GatewayError,
    InvalidPayloadError,
    OrderConfirmationRefusedError,
    OrderRejectedError,
    TradingDisabledError,
)
from ib_pipeline.ibkr.gateway_session import choose_account
from ib_pipeline.ibkr.normalize import is_paper_account
from ib_pipeline.ibkr.response import Call, RawResponse
from ib_pipeline.ibkr.settings import ClientSettings

Accounts = Callable[[], Awaitable[Mapping[str, Any]]]
"""The primed ``/iserver/accounts`` answer (`gateway_session.SessionKeeper.accounts`)."""


@dataclass(frozen=True)
class PlacedOrder:
    """An order the gateway accepted: its id and status, and every raw exchange of the flow
    (the placement, then each reply) for the raw zone."""

    order_id: str
    order_status: str
    account: str
    responses: tuple[RawResponse, ...]


def require_trading_allowed(settings: ClientSettings, action: str) -> None:
    """Raise `TradingDisabledError` unless the client may trade at all."""
    if not settings.allow_trading:
        raise TradingDisabledError(
            f"{action}: trading is disabled; create the client with allow_trading=True "
            f"(ClientSettings(allow_trading=True) or IB_PIPELINE_ALLOW_TRADING=true) to place "
            f"orders",
            endpoint=ep.PLACE_ORDER.name,
        )


def _require_account_allowed(
    settings: ClientSettings, listing: Mapping[str, Any], account: str
) -> None:
    flag = listing.get("isPaper")
    paper = is_paper_account(account, flag if isinstance(flag, bool) else None)
    if not paper and not settings.allow_live_trading:
        raise TradingDisabledError(
            f"place_order: account {account} is a live (non-paper) account "
            f"(isPaper={flag!r}); placing orders on it also needs allow_live_trading=True",
            endpoint=ep.PLACE_ORDER.name,
        )


async def send_reply(call: Call, reply_id: str, confirmed: bool) -> RawResponse:
    """``POST /iserver/reply/{reply_id}`` with ``{"confirmed": confirmed}``; an ``{"error"}``
    answer is returned as a payload for the caller to interpret."""
    if not isinstance(reply_id, str) or not reply_id.strip() or "/" in reply_id:
        raise ValueError(f"reply_id must be the id the gateway sent, got {reply_id!r}")
    return await call(
        ep.REPLY,
        path_params={"replyId": reply_id},
        body={"confirmed": confirmed},
        error_ok=lambda _text: True,
    )


async def place_order(
    call: Call,
    accounts: Accounts,
    order: Mapping[str, Any],
    *,
    settings: ClientSettings,
    account: str | None,
    accept_message_ids: frozenset[str],
) -> PlacedOrder:
    """Place ``order`` on ``account`` (default: `choose_account`) and walk the confirmation
    flow (see the module docstring)."""
    require_trading_allowed(settings, "place_order")
    if not isinstance(order, Mapping) or "conid" not in order:
        raise ValueError(f"place_order: order must be a mapping with a conid, got {order!r:.200}")
    listing = await accounts()
    account = account or choose_account(listing, settings.account)
    _require_account_allowed(settings, listing, account)
    response = await call(
        ep.PLACE_ORDER,
        path_params={"accountId": account},
        body={"orders": [dict(order)]},
        error_ok=lambda _text: True,
    )
    responses = [response]
    for _round in range(settings.max_reply_rounds + 1):
        answer = _single_answer(response)
        if "order_id" in answer:
            status = answer.get("order_status")
            return PlacedOrder(
                order_id=str(answer["order_id"]),
                order_status=str(status) if status is not None else "",
                account=account,
                responses=tuple(responses),
            )
        reply_id, message_ids, messages = _question(answer, response.endpoint)
        refused = [m for m in message_ids if m not in accept_message_ids]
        if refused or not message_ids:
            responses.append(await send_reply(call, reply_id, False))
            text = " | ".join(" ".join(m.split()) for m in messages)
            raise OrderConfirmationRefusedError(
                f"place_order: the gateway asked to confirm message(s) "
                f"{', '.join(message_ids) or '(no id)'} that were not in accept_message_ids; "
                f"answered confirmed=false, the order was discarded. The gateway said: {text}",
                message_ids=message_ids,
                messages=messages,
                endpoint=ep.REPLY.name,
            )
        if _round == settings.max_reply_rounds:
            responses.append(await send_reply(call, reply_id, False))  # leave nothing pending
            break
        response = await send_reply(call, reply_id, True)
        responses.append(response)
    raise GatewayError(
        f"place_order: still asked to confirm after {settings.max_reply_rounds} replies; "
        f"answered confirmed=false, the order was discarded",
        endpoint=ep.REPLY.name,
    )


def _single_answer(response: RawResponse) -> Mapping[str, Any]:
    payload = response.payload
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, str):
            raise OrderRejectedError(
                f"{response.endpoint}: the gateway rejected the order: {error}",
                endpoint=response.endpoint,
                status=200,
                body=error[:300],
            )
        raise InvalidPayloadError(
            f"{response.endpoint}: expected a list answer, got {payload!r:.200}",
            endpoint=response.endpoint,
        )
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], Mapping):
        raise InvalidPayloadError(
            f"{response.endpoint}: expected a non-empty list of objects, got {payload!r:.200}",
            endpoint=response.endpoint,
        )
    first: Mapping[str, Any] = payload[0]
    return first


def _question(answer: Mapping[str, Any], endpoint: str) -> tuple[str, list[str], list[str]]:
    reply_id = answer.get("id")
    if not isinstance(reply_id, str) or not reply_id:
        raise InvalidPayloadError(
            f"{endpoint}: answer is neither an order nor a question: {dict(answer)!r:.200}",
            endpoint=endpoint,
        )
    ids = answer.get("messageIds") or []
    texts = answer.get("message") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidPayloadError(f"{endpoint}: messageIds must be strings, got {ids!r:.100}")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list):
        raise InvalidPayloadError(f"{endpoint}: message must be text, got {texts!r:.100}")
    return reply_id, list(ids), [str(t) for t in texts]


async def live_orders_settled(call: Call, *, max_polls: int) -> RawResponse:
    """``GET /iserver/account/orders`` until it is no longer the session's first, empty,
    ``snapshot: false`` answer (at most ``max_polls`` calls, each paced)."""
    response = await call(ep.LIVE_ORDERS)
    for _ in range(max_polls - 1):
        payload = response.payload
        if not isinstance(payload, Mapping):
            raise InvalidPayloadError(
                f"live_orders: expected an object, got {payload!r:.200}", endpoint="live_orders"
            )
        if payload.get("snapshot") is not False or payload.get("orders"):
            break
        response = await call(ep.LIVE_ORDERS)
    return response
