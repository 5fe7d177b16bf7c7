"""The typed decode of landed history answers (`ibkr.history_wire`) against the general way.

A replay reads well-formed history records straight into columns; every other record must be
left to the general way (orjson and `normalize.history_bars`'s readers). Both ways must give
the same batches, bit for bit, so these tests land real raw records and read each both ways.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ib_pipeline.conversion import InstrumentInfo, instrument_info, to_batches
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.history_wire import HistoryColumns, decode_history_record
from ib_pipeline.ibkr.normalize import history_bars, history_md_availability
from ib_pipeline.raw_zone import RawZone, compress, decompress

T0 = 1_732_631_400_000  # 2024-11-26 14:30Z, a session's first minute
PARAMS = {"conid": "265598", "bar": "1min", "period": "1d", "outsideRth": "false"}
FETCHED = datetime(2024, 11, 26, 21, 0, tzinfo=UTC)


def bar(minute: int, **values: Any) -> dict[str, Any]:
    row = {"t": T0 + 60_000 * minute, "o": 10.0, "h": 10.5, "l": 9.5, "c": 10.25, "v": 12.0}
    row.update(values)
    return row


EDGE_NUMBERS: list[Any] = [
    0.1,
    1 / 3,
    5e-324,  # the smallest subnormal
    1.7976931348623157e308,
    123.456789012345678,
    2**53 + 1,  # an integer that a double cannot hold exactly: rounds to nearest
    2**63 + 12345,  # beyond int64: a Python int through the general way
    10**30,
    7,
    0,
]


def land(tmp_path: Path, payload: Any) -> tuple[RawZone, str]:
    zone = RawZone(tmp_path)
    rel = zone.land("/iserver/marketdata/history", PARAMS, payload, FETCHED)
    assert rel is not None
    return zone, rel


def both_ways(zone: RawZone, rel: str) -> tuple[Any, Any]:
    """The record read the general way and read with history columns."""
    return zone.read(rel), zone.read(rel, history_columns=True)


def assert_same_batches(general: Any, typed: Any) -> None:
    plain, fast = to_batches("bars", [general], _resolver), to_batches("bars", [typed], _resolver)
    assert len(plain) == len(fast) == 1
    assert plain[0].source == fast[0].source
    assert plain[0].table.schema == fast[0].table.schema
    for left, right in zip(plain[0].table.columns, fast[0].table.columns, strict=True):
        a, b = left.combine_chunks(), right.combine_chunks()
        if pa.types.is_floating(a.type):  # bit for bit: -0.0 and 0.0 differ here, NaN = NaN
            assert a.is_null().equals(b.is_null())
            bits = [np.asarray(c.fill_null(0.0).to_numpy()).view(np.int64) for c in (a, b)]
            assert np.array_equal(*bits)
        else:
            assert a.equals(b)


def _resolver(conid: int) -> InstrumentInfo:
    return instrument_info("STK", "NASDAQ", conid)


def test_a_well_formed_page_reads_into_the_same_batches_both_ways(tmp_path: Path) -> None:
    bars = [
        bar(i, o=value, h=value, l=value, c=value, v=value) for i, value in enumerate(EDGE_NUMBERS)
    ]
    bars.append(bar(len(bars), o=-0.0, c=-2.5e-7))
    zone, rel = land(tmp_path, {"data": bars, "mdAvailability": "S", "points": len(bars)})
    general, typed = both_ways(zone, rel)
    assert isinstance(typed.payload, HistoryColumns)
    assert isinstance(general.payload, dict)
    assert (typed.endpoint, typed.params, typed.fetched_at, typed.meta, typed.path) == (
        general.endpoint,
        general.params,
        general.fetched_at,
        general.meta,
        general.path,
    )
    assert history_md_availability(typed.payload) == history_md_availability(general.payload)
    assert_same_batches(general, typed)


def test_decimal_text_rounds_as_the_general_way_rounds(tmp_path: Path) -> None:
    """Numbers as a gateway may write them (exponents, long mantissas, integers beyond a
    double's precision, an integer minus zero), put into the landed text as written."""
    texts = ["1E5", "1.0e-7", "0.1000000000000000055511151231257827", "123456789012345678901",
             "9007199254740993", "2.2250738585072011e-308", "66.05", "-0"]  # fmt: skip
    zone, rel = land(tmp_path, {"data": [bar(0)]})
    text = decompress(zone.root.read_bytes(rel)).decode()
    rows = ",".join(
        f'{{"c":{v},"h":{v},"l":{v},"o":{v},"t":{T0 + 60_000 * i},"v":{v}}}'
        for i, v in enumerate(texts)
    )
    start = text.index('"data":[') + len('"data":[')
    end = text.index("]", start)
    landed = (text[:start] + rows + text[end:]).encode()
    zone.root.write_atomic(rel, compress(landed))
    general, typed = both_ways(zone, rel)
    assert isinstance(typed.payload, HistoryColumns)
    assert typed.payload.open.tolist() == [float(v) for v in texts]  # -0 is the integer 0
    assert_same_batches(general, typed)


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [bar(0, c="10.25")]},  # a string price
        {"data": [bar(0, c=None)]},  # null
        {"data": [{k: v for k, v in bar(0).items() if k != "v"}]},  # a key missing
        {"data": [bar(0, t=float(T0))]},  # t as a float
        {"data": [bar(0, t=2**53)]},  # t beyond what the bulk reader holds exactly
        {"data": [bar(0, o=True)]},  # a boolean
        {"data": [bar(0), "not a bar"]},
        {"data": "none"},
        {"error": "No data."},
        [bar(0)],  # not an object
        {"data": [bar(0, c=math.nan)]},  # NaN literal (kept as such in the raw zone)
    ],
)
def test_any_other_page_is_left_to_the_general_way(tmp_path: Path, payload: Any) -> None:
    zone, rel = land(tmp_path, payload)
    assert decode_history_record(decompress(zone.root.read_bytes(rel))) is None
    general, typed = both_ways(zone, rel)
    assert typed == general  # the same JSON record: the general readers decide
    try:
        to_batches("bars", [general], _resolver)
    except (InvalidPayloadError, ValueError) as error:
        with pytest.raises(type(error)):
            to_batches("bars", [typed], _resolver)
    else:
        assert_same_batches(general, typed)


def test_an_empty_page_gives_an_empty_table(tmp_path: Path) -> None:
    zone, rel = land(tmp_path, {"data": []})
    general, typed = both_ways(zone, rel)
    assert isinstance(typed.payload, HistoryColumns)
    table = history_bars(typed.payload, conid=265598, bar_size="1min", lot_size=100)
    assert table.num_rows == 0
    assert_same_batches(general, typed)
