"""Positions listings in `conversion.to_batches`: what the client returns live and what the raw
zone holds (every page asked, probes and re-asks included) give the same snapshots; truncated
attempts are never snapshots; an empty account is a flat snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ib_pipeline.conversion import to_batches
from ib_pipeline.ibkr.normalize import FLAT_CONID
from ib_pipeline.raw_zone import RawRecord

T0 = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)


def page(account: str, number: int, size: int, second: int, first_conid: int = 1) -> RawRecord:
    rows: list[dict[str, Any]] = [
        {"acctId": account, "conid": first_conid + number * 100 + i, "position": 1.0}
        for i in range(size)
    ]
    params = {"accountId": account, "pageId": str(number)}
    return RawRecord("positions", params, rows, T0 + timedelta(seconds=second))


def snapshots(records: list[RawRecord]) -> list[tuple[str, datetime, list[int]]]:
    found = []
    for batch in to_batches("positions", records):
        table = batch.table
        (as_of,) = set(table.column("as_of").to_pylist())
        found.append((table.column("account")[0].as_py(), as_of, table.column("conid").to_pylist()))
    return found


def test_live_pages_and_the_raw_zone_give_the_same_snapshot() -> None:
    live = [page("U1", 0, 100, 0), page("U1", 1, 100, 1), page("U1", 2, 50, 2)]
    raw = [*live, page("U1", 3, 0, 3)]  # the probe
    assert snapshots(live) == snapshots(raw)
    ((_, _, conids),) = snapshots(raw)
    assert len(conids) == 250


def test_a_truncated_attempt_is_skipped() -> None:
    attempt = [page("U1", 0, 100, 0), page("U1", 1, 0, 1), page("U1", 2, 50, 2)]
    retry = [page("U1", 0, 100, 10), page("U1", 1, 100, 11), page("U1", 2, 50, 12)]
    found = snapshots([*attempt, *retry, page("U1", 3, 0, 13)])
    assert [(as_of, len(conids)) for _, as_of, conids in found] == [
        (T0 + timedelta(seconds=10), 250)
    ]


def test_an_empty_page_then_rows_on_the_same_page_is_truncated() -> None:
    attempt = [page("U1", 0, 100, 0), page("U1", 1, 0, 1), page("U1", 1, 100, 2)]
    assert snapshots(attempt) == []


def test_an_empty_account_is_one_flat_snapshot_live_and_replayed() -> None:
    first, again, probe = page("U2", 0, 0, 0), page("U2", 0, 0, 1), page("U2", 1, 0, 2)
    live = snapshots([again])
    replayed = snapshots([first, again, probe])
    assert live == replayed == [("U2", T0 + timedelta(seconds=1), [FLAT_CONID])]


def test_an_empty_page_zero_that_had_rows_when_asked_again() -> None:
    first, again, probe = page("U2", 0, 0, 0), page("U2", 0, 6, 1), page("U2", 1, 0, 2)
    assert snapshots([first, again, probe]) == snapshots([again])
    ((_, _, conids),) = snapshots([again])
    assert len(conids) == 6
