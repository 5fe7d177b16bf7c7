"""Strict readers for the scalar values IBKR payloads carry.

The gateway sends numbers as JSON numbers or as strings ("1,300", "C168.42", "1.2M", "0"),
conids as strings or integers, and times as epoch milliseconds. These helpers turn one value
into one Python value or raise `InvalidPayloadError` naming the field and quoting the value.

What they must never do: guess. An unparseable string, a wrong JSON type or a boolean where a
number belongs is an error, never a silent ``None``/NaN. A well-formed number that is bad market
data (NaN, Infinity, a negative size) is returned unchanged: judging data is the warehouse
contracts' job, not the parser's.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from ib_pipeline.ibkr.errors import InvalidPayloadError

_NUMBER_RE = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][+-]?\d+)?$")
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_SPECIAL_FLOATS |= {"infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}
_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9}
PRICE_PREFIXES = {"C": "previous close", "H": "halted"}
"""Letters the snapshot puts before a price: ``C`` = last is the previous close, ``H`` = halted."""


def describe(value: Any) -> str:
    """A short quoted rendering of a payload value for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(field: str, value: Any, expected: str) -> InvalidPayloadError:
    """The error for ``field`` holding ``value`` where ``expected`` was required."""
    return InvalidPayloadError(f"{field}: expected {expected}, got {describe(value)}")


def number(value: Any, field: str) -> float:
    """A float from a JSON number or a numeric string (thousands separators allowed).

    Booleans, nulls, containers and unparseable strings raise. ``NaN``/``Infinity`` pass.
    """
    parsed = optional_number(value, field)
    if parsed is None:
        raise fail(field, value, "a number")
    return parsed


def optional_number(value: Any, field: str) -> float | None:
    """Like `number`, but ``None`` and the empty string mean "absent" and give ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise fail(field, value, "a number")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer literal beyond the float range (1 with 400 zeros)
            raise fail(field, value, "a number within the float range") from None
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        return _number_text(text, value, field)
    raise fail(field, value, "a number")


def _number_text(text: str, original: str, field: str) -> float:
    special = _SPECIAL_FLOATS.get(text.lower())
    if special is not None:
        return special
    if not _NUMBER_RE.match(text) or not any(ch.isdigit() for ch in text):
        raise fail(field, original, "a number")
    return float(text.replace(",", ""))


def price(value: Any, field: str) -> tuple[float | None, str | None]:
    """A snapshot price and its prefix letter (``"C168.42"`` -> ``(168.42, "C")``).

    Returns ``(None, None)`` for an absent value; raises on anything unparseable.
    """
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in PRICE_PREFIXES:
            return optional_number(text[1:], field), text[0]
    return optional_number(value, field), None


def percent(value: Any, field: str) -> float | None:
    """A percentage such as ``"1.25%"``, ``"-0.4"`` or ``1.25`` as a number of percent."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return optional_number(value.strip()[:-1], field)
    return optional_number(value, field)


def abbreviated(value: Any, field: str) -> float | None:
    """A formatted quantity such as ``"1.2M"``, ``"12.3K"``, ``"1,300"`` or ``12``."""
    if isinstance(value, str):
        text = value.strip()
        multiplier = _SUFFIXES.get(text[-1:].upper()) if text else None
        if multiplier is not None:
            base = optional_number(text[:-1], field)
            if base is None:
                raise fail(field, value, "a number with an optional K/M/B suffix")
            return base * multiplier
    return optional_number(value, field)


def conid(value: Any, field: str = "conid") -> int:
    """A contract id from an integer or a string of digits."""
    if isinstance(value, bool):
        raise fail(field, value, "an integer contract id")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise fail(field, value, "an integer contract id")


