"""The universe: what the loader ingests (instruments, bar sizes, history range, accounts).

Why: what to fetch is configuration, not code. A YAML file names the instruments by symbol,
security type and exchange, the bar sizes to keep, where history starts (and optionally ends)
and which accounts to snapshot. The Dagster definitions build one bars asset per configured bar
size and one partition set per partitioning from it, so the UI always shows what the file says.

The file is found through ``IB_PIPELINE_UNIVERSE`` (a path; empty means unset, as for every
``IB_PIPELINE_*`` variable); without it the packaged ``universe_default.yaml`` is used, which
suits the bundled simulator.

Validation happens in two steps:

1. The file is a pydantic model (`Universe`, holding `InstrumentConfig` entries) that refuses
   unknown keys and checks everything that can be checked offline, before any request: unknown
   bar sizes, security types and exchanges, dates (start after end, before the calendars
   start), duplicates, and every symbol or account id that could escape a path or a SQL string
   (``/``, ``..``, quotes, ``;``, spaces in account ids).
2. `resolve_contract` and `resolve_accounts` check what only the gateway knows: a symbol its
   contract search does not find, an account it does not list.

Every error is a `UniverseError` naming the offending value, where it was found (such as
``instruments[2]``), and the valid choices. This module never makes requests and never imports
dagster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self

import pyarrow as pa
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    PlainSerializer,
    PrivateAttr,
    Strict,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ib_pipeline.calendars import CALENDAR_START, US_EQUITY, TradingHours, trading_hours_for
from ib_pipeline.settings import environment_value
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


class UniverseError(ValueError):
    """The universe configuration is invalid; the message names the value and the choices."""


# --- single values: the checks the models and the gateway answers share -----------------------


def _symbol(symbol: Any) -> str:
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    text = symbol.strip().upper()
    if ".." in text or _SYMBOL_RE.match(text) is None:
        raise ValueError(
            f"invalid symbol {symbol!r}: a symbol is 1-24 upper-case letters, digits, "
            "'.', '-' or inner spaces (such as AAPL, EUR.USD, BRK B), without '/', '..', "
            "quotes or ';'"
        )
    return text


def _account(account: Any) -> str:
    if not isinstance(account, str) or _ACCOUNT_RE.match(account) is None:
        raise ValueError(
            f"invalid account id {account!r}: an account id is 2-32 letters and "
            "digits (such as U1234567 or DU1234567)"
        )
    return account


def check_symbol(symbol: Any, where: str) -> str:
    """``symbol`` upper-cased if it is a plausible symbol; `UniverseError` naming it otherwise."""
    try:
        return _symbol(symbol)
    except ValueError as error:
        raise UniverseError(f"{where}: {error}") from None


def check_account(account: Any, where: str) -> str:
    """``account`` if it is a plausible account id; `UniverseError` naming it otherwise."""
    try:
        return _account(account)
    except ValueError as error:
        raise UniverseError(f"{where}: {error}") from None


def _bar_size(label: Any) -> BarSize:
    return label if isinstance(label, BarSize) else parse_bar_size(label)


def _iso_date(value: Any) -> Any:
    """A date from its ISO text; anything else is left for the strict date check to refuse."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


# --- the file, as models -------------------------------------------------------------------


ROLL_RULES: tuple[str, ...] = ("front",)
"""Roll rules of a futures root (`RollConfig.rule`)."""

DEFAULT_DAYS_BEFORE_LTD = 8
"""Calendar days before a month's last trade date on which ``front`` rolls to the next month
(8: where the volume of the CME equity index futures moves to the next month)."""


