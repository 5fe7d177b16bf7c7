"""Schedules that keep the warehouse current, all stopped until a user turns them on.

Why: the warehouse must follow the market without anyone running backfills by hand, and must
not hammer the gateway on days the market is shut. Every schedule runs in America/New_York and
asks the exchange calendar (`ib_pipeline.calendars`, holidays and half days included) whether
the day is a trading day, answering a `SkipReason` that names the holiday otherwise:

- ``bars_<size>_daily_schedule`` (one per bars asset, since a run targets one partitioning):
  after the close on trading days, one single run over the partitions from the previous
  trading day to today. Including the previous day picks up what the previous run could not
  have (a forex session that ended after it ran, or a run that failed); gap-aware loading skips
  whatever is already complete, so this costs nothing when all is well.
- ``quotes_schedule``: every 5 minutes, only while the regular session is open (a half day
  closes at 13:00).
- ``portfolio_schedule``: positions, account summaries, accounts and live orders after the close.

The calendar a schedule follows is the US equity calendar when the universe holds US stocks,
else the calendar of its first instrument. Schedules never fetch anything themselves.
"""

from collections.abc import Sequence
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import dagster as dg

from assets.partitions import PARTITION_TIMEZONE, Granularity, granularity, key_for_date
from ib_pipeline.calendars import US_EQUITY, SessionCalendar, TradingHours, calendar_for
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.universe import Universe

SCHEDULE_TIMEZONE = PARTITION_TIMEZONE
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

DAILY_BARS_AFTER_CLOSE = time(16, 30)
"""When the daily bars schedules run on a regular-hours universe (the close is 16:00)."""
DAILY_BARS_AFTER_EXTENDED = time(20, 30)
"""When they run if the universe includes extended hours (which end at 20:00)."""
PORTFOLIO_AFTER_CLOSE = time(16, 15)

_TZ = ZoneInfo(SCHEDULE_TIMEZONE)


def schedule_hours(universe: Universe) -> TradingHours:
    """The trading hours the schedules follow (module doc)."""
    hours = universe.trading_hours
    return US_EQUITY if US_EQUITY in hours else hours[0]


def local_day(moment: datetime) -> date:
    """The New York date of an aware instant."""
    if moment.tzinfo is None:
        raise ValueError(f"schedule time {moment.isoformat()} must be timezone-aware")
    return moment.astimezone(_TZ).date()


def not_trading_reason(cal: SessionCalendar, day: date) -> str:
    """Why ``day`` has no session: a weekend or a holiday of the calendar."""
    kind = "a weekend" if day.weekday() >= 5 else "a holiday"
    return f"{day.isoformat()} is not a trading day of {cal.hours.calendar} ({kind}): nothing to do"


def bars_keys_for_day(cal: SessionCalendar, day: date, grain: Granularity) -> tuple[str, str]:
    """The partition range a daily run on session ``day`` loads: from the previous session's
    partition to ``day``'s."""
    previous = cal.previous_session_dates(day, 2)
    first = previous[0] if len(previous) == 2 else day
    return key_for_date(first, grain), key_for_date(day, grain)


def _execution_time(context: dg.ScheduleEvaluationContext) -> datetime:
    scheduled = context.scheduled_execution_time
    if scheduled is None:
        raise ValueError("the schedule was evaluated without a scheduled execution time")
    return scheduled


def build_bars_schedule(
    asset: dg.AssetsDefinition, universe: Universe, label: str
) -> dg.ScheduleDefinition:
    """The after-close schedule of one bars asset (module doc)."""
    grain = granularity(parse_bar_size(label))
    at = DAILY_BARS_AFTER_EXTENDED if universe.outside_rth else DAILY_BARS_AFTER_CLOSE
    cal = calendar_for(schedule_hours(universe))
    asset_key = asset.key

    @dg.schedule(
        name=f"bars_{label}_daily_schedule",
        cron_schedule=f"{at.minute} {at.hour} * * 1-5",
        execution_timezone=SCHEDULE_TIMEZONE,
        target=dg.AssetSelection.assets(asset_key),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"{label} bars after the close on trading days of {cal.hours.calendar}: one run "
            "over the partitions from the previous trading day to today."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = local_day(_execution_time(context))
        if not cal.is_session(day):
            return dg.SkipReason(not_trading_reason(cal, day))
        first, last = bars_keys_for_day(cal, day, grain)
        return dg.RunRequest(
            run_key=f"bars_{label}-{day.isoformat()}",
            asset_selection=[asset_key],
            tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
        )

    return _schedule


def build_quotes_schedule(quotes: dg.AssetsDefinition, universe: Universe) -> dg.ScheduleDefinition:
    """Quotes every 5 minutes while the regular session is open."""
    cal = calendar_for(schedule_hours(universe))

    @dg.schedule(
        name="quotes_schedule",
        cron_schedule="*/5 9-16 * * 1-5",
        execution_timezone=SCHEDULE_TIMEZONE,
        target=dg.AssetSelection.assets(quotes.key),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"A quote snapshot every 5 minutes during {cal.hours.calendar} regular hours.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        moment = _execution_time(context)
        day = local_day(moment)
        if not cal.is_session(day):
            return dg.SkipReason(not_trading_reason(cal, day))
        session = cal.session(day)
        if not session.rth_open <= moment < session.rth_close:
            opens = session.rth_open.astimezone(_TZ).strftime("%H:%M")
            closes = session.rth_close.astimezone(_TZ).strftime("%H:%M")
            return dg.SkipReason(
                f"{moment.astimezone(_TZ):%H:%M} New York is outside the regular session of "
                f"{day.isoformat()} ({opens}-{closes}): no quotes"
            )
        return dg.RunRequest(run_key=f"quotes-{moment.astimezone(_TZ):%Y%m%dT%H%M}")

    return _schedule


def build_portfolio_schedule(
    portfolio_assets: Sequence[dg.AssetsDefinition], universe: Universe
) -> dg.ScheduleDefinition:
    """Positions, summaries, accounts and live orders after the close on trading days."""
    cal = calendar_for(schedule_hours(universe))
    at = PORTFOLIO_AFTER_CLOSE

    @dg.schedule(
        name="portfolio_schedule",
        cron_schedule=f"{at.minute} {at.hour} * * 1-5",
        execution_timezone=SCHEDULE_TIMEZONE,
        target=dg.AssetSelection.assets(*[k for a in portfolio_assets for k in a.keys]),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="End-of-day snapshot of accounts, positions, summaries and live orders.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = local_day(_execution_time(context))
        if not cal.is_session(day):
            return dg.SkipReason(not_trading_reason(cal, day))
        return dg.RunRequest(run_key=f"portfolio-{day.isoformat()}")

    return _schedule


def build_schedules(
    universe: Universe,
    bars_assets: Sequence[tuple[str, dg.AssetsDefinition]],
    quotes: dg.AssetsDefinition,
    portfolio_assets: Sequence[dg.AssetsDefinition],
) -> list[dg.ScheduleDefinition]:
    """Every schedule of the definitions."""
    schedules = [build_bars_schedule(asset, universe, label) for label, asset in bars_assets]
    schedules.append(build_quotes_schedule(quotes, universe))
    schedules.append(build_portfolio_schedule(portfolio_assets, universe))
    return schedules
