"""Deterministic Parquet bytes for one partition, and reading them back.

Why: an idempotent re-run should produce the same bytes, so the content hash in a manifest
means something. Fixed writer settings (zstd level 3, row groups of 16,384 rows, statistics on,
the Arrow schema stored so time zones and the ``unit: shares`` field metadata survive) and no
wall-clock time anywhere in the file. Row groups of ~16k rows let DuckDB skip most of a
partition for one instrument, as measured for the layout decision (ARCHITECTURE.md). zstd is
the project's storage decision (issue 4); measured trade-off: the decompression-bound query
"one symbol over five sessions" ran ~2.2x native with zstd and ~1.7x with snappy, whose files
were ~10% larger on `bench.query_latency`'s bars. Switching is this one constant.

Every data page carries a CRC32 (``write_page_checksum``), checked on every read here
(`read_parquet_file`): bytes damaged in place fail with `CorruptFileError` naming the file,
rather than decoding to wrong values (zstd stores incompressible prices raw, so a flipped byte
there decodes silently). Other readers (DuckDB) may not check it; ``manifest --verify`` does.

This module never decides where bytes go; `fs` does.
"""

from __future__ import annotations

import hashlib
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 16_384
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3


def to_parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet encoding of ``table`` (schema-level metadata dropped, field metadata kept)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.replace_schema_metadata(None),
        sink,
        row_group_size=ROW_GROUP_SIZE,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        use_dictionary=True,
        write_statistics=True,
        store_schema=True,
        write_page_checksum=True,
    )
    return bytes(sink.getvalue().to_pybytes())


class CorruptFileError(ValueError):
    """A data file that does not decode as Parquet (truncated, damaged); names the file."""

    def __init__(self, where: str, error: BaseException) -> None:
        super().__init__(
            f"{where} is not a readable Parquet file (corrupt or truncated: {error}); re-run "
            "the load (or `ib-pipeline replay`) of its partition to rewrite it"
        )
        self.where = where


def read_parquet_file(where: str, source: bytes | str | os.PathLike[str]) -> pa.Table:
    """The table in a Parquet file (its bytes, or a local path), page checksums verified;
    `CorruptFileError` naming ``where`` if it does not decode."""
    try:
        handle = pa.BufferReader(source) if isinstance(source, bytes) else source
        return pq.ParquetFile(handle, page_checksum_verification=True).read()
    except (OSError, pa.ArrowException) as error:
        raise CorruptFileError(where, error) from None


def from_parquet_bytes(data: bytes) -> pa.Table:
    return read_parquet_file("(bytes)", data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
