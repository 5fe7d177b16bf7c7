"""The universe: what the loader ingests (instruments, bar sizes, history range, accounts).

Why: what to fetch is configuration, not code. A YAML file names the instruments by symbol,
security type and exchange, the bar sizes to keep, where history starts (and optionally ends)
and which accounts to snapshot. The Dagster definitions build one bars asset per configured bar
size and one partition set per partitioning from it, so the UI always shows what the file says.

The file is found through ``IB_PIPELINE_UNIVERSE`` (a path); without it the packaged
``universe_default.yaml`` is used, which suits the bundled simulator.

Validation happens in two steps:

1. `load_universe` / `parse_universe` check everything that can be checked offline, before any
   request: unknown keys, unknown bar sizes, unknown security types and exchanges, dates (start
   after end, before the calendars start), duplicates, and every symbol or account id that
   could escape a path or a SQL string (``/``, ``..``, quotes, ``;``, spaces in account ids).
2. `resolve_contract` and `resolve_accounts` check what only the gateway knows: a symbol its
   contract search does not find, an account it does not list.

Every error is a `UniverseError` naming the offending value, where it was found, and the
valid choices. This module never makes requests and never imports dagster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from ib_pipeline.calendars import CALENDAR_START, TradingHours, trading_hours_for
from ib_pipeline.timeframes import BAR_SIZES, BarSize, parse_bar_size

UNIVERSE_ENV = "IB_PIPELINE_UNIVERSE"
"""Environment variable holding the path of the universe file."""

DEFAULT_UNIVERSE_FILE = "universe_default.yaml"
"""The packaged default universe (inside the ``ib_pipeline`` package)."""

SEC_TYPES: tuple[str, ...] = ("STK", "FUT", "CASH")
"""Security types the loader knows the trading hours of (ETFs are ``STK``, as in IBKR)."""

US_STOCK_LOT_SIZE = 100
"""Shares per lot in which the gateway reports US stock and ETF volumes and sizes."""

SYMBOL_PATTERN = r"^[A-Z0-9](?:[A-Z0-9 .\-]{0,22}[A-Z0-9])?$"
"""A symbol: upper-case letters, digits, ``.``, ``-`` and inner spaces (``EUR.USD``,
``BRK B``); never ``/``, quotes, ``;`` or ``..``."""

ACCOUNT_PATTERN = r"^[A-Za-z0-9]{2,32}$"
"""An account id: letters and digits only (``U1234567``, ``DU1234567``)."""

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_ACCOUNT_RE = re.compile(ACCOUNT_PATTERN)

_TOP_KEYS = ("instruments", "bar_sizes", "history_start", "history_end", "accounts", "outside_rth")
_INSTRUMENT_KEYS = ("symbol", "sec_type", "exchange")


class UniverseError(ValueError):
    """The universe configuration is invalid; the message names the value and the choices."""


@dataclass(frozen=True)
class InstrumentConfig:
    """One configured instrument: a symbol of a security type on an exchange."""

    symbol: str
    sec_type: str
    exchange: str

    @property
    def trading_hours(self) -> TradingHours:
        """The sessions its bars follow (holidays and half days from the exchange calendar)."""
        return trading_hours_for(self.sec_type, self.exchange)

    @property
    def lot_size(self) -> int:
        """Units per lot of the gateway's volumes: 100 for US stocks and ETFs, else 1."""
        return US_STOCK_LOT_SIZE if self.sec_type == "STK" else 1

    @property
    def label(self) -> str:
        return f"{self.symbol} ({self.sec_type} on {self.exchange})"


@dataclass(frozen=True)
class Universe:
    """A validated universe. ``accounts`` empty means every account the gateway lists;
    ``history_end`` None means up to the present."""

    instruments: tuple[InstrumentConfig, ...]
    bar_sizes: tuple[BarSize, ...]
    history_start: date
    history_end: date | None = None
    accounts: tuple[str, ...] = ()
    outside_rth: bool = False
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.instruments:
            raise UniverseError(f"{self.source}: the universe lists no instruments")
        if not self.bar_sizes:
            raise UniverseError(
                f"{self.source}: the universe lists no bar sizes; valid bar sizes: "
                f"{', '.join(BAR_SIZES)}"
            )
        if self.history_end is not None and self.history_start > self.history_end:
            raise UniverseError(
                f"{self.source}: history_start {self.history_start.isoformat()} is after "
                f"history_end {self.history_end.isoformat()}; the start must not be later "
                "than the end"
            )
        calendar_start = date.fromisoformat(CALENDAR_START)
        if self.history_start < calendar_start:
            raise UniverseError(
                f"{self.source}: history_start {self.history_start.isoformat()} is before "
                f"{CALENDAR_START}, where the exchange calendars start"
            )

    @property
    def trading_hours(self) -> tuple[TradingHours, ...]:
        """The distinct trading hours of the instruments, in first-seen order."""
        seen: dict[TradingHours, None] = {}
        for item in self.instruments:
            seen.setdefault(item.trading_hours, None)
        return tuple(seen)


