"""Deterministic Parquet bytes for one partition, and reading them back.

Why: an idempotent re-run should produce the same bytes, so the content hash in a manifest
means something. Fixed writer settings (LZ4 (LZ4_RAW) where it pays, row groups of 16,384 rows,
statistics on, dictionary encoding for every column except floating-point ones, the Arrow schema
stored so time zones and the ``unit: shares`` field metadata survive) and no wall-clock time
anywhere in the file; the one data-dependent choice (`compression_of`) depends on the values
only, so the same rows still give the same bytes. Row groups of ~16k rows let DuckDB skip most
of a partition for one instrument, as measured for the layout decision (ARCHITECTURE.md);
64k-row groups made "one symbol over five sessions" ~2.5x native instead of ~1.8x, 8k-row
groups made the all-symbols scan slower.

Measured on `bench.query_latency` (issue 11 item 5, ratios to a native DuckDB table, medians of
paired runs): the all-symbols daily OHLCV scan is decode-bound. zstd level 3 with dictionaries
on every column ran ~3.0x; LZ4 ~2.3x; LZ4 without dictionaries on float columns ~2.0x (zstd
without them ~3.1x: zstd's decompression is the cost). Prices and volumes of minute bars are
nearly all distinct within a row group, so a dictionary page there is as large as the data and
adds a lookup per value; identifiers (conid), timestamps and strings repeat and keep theirs.
Size cost on that bench's bars: 139 MB against 144 MB for zstd 3 (random-walk prices do not
compress); on real prices, which repeat at the tick size, zstd would be somewhat smaller: LZ4
trades that disk for query speed, the right side for a local warehouse. Page checksums cost
nothing measurable (within noise) and stay; a page index (``write_page_index``) did not help
these queries and is not written.

A floating-point column is stored uncompressed when LZ4 would not save `LZ4_MIN_SAVING` of it
(`compression_of`): LZ4 finds almost no 4-byte repeats in prices (random-walk or real ones at
tick size: the low mantissa bytes differ), so it stored them at 100.4% of their size and every
scan paid a decompression pass for nothing. Volumes (whole numbers: zero low bytes) keep LZ4
(37%). Measured on that bench's bars, DuckDB 2.0, one thread: a scan of every column 25% less
CPU (95 ms against 120 ms; native table 32 ms), the daily OHLCV query ~10% less; same file
size.

Every data page carries a CRC32 (``write_page_checksum``), checked on every read here
(`read_parquet_file`): bytes damaged in place fail with `CorruptFileError` naming the file,
rather than decoding to wrong values (a compressor stores incompressible prices nearly raw, so a
flipped byte there can decode silently). Other readers (DuckDB) may not check it;
``manifest --verify`` does.

This module never decides where bytes go; `fs` does.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 16_384
COMPRESSION = "lz4"
"""LZ4_RAW in the file (pyarrow's "lz4"), read by DuckDB, pyarrow, pandas and polars."""
LZ4_MIN_SAVING = 0.1
"""The share of a floating-point column's bytes LZ4 must save for the column to be compressed."""
_SAMPLE_BYTES = 1 << 17
"""How much of a column `compression_of` compresses to decide: the first 128 KiB (16k values,
one row group; the pages of a column are alike). A whole MiB cost ~1 ms per float column and
file, about a sixth of a replay's write after its last file."""


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns written with a dictionary: all but floating-point ones (nearly all distinct)."""
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _lz4_pays(column: pa.ChunkedArray) -> bool:
    """Whether LZ4 saves at least `LZ4_MIN_SAVING` of ``column``'s values (nulls left out: the
    bytes under a null slot are undefined and must not decide)."""
    present = column.drop_null() if column.null_count else column
    sample = present.slice(0, _SAMPLE_BYTES // max(1, present.type.byte_width))
    # only the sample is copied out (the whole column was, before it was cut: ~2 ms a file)
    raw = np.ascontiguousarray(sample.to_numpy()).tobytes()[:_SAMPLE_BYTES]
    if not raw:
        return True
    packed = pa.compress(raw, codec="lz4_raw", asbytes=True)
    return len(packed) <= (1 - LZ4_MIN_SAVING) * len(raw)


def compression_of(table: pa.Table) -> dict[str, str]:
    """The codec of each column: `COMPRESSION`, except floating-point columns LZ4 barely shrinks
    (`LZ4_MIN_SAVING`), stored uncompressed. A function of the values only (deterministic)."""
    return {
        field.name: COMPRESSION
        if not pa.types.is_floating(field.type) or _lz4_pays(table.column(index))
        else "none"
        for index, field in enumerate(table.schema)
    }


def to_parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet encoding of ``table`` (schema-level metadata dropped, field metadata kept)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.replace_schema_metadata(None),
        sink,
        row_group_size=ROW_GROUP_SIZE,
        compression=compression_of(table),
        use_dictionary=dictionary_columns(table.schema),
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
