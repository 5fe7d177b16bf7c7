"""Futures by contract month through the real Dagster definitions: a rolled root (``roll:``)
loads each month in force under its own conid (bars equal to the simulator's truth, contract
rows with last trade date and multiplier), and the warehouse's continuous view switches months
on the roll date the rule computes, back-adjusted by the gap measured before the roll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pyarrow.compute as pc
from dagster_support import Pipeline

from assets.runs import run_assets, summarize_run
from ib_pipeline import futures
from ib_pipeline.calendars import calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.simulator import Simulator
from ib_pipeline.simulator.instruments import by_symbol
from ib_pipeline.universe import RollConfig
from ib_pipeline.warehouse import connect

ES_U4 = 950_102_409  # ES Sep 2024: ltd 2024-09-19
ES_Z4 = 950_102_412  # ES Dec 2024: ltd 2024-12-19
ROLL = date(2024, 9, 11)  # 2024-09-19 - 8 days
KEYS = ("2024-09-05", "2024-09-13")
ES_ROOT = by_symbol("ES", "FUT")[0].conid
ROLLED = {"symbol": "ES", "sec_type": "FUT", "exchange": "CME"}


def _universe(roll: dict[str, object] | None) -> dict[str, object]:
    item = dict(ROLLED) if roll is None else {**ROLLED, "roll": roll}
    return {
        "history_start": "2024-09-05",
        "history_end": "2024-09-20",
        "bar_sizes": ["1min"],
        "instruments": [item],
    }


def _stored(p: Pipeline, conid: int) -> list[dict[str, object]]:
    table = p.store().read("bars")
    mine = table.filter(pc.equal(table["conid"], conid))
    return mine.select(HISTORY_BARS.names).cast(HISTORY_BARS).sort_by("ts").to_pylist()


def test_rolled_future_loads_months_and_joins_them(
    sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    p = make_pipeline(sim, **_universe({"rule": "front", "days_before_ltd": 8}))
    assert run_assets(p.defs, ["contracts"]).success
    contracts = {r["conid"]: r for r in p.store().read("contracts").to_pylist()}
    assert set(contracts) == {ES_U4, ES_Z4}
    assert contracts[ES_U4]["expiry"] == "2024-09-19" and contracts[ES_U4]["multiplier"] == 50.0
    assert contracts[ES_Z4]["expiry"] == "2024-12-19"

    summary = summarize_run(run_assets(p.defs, ["bars_1min"], partition_range=KEYS))
    assert summary.success and not summary.failed_checks, summary.checks

    # Each month's bars are its own, equal to the truth over its load window.
    cal = calendar_for(p.universe.instruments[0].trading_hours)
    sessions = cal.sessions(date(2024, 9, 5), date(2024, 9, 13))
    windows = {
        ES_U4: (sessions[0].rth_open, cal.session(date(2024, 9, 10)).rth_close),
        ES_Z4: (sessions[0].rth_open, sessions[-1].rth_close),  # from ROLL - 7 days
    }
    for conid, (start, end) in windows.items():
        truth = sim.truth.history_bars(conid, "1min", start, end).sort_by("ts").to_pylist()
        stored = _stored(p, conid)
        assert stored == truth and len(truth) > 0, conid
    assert not _stored(p, ES_ROOT)

    # The rule's roll date, computed by the library, is the view's.
    months = [
        futures.ContractMonth("ES", ES_U4, 2024, 9, date(2024, 9, 19)),
        futures.ContractMonth("ES", ES_Z4, 2024, 12, date(2024, 12, 19)),
    ]
    assert futures.listed_rolls(months, RollConfig()) == [(ROLL, ES_U4, ES_Z4)]

    con = connect(p.root)
    rolls = con.execute("SELECT * FROM futures_rolls").fetchall()
    assert len(rolls) == 1
    root, bar_size, roll_date, from_conid, to_conid, gap, gap_ts = rolls[0]
    assert (root, bar_size, roll_date, from_conid, to_conid) == ("ES", "1min", ROLL, ES_U4, ES_Z4)
    last_old = con.execute(
        f"SELECT close FROM bars WHERE conid = {ES_U4} ORDER BY ts DESC LIMIT 1"
    ).fetchone()
    last_new = con.execute(
        f"SELECT close FROM bars WHERE conid = {ES_Z4} AND ts = ? LIMIT 1", [gap_ts]
    ).fetchone()
    assert last_old is not None and last_new is not None
    assert abs(gap - (last_new[0] - last_old[0])) < 1e-9 and gap != 0

    rows = con.execute(
        "SELECT session_date, conid, close, adj_close FROM futures_continuous ORDER BY ts"
    ).fetchall()
    assert {r[1] for r in rows if r[0] < ROLL} == {ES_U4}
    assert {r[1] for r in rows if r[0] >= ROLL} == {ES_Z4}
    assert all(abs(adj - close - gap) < 1e-9 for day, _, close, adj in rows if day < ROLL)
    assert all(adj == close for day, _, close, adj in rows if day >= ROLL)
    per_ts = con.execute("SELECT count(*), count(DISTINCT ts) FROM futures_continuous").fetchone()
    assert per_ts is not None and per_ts[0] == per_ts[1]
    con.close()


def test_future_without_roll_is_the_root_as_before(
    sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    p = make_pipeline(sim, **_universe(None))
    assert run_assets(p.defs, ["contracts"]).success
    stored = p.store().read("contracts").to_pylist()
    assert [r["conid"] for r in stored] == [ES_ROOT]
    summary = summarize_run(run_assets(p.defs, ["bars_1min"], partition_range=KEYS))
    assert summary.success and not summary.failed_checks, summary.checks
    start = calendar_for(p.universe.instruments[0].trading_hours).session(date(2024, 9, 5))
    end = datetime(2024, 9, 14, tzinfo=UTC)
    truth = sim.truth.history_bars(ES_ROOT, "1min", start.rth_open, end).sort_by("ts")
    assert _stored(p, ES_ROOT) == truth.to_pylist()
    con = connect(p.root)
    assert con.execute("SELECT count(*) FROM futures_continuous").fetchone() == (0,)
    con.close()
