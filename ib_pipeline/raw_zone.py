"""The raw zone: every API response the loader used, kept as compressed JSON for replay.

Why: after a normaliser fix, partitions are rebuilt from what IBKR actually sent, without
calling the rate-limited API again (`ib_pipeline.replay`). The client's ``on_response`` hook is
`RawZone.__call__`; each call writes one file:

    raw/endpoint=history/date=2024-11-26/20241126T180000123Z-<params hash>.json.zst

holding ``{"format", "endpoint", "params", "meta", "fetched_at", "fetched_at_ms", "payload"}``
(zstd-compressed JSON; ``zstd -dc FILE`` shows it). ``date`` is the UTC date of the fetch; the
name starts with the fetch time so a folder lists in fetch order; the hash of the canonical
params tells apart requests fetched in the same millisecond. Re-landing the same response
rewrites the same bytes (sorted keys, fixed compression level, no wall clock): deterministic.

- NaN and Infinity literals in a payload are kept as such (JSON text ``NaN``), so a bad value
  replays into the same quarantine reason instead of turning into null.
- Secrets never land: keys named like token/authorization/cookie/password/secret/session are
  scrubbed at every depth of params, meta and payload (`storage.scrub`), although the client
  never passes headers.
- Each file is written atomically (`storage.fs`): replay never reads half a response.

On by default; ``IB_PIPELINE_RAW_ZONE=0`` turns it off (`RawZone.enabled`). This module never
normalises and never calls the API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa

from ib_pipeline.ibkr.history_wire import decode_history_record
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage.fs import FsspecRoot, LocalRoot, open_root
from ib_pipeline.storage.manifest import iso_ms
from ib_pipeline.storage.scrub import scrub

RAW = "raw"
SUFFIX = ".json.zst"
FORMAT_VERSION = 1
COMPRESSION = "zstd"

_SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_NAME_RE = re.compile(r"^(\d{8}T\d{9}Z)-([0-9a-f]{16})\.json\.zst$")


_LANDING_META: ContextVar[Mapping[str, Any]] = ContextVar("raw_zone_landing_meta")


@contextlib.contextmanager
def landing_meta(meta: Mapping[str, Any]) -> Iterator[None]:
    """Responses the hook (`RawZone.__call__`) lands inside this block carry ``meta``: what the
    caller asked for beyond the request's params (the bar loader: a history range's window),
    so that a replay converts them as the live load did. Scoped to the current task (a
    context variable): concurrent ranges each land their own."""
    token = _LANDING_META.set(dict(meta))
    try:
        yield
    finally:
        _LANDING_META.reset(token)


def endpoint_slug(endpoint: str) -> str:
    """The folder name of an endpoint: ``history`` stays ``history``;
    ``/iserver/marketdata/history`` becomes ``iserver_marketdata_history``."""
    slug = re.sub(r"[^a-z0-9]+", "_", str(endpoint).lower()).strip("_")
    if _SLUG_RE.match(slug) is None:
        raise ValueError(f"cannot name a raw-zone folder after endpoint {endpoint!r}")
    return slug


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, NaN/Infinity kept as literals."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str
    ).encode()


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)  # fast path; fails only on NaN/Infinity literals
    except orjson.JSONDecodeError:
        return json.loads(data)


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(params)).hexdigest()[:16]


def _stamp(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z"


def _fetched_ms(fetched_at: datetime | int | float) -> int:
    if isinstance(fetched_at, datetime):
        if fetched_at.tzinfo is None:
            raise ValueError(f"fetched_at {fetched_at.isoformat()} must be timezone-aware")
        return round(fetched_at.timestamp() * 1000)
    if isinstance(fetched_at, bool) or not isinstance(fetched_at, int | float):
        raise ValueError(f"fetched_at must be a datetime or epoch ms, got {fetched_at!r}")
    return int(fetched_at)


def compress(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, COMPRESSION) as stream:
        stream.write(data)
    return bytes(sink.getvalue().to_pybytes())


def decompress(data: bytes) -> bytes:
    with pa.CompressedInputStream(pa.BufferReader(data), COMPRESSION) as stream:
        return bytes(stream.read())


@dataclass(frozen=True)
class RawRecord:
    """One landed response. Same attribute names as the client's `RawResponse`, so code that
    turns responses into tables (`ib_pipeline.replay`) takes either."""

    endpoint: str
    params: Mapping[str, Any]
    payload: Any
    fetched_at: datetime
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""


class RawZone:
    """The raw zone of a warehouse root; callable as the client's ``on_response`` hook."""

    def __init__(
        self, root: str | os.PathLike[str] | Any | None = None, *, enabled: bool = True
    ) -> None:
        self.root: LocalRoot | FsspecRoot = open_root(
            WarehouseSettings.from_env().root if root is None else root
        )
        self.enabled = enabled

    @classmethod
    def from_settings(cls, settings: WarehouseSettings) -> RawZone:
        return cls(settings.root, enabled=settings.raw_zone)

    def __repr__(self) -> str:
        return f"RawZone({self.root.url!r}, enabled={self.enabled})"

    def __call__(
        self,
        endpoint: str,
        request_params: dict[str, Any],
        payload: Any,
        fetched_at: datetime,
    ) -> None:
        """The client's ``on_response(endpoint, request_params, payload, fetched_at)`` hook; the
        record's ``meta`` is that of the enclosing `landing_meta` block, if any."""
        self.land(endpoint, request_params, payload, fetched_at, meta=_LANDING_META.get({}))

    def land(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        payload: Any,
        fetched_at: datetime | int,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Keep one response; return its root-relative path (None when the zone is off)."""
        if not self.enabled:
            return None
        slug = endpoint_slug(endpoint)
        ms = _fetched_ms(fetched_at)
        clean_params = scrub(dict(params))
        record = {
            "format": FORMAT_VERSION,
            "endpoint": endpoint,
            "params": clean_params,
            "meta": scrub(dict(meta or {})),
            "fetched_at": iso_ms(ms),
            "fetched_at_ms": ms,
            "payload": scrub(payload),
        }
        day = _stamp(ms)[:8]
        folder = f"{RAW}/endpoint={slug}/date={day[:4]}-{day[4:6]}-{day[6:]}"
        rel = f"{folder}/{_stamp(ms)}-{params_hash(clean_params)}{SUFFIX}"
        self.root.write_atomic(rel, compress(canonical_json(record)))
        return rel

    def endpoints(self) -> list[str]:
        """Endpoint folders present in the zone."""
        found = set()
        for rel in self.root.files(RAW, SUFFIX):
            segment = rel.split("/")[1]
            if segment.startswith("endpoint="):
                found.add(segment[len("endpoint=") :])
        return sorted(found)

    def paths(
        self, endpoint: str, *, since: date | None = None, until: date | None = None
    ) -> list[str]:
        """Root-relative files of ``endpoint`` fetched on UTC dates [since, until], in fetch
        order (the file names start with the fetch time)."""
        folder = f"{RAW}/endpoint={endpoint_slug(endpoint)}"
        chosen = []
        for rel in self.root.files(folder, SUFFIX):
            parts = rel.split("/")
            day_text = parts[2][len("date=") :] if parts[2].startswith("date=") else ""
            if _NAME_RE.match(parts[-1]) is None or not day_text:
                continue
            day = date.fromisoformat(day_text)
            if (since is None or day >= since) and (until is None or day <= until):
                chosen.append(rel)
        return sorted(chosen, key=lambda r: r.rsplit("/", 1)[-1])

    def read(self, rel: str, *, history_columns: bool = False) -> RawRecord:
        """One landed response. Raises ValueError naming the file if it is not a raw record.

        ``history_columns``: a plainly well-formed history answer comes back decoded into bar
        columns (its payload a `history_wire.HistoryColumns`, which `normalize.history_bars`
        takes), a fifth of a replay's time saved; any other record as JSON, as by default."""
        try:
            text = decompress(self.root.read_bytes(rel))
        except (ValueError, OSError, pa.ArrowException) as error:
            raise ValueError(f"raw record {rel} cannot be read: {error}") from None
        if history_columns:
            record = self._history_record(rel, text)
            if record is not None:
                return record
        try:
            body = _loads(text)
        except ValueError as error:
            raise ValueError(f"raw record {rel} cannot be read: {error}") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT_VERSION:
            raise ValueError(f"raw record {rel} is not a format-{FORMAT_VERSION} raw record")
        try:
            fetched = datetime.fromtimestamp(int(body["fetched_at_ms"]) / 1000, UTC)
            return RawRecord(
                endpoint=str(body["endpoint"]),
                params=body["params"],
                payload=body["payload"],
                fetched_at=fetched,
                meta=body.get("meta") or {},
                path=rel,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"raw record {rel} lacks a field: {error}") from None

    @staticmethod
    def _history_record(rel: str, text: bytes) -> RawRecord | None:
        """``text`` as a record with its history answer in columns, or None: the general way
        reads it then (and raises its errors)."""
        decoded = decode_history_record(text)
        if decoded is None or decoded[0].format != FORMAT_VERSION:
            return None
        record, columns = decoded
        try:
            fetched = datetime.fromtimestamp(record.fetched_at_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return RawRecord(
            endpoint=record.endpoint,
            params=record.params,
            payload=columns,
            fetched_at=fetched,
            meta=record.meta or {},
            path=rel,
        )

    def records(
        self, endpoint: str, *, since: date | None = None, until: date | None = None
    ) -> Iterator[RawRecord]:
        """Landed responses of ``endpoint``, oldest fetch first."""
        for rel in self.paths(endpoint, since=since, until=until):
            yield self.read(rel)
