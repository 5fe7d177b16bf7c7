"""Futures by contract month: a root plus a roll rule, resolved to the months it loads.

Why: a future trades as dated contracts, each with its own conid and expiry. A universe entry
``{symbol: ES, sec_type: FUT, exchange: CME, roll: {rule: front, days_before_ltd: 8}}`` is
loaded month by month: every contract month in force during the history range is a contract
of its own (its bars under its own conid, its ``contracts`` row with the last trade date in
``expiry`` and its ``multiplier``), and the warehouse joins them into a continuous series
(views ``futures_rolls`` and ``futures_continuous``, `ib_pipeline.warehouse`).

The rule (``front``): the month in force on session date ``d`` is the earliest-expiring month
whose roll date ``ltd - days_before_ltd`` (calendar days) is after ``d``. A month is loaded over
the sessions it is in force, plus `LOOKBACK_DAYS` before (so the last session before each roll
holds bars of both months: the roll's price gap is measured there).

Which months: the gateway's listing (``/trsrv/futures``) shows only non-expired months. Past
months are derived from the quarterly (or whatever) cycle the listing shows: every month of
that cycle from the month of ``history_start`` up to the first listed month is asked for by
``/iserver/secdef/info?conid=<root>&sectype=FUT&month=MMMYY``, which answers its conid, last
trade date and multiplier; so an expired month is found again on every run, never forgotten,
and its stored bars stay. A month the gateway cannot resolve fails the run, naming it.

Pure functions, plus `resolve_root` which asks through the client handed in. Never writes and
never imports dagster.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import pyarrow as pa

from ib_pipeline.ibkr.errors import IbkrError
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.universe import InstrumentConfig, ResolvedContract, RollConfig, UniverseError

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

LOOKBACK_DAYS = 7
"""Calendar days a month is loaded before it comes into force (at least one session, where
the roll's price gap to the month before is measured)."""


def month_code(year: int, month: int) -> str:
    """``MAR25``: the gateway's MMMYY for a contract month."""
    return f"{MONTH_NAMES[month - 1]}{year % 100:02d}"


@dataclass(frozen=True)
class ContractMonth:
    """One contract month of a root: its conid, calendar month and last trade date."""

    root: str
    conid: int
    year: int
    month: int
    ltd: date
    multiplier: float | None = None
    currency: str | None = None
    company_name: str | None = None

    @property
    def code(self) -> str:
        return month_code(self.year, self.month)


@dataclass(frozen=True)
class InForce:
    """A month and the session dates it is in force: ``start <= d < end`` (``start`` None:
    from before the first known month)."""

    month: ContractMonth
    start: date | None
    end: date


def roll_date(month: ContractMonth, rule: RollConfig) -> date:
    """The first session date on which the next month is in force (may be a holiday)."""
    return month.ltd - timedelta(days=rule.days_before_ltd)


def schedule(months: Sequence[ContractMonth], rule: RollConfig) -> list[InForce]:
    """Every month with the dates it is in force, by last trade date."""
    ordered = sorted(months, key=lambda m: m.ltd)
    result: list[InForce] = []
    previous: date | None = None
    for month in ordered:
        end = roll_date(month, rule)
        result.append(InForce(month, previous, end))
        previous = end
    return result


def in_force(
    months: Sequence[ContractMonth], rule: RollConfig, first: date, last: date
) -> list[InForce]:
    """The months in force on some date of ``first..last``."""
    return [
        item
        for item in schedule(months, rule)
        if item.end > first and (item.start is None or item.start <= last)
    ]


def load_window(item: InForce) -> tuple[date | None, date]:
    """First and last session date to load for a month in force (module doc)."""
    start = None if item.start is None else item.start - timedelta(days=LOOKBACK_DAYS)
    return start, item.end - timedelta(days=1)


def past_cycle_months(listed: Sequence[tuple[int, int]], first: date) -> list[tuple[int, int]]:
    """(year, month) of the cycle the listing shows, from ``first``'s month up to (not
    including) the earliest listed month: the expired months a range from ``first`` may need
    (a month ending before ``first`` cannot be in force on it)."""
    if not listed:
        return []
    cycle = sorted({m for _, m in listed})
    earliest = min(listed)
    found: list[tuple[int, int]] = []
    year, month = first.year, first.month
    while (year, month) < earliest:
        if month in cycle:
            found.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


# --- parsing the gateway's answers ---------------------------------------------------------


def _day(value: Any, where: str) -> date:
    text = str(value).strip()
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    raise UniverseError(f"{where}: expected a yyyymmdd date, got {value!r}")


def listing_months(payload: Any, root: str) -> list[ContractMonth]:
    """The months of ``root`` in a ``/trsrv/futures`` answer (month from ``expirationDate``,
    last trade date from ``ltd``)."""
    if not isinstance(payload, Mapping):
        raise UniverseError(f"/trsrv/futures for {root}: expected an object, got {payload!r}")
    entries = payload.get(root) or []
    if not isinstance(entries, list):
        raise UniverseError(f"/trsrv/futures for {root}: expected a list, got {entries!r}")
    months: list[ContractMonth] = []
    for index, entry in enumerate(entries):
        where = f"/trsrv/futures {root}[{index}]"
        if not isinstance(entry, Mapping) or "conid" not in entry:
            raise UniverseError(f"{where}: expected an object with conid, got {entry!r}")
        expiry = _day(entry.get("expirationDate"), f"{where}.expirationDate")
        ltd = _day(entry.get("ltd") or entry.get("expirationDate"), f"{where}.ltd")
        months.append(ContractMonth(root, int(entry["conid"]), expiry.year, expiry.month, ltd))
    return months


def info_month(payload: Any, root: str, year: int, month: int) -> ContractMonth:
    """The month of a ``/iserver/secdef/info`` answer (its first entry)."""
    where = f"/iserver/secdef/info {root} {month_code(year, month)}"
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], Mapping):
        raise UniverseError(f"{where}: expected a non-empty list of contracts, got {payload!r}")
    entry = payload[0]
    ltd = _day(entry.get("ltd") or entry.get("maturityDate"), f"{where}.ltd")
    multiplier = entry.get("multiplier")
    try:
        factor = float(multiplier) if multiplier not in (None, "") else None
    except (TypeError, ValueError):
        raise UniverseError(f"{where}: multiplier {multiplier!r} is not a number") from None
    return ContractMonth(
        root,
        int(entry["conid"]),
        year,
        month,
        ltd,
        factor,
        entry.get("currency"),
        entry.get("companyName"),
    )


