"""Remove secrets from anything the warehouse keeps (raw responses, request descriptions).

Why: the raw zone and the quarantine keep API requests and responses for years, and may sit on
a shared object store. The client never hands headers to the warehouse, but a token passed as
a query parameter, or a payload echoing a session id, must still never land on disk. Any
mapping key that looks like a credential has its value replaced, at every depth.

This module never logs or returns the removed values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

SCRUBBED = "[scrubbed]"

SECRET_KEY_PATTERN = re.compile(
    r"(token|authori[sz]ation|cookie|passw(or)?d|secret|api[_-]?key|credential|signature|"
    r"^session(_?id)?$)",
    re.IGNORECASE,
)
"""Keys whose values are replaced: ``access_token``, ``Authorization``, ``Cookie``,
``password``, ``client_secret``, ``api_key``, ``session`` (the tickle's session id)..."""


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return SECRET_KEY_PATTERN.search(key) is not None


_SCALARS = (str, int, float, bool, type(None))
"""Types returned as they are without a look (exact types: checked before the slower ABC
check for mappings; a replay scrubs the source of every one of its 100k+ files)."""


def scrub(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: mappings, lists, scalars) with secret values replaced.
    Values are returned as is when nothing needs scrubbing, without copying."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Mapping):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key):
                out[key] = SCRUBBED
                changed = True
            else:
                cleaned = scrub(item)
                changed = changed or cleaned is not item
                out[key] = cleaned
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [scrub(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value
