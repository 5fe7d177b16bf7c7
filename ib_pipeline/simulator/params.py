"""Reading values out of requests: whole numbers and booleans written as text.

Query strings, path segments and some JSON members carry numbers and flags as text, and several
endpoints read them; one reader for each keeps the endpoints consistent (``"²"`` is never a
number, ``" true "`` is always true).

What it must never do: answer a request or raise for bad input. Readers return None for text
they cannot read, and the caller answers the error of its endpoint.
"""

from __future__ import annotations

import re
from typing import Any

_DIGITS = re.compile(r"[0-9]+")

_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_BOOLEANS_WITH_YES_NO = {**_BOOLEANS, "yes": True, "no": False}


def parse_count(text: str) -> int | None:
    """A non-negative decimal integer written in ASCII digits, or None (``str.isdigit`` would
    also accept digits such as ``"²"`` that ``int`` refuses)."""
    return int(text) if _DIGITS.fullmatch(text) else None


def parse_id(value: Any) -> int | None:
    """An id sent as a JSON integer or as a string of digits (surrounding blanks allowed), or
    None. A bool is not an id, although Python counts it as an int."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_count(value.strip())
    return None


def parse_bool(text: str, *, yes_no: bool = False) -> bool | None:
    """``true``/``false`` or ``1``/``0`` (any case, surrounding blanks allowed), or None.

    ``yes_no`` also reads ``yes``/``no``. The history endpoint's ``outsideRth`` takes only the
    strict words (the gateway documents true/false); the search endpoint's ``name`` flag has
    always taken yes/no as well.
    """
    words = _BOOLEANS_WITH_YES_NO if yes_no else _BOOLEANS
    return words.get(text.strip().lower())
