"""Normaliser -> contract -> store -> DuckDB on simulator payloads, and replay from the raw zone.

- Over real HTTP: the client lands every response in the raw zone (its ``on_response`` hook);
  every dataset is loaded from the live responses; the clean data is deleted; a replay from the
  raw zone alone rebuilds byte-identical partitions; bars equal the simulator's ground truth.
- Bad data: the rows the simulator corrupted are exactly the rows quarantined, with the
  reason of their defect; a replay reproduces the clean data and the quarantine.
- After a normaliser (here: lot size) fix, a replay corrects the data without the API.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.conversion import InstrumentInfo, contracts_resolver, to_batches
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.replay import ReplayError, replay
from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.simulator.bad_data import BadDataSpec, BadKind
from ib_pipeline.simulator.history import (
    encode_body,
    format_start_time,
    history_response_with_report,
)
from ib_pipeline.simulator.market import Market
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.manifest import iso_ms
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import connect

AAPL, MSFT = 265598, 272093
SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)


def client_settings(sim: Simulator) -> ClientSettings:
    """Fast settings: pacing is not under test here (the simulator's is off too)."""
    quick = RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.01)
    unpaced = PacingLimits(
        global_per_s=1000.0,
        snapshot_per_s=1000.0,
        live_orders_interval_s=0.01,
        portfolio_accounts_interval_s=0.01,
    )
    return ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=quick,
        pacing=unpaced,
        snapshot_poll_interval_s=0.01,
    )


def snapshot_of(store: Store) -> dict[str, pa.Table]:
    return {name: store.read(name) for name in DATASETS}


def hashes_of(store: Store) -> dict[str, str]:
    return {
        f"{name}/{m.partition}": m.content_sha256
        for name in DATASETS
        for m in store.manifests(name)
    }


async def test_live_load_then_replay_rebuilds_every_dataset(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim(pacing=PacingConfig(enabled=False))
    root = tmp_path / "warehouse"
    store = Store(root, clock=FixedClock(SIM_NOW))
    zone = RawZone(root)
    start = datetime(2024, 11, 19, tzinfo=UTC)
    async with IbkrClient(client_settings(sim), on_response=zone, clock=sim.clock) as client:
        search = [
            await client.call(ep.CONTRACT_SEARCH, params={"symbol": s}) for s in ("AAPL", "MSFT")
        ]
        accounts = await client.call(ep.ACCOUNTS)
        aapl = await client.history_range(AAPL, "1min", start, SIM_NOW)
        msft = await client.history_range(MSFT, "5min", start, SIM_NOW, outside_rth=True)
        account = await client.account_id()
        await client.portfolio_accounts()
        positions = await client.all_positions(account)
        summary = await client.call(ep.ACCOUNT_SUMMARY, path_params={"accountId": account})
        orders = await client.live_orders_settled()
        quotes = await client.snapshots([AAPL, MSFT])

    store.load("contracts", to_batches("contracts", search), run_id="live")
    store.load("accounts", to_batches("accounts", [accounts]), run_id="live")
    resolver = contracts_resolver(store.read("contracts"))
    assert resolver(AAPL) == InstrumentInfo(US_EQUITY, 100.0)
    pages = [*aapl.pages, *msft.pages]
    bars = store.load("bars", to_batches("bars", pages, resolver), run_id="live")
    assert bars.rows_quarantined == 0
    store.load("positions", to_batches("positions", positions), run_id="live")
    store.load("account_summary", to_batches("account_summary", [summary]), run_id="live")
    store.load("orders", to_batches("orders", [orders]), run_id="live")
    store.load("quotes", to_batches("quotes", quotes, resolver), run_id="live")

    # the bars equal the simulator's ground truth in the requested range
    con = connect(root)
    for conid, bar, outside in ((AAPL, "1min", False), (MSFT, "5min", True)):
        truth = sim.truth.history_bars(conid, bar, start, SIM_NOW, outside_rth=outside)
        stored = con.sql(
            "SELECT conid, bar_size, ts, open, high, low, close, volume FROM bars "
            f"WHERE conid = {conid} AND ts >= TIMESTAMPTZ '{start.isoformat()}' ORDER BY ts"
        ).to_arrow_table()
        assert stored.num_rows == truth.num_rows > 0
        assert stored.to_pydict() == truth.to_pydict()
    assert con.execute("SELECT count(*) FROM positions").fetchone()[0] == len(  # type: ignore[index]
        sim.truth.positions(account)
    )
    assert con.execute("SELECT count(DISTINCT conid) FROM quotes").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM accounts").fetchone() == (len(sim.truth.accounts),)

    before, digests = snapshot_of(store), hashes_of(store)
    assert all(before[name].num_rows for name in DATASETS if name != "orders")
    for name in DATASETS:  # lose every clean partition; keep only the raw zone
        shutil.rmtree(root / name, ignore_errors=True)
    assert sum(store.read(name).num_rows for name in DATASETS) == 0
    for name in ("contracts", "accounts", "bars", "positions", "account_summary", "orders",
                 "quotes"):  # fmt: skip
        replay(store, name, run_id="replay")
    assert hashes_of(store) == digests
    after = snapshot_of(store)
    for name in DATASETS:
        assert after[name].equals(before[name]), name


def land_history(zone: RawZone, spec: BadDataSpec | None = None) -> list[Any]:
    """History responses of the simulator's market (with rows corrupted per ``spec``), landed
    in the zone as the client would; returns, per conid, the simulator's corruption report."""
    market = Market(0, FixedClock(SIM_NOW))
    reports = []
    for day, conid in ((date(2024, 11, 22), AAPL), (date(2024, 11, 25), MSFT)):
        end = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=22)
        params = {
            "conid": str(conid),
            "period": "1d",
            "bar": "1min",
            "startTime": format_start_time(end),
            "outsideRth": "false",
        }
        status, body, report = history_response_with_report(market, params, spec)
        assert status == 200 and body["data"]
        decoded = json.loads(encode_body(body))  # as the client decodes it: NaN literals too
        zone.land("history", params, decoded, SIM_NOW)
        reports.append((conid, report))
    return reports


