"""The local BigQuery: BigQuery SQL answered by DuckDB with BigQuery's documented values.

- `sql`: parsing and translation (sqlglot), the entry point for a query's text;
- `semantics`: rewrites of every construct whose DuckDB value differs from BigQuery's, and the
  refusals where kfkit cannot match it;
- `result_types`: result columns as the Arrow types BigQuery's Storage Read API delivers;
- `json_functions`: TO_JSON_STRING and BigQuery's JSON spelling of values;
- `farmhash`, `_farmhash_kernel`: FARM_FINGERPRINT;
- `local`: the DuckDB warehouse file, its public tables, loading files;
- `synthetic`: generated tables for tests and benchmarks.

May import: the core (kfkit.config, kfkit.errors, ...). Never serving, runs, adapters, components
or pipelines (tests/test_layers.py).
"""
