"""Dagster asset definitions, one module per subject.

What to fetch for a partition, and the Dagster side of it; the fetching, validating and storing
are the library's (`ib_pipeline.ibkr`, `ib_pipeline.schemas`, `ib_pipeline.storage.store`). Modules:

- subjects: `contracts`, `bars`, `snapshots` (quotes), `portfolio` (accounts, positions,
  account summaries), `orders`;
- around them: `checks` (asset checks), `schedules`, `sensors` (the gateway sensor),
  `partitions` (bars partitions matching the store), `store_resource` (the warehouse resource),
  `metadata` (what materialisations report), `progress` (progress reporting), `backfill`
  (the ``backfill`` command's runner);
- without Dagster, so benchmarks and scripts can do the same work: `bar_loader` (load bars of
  a set of partitions), `bar_plan` (ranges to fetch, partitions to skip), `contract_lookup`
  (symbols to conids), `verify` (what the checks verify).

`assets.definitions` composes them into the Definitions that ``workspace.yaml`` loads.
Importing this package alone imports nothing.
"""
