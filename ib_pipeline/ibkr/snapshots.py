"""Market-data snapshots, with the gateway's pre-flight handled by the client.

The first snapshot request for a conid in a brokerage session is a "pre-flight": the gateway
answers ``{"conid", "conidEx"}`` without fields and starts streaming; the data arrives on later
calls. ibind leaves that to its caller; here `fetch_snapshots` polls each batch (at most 100
conids and 50 fields per request) until every conid has delivered at least one requested
field, pacing the polls, and raises `SnapshotNotReadyError` naming the conids that never did.

What this module must never do: return a pre-flight answer as if it were data, or poll without
bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.errors import InvalidPayloadError, SnapshotNotReadyError
from ib_pipeline.ibkr.normalize import snapshot_has_fields
from ib_pipeline.ibkr.parsing import conid as parse_conid
from ib_pipeline.ibkr.response import Call, RawResponse

MAX_CONIDS = 100
"""Conids per snapshot request (the gateway's limit)."""

MAX_FIELDS = 50
"""Fields per snapshot request (the gateway's limit)."""

DEFAULT_FIELDS: tuple[str, ...] = (
    "31", "84", "86", "85", "88", "7059", "87", "7762", "7295", "70", "71", "7296", "7741",
    "82", "83", "55", "6509",
)  # fmt: skip
"""Every field the `normalize.snapshot_quotes` table has a column for."""


def _unique_conids(conids: Sequence[int]) -> list[int]:
    if isinstance(conids, str | bytes) or not isinstance(conids, Sequence):
        raise ValueError(f"snapshot: conids must be a sequence of integers, got {conids!r:.100}")
    seen: dict[int, None] = {}
    for value in conids:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"snapshot: conid {value!r} is not a positive integer")
        seen[value] = None
    if not seen:
        raise ValueError("snapshot: at least one conid is required")
    return list(seen)


def _unique_fields(fields: Sequence[str]) -> list[str]:
    if isinstance(fields, str | bytes) or not isinstance(fields, Sequence):
        raise ValueError(f"snapshot: fields must be a sequence of field ids, got {fields!r:.100}")
    unique = list(dict.fromkeys(fields))
    bad = [f for f in unique if not isinstance(f, str) or not f.strip() or "," in f]
    if bad:
        raise ValueError(f"snapshot: invalid field id(s) {bad!r}")
    if not unique:
        raise ValueError("snapshot: at least one field is required")
    if len(unique) > MAX_FIELDS:
        raise ValueError(
            f"snapshot: {len(unique)} fields requested; the gateway accepts at most {MAX_FIELDS}"
        )
    return unique


def snapshot_params(conids: Sequence[int], fields: Sequence[str]) -> dict[str, str]:
    """Query parameters of one snapshot request; ValueError beyond the gateway's limits."""
    ids = _unique_conids(conids)
    if len(ids) > MAX_CONIDS:
        raise ValueError(
            f"snapshot: {len(ids)} conids in one request; the gateway accepts at most "
            f"{MAX_CONIDS} (use snapshots() to batch)"
        )
    return {"conids": ",".join(map(str, ids)), "fields": ",".join(_unique_fields(fields))}


def delivered_conids(payload: Any, fields: Sequence[str]) -> set[int]:
    """Conids of a snapshot answer that carry at least one of ``fields`` (not pre-flights)."""
    if not isinstance(payload, list):
        raise InvalidPayloadError(
            f"snapshot: expected a list, got {payload!r:.200}", endpoint=ep.SNAPSHOT.name
        )
    wanted = set(fields)
    delivered: set[int] = set()
    for entry in payload:
        if not isinstance(entry, Mapping) or "conid" not in entry:
            raise InvalidPayloadError(
                f"snapshot: entry without a conid: {entry!r:.200}", endpoint=ep.SNAPSHOT.name
            )
        if wanted.intersection(entry) or snapshot_has_fields(entry):
            delivered.add(parse_conid(entry["conid"], "snapshot conid"))
    return delivered


async def fetch_snapshots(
    call: Call,
    conids: Sequence[int],
    fields: Sequence[str] = DEFAULT_FIELDS,
    *,
    max_polls: int,
    poll_interval_s: float,
) -> list[RawResponse]:
    """One complete answer per batch of at most 100 conids (batches run concurrently), each
    polled at most ``max_polls`` times, ``poll_interval_s`` apart."""
    ids = _unique_conids(conids)
    field_list = _unique_fields(fields)
    batches = [ids[i : i + MAX_CONIDS] for i in range(0, len(ids), MAX_CONIDS)]
    polls = (_poll(call, b, field_list, max_polls, poll_interval_s) for b in batches)
    return list(await asyncio.gather(*polls))


async def _poll(
    call: Call, batch: list[int], fields: list[str], polls: int, interval_s: float
) -> RawResponse:
    params = snapshot_params(batch, fields)
    missing: set[int] = set(batch)
    for poll in range(polls):
        response = await call(ep.SNAPSHOT, params=params)
        missing = set(batch) - delivered_conids(response.payload, fields)
        if not missing:
            return response
        if poll + 1 < polls:
            await asyncio.sleep(interval_s)
    raise SnapshotNotReadyError(
        f"snapshot: no fields arrived after {polls} polls for conid(s) "
        f"{', '.join(map(str, sorted(missing)))}",
        conids=sorted(missing),
        endpoint=ep.SNAPSHOT.name,
    )