class RollConfig(BaseModel):
    """How a futures root (``sec_type: FUT`` with ``roll:``) is loaded month by month.

    ``rule: front``: on session date ``d`` the month in force is the earliest-expiring month
    whose roll date ``ltd - days_before_ltd`` (calendar days) is after ``d``; on its roll date the
    next month takes over. See `ib_pipeline.futures`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field("front", description=f"one of {', '.join(ROLL_RULES)}")
    days_before_ltd: int = Field(
        DEFAULT_DAYS_BEFORE_LTD,
        ge=0,
        le=60,
        strict=True,
        description="calendar days before the last trade date, 0 to 60",
    )

    @field_validator("rule", mode="before")
    @classmethod
    def _known_rule(cls, rule: Any) -> str:
        if isinstance(rule, str) and rule.strip().lower() in ROLL_RULES:
            return rule.strip().lower()
        raise ValueError(f"unknown roll rule {rule!r}; valid rules: {', '.join(ROLL_RULES)}")


class InstrumentConfig(BaseModel):
    """One configured instrument: a symbol of a security type on an exchange.

    Built from a mapping of the universe file, or directly, positionally too:
    ``InstrumentConfig("AAPL", "STK", "NASDAQ")``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str = Field(description="a symbol such as AAPL")
    sec_type: str = Field("STK", description=f"one of {', '.join(SEC_TYPES)}")
    exchange: str = Field(description="an exchange such as NASDAQ")
    roll: RollConfig | None = Field(
        None,
        description="absent, or for a FUT root {rule: front, days_before_ltd: 8} (each contract "
        "month loaded as itself)",
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        data.update(zip(("symbol", "sec_type", "exchange"), args, strict=False))
        super().__init__(**data)

    @field_validator("symbol", mode="before")
    @classmethod
    def _known_symbol(cls, symbol: Any) -> str:
        return _symbol(symbol)

    @field_validator("sec_type", mode="before")
    @classmethod
    def _known_sec_type(cls, sec_type: Any, info: ValidationInfo) -> str:
        if isinstance(sec_type, str) and sec_type.strip().upper() in SEC_TYPES:
            return sec_type.strip().upper()
        raise ValueError(
            f"unknown sec_type {sec_type!r}{_for(info)}; valid security types: "
            f"{', '.join(SEC_TYPES)}"
        )

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange(cls, exchange: Any, info: ValidationInfo) -> str:
        if not isinstance(exchange, str) or not exchange.strip():
            raise ValueError(f"exchange is required{_for(info)} (such as NASDAQ)")
        return exchange.strip().upper()

    @model_validator(mode="after")
    def _known_exchange(self) -> Self:
        try:
            trading_hours_for(self.sec_type, self.exchange)
        except ValueError as error:
            raise ValueError(f"unknown exchange for {self.symbol}: {error}") from None
        if self.roll is not None and self.sec_type != "FUT":
            raise ValueError(
                f"roll is only valid for a futures root (sec_type FUT), not for {self.symbol} "
                f"({self.sec_type})"
            )
        return self

    @property
    def trading_hours(self) -> TradingHours:
        """The sessions its bars follow (holidays and half days from the exchange calendar)."""
        return trading_hours_for(self.sec_type, self.exchange)

    @property
    def lot_size(self) -> int:
        """Units per lot of the gateway's volumes: 100 for US stocks and ETFs, else 1 (stocks
        on non-US venues, SAP on IBIS or 7203 on TSEJ, are reported in shares)."""
        if self.sec_type == "STK" and self.trading_hours == US_EQUITY:
            return US_STOCK_LOT_SIZE
        return 1

    @property
    def label(self) -> str:
        return f"{self.symbol} ({self.sec_type} on {self.exchange})"


def _for(info: ValidationInfo) -> str:
    """`` for AAPL`` when the symbol of the instrument being checked is known."""
    symbol = info.data.get("symbol")
    return f" for {symbol}" if symbol else ""


def _once_each(instruments: tuple[InstrumentConfig, ...]) -> tuple[InstrumentConfig, ...]:
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(instruments):
        key = (item.symbol, item.sec_type)
        if key in seen:
            raise ValueError(
                f"instruments[{index}]: {item.symbol} ({item.sec_type}) is listed twice "
                f"(also instruments[{seen[key]}])"
            )
        seen[key] = index
    return instruments


def _ordered_bar_sizes(sizes: tuple[BarSize, ...]) -> tuple[BarSize, ...]:
    for index, size in enumerate(sizes):
        if size in sizes[:index]:
            raise ValueError(f"bar size {size.label!r} is listed twice")
    order = list(BAR_SIZES)
    return tuple(sorted(sizes, key=lambda s: order.index(s.label)))


def _accounts_once(accounts: tuple[str, ...]) -> tuple[str, ...]:
    duplicates = sorted({a for a in accounts if accounts.count(a) > 1})
    if duplicates:
        raise ValueError(f"account(s) listed twice: {', '.join(duplicates)}")
    return accounts


_Date = Annotated[date, Strict(), BeforeValidator(_iso_date)]


class Universe(BaseModel):
    """A validated universe: the universe file's keys are exactly these fields.

    ``accounts`` empty means every account the gateway lists; ``history_end`` None means up to
    the present; ``include_positions`` true adds the instruments the accounts hold (from the
    latest stored positions) to those the contracts, quotes and bars assets load, once the
    accounts have been read (`assets.contract_lookup`): held instruments are resolved through the
    contract search, never duplicate configured ones, and those of a security type or exchange
    the calendars do not know (options, for one) are skipped with a warning naming them;
    ``source`` (not a key of the file) says where it was read from. Built by
    `parse_universe`, or directly (``Universe(instruments=(...), bar_sizes=(...),
    history_start=date(...))``); an invalid value raises `UniverseError` either way.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruments: Annotated[tuple[InstrumentConfig, ...], AfterValidator(_once_each)] = Field(
        min_length=1, description="a non-empty list of {symbol, sec_type, exchange} mappings"
    )
    bar_sizes: Annotated[
        tuple[
            Annotated[
                InstanceOf[BarSize],
                BeforeValidator(_bar_size),
                PlainSerializer(lambda size: size.label),
            ],
            ...,
        ],
        AfterValidator(_ordered_bar_sizes),
    ] = Field(
        min_length=1,
        description=f"a non-empty list of bar sizes; valid bar sizes: {', '.join(BAR_SIZES)}",
    )
    history_start: _Date = Field(description="a date such as 2024-01-02")
    history_end: _Date | None = Field(None, description="a date such as 2024-12-31, or absent")
    accounts: Annotated[
        tuple[Annotated[str, BeforeValidator(_account)], ...],
        BeforeValidator(lambda value: () if value is None else value),
        AfterValidator(_accounts_once),
    ] = Field((), description="a list of account ids")
    outside_rth: StrictBool = Field(False, description="true or false")
    include_positions: StrictBool = Field(
        False,
        description="true or false (true: the instruments the accounts hold are loaded too)",
    )

    _source: str = PrivateAttr("<memory>")

    def __init__(self, *, source: str = "<memory>", **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as invalid:
            raise UniverseError(_describe(invalid, source)) from None
        self._source = source

    @model_validator(mode="after")
    def _history_range(self) -> Self:
        start = self.history_start.isoformat()
        if self.history_end is not None and self.history_start > self.history_end:
            raise ValueError(
                f"history_start {start} is after history_end {self.history_end.isoformat()}; "
                "the start must not be later than the end"
            )
        if self.history_start < date.fromisoformat(CALENDAR_START):
            raise ValueError(
                f"history_start {start} is before {CALENDAR_START}, where the exchange "
                "calendars start"
            )
        return self

    @property
    def source(self) -> str:
        """Where the universe was read from (a path, ``<universe_default.yaml>``, ...)."""
        return self._source

    @property
    def trading_hours(self) -> tuple[TradingHours, ...]:
        """The distinct trading hours of the instruments, in first-seen order."""
        seen: dict[TradingHours, None] = {}
        for item in self.instruments:
            seen.setdefault(item.trading_hours, None)
        return tuple(seen)


# --- pydantic's errors, as one message -----------------------------------------------------


def _describe(invalid: ValidationError, source: str) -> str:
    """One message for every problem: where it is, the value, and what is valid."""
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    problems: list[str] = []
    errors = invalid.errors(include_url=False)
    for problem in errors:
        loc = problem["loc"]
        if problem["type"] == "too_short" and any(_inside(e["loc"], loc) for e in errors):
            continue  # "not 0 items after validation": the items' own errors say why
        if problem["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
        else:
            problems.append(_problem(problem))
    first = [_unknown_keys(parent, keys) for parent, keys in unknown.items()]
    return f"{source}: " + "; ".join([*first, *problems])


def _problem(problem: ErrorDetails) -> str:
    loc = problem["loc"]
    field = loc[-1] if loc and isinstance(loc[-1], str) else None
    where = _where(loc[:-1] if field is not None else loc)
    value = problem["input"]
    if problem["type"] in ("value_error", "assertion_error"):
        message = str(problem.get("ctx", {}).get("error", problem["msg"]))
    elif problem["type"] in ("model_type", "model_attributes_type"):
        keys = ", ".join(InstrumentConfig.model_fields)
        message = f"expected a mapping with keys {keys}, got {value!r}"
    elif field is not None:
        info = _model_at(loc[:-1]).model_fields.get(field)
        expects = info.description if info is not None else problem["msg"]
        message = (
            f"{field} is required{_of(value)} ({expects})"
            if problem["type"] == "missing"
            else f"{field} must be {expects}, got {value!r}"
        )
    else:
        message = f"{problem['msg']}, got {value!r}"
    return f"{where}: {message}" if where else message


def _inside(loc: tuple[int | str, ...], parent: tuple[int | str, ...]) -> bool:
    return len(loc) > len(parent) and loc[: len(parent)] == parent


def _unknown_keys(parent: tuple[int | str, ...], keys: list[str]) -> str:
    where = _where(parent)
    message = (
        f"unknown key(s) {', '.join(map(repr, keys))}; valid keys: "
        f"{', '.join(_model_at(parent).model_fields)}"
    )
    return f"{where}: {message}" if where else message


def _model_at(parent: tuple[int | str, ...]) -> type[BaseModel]:
    if parent and parent[-1] == "roll":
        return RollConfig
    return InstrumentConfig if parent else Universe


def _where(loc: tuple[int | str, ...]) -> str:
    """``instruments[2]`` for the location ``("instruments", 2)``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _of(document: Any) -> str:
    symbol = document.get("symbol") if isinstance(document, Mapping) else None
    return f" for {symbol}" if isinstance(symbol, str) and symbol else ""


# --- reading the file ----------------------------------------------------------------------


def default_universe_text() -> str:
    """The packaged default universe file's text."""
    return resources.files("ib_pipeline").joinpath(DEFAULT_UNIVERSE_FILE).read_text("utf-8")


def universe_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The universe file named by ``IB_PIPELINE_UNIVERSE``, or None for the packaged default."""
    text = environment_value(UNIVERSE_ENV, environ)
    return Path(text) if text is not None else None


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
            f"{source}: a universe must be a mapping with keys "
            f"{', '.join(Universe.model_fields)}, got {type(document).__name__}"
        )
    data = {str(key): value for key, value in document.items()}
    if "source" in data:  # where the document came from is not one of its keys
        raise UniverseError(f"{source}: {_unknown_keys((), ['source'])}")
    return Universe(source=source, **data)


# --- what only the gateway knows ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedContract:
    """A configured instrument resolved to the gateway's contract id."""

    instrument: InstrumentConfig
    conid: int
    description: str | None
    first_date: date | None = None
    """A contract month (of a root with ``roll:``): the first session date to load; else None."""
    last_date: date | None = None
    """A contract month: the last session date to load; else None (no bound)."""

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    def loads_on(self, day: date) -> bool:
        """Whether bars of session date ``day`` are loaded for this contract (always, except
        for a contract month outside its load window, `ib_pipeline.futures`)."""
        return (self.first_date is None or day >= self.first_date) and (
            self.last_date is None or day <= self.last_date
        )

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


def resolve_accounts(
    universe: Universe, listed: Sequence[str], *, not_accounts: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The accounts to snapshot: the configured ones, each checked against the gateway's
    list, or every listed account when none is configured.

    ``listed`` are the gateway's real accounts; ``not_accounts`` maps what an advisor login
    also lists (the group ``All``, user groups, allocation profiles) to what each is
    (`ib_pipeline.ibkr.gateway_session.AccountListing.not_accounts`): they are never
    snapshotted, and naming one in the universe is refused, saying what it is."""
    others = dict(not_accounts or {})
    listed = [a for a in listed if a not in others]
    named = [f"{a!r} is {others[a]}" for a in universe.accounts if a in others]
    if named:
        raise UniverseError(
            f"{universe.source}: {'; '.join(named)}, not an account: groups and profiles of an "
            f"advisor login have no positions or summary of their own; name real accounts "
            f"instead: {', '.join(listed)}"
        )
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
