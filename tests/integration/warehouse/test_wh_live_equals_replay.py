"""A live bar load and a replay of its raw zone write byte-identical partitions, and a load
never deletes the bars of instruments it did not fetch (issue 10 items 1 and 2).

The live load is `assets.bar_loader.load_bars` (what the Dagster asset runs) against the
simulator over HTTP, with the raw zone on. Its first range starts on 2024-11-22: the planner's
first page over-fetches the tail of 2024-11-21, which the live load drops (outside the range's
window) and which a replay must drop too, instead of writing a partial 2024-11-21 partition.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from assets.bar_loader import BarsLoad, load_bars
from assets.contract_lookup import search_instruments
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.replay import replay
from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.storage.store import Store
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.universe import Universe, parse_universe

KEYS = ["2024-11-20", "2024-11-22", "2024-11-25"]
"""Two ranges per instrument: 11-20 alone, and 11-22 + 11-25 (its first page reaches 11-21)."""


def settings(sim: Simulator) -> ClientSettings:
    return ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.01),
        pacing=PacingLimits(global_per_s=1000.0, snapshot_per_s=1000.0),
    )


def universe_of(*symbols: str) -> Universe:
    return parse_universe(
        {
            "history_start": "2024-10-01",
            "bar_sizes": ["1min"],
            "instruments": [
                {"symbol": s, "sec_type": "STK", "exchange": "ARCA" if s == "SPY" else "NASDAQ"}
                for s in symbols
            ],
        },
        source="test",
    )


async def load(
    sim: Simulator, store: Store, universe: Universe, keys: list[str], **options: Any
) -> BarsLoad:
    clock: Clock = sim.clock
    zone = RawZone(store.url)
    async with IbkrClient(settings(sim), on_response=zone, clock=clock) as client:
        _, contracts = await search_instruments(client, universe.instruments)
        store.write("contracts", contracts, source="test", run_id="contracts", mode="merge")
        return await load_bars(
            client,
            store,
            universe,
            parse_bar_size("1min"),
            keys,
            run_id=options.pop("run_id", "live"),
            now=clock.now(),
            **options,
        )


def data_files(root: Path, dataset: str) -> dict[str, bytes]:
    folder = root / dataset
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*.parquet"))
    }


async def test_live_load_and_replay_of_its_raw_zone_are_byte_identical(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim(pacing=PacingConfig(enabled=False))
    live = Store(tmp_path / "a", clock=sim.clock)
    done = await load(sim, live, universe_of("AAPL", "MSFT", "SPY"), KEYS)
    assert done.rows_quarantined == 0 and done.rows_written > 0

    fresh = Store(tmp_path / "b", clock=sim.clock)
    zone = RawZone(live.url)
    replay(fresh, "contracts", raw=zone, run_id="replay")
    result = replay(fresh, "bars", raw=zone, run_id="replay", workers=1)
    assert result.write.rows_quarantined == 0

    written, replayed = data_files(tmp_path / "a", "bars"), data_files(tmp_path / "b", "bars")
    assert sorted(written) == [f"bar_size=1min/session_date={k}/part.parquet" for k in KEYS]
    assert sorted(replayed) == sorted(written)  # no partial 2024-11-21 partition
    for name, data in written.items():
        assert replayed[name] == data, name
    # Manifests differ only in run_id, written_at and sources (the replay's name raw files).
    for before, after in zip(live.manifests("bars"), fresh.manifests("bars"), strict=True):
        assert before.content_sha256 == after.content_sha256
        assert (before.rows, before.conids, before.key_range) == (
            after.rows,
            after.conids,
            after.key_range,
        )


async def test_a_universe_change_keeps_the_other_instruments_bars(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim(pacing=PacingConfig(enabled=False))
    store = Store(tmp_path / "wh", clock=sim.clock)
    keys = ["2024-11-21", "2024-11-22"]
    first = await load(sim, store, universe_of("AAPL", "MSFT", "SPY"), keys, run_id="three")
    before = store.read("bars")
    second = await load(sim, store, universe_of("NVDA"), keys, run_id="nvda")
    after = store.read("bars")
    symbols = {c.conid: c.symbol for c in [*first.contracts, *second.contracts]}
    per_conid = {symbols[c]: n for c, n in _counts(after).items()}
    assert set(per_conid) == {"AAPL", "MSFT", "SPY", "NVDA"}
    assert per_conid["AAPL"] == per_conid["NVDA"] == 2 * 390
    kept = after.filter(_isin(after, [c.conid for c in first.contracts]))
    assert kept.sort_by([("conid", "ascending"), ("ts", "ascending")]).equals(
        before.sort_by([("conid", "ascending"), ("ts", "ascending")])
    )
    # A replay of the whole raw zone (replace mode) keeps every instrument too.
    replay(store, "bars", run_id="replay", workers=1)
    assert _counts(store.read("bars")) == _counts(after)


def _counts(table: Any) -> dict[int, int]:
    counts: dict[int, int] = {}
    for conid in table.column("conid").to_pylist():
        counts[conid] = counts.get(conid, 0) + 1
    return counts


def _isin(table: Any, conids: list[int]) -> Any:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    return pc.is_in(table.column("conid"), value_set=pa.array(conids, pa.int64()))