# --- resolving through the gateway -----------------------------------------------------------


class FuturesClient(Protocol):
    async def futures(self, symbols: Sequence[str]) -> Any: ...

    async def secdef_info(
        self, conid: int, sec_type: str, *, month: str | None = None, exchange: str | None = None
    ) -> Any: ...


async def _info(
    client: FuturesClient, root_conid: int, root: str, year: int, month: int
) -> ContractMonth:
    try:
        payload = await client.secdef_info(root_conid, "FUT", month=month_code(year, month))
    except IbkrError as error:
        raise UniverseError(
            f"futures root {root}: contract month {month_code(year, month)} did not resolve "
            f"through /iserver/secdef/info: {error}"
        ) from None
    return info_month(payload, root, year, month)


async def resolve_root(
    client: FuturesClient,
    instrument: InstrumentConfig,
    root_conid: int,
    *,
    first: date,
    last: date,
) -> tuple[list[ResolvedContract], pa.Table]:
    """The contract months of a rolled root in force during ``first..last``, each with its
    load window, and their ``contracts`` rows (module doc). Raises `UniverseError` naming the
    root when it lists no month or a month does not resolve."""
    rule = instrument.roll
    if rule is None:
        raise ValueError(f"{instrument.label} has no roll rule")
    root = instrument.symbol
    listed = listing_months(await client.futures([root]), root)
    if not listed:
        raise UniverseError(
            f"futures root {root}: /trsrv/futures lists no contract month; check the symbol"
        )
    past = past_cycle_months([(m.year, m.month) for m in listed], first)
    resolved_past = await asyncio.gather(*(_info(client, root_conid, root, y, m) for y, m in past))
    wanted = in_force([*resolved_past, *listed], rule, first, last)
    details = await asyncio.gather(
        *(
            _info(client, root_conid, root, item.month.year, item.month.month)
            if item.month.multiplier is None
            else _same(item.month)
            for item in wanted
        )
    )
    contracts: list[ResolvedContract] = []
    rows: list[dict[str, Any]] = []
    for item, month in zip(wanted, details, strict=True):
        if month.conid != item.month.conid:
            raise UniverseError(
                f"futures root {root} {month.code}: /trsrv/futures lists conid "
                f"{item.month.conid}, /iserver/secdef/info answers {month.conid}"
            )
        start, end = load_window(item)
        description = f"{root} {month.code}"
        contracts.append(ResolvedContract(instrument, month.conid, description, start, end))
        rows.append(
            {
                "conid": month.conid,
                "symbol": root,
                "sec_type": "FUT",
                "company_name": month.company_name,
                "company_header": None,
                "description": description,
                "exchanges": instrument.exchange,
                "currency": month.currency,
                "multiplier": month.multiplier,
                "exchange": instrument.exchange,
                "exchange_timezone": None,
                "expiry": item.month.ltd.isoformat(),
            }
        )
    return contracts, pa.Table.from_pylist(rows, schema=CONTRACTS)


async def _same(month: ContractMonth) -> ContractMonth:
    return month


def listed_rolls(months: Sequence[ContractMonth], rule: RollConfig) -> list[tuple[date, int, int]]:
    """(roll date, from conid, to conid) of every roll between consecutive ``months``."""
    items = schedule(months, rule)
    return [(a.end, a.month.conid, b.month.conid) for a, b in itertools.pairwise(items)]
