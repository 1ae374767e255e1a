"""KFP wrapper of the explain stage."""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kfkit.config import trainer_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=trainer_image(), install_kfp_package=False)
def explain_model(
    model: Input[Model],
    data: Input[Dataset],
    attributions: Output[Artifact],
    importance: Output[Metrics],
    baseline_data: Input[Dataset] = None,
    path_count: int = 25,
    max_rows: int = 1000,
    seed: int = 0,
    method: str = "sampled_shapley",
    step_count: int = 50,
    registered_model: Input[VertexModel] = None,
    metrics: Input[Metrics] = None,
    project: str = "",
    location: str = "us-central1",
    local_root: str = ".kfkit",
):
    """Feature attributions on the model's raw features: sampled Shapley (as Vertex XAI's tabular method) or integrated gradients.

    Args:
        model: A kfkit SavedModel from train.
        data: Rows to explain (Parquet shards), usually the test split.
        baseline_data: Rows whose medians (numeric) and most frequent values (categorical) make the
            baseline (optional; default: data).
        path_count: Random feature orders per row: the attributions' standard error falls as 1/sqrt(path_count),
            the cost grows as path_count x (features + 1) predictions per row.
        max_rows: Rows explained at most (a seeded sample of data beyond it; 0 = every row).
        seed: Seed of the paths and of the sample.
        method: `sampled_shapley` (every feature) or `integrated_gradients` (the numeric features, the categorical
            ones held at the row's values: category lookups have no gradient).
        step_count: Integrated gradients' integration points (its completeness gap is each row's approximationError).
        registered_model: The version register made of this model (optional): the global importance is
            stored with it, on MLflow as its `kfkit.feature_importance` tag and the attributions in its
            run's `explanation/` files, on Vertex AI as a ModelEvaluation of the version whose
            model_explanation holds the mean attributions.
        metrics: evaluate's metrics of the model (optional): on Vertex AI, that evaluation's metrics.
        project: Google Cloud project of a Vertex AI registered_model.
        location: Vertex AI region of a Vertex AI registered_model.
        local_root: Directory of the embedded backend's state (an MLflow registered_model).

    Returns:
        attributions: JSON: the baseline, each feature's global importance (mean |attribution|) and each row's
            attributions in the shape of Vertex's Attribution (baselineOutputValue, instanceOutputValue,
            featureAttributions, outputIndex, approximationError).
        importance: Each feature's mean |attribution| over the explained rows.
    """
    import json
    import logging

    from kfkit.atomic import atomic_file
    from kfkit.components.explain.explain import explain

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = explain(model.path, data.path, baseline_data.path if baseline_data is not None else None,
                     path_count, max_rows, seed, method, step_count)
    with atomic_file(attributions.path) as handle:
        json.dump(result, handle, indent=1)
    attributions.metadata.update({"method": method, "rows": result["rows"]})
    for feature, value in result["feature_importance"].items():
        importance.log_metric(feature, value)
    if registered_model is not None:
        from kfkit.components.evaluate.evaluate import metric_values
        from kfkit.components.register.register import attach_explanation

        where = attach_explanation(dict(registered_model.metadata), attributions.path,
                                   task=str(model.metadata.get("task", "")),
                                   metrics=metric_values(dict(metrics.metadata)) if metrics is not None else {},
                                   local_root=local_root, project=project, location=location)
        logging.getLogger("kfkit.explain").info("feature importance stored with %s", where)

    from kfkit import quick_exit

    quick_exit.after_success()  # skip TensorFlow's second of teardown
