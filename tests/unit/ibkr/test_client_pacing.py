"""The client's pacer: even spacing, the history concurrency cap, the 429 pause and slow-down,
and sharing per event loop and gateway. Rates are set high so the test takes well under a
second; the assertions are lower bounds the pacer guarantees, not timings left to luck."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from ib_pipeline.ibkr.endpoints import PacingGroup
from ib_pipeline.ibkr.pacing import Pacer, shared_pacer
from ib_pipeline.ibkr.settings import PacingLimits

FAST = PacingLimits(
    global_per_s=100.0,
    history_concurrency=3,
    snapshot_per_s=50.0,
    live_orders_interval_s=0.2,
    after_429_rate_factor=0.5,
    after_429_recovery_s=0.3,
)
SLACK = 0.002  # event-loop timer granularity


async def admitted_times(pacer: Pacer, group: PacingGroup, count: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        async with pacer.slot(group):
            times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(count)))
    return sorted(times)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_global_rate_spaces_requests_evenly() -> None:
    pacer = Pacer(FAST)
    times = await admitted_times(pacer, PacingGroup.NONE, 12)
    assert min(gaps(times)) >= 1 / 100 - SLACK
    assert pacer.requests["none"] == 12


async def test_endpoint_rate_applies_on_top_of_the_global_one() -> None:
    pacer = Pacer(FAST)
    snapshot_times = await admitted_times(pacer, PacingGroup.SNAPSHOT, 6)
    assert min(gaps(snapshot_times)) >= 1 / 50 - SLACK
    orders = await admitted_times(pacer, PacingGroup.LIVE_ORDERS, 3)
    assert min(gaps(orders)) >= 0.2 - SLACK


async def test_history_concurrency_is_capped() -> None:
    pacer = Pacer(FAST)
    in_flight = high_water = 0

    async def request() -> None:
        nonlocal in_flight, high_water
        async with pacer.slot(PacingGroup.HISTORY):
            in_flight += 1
            high_water = max(high_water, in_flight)
            await asyncio.sleep(0.1)
            in_flight -= 1

    await asyncio.gather(*(request() for _ in range(10)))
    assert high_water == 3


async def test_an_abandoned_request_keeps_its_history_slot_a_while() -> None:
    """A request given up on (read timeout) is still running at the gateway, which still
    counts it: its slot is released only after the hold, not when the client stops waiting."""
    pacer = Pacer(PacingLimits(global_per_s=100.0, history_concurrency=1))
    loop = asyncio.get_running_loop()
    async with pacer.slot(PacingGroup.HISTORY):
        pass
    ended = loop.time()
    async with pacer.slot(PacingGroup.HISTORY) as lease:
        lease.abandon(0.2)
    abandoned = loop.time()
    assert abandoned - ended < 0.1  # an answered request frees its slot at once
    async with pacer.slot(PacingGroup.HISTORY):
        admitted = loop.time()
    assert admitted - abandoned >= 0.2 - SLACK
    assert pacer.lingering == 1


async def test_penalty_pauses_everything_then_slows_down() -> None:
    pacer = Pacer(FAST)
    loop = asyncio.get_running_loop()
    async with pacer.slot(PacingGroup.NONE):
        pass
    penalized_at = loop.time()
    pacer.penalize(0.25)
    assert pacer.penalties == 1
    assert pacer.paused_for_s > 0.2
    times = await admitted_times(pacer, PacingGroup.HISTORY, 4)
    assert times[0] >= penalized_at + 0.25 - SLACK
    assert min(gaps(times)) >= 1 / 50 - SLACK  # half the normal rate during the recovery
    await asyncio.sleep(0.35)  # past the recovery period: full rate again
    later = await admitted_times(pacer, PacingGroup.NONE, 4)
    assert min(gaps(later)) < 1 / 50


async def test_a_task_waiting_for_the_global_token_honours_a_new_penalty() -> None:
    pacer = Pacer(PacingLimits(global_per_s=5.0))
    loop = asyncio.get_running_loop()
    async with pacer.slot(PacingGroup.NONE):
        pass
    waiter = asyncio.ensure_future(admitted_times(pacer, PacingGroup.NONE, 1))
    await asyncio.sleep(0.05)  # the waiter now waits for the next global token (0.2 s)
    pacer.penalize(0.4)
    start = loop.time()
    (admitted,) = await waiter
    assert admitted >= start + 0.4 - 0.06


async def test_shared_per_loop_and_origin() -> None:
    a = shared_pacer("http://127.0.0.1:5000", FAST)
    assert shared_pacer("http://127.0.0.1:5000", FAST) is a
    assert shared_pacer("http://127.0.0.1:5001", FAST) is not a


def test_separate_event_loops_get_separate_pacers() -> None:
    async def get() -> Pacer:
        return shared_pacer("http://127.0.0.1:5000", FAST)

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert first is not second


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="after_429_rate_factor"):
        PacingLimits(after_429_rate_factor=1.5)
