"""Answers that are not JSON: the gateway's login page and redirects to it (issue 10 item 12),
and bodies larger than the response size limit (item 13). A scripted gateway
(`httpx.MockTransport`) on a virtual clock: no network, no real waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from test_client_retries import AUTHENTICATED, BARS, HISTORY_PATH, settings
from virtual_clock import run_in_virtual_time

from ib_pipeline.ibkr import IbkrClient, NotAuthenticatedError
from ib_pipeline.ibkr.errors import GatewayError, ResponseTooLargeError

LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Client Portal Login</title></head>"
    "<body><form action='/sso/Login'>...</form></body></html>"
)
MIB = 1024 * 1024


class NotLoggedIn:
    """A gateway without a session: every path answers ``answer``; counts the requests."""

    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.paths: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return self.answer


def login_page() -> httpx.Response:
    return httpx.Response(200, text=LOGIN_PAGE, headers={"Content-Type": "text/html"})


def redirect(code: int = 302) -> httpx.Response:
    return httpx.Response(code, headers={"Location": "/sso/Login?forwardTo=22&RL=1&ip2loc=on"})


@pytest.mark.parametrize("answer", [login_page, redirect, lambda: redirect(303)])
def test_a_login_page_or_redirect_at_open_says_log_in_without_retrying(answer: Any) -> None:
    gateway = NotLoggedIn(answer())
    client = IbkrClient(settings(), transport=httpx.MockTransport(gateway.handle))

    async def scenario() -> None:
        async with client:
            pass

    with pytest.raises(NotAuthenticatedError, match=r"log in at http://127\.0\.0\.1:5000") as info:
        run_in_virtual_time(scenario())
    assert "invalid or truncated JSON" not in str(info.value)
    assert gateway.paths == ["/v1/api/iserver/auth/status"]  # once: not retried
    assert client.stats.retries.total() == 0


def test_a_login_page_mid_run_is_not_authenticated_after_one_check() -> None:
    """History answers the login page (the session ended mid-run): the client re-checks the
    session once (auth status answers the login page too) and raises, never retrying 5 times."""
    state = {"logged_in": True}
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if state["logged_in"]:
            state["logged_in"] = False
            return httpx.Response(200, json=AUTHENTICATED)
        return login_page()

    client = IbkrClient(settings(), transport=httpx.MockTransport(handle))

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    with pytest.raises(NotAuthenticatedError, match=r"HTML page, not JSON.*log in at"):
        run_in_virtual_time(scenario())
    assert paths.count(HISTORY_PATH) == 1
    assert client.stats.retries.total() == 0


def test_html_error_pages_of_a_proxy_stay_gateway_errors() -> None:
    """A 502 with an HTML body is a server error (retried), not a login page."""
    answer = httpx.Response(
        502, text="<html>bad gateway</html>", headers={"Content-Type": "text/html"}
    )

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/status"):
            return httpx.Response(200, json=AUTHENTICATED)
        return answer

    client = IbkrClient(settings(), transport=httpx.MockTransport(handle))

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    with pytest.raises(GatewayError, match="HTTP 502") as info:
        run_in_virtual_time(scenario())
    assert not isinstance(info.value, NotAuthenticatedError)


class HugeBody:
    """A history answer padded without end, streamed in 1 MiB chunks; counts what was taken."""

    def __init__(self, chunks: int = 150) -> None:
        self.chunks = chunks
        self.sent = 0
        self.requests = 0

    async def body(self) -> AsyncIterator[bytes]:
        yield b'{"symbol": "AAPL", "data": ['
        for _ in range(self.chunks):
            self.sent += 1
            yield b" " * MIB

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/status"):
            return httpx.Response(200, json=AUTHENTICATED)
        self.requests += 1
        return httpx.Response(200, content=self.body())


def test_a_body_over_the_size_limit_fails_at_the_limit_without_retry() -> None:
    huge = HugeBody()
    client = IbkrClient(
        settings(max_response_bytes=4 * MIB), transport=httpx.MockTransport(huge.handle)
    )

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    with pytest.raises(ResponseTooLargeError) as info:
        run_in_virtual_time(scenario())
    message = str(info.value)
    assert "history (GET http://127.0.0.1:5000/v1/api/iserver/marketdata/history)" in message
    assert "4194304 bytes (4 MiB)" in message and "IB_PIPELINE_MAX_RESPONSE_MB" in message
    assert info.value.limit == 4 * MIB and info.value.endpoint == "history"
    assert huge.sent <= 5  # stopped at the cap: 145 of 150 MiB never produced, never buffered
    assert huge.requests == 1  # not retried


def test_a_declared_length_over_the_limit_fails_before_reading() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/status"):
            return httpx.Response(200, json=AUTHENTICATED)
        return httpx.Response(200, content=b"x" * 2048)

    client = IbkrClient(settings(max_response_bytes=1024), transport=httpx.MockTransport(handle))

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    with pytest.raises(ResponseTooLargeError, match="answer of 2048 bytes exceeds"):
        run_in_virtual_time(scenario())


def test_a_body_under_the_limit_is_read_as_before() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/status"):
            return httpx.Response(200, json=AUTHENTICATED)
        return httpx.Response(200, json=BARS)

    client = IbkrClient(settings(max_response_bytes=4096), transport=httpx.MockTransport(handle))

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    assert run_in_virtual_time(scenario()) == BARS