def resolver_for(lot: float) -> Any:
    return lambda conid: InstrumentInfo(US_EQUITY, lot)


def test_bad_rows_are_exactly_the_corrupted_ones_and_replay_identically(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    store = Store(root, clock=FixedClock(SIM_NOW))
    zone = RawZone(root)
    spec = BadDataSpec(counts={kind: 2 for kind in BadKind}, seed=3)
    reports = land_history(zone, spec)
    assert all(report for _, report in reports)
    records = list(zone.records("history"))
    result = store.load("bars", to_batches("bars", records, resolver_for(100)), run_id="live")

    quarantine = store.quarantine("bars").to_pylist()
    found = {(orjson.loads(q["key_json"])["conid"], orjson.loads(q["key_json"])["ts"]):
             q["failed_checks"] for q in quarantine}  # fmt: skip
    expected_keys = set()
    for conid, report in reports:
        for bad in report:
            key = (conid, iso_ms(bad.ts_ms))
            if bad.kind is BadKind.UNSORTED_TIMESTAMP:
                assert key not in found  # out of order is not wrong: sorted on load
                continue
            expected_keys.add(key)
            reason = found[key]
            assert {
                BadKind.HIGH_BELOW_LOW: "high_ge_low",
                BadKind.NEGATIVE_VOLUME: "volume:greater_than_or_equal_to(0)",
                BadKind.NAN_PRICE: ":not_nullable",
                BadKind.INFINITE_PRICE: "prices_finite",
                BadKind.DUPLICATE_TIMESTAMP: "duplicate_key_conflict",
                BadKind.OUTSIDE_SESSION: "ts_in_session",
            }[bad.kind] in reason, (bad, reason)
    assert set(found) == expected_keys
    duplicates = sum(1 for _, r in reports for b in r if b.kind is BadKind.DUPLICATE_TIMESTAMP)
    # both versions of a conflicting key are quarantined (the warehouse cannot tell which is right)
    assert result.rows_quarantined == len(expected_keys) + duplicates
    assert len(quarantine) == result.rows_quarantined

    con = connect(root)
    clean_keys = {
        (conid, iso_ms(round(ts.timestamp() * 1000)))
        for conid, ts in con.execute("SELECT conid, ts FROM bars").fetchall()
    }
    assert not clean_keys & expected_keys
    before, digests = store.read("bars"), hashes_of(store)
    shutil.rmtree(root / "bars")
    replayed = replay(store, "bars", resolver=resolver_for(100), run_id="replay")
    assert replayed.write.rows_quarantined == result.rows_quarantined
    assert store.read("bars").equals(before)
    assert hashes_of(store) == digests
    assert store.quarantine("bars").num_rows == len(quarantine)  # same files, not doubled


def test_replay_after_a_normaliser_fix_needs_no_api(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    store = Store(root, clock=FixedClock(SIM_NOW))
    zone = RawZone(root)
    land_history(zone)  # clean responses
    records = list(zone.records("history"))
    store.load("bars", to_batches("bars", records, resolver_for(1)), run_id="buggy")
    wrong = store.read("bars")
    result = replay(store, "bars", resolver=resolver_for(100), run_id="fixed")
    fixed = store.read("bars")
    assert result.records == 2 and fixed.num_rows == wrong.num_rows
    shares = fixed["volume"].to_numpy()
    assert np.allclose(shares, wrong["volume"].to_numpy() * 100) and shares.max() > 1000
    assert {m.run_id for m in store.manifests("bars")} == {"fixed"}

    # only one partition asked for: the other keeps its buggy volumes
    store.load("bars", to_batches("bars", records, resolver_for(1)), run_id="buggy-again")
    replay(
        store,
        "bars",
        partitions=["bar_size=1min/session_date=2024-11-25"],
        resolver=resolver_for(100),
    )
    runs = {m.partition: m.run_id for m in store.manifests("bars")}
    assert runs["bar_size=1min/session_date=2024-11-22"] == "buggy-again"
    assert runs["bar_size=1min/session_date=2024-11-25"].startswith("replay-")


def test_unreadable_raw_records_stop_the_replay_before_any_write(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    store = Store(root, clock=FixedClock(SIM_NOW))
    zone = RawZone(root)
    land_history(zone)
    good = list(zone.records("history"))
    store.load("bars", to_batches("bars", good, resolver_for(100)), run_id="live")
    digests = hashes_of(store)
    bad = zone.land("history", {"conid": str(AAPL), "bar": "1min"}, {"data": [{"t": "x"}]},
                    SIM_NOW + timedelta(seconds=1))  # fmt: skip
    with pytest.raises(ReplayError, match=str(bad)):
        replay(store, "bars", resolver=resolver_for(100))
    assert hashes_of(store) == digests
    with pytest.raises(ReplayError, match="is not in the contracts dataset"):
        replay(store, "bars")  # no contracts loaded: the lot size is unknown, never guessed
