"""The penalty box (issue 10 item 7): a client waits it out once, with jitter, then runs at a
reduced rate; a second box is not waited out again. Scripted gateway on a virtual clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from test_client_retries import BARS, HISTORY_PATH, ScriptedGateway, ok, settings, status
from virtual_clock import run_in_virtual_time

from ib_pipeline.ibkr import IbkrClient
from ib_pipeline.ibkr.errors import RateLimitedError

BOXED = status(429, "penalty box", **{"Retry-After": "600"})


def run(gateway: ScriptedGateway, requests: int) -> IbkrClient:
    client = IbkrClient(settings(), transport=httpx.MockTransport(gateway.handle))

    async def scenario() -> Any:
        async with client:
            for _ in range(requests):
                await client.history(265598, "1d", "1h")

    run_in_virtual_time(scenario())
    return client


def test_the_penalty_box_is_waited_out_once_with_jitter_then_slower() -> None:
    wakes = []
    for _ in range(5):
        gateway = ScriptedGateway({HISTORY_PATH: [BOXED, ok(BARS), ok(BARS), ok(BARS)]})
        client = run(gateway, 3)
        boxed_at, woke_at, second, third = gateway.times(HISTORY_PATH)
        jitter = woke_at - boxed_at - 600
        assert 0 <= jitter <= client.settings.pacing.penalty_jitter_s + 0.01
        wakes.append(round(jitter, 3))
        assert client.pacer.boxed == 1
        reduced = 1 / (client.settings.pacing.global_per_s * 0.5)  # half rate from then on
        assert third - second >= reduced - 0.01
    assert len(set(wakes)) > 1  # clients boxed together do not wake together


def test_a_second_penalty_box_is_not_waited_out_again() -> None:
    gateway = ScriptedGateway({HISTORY_PATH: [BOXED, ok(BARS), BOXED, ok(BARS)]})
    with pytest.raises(RateLimitedError, match="not waiting again"):
        run(gateway, 2)
    assert len(gateway.times(HISTORY_PATH)) == 3  # the second box ended the run at once
