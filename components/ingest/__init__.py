"""Ingest: a BigQuery query (run on BigQuery or on the local DuckDB warehouse) to split Parquet datasets."""
