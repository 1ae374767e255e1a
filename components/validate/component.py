"""KFP wrapper of the validate stage."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def validate_data(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    test_data: Input[Dataset],
    label_column: str,
    statistics: Output[Artifact],
    schema: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    gcp_resources: dsl.OutputPath(str),
    schema_uri: str = "",
    unseen_tolerance: float = 0.01,
    maximum_bytes_billed: int = 1000000000000,
):
    """Computes statistics of the training split, checks every split against a schema, and
    fails with a message naming the column when an anomaly is blocking.

    Args:
        train_data: Training split (Parquet shards) from ingest.
        eval_data: Evaluation split.
        test_data: Test split.
        label_column: The label; null labels and a single class are blocking.
        schema_uri: A schema JSON to check against (a local path or gs://); empty infers the
            schema from the training split.
        unseen_tolerance: Largest share of a split's rows whose category is outside the schema's
            domain before it is a blocking anomaly.
        maximum_bytes_billed: Most bytes any one BigQuery statistics query may bill (splits that
            BigQuery exported are described by BigQuery itself, never read here).

    Returns:
        statistics: JSON statistics of the training split (the monitoring baseline).
        schema: JSON schema: each column's kind, type and categorical domain.
        anomalies: JSON list of anomalies, blocking or not.
        report: HTML report with the statistics and a histogram per feature.
        metrics: Rows per split and anomaly counts.
        gcp_resources: The BigQuery jobs that computed the statistics (GCPC's GcpResources JSON);
            empty when the splits are read from their Parquet shards.
    """
    import json
    import logging

    from kfkit.components.validate.validate import load_json, render_report, split_source, validate
    from kfkit.atomic import atomic_file
    from kfkit.cloud_jobs import CloudJobs
    from kfkit.errors import ValidationError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    given = load_json(schema_uri, "schema") if schema_uri else None
    with CloudJobs(gcp_resources) as jobs:
        splits = {name: split_source(artifact.path, dict(artifact.metadata), jobs, maximum_bytes_billed)
                  for name, artifact in (("train", train_data), ("eval", eval_data), ("test", test_data))}
        result = validate(splits, label_column, schema=given, unseen_tolerance=unseen_tolerance)
    for anomaly in result.anomalies:
        logging.getLogger("kfkit.validate").warning("%s anomaly: %s", "blocking" if anomaly.blocking else "non-blocking", anomaly)
    if result.blocking:
        raise ValidationError("data validation found blocking anomalies:\n  " +
                              "\n  ".join(str(a) for a in result.blocking))
    for artifact, content in ((statistics, result.statistics), (schema, result.schema),
                              (anomalies, result.anomalies_json())):
        with atomic_file(artifact.path) as handle:
            json.dump(content, handle, indent=1)
    with atomic_file(report.path) as handle:
        handle.write(render_report(result))
    statistics.metadata.update({"rows": result.statistics["rows"], "label": label_column})
    schema.metadata.update({"inferred": result.schema_inferred, "columns": len(result.schema["columns"])})
    anomalies.metadata["count"] = len(result.anomalies)
    for name, rows in result.split_rows.items():
        metrics.log_metric(f"rows_{name}", rows)
    metrics.log_metric("anomalies", len(result.anomalies))

    from kfkit import quick_exit

    # forked from a local run's zygote, this process holds TensorFlow and MLflow too: skip their
    # second of teardown
    quick_exit.after_success()