def default_universe_text() -> str:
    """The packaged default universe file's text."""
    return resources.files("ib_pipeline").joinpath(DEFAULT_UNIVERSE_FILE).read_text("utf-8")


def universe_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The universe file named by ``IB_PIPELINE_UNIVERSE``, or None for the packaged default."""
    env = os.environ if environ is None else environ
    text = env.get(UNIVERSE_ENV, "").strip()
    return Path(text) if text else None


def load_universe(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Universe:
    """Read and validate a universe file: ``path``, else ``IB_PIPELINE_UNIVERSE``, else the
    packaged default. Raises `UniverseError` before anything is fetched."""
    chosen = Path(path) if path is not None else universe_path(environ)
    if chosen is None:
        return parse_universe_text(default_universe_text(), source=f"<{DEFAULT_UNIVERSE_FILE}>")
    if not chosen.is_file():
        raise UniverseError(
            f"universe file {str(chosen)!r} does not exist or is not a file "
            f"(set {UNIVERSE_ENV} to a YAML file, or unset it for the default universe)"
        )
    return parse_universe_text(chosen.read_text("utf-8"), source=str(chosen))


def parse_universe_text(text: str, *, source: str = "<text>") -> Universe:
    """Parse the YAML text of a universe file."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UniverseError(f"{source}: not valid YAML: {error}") from None
    return parse_universe(document, source=source)


def parse_universe(document: Any, *, source: str = "<memory>") -> Universe:
    """Validate a decoded universe document (a mapping as in ``universe_default.yaml``)."""
    if not isinstance(document, Mapping):
        raise UniverseError(
            f"{source}: a universe must be a mapping with keys {', '.join(_TOP_KEYS)}, "
            f"got {type(document).__name__}"
        )
    _reject_unknown_keys(document, _TOP_KEYS, source)
    instruments = _instruments(document.get("instruments"), source)
    bar_sizes = _bar_sizes(document.get("bar_sizes"), source)
    if "history_start" not in document:
        raise UniverseError(f"{source}: history_start is required (a date such as 2024-01-02)")
    start = _date(document["history_start"], "history_start", source)
    end_value = document.get("history_end")
    end = None if end_value is None else _date(end_value, "history_end", source)
    accounts = _accounts(document.get("accounts"), source)
    outside_rth = document.get("outside_rth", False)
    if not isinstance(outside_rth, bool):
        raise UniverseError(f"{source}: outside_rth must be true or false, got {outside_rth!r}")
    return Universe(
        instruments=instruments,
        bar_sizes=bar_sizes,
        history_start=start,
        history_end=end,
        accounts=accounts,
        outside_rth=outside_rth,
        source=source,
    )


def check_symbol(symbol: Any, where: str) -> str:
    """``symbol`` upper-cased if it is a plausible symbol; `UniverseError` naming it otherwise."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise UniverseError(f"{where}: symbol must be a non-empty string, got {symbol!r}")
    text = symbol.strip().upper()
    if ".." in text or _SYMBOL_RE.match(text) is None:
        raise UniverseError(
            f"{where}: invalid symbol {symbol!r}: a symbol is 1-24 upper-case letters, digits, "
            "'.', '-' or inner spaces (such as AAPL, EUR.USD, BRK B), without '/', '..', "
            "quotes or ';'"
        )
    return text


def check_account(account: Any, where: str) -> str:
    """``account`` if it is a plausible account id; `UniverseError` naming it otherwise."""
    if not isinstance(account, str) or _ACCOUNT_RE.match(account) is None:
        raise UniverseError(
            f"{where}: invalid account id {account!r}: an account id is 2-32 letters and "
            "digits (such as U1234567 or DU1234567)"
        )
    return account


def _reject_unknown_keys(mapping: Mapping[Any, Any], known: Sequence[str], where: str) -> None:
    unknown = [str(k) for k in mapping if k not in known]
    if unknown:
        raise UniverseError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(known)}"
        )


def _instruments(value: Any, source: str) -> tuple[InstrumentConfig, ...]:
    if not isinstance(value, list) or not value:
        raise UniverseError(
            f"{source}: instruments must be a non-empty list of "
            "{symbol, sec_type, exchange} mappings"
        )
    found: list[InstrumentConfig] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(value):
        where = f"{source}: instruments[{index}]"
        if not isinstance(item, Mapping):
            raise UniverseError(
                f"{where}: expected a mapping with symbol, sec_type, exchange, got {item!r}"
            )
        raw = item
        _reject_unknown_keys(raw, _INSTRUMENT_KEYS, where)
        symbol = check_symbol(raw.get("symbol"), where)
        sec_type = raw.get("sec_type", "STK")
        if not isinstance(sec_type, str) or sec_type.strip().upper() not in SEC_TYPES:
            raise UniverseError(
                f"{where}: unknown sec_type {sec_type!r} for {symbol}; valid security types: "
                f"{', '.join(SEC_TYPES)}"
            )
        sec_type = sec_type.strip().upper()
        exchange = raw.get("exchange")
        if not isinstance(exchange, str) or not exchange.strip():
            raise UniverseError(f"{where}: exchange is required for {symbol} (such as NASDAQ)")
        exchange = exchange.strip().upper()
        try:
            trading_hours_for(sec_type, exchange)
        except ValueError as error:
            raise UniverseError(f"{where}: unknown exchange for {symbol}: {error}") from None
        key = (symbol, sec_type)
        if key in seen:
            raise UniverseError(
                f"{where}: {symbol} ({sec_type}) is listed twice (also instruments[{seen[key]}])"
            )
        seen[key] = index
        found.append(InstrumentConfig(symbol, sec_type, exchange))
    return tuple(found)


def _bar_sizes(value: Any, source: str) -> tuple[BarSize, ...]:
    if not isinstance(value, list) or not value:
        raise UniverseError(
            f"{source}: bar_sizes must be a non-empty list; valid bar sizes: {', '.join(BAR_SIZES)}"
        )
    sizes: list[BarSize] = []
    for index, label in enumerate(value):
        try:
            size = parse_bar_size(label)
        except ValueError as error:
            raise UniverseError(f"{source}: bar_sizes[{index}]: {error}") from None
        if size in sizes:
            raise UniverseError(f"{source}: bar size {size.label!r} is listed twice")
        sizes.append(size)
    order = list(BAR_SIZES)
    return tuple(sorted(sizes, key=lambda s: order.index(s.label)))


def _date(value: Any, key: str, source: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise UniverseError(f"{source}: {key} must be a date such as 2024-01-02, got {value!r}")


def _accounts(value: Any, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UniverseError(f"{source}: accounts must be a list of account ids, got {value!r}")
    accounts = [check_account(a, f"{source}: accounts[{i}]") for i, a in enumerate(value)]
    duplicates = sorted({a for a in accounts if accounts.count(a) > 1})
    if duplicates:
        raise UniverseError(f"{source}: account(s) listed twice: {', '.join(duplicates)}")
    return tuple(accounts)


# --- what only the gateway knows ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedContract:
    """A configured instrument resolved to the gateway's contract id."""

    instrument: InstrumentConfig
    conid: int
    description: str | None

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def hours(self) -> TradingHours:
        return self.instrument.trading_hours

    @property
    def lot_size(self) -> int:
        return self.instrument.lot_size


