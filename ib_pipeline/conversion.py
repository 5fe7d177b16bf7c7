"""Raw API responses -> store batches: the one conversion path of live loads and replays.

Why one path: a partition rebuilt from the raw zone must equal the one the live load wrote, byte
for byte. Live loads (the assets, with the client's `RawResponse`) and replays (the raw zone's
`RawRecord`) both call `to_batches`, so there is nothing to keep in step.

Conventions:
- ``history`` -> bars, one batch per answer (page): conid, bar size and ``outsideRth`` come
  from the request params; the lot size and trading hours from the instrument (`Resolver`:
  by default the warehouse's ``contracts`` dataset: security type and listing exchanges). A
  page the bar loader fetched for a range carries the range's window [start, end) in its
  ``meta`` (`history_window_meta`; the raw zone lands it): bars outside it at times a session
  covers belong to other partitions and are dropped (the over-fetched tail of a first page);
  bars at times no session covers are kept for the store to quarantine. A time repeated
  across pages: the store keeps the later page's row (the gateway's pages do not overlap).
- Unreadable values (``"N/A"`` as a price, ``"c": null``, no ``"v"``) cost their row, never
  the answer: quotes name them in the row's ``parse_errors``, bars leave the value null (the
  contract rejects the bar) and list ``<ts>: <reason>`` under the batch source's
  ``parse_errors``, which the quarantine record of the bar carries.
- ``snapshot`` -> quotes: only answers in which every requested conid delivered fields are
  used (pre-flight and partial polls are kept in the raw zone but not loaded); ``as_of`` is
  the answer's fetch time; entries are normalised per lot size.
- ``positions`` -> positions: a listing starts at page 0 and runs through the following pages
  of the same account; ``as_of`` is page 0's fetch time. A truncated listing (a short or empty
  page followed by a page with rows: an attempt the client fetched again) is skipped; a
  complete listing without rows is stored as a flat snapshot, one marker row with conid 0
  (`normalize.flat_positions`), so the latest snapshot of an emptied account shows no position.
- ``account_summary`` -> account_summary and ``live_orders`` -> orders: ``as_of`` is the fetch
  time. ``contract_search`` -> contracts, ``accounts`` -> accounts.

This module never calls the API and never writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ib_pipeline.calendars import US_EQUITY, TradingHours, trading_hours_for
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.history import placeable
from ib_pipeline.ibkr.normalize import US_STOCK_LOT_SIZE
from ib_pipeline.raw_zone import RawRecord
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.manifest import MD_AVAILABILITY_KEY, iso_ms
from ib_pipeline.storage.store import Batch
from ib_pipeline.timeframes import BarSize, parse_bar_size


class Response(Protocol):
    """What both the client's `RawResponse` and the raw zone's `RawRecord` carry."""

    @property
    def endpoint(self) -> str: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    @property
    def payload(self) -> Any: ...

    @property
    def fetched_at(self) -> datetime: ...


@dataclass(frozen=True)
class InstrumentInfo:
    """What the normalisers and contracts need to know about an instrument."""

    hours: TradingHours
    lot_size: float


Resolver = Callable[[int], InstrumentInfo]
"""conid -> its trading hours and lot size; raises ValueError for an unknown conid."""

ENDPOINTS: dict[str, str] = {
    "bars": "history",
    "quotes": "snapshot",
    "positions": "positions",
    "account_summary": "account_summary",
    "orders": "live_orders",
    "contracts": "contract_search",
    "accounts": "accounts",
}
"""The endpoint (client name, raw-zone folder) each dataset is built from."""

LOT_SIZED_SEC_TYPES = frozenset({"STK", "ETF"})

WINDOW = "window"
"""The ``meta`` key of a history page's range window: ``{"start": iso, "end": iso}``."""


def history_window_meta(start: datetime, end: datetime) -> dict[str, Any]:
    """The ``meta`` of the history pages of the range [start, end): land them with it
    (`raw_zone.landing_meta`) and convert them with it (`with_meta`)."""
    return {WINDOW: {"start": _iso(start), "end": _iso(end)}}


def with_meta(responses: Iterable[Response], meta: Mapping[str, Any]) -> list[RawRecord]:
    """``responses`` carrying ``meta``, as the raw zone gives them back to a replay."""
    return [
        RawRecord(r.endpoint, r.params, r.payload, r.fetched_at, meta=dict(meta)) for r in responses
    ]


def _iso(moment: datetime) -> str:
    return iso_ms(round(moment.timestamp() * 1000))


