"""Building blocks of the warehouse store; `ib_pipeline.storage.store` is their public face.

Each module has one job: `fs` (a warehouse root on local disk or an fsspec URL, atomic object
writes), `paths` (safe partition names), `datasets` (what each dataset stores and how it is
partitioned), `keys` (sorting and duplicate detection on keys), `bar_sessions` (which trading
session a bar belongs to), `parquet` (deterministic Parquet bytes), `manifest` (what a
partition holds), `quarantine` (rejected rows with their reasons) and `listing` (the data
files each DuckDB view names).
"""
