"""Turn raw API responses into store batches, live or from the raw zone: replay.

Why: after a normaliser fix, every partition can be rebuilt from what IBKR sent, without
calling the rate-limited API again. The same function, `to_batches`, turns responses into
`store.Batch` objects for a live load (the client's `RawResponse`) and for a replay (the raw
zone's `RawRecord`), so a replay equals the original load by construction. Assets should load
through it.

Conventions (one place, shared by live loads and replays)
---------------------------------------------------------
- ``history`` -> bars: conid, bar size and ``outsideRth`` come from the request params; the
  lot size and trading hours from the instrument (`Resolver`: by default the warehouse's
  ``contracts`` dataset: security type and listing exchanges).
- ``snapshot`` -> quotes: only answers in which every requested conid delivered fields are
  used (pre-flight and partial polls are kept in the raw zone but were not loaded); ``as_of``
  is the answer's fetch time; entries are normalised per lot size.
- ``positions`` -> positions: a listing starts at page 0 and runs through the following pages
  of the same account; ``as_of`` is page 0's fetch time.
- ``account_summary`` -> account_summary and ``live_orders`` -> orders: ``as_of`` is the fetch
  time. ``contract_search`` -> contracts, ``accounts`` -> accounts.
A response the normaliser rejects stops the replay before anything is written (`ReplayError`
names every file): a half-replayed partition in replace mode would lose rows.

This module never calls the API and never writes outside `Store.load`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import pyarrow as pa

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.normalize import US_STOCK_LOT_SIZE
from ib_pipeline.raw import RawZone
from ib_pipeline.sessions import TradingHours, trading_hours_for
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.manifest import iso_ms
from ib_pipeline.store import Batch, Store, WriteResult


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


class ReplayError(ValueError):
    """Responses the normalisers reject; nothing was written."""


def instrument_info(sec_type: str | None, exchanges: str | None, conid: int) -> InstrumentInfo:
    """Trading hours of the first listed exchange the calendars know, and the lot size
    (100 for US stocks and ETFs, else 1). ValueError naming the conid otherwise."""
    kind = (sec_type or "").upper()
    for exchange in (exchanges or "").split(","):
        try:
            hours = trading_hours_for(kind, exchange.strip())
        except ValueError:
            continue
        lot = float(US_STOCK_LOT_SIZE) if kind in LOT_SIZED_SEC_TYPES else 1.0
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

    def resolve(conid: int) -> InstrumentInfo:
        row = rows.get(conid)
        if row is None:
            raise ValueError(
                f"conid {conid} is not in the contracts dataset: load its contract search "
                "first, or pass a resolver"
            )
        return instrument_info(row["sec_type"], row["exchanges"], conid)

    return resolve


def _source(response: Response) -> dict[str, Any]:
    source: dict[str, Any] = {
        "endpoint": response.endpoint,
        "params": dict(response.params),
        "fetched_at": iso_ms(round(response.fetched_at.timestamp() * 1000)),
    }
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
        info = resolve(conid)
        table = normalize.history_bars(
            response.payload,
            conid=conid,
            bar_size=str(_param(response, "bar")),
            lot_size=info.lot_size,
        )
        outside = _flag(response.params.get("outsideRth", False))
        batches.append(
            Batch(table, _source(response), hours={conid: info.hours}, outside_rth=outside)
        )
    return batches


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
            normalize.snapshot_quotes(entries, lot_size=lot, fallback_updated=response.fetched_at)
            for lot, entries in sorted(by_lot.items())
        ]
        batches.append(
            Batch(pa.concat_tables(tables), _source(response), as_of=response.fetched_at)
        )
    return batches


def _positions(responses: Sequence[Response], resolve: Resolver | None) -> list[Batch]:
    listings: dict[str, tuple[Response, list[Any], list[Response]]] = {}
    finished: list[tuple[Response, list[Any], list[Response]]] = []
    for response in responses:
        account = str(_param(response, "accountId"))
        page = int(_param(response, "pageId"))
        if page == 0:
            if account in listings:
                finished.append(listings.pop(account))
            listings[account] = (response, [], [])
        elif account not in listings:
            raise InvalidPayloadError(
                f"positions: page {page} of {account} has no page 0 before it "
                f"({getattr(response, 'path', '') or 'live response'})"
            )
        first, entries, pages = listings[account]
        if not isinstance(response.payload, list):
            raise InvalidPayloadError(f"positions: expected a list, got {response.payload!r:.200}")
        entries.extend(response.payload)
        pages.append(response)
    finished.extend(listings.values())
    batches = []
    for first, entries, pages in sorted(finished, key=lambda f: f[0].fetched_at):
        account = str(_param(first, "accountId"))
        table = normalize.positions(entries, account=account, as_of=first.fetched_at)
        source = {**_source(first), "pages": len(pages)}
        batches.append(Batch(table, source))
    return batches


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


@dataclass(frozen=True)
class ReplayResult:
    """What a replay read and wrote; ``seconds`` splits the time (read = files, decompress,
    JSON; normalise; validate; write = merge, Parquet, atomic replace; catalog)."""

    dataset: str
    records: int
    rows_normalised: int
    write: WriteResult
    seconds: dict[str, float] = field(default_factory=dict)


def replay(
    store: Store,
    dataset: str,
    *,
    raw: RawZone | None = None,
    partitions: Collection[str] | None = None,
    since: date | None = None,
    until: date | None = None,
    run_id: str | None = None,
    resolver: Resolver | None = None,
) -> ReplayResult:
    """Rebuild ``dataset``'s partitions (all it can, or only ``partitions`` by id) from the
    raw zone alone, replacing them. ``since``/``until`` limit the fetch dates read. The
    resolver defaults to the warehouse's ``contracts`` dataset."""
    spec = dataset_spec(dataset)
    zone = raw or RawZone(store.root.url)
    wanted = None if partitions is None else {store.partition(spec.name, p).id for p in partitions}
    started = time.perf_counter()
    paths = zone.paths(ENDPOINTS[spec.name], since=since, until=until)
    listed = time.perf_counter()
    if resolver is None and spec.name in ("bars", "quotes"):
        resolver = contracts_resolver(store.read("contracts"))
    resolved = time.perf_counter()
    batches, failures, split = _convert_files(spec.name, zone, paths, resolver)
    split["read"] += listed - started
    split["normalise"] += resolved - listed
    if failures:
        shown = "\n  ".join(failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        raise ReplayError(
            f"replay of {spec.name}: {len(failures)} raw record(s) could not be normalised; "
            f"nothing was written:\n  {shown}{more}"
        )
    result = store.load(
        spec.name,
        batches,
        run_id=run_id or f"replay-{iso_ms(round(store.clock.now().timestamp() * 1000))}",
        mode="replace",
        only=wanted,
    )
    seconds = {**split, **result.seconds}
    return ReplayResult(
        dataset=spec.name,
        records=len(paths),
        rows_normalised=sum(int(b.table.num_rows) for b in batches),
        write=result,
        seconds=seconds,
    )


def _convert_files(
    dataset: str, zone: RawZone, paths: Sequence[str], resolver: Resolver | None
) -> tuple[list[Batch], list[str], dict[str, float]]:
    """Batches of the raw files at ``paths``, the failures (one line per file that cannot be
    normalised) and the seconds spent reading (files, decompression, JSON) and normalising.

    Each file is normalised as soon as it is read, so its decoded payload (a million small
    Python objects per thousand answers) is freed right away: memory holds the Arrow tables,
    not every payload, and the garbage collector never rescans a growing heap of payloads.
    (A background thread reading files ahead was measured slower: it contends for the GIL.)
    Positions are the exception (the pages of a listing only make sense together): they are
    read first, then normalised.
    """
    read_s = normalise_s = 0.0
    batches: list[Batch] = []
    failures: list[str] = []
    if dataset == "positions":
        started = time.perf_counter()
        records = [zone.read(rel) for rel in paths]
        read_s = time.perf_counter() - started
        try:
            batches = to_batches(dataset, records, resolver)
        except (InvalidPayloadError, ValueError) as error:
            failures.append(str(error))
        normalise_s = time.perf_counter() - started - read_s
    else:
        for rel in paths:
            started = time.perf_counter()
            record = zone.read(rel)
            read_done = time.perf_counter()
            try:
                batches.extend(to_batches(dataset, [record], resolver))
            except (InvalidPayloadError, ValueError) as error:
                failures.append(f"{record.path}: {error}")
            del record  # its payload: no longer needed once normalised
            read_s += read_done - started
            normalise_s += time.perf_counter() - read_done
    return batches, failures, {"read": read_s, "normalise": normalise_s}
