"""KFP wrapper of the ingest stage."""

from kfp import dsl
from kfp.dsl import Dataset, Output
from google_cloud_pipeline_components.types.artifact_types import BQTable

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def bigquery_query_to_dataset(
    query: str,
    label_column: str,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
    test_data: Output[Dataset],
    destination_table: Output[BQTable],
    gcp_resources: dsl.OutputPath(str),
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
    maximum_bytes_billed: int = 1000000000000,
    export_threshold_bytes: int = 1000000000,
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
        job_labels: Labels added to the BigQuery jobs.
        maximum_bytes_billed: Most bytes any one BigQuery job of this step may bill (default 1 TB);
            the query's dry-run estimate is checked first, and a query over it is refused, naming it.
        export_threshold_bytes: From this query result size on, and when the outputs are on Cloud
            Storage, BigQuery itself splits the rows and exports them as Parquet shards (EXPORT
            DATA); a smaller result is streamed through this step (quicker for small data).

    Returns:
        train_data: Training split, a directory of Parquet shards; metadata holds rows, shards, schema.
        eval_data: Evaluation split, same layout.
        test_data: Test split, same layout.
        destination_table: The query's destination table (google.BQTable); on the local backend
            its metadata names the local warehouse instead.
        gcp_resources: The BigQuery jobs this step started, in Google Cloud Pipeline Components'
            GcpResources JSON (empty on the local backend); cancelling the run cancels them.
        Output: the data snapshot id (row count and the order-independent sum of the rows' split-key
            fingerprints): the same rows give the same id on either backend.
    """
    import logging

    from kfkit.components.ingest.ingest import SplitSpec, run_ingest

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    outputs = {"train": train_data, "eval": eval_data, "test": test_data}
    split = SplitSpec({"train": train_fraction, "eval": eval_fraction, "test": test_fraction}, split_key)
    result = run_ingest(query, {name: artifact.path for name, artifact in outputs.items()},
                        split=split, label_column=label_column, backend=backend,
                        query_parameters=query_parameters, project=project, location=location,
                        local_root=local_root, shard_rows=shard_rows, staging_dataset=staging_dataset,
                        labels=job_labels, maximum_bytes_billed=maximum_bytes_billed,
                        export_threshold_bytes=export_threshold_bytes, gcp_resources=gcp_resources)
    for name, artifact in outputs.items():
        artifact.metadata.update({"split": name, "rows": result.rows[name], "shards": result.shards[name],
                                  "snapshot": result.snapshot,
                                  "format": "parquet", "schema": result.schema, "label": label_column,
                                  "backend": backend, "written_by": result.extra.get("path", "streamed")})
        if result.extra.get("selects"):  # BigQuery exported it: validate asks BigQuery for its statistics
            artifact.metadata.update({"bigquery_select": result.extra["selects"][name],
                                      "bigquery_project": result.extra["project"],
                                      "bigquery_location": result.extra["location"]})
    if result.source_table:
        destination_table.uri = result.extra["table_uri"]
        destination_table.metadata.update({"projectId": result.extra["project"],
                                           "datasetId": result.extra["dataset"],
                                           "tableId": result.extra["table"]})
    else:
        destination_table.metadata.update({"backend": "local", "query": query})
    logging.getLogger("kfkit.ingest").info("ingest finished in %.2fs: %s, snapshot %s", result.seconds, result.rows,
                                           result.snapshot)
    from kfkit import quick_exit

    # forked from a local run's zygote, this process holds TensorFlow and MLflow too: skip their
    # second of teardown
    quick_exit.after_success()
    return result.snapshot