def _window(response: Response) -> tuple[datetime, datetime] | None:
    meta = getattr(response, "meta", None) or {}
    value = meta.get(WINDOW)
    if value is None:
        return None
    try:
        start, end = (
            datetime.fromisoformat(str(value[k]).replace("Z", "+00:00")).astimezone(UTC)
            for k in ("start", "end")
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidPayloadError(f"history: bad window {value!r} in meta: {error}") from None
    return start, end


def instrument_info(sec_type: str | None, exchanges: str | None, conid: int) -> InstrumentInfo:
    """Trading hours of the first listed exchange the calendars know, and the lot size
    (100 for US stocks and ETFs, else 1: stocks on non-US venues are reported in shares).
    ValueError naming the conid otherwise."""
    kind = (sec_type or "").upper()
    for exchange in (exchanges or "").split(","):
        try:
            hours = trading_hours_for(kind, exchange.strip())
        except ValueError:
            continue
        us_stock = kind in LOT_SIZED_SEC_TYPES and hours == US_EQUITY
        lot = float(US_STOCK_LOT_SIZE) if us_stock else 1.0
        return InstrumentInfo(hours, lot)
    raise ValueError(
        f"conid {conid}: no known trading hours for sec_type {sec_type!r} on exchanges "
        f"{exchanges!r}"
    )


def contracts_resolver(contracts: pa.Table) -> Resolver:
    """A resolver from a ``contracts`` table (the warehouse dataset or a search result)."""
    rows = {
        int(row["conid"]): row
        for row in contracts.select(["conid", "sec_type", "exchanges"]).to_pylist()
    }

    known: dict[int, InstrumentInfo] = {}  # a replay asks once per raw file

    def resolve(conid: int) -> InstrumentInfo:
        info = known.get(conid)
        if info is not None:
            return info
        row = rows.get(conid)
        if row is None:
            raise ValueError(
                f"conid {conid} is not in the contracts dataset: load its contract search "
                "first, or pass a resolver"
            )
        info = known[conid] = instrument_info(row["sec_type"], row["exchanges"], conid)
        return info

    return resolve


def _source(response: Response) -> dict[str, Any]:
    source: dict[str, Any] = {
        "endpoint": response.endpoint,
        "params": dict(response.params),
        "fetched_at": iso_ms(round(response.fetched_at.timestamp() * 1000)),
    }
    meta = getattr(response, "meta", None)
    if meta:
        source["meta"] = dict(meta)
    path = getattr(response, "path", "")
    if path:
        source["raw"] = path
    return source


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _param(response: Response, name: str) -> Any:
    if name not in response.params:
        raise InvalidPayloadError(f"{response.endpoint}: request params lack {name!r}")
    return response.params[name]


def _bars(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    if resolve is None:
        raise ValueError("bars: a resolver (conid -> trading hours, lot size) is required")
    batches = []
    for response in responses:
        conid = int(_param(response, "conid"))
        bar = parse_bar_size(str(_param(response, "bar")))
        info = resolve(conid)
        unreadable: list[normalize.Unreadable] = []
        table = normalize.history_bars(
            response.payload,
            conid=conid,
            bar_size=bar.label,
            lot_size=info.lot_size,
            unreadable=unreadable,
        )
        window = _window(response)
        if window is not None:
            table = _inside(table, window, bar, info.hours)
        outside = _flag(response.params.get("outsideRth", False))
        source = _source(response)
        if unreadable:
            source[PARSE_ERRORS] = _unreadable_bars(unreadable, table)
        availability = normalize.history_md_availability(response.payload)
        if availability is not None:
            source[MD_AVAILABILITY] = availability
        batches.append(
            Batch(
                table,
                source,
                window=window,
                hours={conid: info.hours},
                outside_rth=outside,
            )
        )
    return batches


PARSE_ERRORS = "parse_errors"
"""The source key listing a history page's unreadable values, for the quarantine's record."""

MD_AVAILABILITY = MD_AVAILABILITY_KEY
"""The source key of a history page's ``mdAvailability`` (real-time, delayed, frozen), kept in
the partition manifests' ``sources``; `Manifest.market_data_availability` reads it back."""


def _unreadable_bars(unreadable: list[normalize.Unreadable], table: pa.Table) -> list[str]:
    """``<ts>: <reason>`` of each unreadable value of a page whose bar is still in ``table``
    (not dropped as another partition's), e.g. ``2024-11-21T15:04:00.000Z: close:null``."""
    kept = set(np.asarray(table.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64).tolist())
    return [
        f"{iso_ms(u.ts_ms)}: {u.reason}"
        for u in unreadable
        if u.ts_ms is not None and u.ts_ms in kept
    ]


def _inside(
    table: pa.Table, window: tuple[datetime, datetime], bar: BarSize, hours: TradingHours
) -> pa.Table:
    """``table`` without the bars outside ``window`` at times a session covers (they belong to
    other partitions); a bar no session covers stays, for the store to quarantine."""
    stamps = np.asarray(table.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64)
    start, end = (round(t.timestamp() * 1000) for t in window)
    outside = (stamps < start) | (stamps >= end)
    if not outside.any():
        return table
    keep = ~outside
    keep[outside] = ~placeable(stamps[outside], bar, hours)
    return table.filter(pa.array(keep))


def _complete_snapshot(response: Response) -> bool:
    """Every requested conid delivered at least one field (not a pre-flight/partial poll)."""
    requested = {int(c) for c in str(response.params.get("conids", "")).split(",") if c}
    delivered = {
        int(entry["conid"])
        for entry in response.payload
        if isinstance(entry, Mapping) and "conid" in entry and normalize.snapshot_has_fields(entry)
    }
    return bool(requested) and requested <= delivered


def _quotes(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    if resolve is None:
        raise ValueError("quotes: a resolver (conid -> lot size) is required")
    batches = []
    for response in responses:
        if not isinstance(response.payload, list):
            raise InvalidPayloadError(f"snapshot: expected a list, got {response.payload!r:.200}")
        if not _complete_snapshot(response):
            continue
        by_lot: dict[float, list[Any]] = {}
        for entry in response.payload:
            lot = resolve(int(entry["conid"])).lot_size
            by_lot.setdefault(lot, []).append(entry)
        tables = [
            normalize.snapshot_quotes(
                entries, lot_size=lot, fallback_updated=response.fetched_at, lenient=True
            )
            for lot, entries in sorted(by_lot.items())
        ]
        batches.append(
            Batch(pa.concat_tables(tables), _source(response), as_of=response.fetched_at)
        )
    return batches


def _positions(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    listings: dict[str, list[Response]] = {}
    finished: list[list[Response]] = []
    for response in responses:
        account = str(_param(response, "accountId"))
        page = int(_param(response, "pageId"))
        if page == 0:
            if account in listings:
                finished.append(listings.pop(account))
            listings[account] = []
        elif account not in listings:
            raise InvalidPayloadError(
                f"positions: page {page} of {account} has no page 0 before it "
                f"({getattr(response, 'path', '') or 'live response'})"
            )
        if not isinstance(response.payload, list):
            raise InvalidPayloadError(f"positions: expected a list, got {response.payload!r:.200}")
        listings[account].append(response)
    finished.extend(listings.values())
    finished.sort(key=lambda f: f[0].fetched_at)
    batches = []
    for index, pages in enumerate(finished):
        first = pages[0]
        account = str(_param(first, "accountId"))
        if _superseded(pages, finished[index + 1 :]):
            continue  # an empty page 0 the client asked again: the next listing is the answer
        listed = _complete_listing(pages)
        if listed is None:
            continue  # a truncated attempt (the client fetched the listing again): never stored
        entries = [entry for page in listed for entry in page.payload]
        if entries:
            table = normalize.positions(entries, account=account, as_of=first.fetched_at)
        else:
            table = normalize.flat_positions(account=account, as_of=first.fetched_at)
        source = {**_source(first), "pages": len(listed)}
        batches.append(Batch(table, source))
    return batches


def _superseded(pages: Sequence[Response], later: Sequence[Sequence[Response]]) -> bool:
    """A lone empty page 0 followed by another listing of the same account: the client asked
    page 0 again to confirm it (`ibkr.portfolio`), and that next listing is the answer."""
    if len(pages) != 1 or pages[0].payload:
        return False
    account = _param(pages[0], "accountId")
    return any(_param(other[0], "accountId") == account for other in later)


def _complete_listing(pages: Sequence[Response]) -> list[Response] | None:
    """The pages of one positions listing (page 0 onwards) through its first short page, or
    None if it is truncated: a page shorter than the longest one (the page size), or empty,
    followed by a page with rows. The pages after the first short one are the client's probe
    of the end (`ibkr.portfolio.all_positions`): checked, not counted."""
    sizes = [len(page.payload) for page in pages]
    page_size = max(sizes)
    for index, size in enumerate(sizes):
        if size < page_size or size == 0:
            if any(sizes[index + 1 :]):
                return None
            return list(pages[: index + 1])
    return list(pages)


def _summary(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    return [
        Batch(
            normalize.account_summary(
                r.payload, account=str(_param(r, "accountId")), as_of=r.fetched_at
            ),
            _source(r),
        )
        for r in responses
    ]


def _orders(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    return [
        Batch(normalize.live_orders(r.payload), _source(r), as_of=r.fetched_at) for r in responses
    ]


def _contracts(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    return [Batch(normalize.contracts(r.payload), _source(r)) for r in responses]


def _accounts(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    return [Batch(normalize.accounts(r.payload), _source(r)) for r in responses]


_CONVERTERS: dict[str, Callable[[Sequence[Response], Resolver | None], list[Batch]]] = {
    "bars": _bars,
    "quotes": _quotes,
    "positions": _positions,
    "account_summary": _summary,
    "orders": _orders,
    "contracts": _contracts,
    "accounts": _accounts,
}


def to_batches(
    dataset: str, responses: Iterable[Response], resolver: Resolver | None = None
) -> list[Batch]:
    """Store batches for ``dataset`` from responses of its endpoint (`ENDPOINTS`), oldest
    first. ``resolver`` is needed for bars and quotes."""
    spec = dataset_spec(dataset)
    return _CONVERTERS[spec.name](list(responses), resolver)
