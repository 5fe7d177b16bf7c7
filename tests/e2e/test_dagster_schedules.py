"""Schedules and the gateway sensor, evaluated as the daemon would: run requests on trading
days, skip reasons naming the holiday or the closed market otherwise, login needs named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster_support import Pipeline

from assets.resources import IbkrClientResource
from assets.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from assets.sensors import gateway_sensor

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

NY = ZoneInfo("America/New_York")


def evaluate(defs: dg.Definitions, name: str, at: datetime) -> dg.RunRequest | dg.SkipReason:
    schedule = defs.resolve_schedule_def(name)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=at))
    if data.run_requests:
        assert len(data.run_requests) == 1
        return data.run_requests[0]
    assert data.skip_message
    return dg.SkipReason(data.skip_message)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def test_every_schedule_is_stopped_by_default(pipeline: Pipeline) -> None:
    names = {s.name for s in pipeline.defs.schedules or []}
    assert names == {
        "bars_1min_daily_schedule", "bars_1d_daily_schedule", "quotes_schedule",
        "portfolio_schedule",
    }  # fmt: skip
    for schedule in pipeline.defs.schedules or []:
        assert schedule.default_status is dg.DefaultScheduleStatus.STOPPED
        assert schedule.execution_timezone == "America/New_York"


@pytest.mark.parametrize(
    ("at", "first", "last"),
    [
        (ny(2024, 11, 26, 16, 30), "2024-11-25", "2024-11-26"),
        # The day after Thanksgiving: back to the last session, including the holiday's forex.
        (ny(2024, 11, 29, 16, 30), "2024-11-27", "2024-11-29"),
        (ny(2024, 12, 2, 16, 30), "2024-11-29", "2024-12-02"),
    ],
)
def test_daily_bars_run_after_the_close_of_trading_days(
    pipeline: Pipeline, at: datetime, first: str, last: str
) -> None:
    request = evaluate(pipeline.defs, "bars_1min_daily_schedule", at)
    assert isinstance(request, dg.RunRequest)
    assert request.asset_selection == [dg.AssetKey("bars_1min")]
    assert request.tags[PARTITION_RANGE_START_TAG] == first
    assert request.tags[PARTITION_RANGE_END_TAG] == last
    partitions = pipeline.defs.resolve_assets_def("bars_1min").partitions_def
    assert partitions is not None
    assert partitions.has_partition_key(first) and partitions.has_partition_key(last)


def test_daily_bars_of_a_year_partition_span_new_year(pipeline: Pipeline) -> None:
    request = evaluate(pipeline.defs, "bars_1d_daily_schedule", ny(2025, 1, 2, 16, 30))
    assert isinstance(request, dg.RunRequest)
    assert (request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]) == (
        "2024",
        "2025",
    )


@pytest.mark.parametrize(
    ("at", "why"),
    [
        (ny(2024, 11, 28, 16, 30), "2024-11-28 is not a trading day of XNYS (a holiday)"),
        (ny(2024, 12, 25, 16, 30), "2024-12-25 is not a trading day of XNYS (a holiday)"),
        (ny(2024, 11, 30, 16, 30), "2024-11-30 is not a trading day of XNYS (a weekend)"),
    ],
)
def test_no_runs_on_holidays_or_weekends(pipeline: Pipeline, at: datetime, why: str) -> None:
    for name in ("bars_1min_daily_schedule", "bars_1d_daily_schedule", "portfolio_schedule"):
        skipped = evaluate(pipeline.defs, name, at)
        assert isinstance(skipped, dg.SkipReason)
        assert skipped.skip_message is not None and why in skipped.skip_message


@pytest.mark.parametrize(
    ("at", "runs", "why"),
    [
        (ny(2024, 11, 26, 9, 35), True, ""),
        (ny(2024, 11, 26, 15, 55), True, ""),
        (ny(2024, 11, 26, 9, 25), False, "outside the regular session of 2024-11-26 (09:30-16:00)"),
        (ny(2024, 11, 26, 16, 0), False, "outside the regular session"),
        (ny(2024, 11, 29, 12, 55), True, ""),
        (ny(2024, 11, 29, 13, 5), False, "(09:30-13:00)"),  # the half day after Thanksgiving
        (ny(2024, 11, 28, 11, 0), False, "a holiday"),
    ],
)
def test_quotes_only_during_regular_hours(
    pipeline: Pipeline, at: datetime, runs: bool, why: str
) -> None:
    answer = evaluate(pipeline.defs, "quotes_schedule", at)
    if runs:
        assert isinstance(answer, dg.RunRequest)
        assert answer.run_key == f"quotes-{at:%Y%m%dT%H%M}"
    else:
        assert isinstance(answer, dg.SkipReason)
        assert answer.skip_message is not None and why in answer.skip_message


def test_portfolio_after_the_close(pipeline: Pipeline) -> None:
    request = evaluate(pipeline.defs, "portfolio_schedule", ny(2024, 11, 26, 16, 15))
    assert isinstance(request, dg.RunRequest) and request.run_key == "portfolio-2024-11-26"
    schedule = pipeline.defs.resolve_schedule_def("portfolio_schedule")
    job = pipeline.defs.resolve_job_def(schedule.job_name)
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert selected == {"accounts", "positions", "account_summary", "orders"}


def sense(base_url: str) -> str:
    context = dg.build_sensor_context(
        resources={"ibkr": IbkrClientResource(base_url=base_url, max_attempts=1)}
    )
    result = gateway_sensor(context)
    assert isinstance(result, dg.SkipReason) and result.skip_message
    return result.skip_message


def test_gateway_sensor_keeps_the_session_alive(pipeline: Pipeline) -> None:
    before = pipeline.sim.stats()["endpoints"].get("POST /tickle", {}).get("requests", 0)
    message = sense(pipeline.sim.base_url)
    assert message.startswith("GATEWAY OK:") and pipeline.sim.base_url in message
    assert pipeline.sim.stats()["endpoints"]["POST /tickle"]["requests"] == before + 1


def test_gateway_sensor_names_the_login_url(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(authenticated=False)
    message = sense(sim.base_url)
    assert message.startswith("LOGIN NEEDED")
    assert f"open {sim.url} in a browser" in message


def test_gateway_sensor_reports_an_unreachable_gateway(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1/api"
    message = sense(url)
    assert message.startswith(f"GATEWAY DOWN: no gateway at {url}")
    assert "start `ib-pipeline sim`" in message and "or set IB_PIPELINE_BASE_URL" in message
    assert "\n" not in message
