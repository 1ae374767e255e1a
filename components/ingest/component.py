"""KFP wrapper of the ingest stage."""

from kfp import dsl
from kfp.dsl import Dataset, Output
from google_cloud_pipeline_components.types.artifact_types import BQTable

from kfkit.config import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def bigquery_query_to_dataset(
    query: str,
    label_column: str,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
    test_data: Output[Dataset],
    destination_table: Output[BQTable],
    query_parameters: dict = {},
    backend: str = "local",
    project: str = "",
    location: str = "US",
    split_key: str = "*",
    train_fraction: float = 0.8,
    eval_fraction: float = 0.1,
    test_fraction: float = 0.1,
    local_root: str = ".kfkit",
    shard_rows: int = 1000000,
    staging_dataset: str = "kfkit_staging",
    job_labels: dict = {},
) -> str:
    """Runs a BigQuery query and writes its rows, split deterministically, as Parquet datasets.

    Args:
        query: BigQuery Standard SQL. Use `@name` query parameters, never string formatting.
        label_column: Column the model will predict; the query must return it.
        query_parameters: Values of the `@name` parameters, e.g. {"island": "Dream"}.
        backend: `local` (the DuckDB warehouse under local_root, same SQL) or `bigquery`.
        project: Google Cloud project that runs the query job (bigquery backend).
        location: BigQuery location of the job and the staging dataset.
        split_key: Column(s), comma-separated, whose FARM_FINGERPRINT decides each row's split;
            `*` hashes the whole row.
        train_fraction: Share of rows in the training split.
        eval_fraction: Share of rows in the evaluation (early stopping) split.
        test_fraction: Share of rows in the test split; the three must sum to 1.
        local_root: Directory of the embedded backend's state (local backend).
        shard_rows: Most rows per Parquet shard.
        staging_dataset: BigQuery dataset for the query's destination table (created if missing,
            tables expire after 7 days).
        job_labels: Labels added to the BigQuery job.

    Returns:
        train_data: Training split, a directory of Parquet shards; metadata holds rows, shards, schema.
        eval_data: Evaluation split, same layout.
        test_data: Test split, same layout.
        destination_table: The query's destination table (google.BQTable); on the local backend
            its metadata names the local warehouse instead.
        Output: the data snapshot id (row count and the order-independent sum of the rows' split-key
            fingerprints): the same rows give the same id on either backend.
    """
    import logging

    from components.ingest.ingest import SplitSpec, run_ingest

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    outputs = {"train": train_data, "eval": eval_data, "test": test_data}
    split = SplitSpec({"train": train_fraction, "eval": eval_fraction, "test": test_fraction}, split_key)
    result = run_ingest(query, {name: artifact.path for name, artifact in outputs.items()},
                        split=split, label_column=label_column, backend=backend,
                        query_parameters=query_parameters, project=project, location=location,
                        local_root=local_root, shard_rows=shard_rows, staging_dataset=staging_dataset,
                        labels=job_labels)
    for name, artifact in outputs.items():
        artifact.metadata.update({"split": name, "rows": result.rows[name], "shards": result.shards[name],
                                  "snapshot": result.snapshot,
                                  "format": "parquet", "schema": result.schema, "label": label_column,
                                  "backend": backend})
    if result.source_table:
        destination_table.uri = result.extra["table_uri"]
        destination_table.metadata.update({"projectId": result.extra["project"],
                                           "datasetId": result.extra["dataset"],
                                           "tableId": result.extra["table"]})
    else:
        destination_table.metadata.update({"backend": "local", "query": query})
    logging.getLogger("kfkit.ingest").info("ingest finished in %.2fs: %s, snapshot %s", result.seconds, result.rows,
                                           result.snapshot)
    return result.snapshot
