"""The raw zone: deterministic compressed records, no secrets, NaN kept, off switch."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from ib_pipeline.raw_zone import RawZone, decompress, endpoint_slug
from ib_pipeline.settings import DEFAULT_WAREHOUSE_ROOT, WarehouseSettings, parse_flag

FETCHED = datetime(2024, 11, 26, 18, 0, 0, 123000, tzinfo=UTC)
PAYLOAD: dict[str, Any] = {
    "data": [{"t": 1732644000000, "o": 1.5, "h": math.inf, "l": math.nan, "c": 1.5, "v": 3}],
    "symbol": "AAPL",
}


def test_a_landed_response_reads_back_exactly(tmp_path: Path) -> None:
    zone = RawZone(tmp_path)
    rel = zone.land("history", {"conid": "265598", "bar": "1min"}, PAYLOAD, FETCHED)
    assert rel is not None
    assert rel.startswith("raw/endpoint=history/date=2024-11-26/20241126T180000123Z-")
    assert rel.endswith(".json.zst")
    record = zone.read(rel)
    assert record.params == {"conid": "265598", "bar": "1min"}
    assert record.fetched_at == FETCHED
    bar = record.payload["data"][0]
    assert math.isinf(bar["h"]) and math.isnan(bar["l"])  # bad values survive for replay
    assert [r.path for r in zone.records("history")] == [rel]


def test_landing_is_deterministic(tmp_path: Path) -> None:
    zone = RawZone(tmp_path)
    rel = zone.land("history", {"b": 1, "a": 2}, PAYLOAD, FETCHED)
    first = (tmp_path / str(rel)).read_bytes()
    again = zone.land("history", {"a": 2, "b": 1}, PAYLOAD, FETCHED)
    assert again == rel
    assert (tmp_path / str(rel)).read_bytes() == first
    assert decompress(first).startswith(b'{"endpoint":"history","fetched_at":')


def test_secrets_never_land(tmp_path: Path) -> None:
    zone = RawZone(tmp_path)
    params = {"conid": "1", "access_token": "SECRET1", "Authorization": "Bearer SECRET2"}
    payload = {"session": "SECRET3", "nested": [{"cookie": "SECRET4", "password": "SECRET5"}]}
    rel = zone.land("accounts", params, payload, FETCHED, meta={"api_key": "SECRET6"})
    text = decompress((tmp_path / str(rel)).read_bytes())
    assert b"SECRET" not in text
    record = zone.read(str(rel))
    assert record.params["conid"] == "1"
    assert record.payload["nested"][0]["cookie"] == "[scrubbed]"


def test_hook_signature_and_off_switch(tmp_path: Path) -> None:
    zone = RawZone(tmp_path)
    zone("snapshot", {"conids": "1"}, [{"conid": 1}], FETCHED)  # the client's on_response
    assert zone.endpoints() == ["snapshot"]
    off = RawZone.from_settings(WarehouseSettings(root=str(tmp_path / "off"), raw_zone=False))
    assert off.land("snapshot", {}, [], FETCHED) is None
    assert not (tmp_path / "off").exists()


def test_records_filter_by_fetch_date_and_come_in_fetch_order(tmp_path: Path) -> None:
    zone = RawZone(tmp_path)
    later = zone.land("history", {"n": 2}, {}, datetime(2024, 11, 27, 1, tzinfo=UTC))
    earlier = zone.land("history", {"n": 1}, {}, FETCHED)
    assert zone.paths("history") == [earlier, later]
    assert zone.paths("history", since=date(2024, 11, 27)) == [later]
    assert zone.paths("history", until=date(2024, 11, 26)) == [earlier]


def test_hostile_endpoint_names_become_safe_folders() -> None:
    assert endpoint_slug("/iserver/marketdata/history") == "iserver_marketdata_history"
    assert endpoint_slug("../../etc/passwd") == "etc_passwd"
    with pytest.raises(ValueError):
        endpoint_slug("../..")


def test_settings_from_environment() -> None:
    assert WarehouseSettings.from_env({}) == WarehouseSettings(DEFAULT_WAREHOUSE_ROOT, True)
    env = {"IB_PIPELINE_WAREHOUSE": "s3://b/wh", "IB_PIPELINE_RAW_ZONE": "off"}
    assert WarehouseSettings.from_env(env) == WarehouseSettings("s3://b/wh", False)
    with pytest.raises(ValueError, match="IB_PIPELINE_RAW_ZONE='maybe'"):
        WarehouseSettings.from_env({"IB_PIPELINE_RAW_ZONE": "maybe"})
    assert parse_flag("X", " TRUE ")
