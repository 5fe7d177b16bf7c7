"""The client's pacer: even spacing, the history concurrency cap, the 429 pause and slow-down,
and sharing per event loop and gateway.

The timing tests run on a virtual clock (`virtual_clock`): the loop's time jumps to each timer
the pacer set, so the times asserted are the pacer's own schedule, identical on an idle machine
and on one whose cores are all busy, and the tests wait for nothing real."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from virtual_clock import TURN_S, run_in_virtual_time

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
LATE = 100 * TURN_S
"""How late after its scheduled time a request may be admitted: a few turns of the loop."""


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


def spaced(times: list[float], interval: float) -> bool:
    """Every gap is the interval: never shorter, and no longer than a few turns of the loop."""
    return all(interval <= gap <= interval + LATE for gap in gaps(times))


def test_global_rate_spaces_requests_evenly() -> None:
    pacer = Pacer(FAST)
    times = run_in_virtual_time(admitted_times(pacer, PacingGroup.NONE, 12))
    assert times[0] < LATE  # the first request waits for nothing
    assert spaced(times, 1 / 100)
    assert pacer.requests["none"] == 12


def test_endpoint_rate_applies_on_top_of_the_global_one() -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        pacer = Pacer(FAST)
        snapshots = await admitted_times(pacer, PacingGroup.SNAPSHOT, 6)
        return snapshots, await admitted_times(pacer, PacingGroup.LIVE_ORDERS, 3)

    snapshots, orders = run_in_virtual_time(scenario())
    assert spaced(snapshots, 1 / 50)
    assert spaced(orders, 0.2)


def test_history_concurrency_is_capped() -> None:
    pacer = Pacer(FAST)
    in_flight = high_water = 0

    async def request() -> None:
        nonlocal in_flight, high_water
        async with pacer.slot(PacingGroup.HISTORY):
            in_flight += 1
            high_water = max(high_water, in_flight)
            await asyncio.sleep(0.1)
            in_flight -= 1

    async def scenario() -> float:
        await asyncio.gather(*(request() for _ in range(10)))
        return asyncio.get_running_loop().time()

    finished = run_in_virtual_time(scenario())
    assert high_water == 3
    assert 0.4 <= finished < 0.4 + LATE  # four waves of at most three requests


def test_an_abandoned_request_keeps_its_history_slot_a_while() -> None:
    """A request given up on (read timeout) is still running at the gateway, which still
    counts it: its slot is released only after the hold, not when the client stops waiting."""
    pacer = Pacer(PacingLimits(global_per_s=100.0, history_concurrency=1))

    async def scenario() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        async with pacer.slot(PacingGroup.HISTORY):
            pass
        ended = loop.time()
        async with pacer.slot(PacingGroup.HISTORY) as lease:
            lease.abandon(0.2)
        abandoned = loop.time()
        async with pacer.slot(PacingGroup.HISTORY):
            admitted = loop.time()
        return ended, abandoned, admitted

    ended, abandoned, admitted = run_in_virtual_time(scenario())
    assert abandoned - ended <= 1 / 100 + LATE  # an answered request frees its slot at once
    assert 0.2 <= admitted - abandoned <= 0.2 + LATE
    assert pacer.lingering == 1


def test_penalty_pauses_everything_then_slows_down() -> None:
    pacer = Pacer(FAST)

    async def scenario() -> tuple[float, float, list[float], list[float]]:
        loop = asyncio.get_running_loop()
        async with pacer.slot(PacingGroup.NONE):
            pass
        penalized_at = loop.time()
        pacer.penalize(0.25)
        paused_for = pacer.paused_for_s
        times = await admitted_times(pacer, PacingGroup.HISTORY, 4)
        await asyncio.sleep(0.35)  # past the recovery period: full rate again
        later = await admitted_times(pacer, PacingGroup.NONE, 4)
        return penalized_at, paused_for, times, later

    penalized_at, paused_for, times, later = run_in_virtual_time(scenario())
    assert pacer.penalties == 1
    assert paused_for == pytest.approx(0.25)
    assert penalized_at + 0.25 <= times[0] <= penalized_at + 0.25 + LATE
    assert spaced(times, 1 / 50)  # half the normal rate during the recovery
    assert spaced(later, 1 / 100)


def test_a_task_waiting_for_the_global_token_honours_a_new_penalty() -> None:
    pacer = Pacer(PacingLimits(global_per_s=5.0))

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        async with pacer.slot(PacingGroup.NONE):
            pass
        waiting = asyncio.ensure_future(admitted_times(pacer, PacingGroup.NONE, 1))
        await asyncio.sleep(0.05)  # the waiter now waits for the next global token (0.2 s)
        pacer.penalize(0.4)
        penalized_at = loop.time()
        (admitted,) = await waiting
        return penalized_at, admitted

    penalized_at, admitted = run_in_virtual_time(scenario())
    assert penalized_at + 0.4 <= admitted <= penalized_at + 0.4 + LATE


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
