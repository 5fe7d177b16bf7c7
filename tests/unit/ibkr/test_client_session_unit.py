"""Session upkeep and retry decisions without a network: a scripted ``send`` plays the gateway."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.client import _retry_after_s
from ib_pipeline.ibkr.endpoints import Endpoint, Priming
from ib_pipeline.ibkr.errors import (
    GatewayError,
    IbkrError,
    NotAuthenticatedError,
    RateLimitedError,
    TransportError,
    excerpt,
    redact,
)
from ib_pipeline.ibkr.gateway_session import SessionKeeper, priming_asked_for
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.ibkr.retry import Transient, call_with_retries, is_retryable, mark
from ib_pipeline.ibkr.settings import RetryPolicy

BASE = "https://localhost:5000/v1/api"
EXAMPLES = Path(__file__).resolve().parents[3] / "spec" / "examples"


class ScriptedGateway:
    """Answers each endpoint with the next payload of its script; records every call."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = script
        self.calls: list[tuple[str, Mapping[str, Any] | None]] = []

    async def send(self, endpoint: Endpoint, body: Mapping[str, Any] | None) -> RawResponse:
        self.calls.append((endpoint.name, body))
        answer = self.script[endpoint.name].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return RawResponse(endpoint.name, dict(body or {}), answer, datetime.now(UTC))


def keeper(gateway: ScriptedGateway, bearer: str | None = None) -> SessionKeeper:
    return SessionKeeper(
        gateway.send, base_url=BASE, bearer_source=bearer, keepalive_interval_s=None
    )


async def test_documented_unauthenticated_status_fails_with_login_instructions() -> None:
    status = json.loads((EXAMPLES / "auth_status_3.json").read_text())
    gateway = ScriptedGateway({"auth_status": [status]})
    with pytest.raises(NotAuthenticatedError) as info:
        await keeper(gateway).ensure_authenticated()
    message = str(info.value)
    assert message.startswith(f"the gateway at {BASE} is not authenticated")
    assert "log in at https://localhost:5000" in message
    assert [name for name, _ in gateway.calls] == ["auth_status"]  # no re-auth without SSO


async def test_brokerage_layer_down_is_reestablished_once() -> None:
    gateway = ScriptedGateway(
        {
            "auth_status": [
                {"authenticated": False, "connected": True},
                {"authenticated": True, "connected": True},
            ],
            "ssodh_init": [{"authenticated": True}],
        }
    )
    session = keeper(gateway)
    session._primed.add(Priming.ISERVER_ACCOUNTS)
    await session.ensure_authenticated()
    assert [name for name, _ in gateway.calls] == ["auth_status", "ssodh_init", "auth_status"]
    assert gateway.calls[1][1] == {"publish": True, "compete": True}
    assert Priming.ISERVER_ACCOUNTS not in session._primed  # a new session needs priming


async def test_refused_token_names_where_it_came_from() -> None:
    refused = NotAuthenticatedError("auth_status: HTTP 401", status=401)
    gateway = ScriptedGateway({"auth_status": [refused]})
    with pytest.raises(NotAuthenticatedError, match="environment variable IBKR_ACCESS_TOKEN"):
        await keeper(gateway, "environment variable IBKR_ACCESS_TOKEN").ensure_authenticated()


async def test_priming_happens_once_per_session() -> None:
    accounts = {"accounts": ["DU1"], "isPaper": True}
    gateway = ScriptedGateway({"accounts": [accounts, accounts], "portfolio_accounts": [[]]})
    session = keeper(gateway)
    both = frozenset({Priming.ISERVER_ACCOUNTS, Priming.PORTFOLIO_ACCOUNTS})
    await session.prime(both)
    await session.prime(both)
    assert [name for name, _ in gateway.calls] == ["accounts", "portfolio_accounts"]
    assert await session.accounts() == accounts
    await session.reprime(frozenset({Priming.ISERVER_ACCOUNTS}), "snapshot", "query /accounts")
    assert [name for name, _ in gateway.calls][-1] == "accounts"


@pytest.mark.parametrize(
    ("text", "which"),
    [
        ("Please query /accounts first", Priming.ISERVER_ACCOUNTS),
        ("please QUERY /iserver/accounts FIRST.", Priming.ISERVER_ACCOUNTS),
        ("Please query /portfolio/accounts first", Priming.PORTFOLIO_ACCOUNTS),
        ("No data.", None),
    ],
)
def test_priming_requests_are_recognised(text: str, which: Priming | None) -> None:
    found = priming_asked_for(text)
    assert found == (None if which is None else frozenset({which}))


def test_retry_scopes() -> None:
    timeout = mark(TransportError("read timeout"), Transient.IDEMPOTENT)
    refused = mark(RateLimitedError("429"), Transient.ALWAYS)
    client_error = mark(GatewayError("400", status=400), Transient.NEVER)
    assert is_retryable(timeout, idempotent=True) and not is_retryable(timeout, idempotent=False)
    assert is_retryable(refused, idempotent=False)
    assert not is_retryable(client_error, idempotent=True)
    assert not is_retryable(ValueError("x"), idempotent=True)
    assert ep.PLACE_ORDER.idempotent is False and ep.REPLY.idempotent is False
    assert ep.HISTORY.idempotent is True


async def test_retries_are_bounded_and_reraise_the_typed_error() -> None:
    attempts = 0

    async def failing() -> None:
        nonlocal attempts
        attempts += 1
        raise mark(GatewayError("history: HTTP 503", status=503), Transient.IDEMPOTENT)

    policy = RetryPolicy(max_attempts=4, backoff_initial_s=0.001, backoff_max_s=0.002, jitter_s=0)
    retried: list[BaseException] = []
    with pytest.raises(GatewayError, match="HTTP 503"):
        await call_with_retries(
            failing, policy=policy, idempotent=True, endpoint="history", on_retry=retried.append
        )
    assert attempts == 4 and len(retried) == 3


def test_retry_after_header_forms() -> None:
    assert _retry_after_s("7") == 7.0
    assert _retry_after_s(" ") is None and _retry_after_s(None) is None
    assert _retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after_s("soon") is None


def test_excerpts_are_bounded_and_secrets_redacted() -> None:
    body = b'{"error": "bad token abc123"}' + b" x" * 500
    text = excerpt(body)
    assert len(text) <= 300 and text.endswith("...")
    assert redact(text, ["abc123", None, ""]) == text.replace("abc123", "***")
    error = IbkrError("m", endpoint="history", status=500, body="b")
    assert (error.endpoint, error.status, error.body, error.retry_scope) == ("history", 500, "b", 0)