def resolve_contract(instrument: InstrumentConfig, candidates: pa.Table) -> int:
    """The conid of ``instrument`` among contract search results (a `tables.CONTRACTS` table).

    Keeps results with the instrument's symbol and security type; when several remain, the one
    listed on the configured exchange. Raises `UniverseError` when the search found nothing, or
    nothing of that type, or several contracts none of which is on that exchange, naming what
    it did find.
    """
    rows = candidates.to_pylist()
    if not rows:
        raise UniverseError(
            f"unknown symbol {instrument.symbol!r}: the gateway's contract search returned "
            f"nothing for {instrument.label}; check the symbol in the universe file"
        )
    same_symbol = [r for r in rows if str(r["symbol"]).upper() == instrument.symbol]
    of_type = [r for r in same_symbol if _sec_type_matches(r, instrument.sec_type)]
    if not of_type:
        found = ", ".join(sorted({f"{r['symbol']} ({r['sec_type']})" for r in rows}))
        raise UniverseError(
            f"no {instrument.sec_type} contract for symbol {instrument.symbol!r}; the contract "
            f"search found: {found}"
        )
    if len(of_type) == 1:
        return int(of_type[0]["conid"])
    on_exchange = [r for r in of_type if _listed_on(r, instrument.exchange)]
    if len(on_exchange) >= 1:
        return int(on_exchange[0]["conid"])
    choices = "; ".join(
        f"conid {r['conid']} ({r.get('description') or r.get('exchanges') or '?'})" for r in of_type
    )
    raise UniverseError(
        f"{instrument.label}: {len(of_type)} contracts match and none is on "
        f"{instrument.exchange}: {choices}; set the exchange to one of them"
    )


def _sec_type_matches(row: Mapping[str, Any], sec_type: str) -> bool:
    value = row.get("sec_type")
    return value is None or str(value).upper() == sec_type


def _listed_on(row: Mapping[str, Any], exchange: str) -> bool:
    names: set[str] = set()
    for column in ("exchanges", "description"):
        text = row.get(column)
        if text:
            names.update(part.strip().upper() for part in re.split(r"[,;]", str(text)))
    header = str(row.get("company_header") or "").upper()
    return exchange in names or f"({exchange})" in header or f"- {exchange}" in header


def resolve_accounts(universe: Universe, listed: Sequence[str]) -> tuple[str, ...]:
    """The accounts to snapshot: the configured ones, each checked against the gateway's
    list, or every listed account when none is configured."""
    if not listed:
        raise UniverseError("the gateway lists no accounts")
    if not universe.accounts:
        return tuple(check_account(a, "the gateway's account list") for a in listed)
    missing = [a for a in universe.accounts if a not in listed]
    if missing:
        raise UniverseError(
            f"{universe.source}: account(s) {', '.join(map(repr, missing))} are not listed by "
            f"the gateway; its accounts: {', '.join(listed)}"
        )
    return universe.accounts