def integer(value: Any, field: str) -> int:
    """An integer from a JSON integer, an integral float or a string of digits."""
    if isinstance(value, bool):
        raise fail(field, value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise fail(field, value, "an integer")


def optional_integer(value: Any, field: str) -> int | None:
    """Like `integer`, with ``None`` giving ``None``."""
    return None if value is None else integer(value, field)


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def epoch_ms(value: Any, field: str) -> int:
    """Epoch milliseconds as an int (an integer, or an integral float/string) that fits the
    ``timestamp[ms]`` columns (64 bits); an implausible but representable time passes."""
    parsed = integer(value, field)
    if not INT64_MIN <= parsed <= INT64_MAX:
        raise fail(field, value, "epoch milliseconds within 64 bits")
    return parsed


def optional_epoch_ms(value: Any, field: str) -> int | None:
    return None if value is None else epoch_ms(value, field)


def text(value: Any, field: str) -> str:
    """A required string."""
    if not isinstance(value, str):
        raise fail(field, value, "a string")
    return value


def optional_text(value: Any, field: str) -> str | None:
    """A string or ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(field, value, "a string or null")
    return value


def boolean(value: Any, field: str) -> bool:
    """A JSON boolean (``"true"``/``"false"`` strings are accepted as the gateway uses both)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise fail(field, value, "a boolean")


def mapping(value: Any, field: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise fail(field, value, "a JSON object")
    return value


def sequence(value: Any, field: str) -> list[Any]:
    """A JSON array."""
    if not isinstance(value, list):
        raise fail(field, value, "a JSON array")
    return value


def scaled(value: float, factor: float) -> float:
    """``value * factor`` rounded as if computed in decimal: 0.29 lots of 100 are 29.0 shares,
    not the float product 28.999999999999996. Non-finite values scale as floats.

    This is the reference definition; `scaled_array` gives the same results for arrays."""
    if factor == 1 or not math.isfinite(value):
        return value * factor
    return float(Decimal(repr(value)) * Decimal(repr(float(factor))))


_SCALE_DECIMALS = 6
"""Decimals of the values `scaled_array` scales without Decimal (IBKR's lots carry <= 2)."""
_SCALE_UNIT = 10.0**_SCALE_DECIMALS
_UNIQUE_LIMIT = 2.0**50
"""Below this many millionths a float holds at most one 6-decimal number (ulp < 1e-6 / 4)."""
_EXACT_LIMIT = 2.0**53
"""Integers below this magnitude are exact in a float64."""


@functools.lru_cache(maxsize=64)
def _decimal_parts(factor: float) -> tuple[float, int] | None:
    """``factor`` (as `scaled` reads it: its shortest repr) as ``(integer, decimals)`` with
    ``factor == integer / 10**decimals``; None if the fast path of `scaled_array` cannot hold
    it exactly (the integer beyond 2**53, or more than 22 decimals in all)."""
    sign, digits, exponent = Decimal(repr(float(factor))).normalize().as_tuple()
    if not isinstance(exponent, int):  # NaN/Infinity: `_check_lot_size` refuses them first
        return None
    whole = int("".join(map(str, digits))) * (10 ** max(exponent, 0)) * (-1 if sign else 1)
    decimals = max(-exponent, 0)
    if abs(whole) >= _EXACT_LIMIT or _SCALE_DECIMALS + decimals > 22:
        return None
    return float(whole), decimals


def scaled_array(values: npt.ArrayLike, factor: float) -> npt.NDArray[np.float64]:
    """`scaled` of every value, vectorised: the same float, bit for bit, for every input.

    Why it is exact: a value ``v`` whose shortest repr ``D`` has at most 6 decimals and
    ``|D| < 2**50 / 1e6`` (about 1.1e9 lots) is recognised by ``m = rint(v * 1e6)`` and the
    check ``m / 1e6 == v``. Below that bound a float's rounding interval is narrower than 1e-6,
    so it holds one 6-decimal number only: the check passing means ``m / 1e6`` is exactly
    ``D``, whatever rounding error ``v * 1e6`` had. With ``factor == F / 10**k`` (F integer),
    the decimal product ``D * factor`` is ``m * F / 10**(6 + k)``: ``m * F`` is an exact
    float while below 2**53 (checked), ``10**(6 + k)`` is exact up to 10**22, and one IEEE
    division rounds the exact quotient to the nearest float, which is what ``float(Decimal)``
    does with the (exact, < 28 digits) Decimal product. For lots of 100 the fast path thus
    covers ``|v| < 2**53 / 1e8`` (about 9e7 lots, 9e9 shares). Values beyond, or with more
    decimals, take `scaled` one by one (rare: gateway sizes have at most a few decimals);
    non-finite values scale as plain float products, as in `scaled`.
    """
    array = np.asarray(values, dtype=np.float64)
    parts = None if factor == 1 else _decimal_parts(factor)
    exact = np.zeros(array.shape, dtype=np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN, as the float products
        product: npt.NDArray[np.float64] = array * float(factor)
        if factor == 1:
            return product
        if parts is not None:
            whole, decimals = parts
            units = np.rint(array * _SCALE_UNIT)
            exact = (np.abs(units) < _UNIQUE_LIMIT) & (units / _SCALE_UNIT == array)
            digits = units * whole
            exact &= np.abs(digits) < _EXACT_LIMIT
            np.copyto(product, digits / 10.0 ** (_SCALE_DECIMALS + decimals), where=exact)
    for index in np.flatnonzero(~exact & np.isfinite(array)):
        product[index] = scaled(float(array[index]), factor)
    return product


def to_datetime(ms: int) -> datetime:
    """An aware UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms_of(moment: datetime, field: str = "time") -> int:
    """Epoch milliseconds of an aware datetime; naive datetimes are refused (ambiguous)."""
    if moment.tzinfo is None:
        raise ValueError(f"{field}: expected a timezone-aware datetime, got naive {moment!r}")
    return int(moment.timestamp() * 1000)


def gateway_time(moment: datetime) -> str:
    """The ``startTime`` format of the history endpoint: ``YYYYMMDD-HH:MM:SS`` in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
