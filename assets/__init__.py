"""Everything Dagster: assets by subject, checks, schedules, sensors, resources, definitions.

- subjects: `contracts`, `bars`, `quotes`, `portfolio` (accounts, positions, account
  summaries), `orders`; the snapshot-style ones are built by `snapshot_factory`;
- around them: `checks`, `schedules`, `sensors` and `gateway` (is the gateway up and logged
  in), `partitions`, `resources`, `metadata`, `progress`;
- composing and running: `definitions` (what ``workspace.yaml`` loads through
  `ib_pipeline.definitions`), `runs` (one in-process run and its summary), `backfill` and
  `demo` (the ``ib-pipeline`` commands' drivers);
- without Dagster, for benchmarks and scripts: `bar_loader`, `bar_plan`, `contract_lookup`,
  `verify`.

Importing this package alone imports nothing.
"""
