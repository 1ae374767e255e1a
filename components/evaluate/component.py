"""KFP wrapper of the evaluate stage."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output, OutputPath

from kfkit.config import trainer_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=trainer_image(), install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    test_data: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    reason: OutputPath(str),
    slices: Output[Artifact],
    champion_model: Input[Model] = None,
    champion_model_uri: str = "",
    min_accuracy: float = 0.0,
    min_roc_auc: float = 0.0,
    max_log_loss: float = 0.0,
    max_rmse: float = 0.0,
    tolerance: float = 0.01,
    slicing_specs: str = "",
    slice_min_examples: int = 0,
    model_name: str = "",
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    local_root: str = ".kfkit",
) -> bool:
    """Evaluates the model on the test split and decides whether it may replace the champion.

    Args:
        model: The challenger, a kfkit SavedModel from train.
        test_data: Test split (Parquet shards).
        champion_model: The model in production, as an artifact (optional).
        champion_model_uri: The model in production, as a path or gs:// URI (optional; used when
            champion_model is not given).
        min_accuracy: Lowest accuracy that may be blessed (classification; 0 = no limit).
        min_roc_auc: Lowest ROC AUC that may be blessed (classification; 0 = no limit).
        max_log_loss: Highest log loss that may be blessed (classification; 0 = no limit).
        max_rmse: Highest RMSE that may be blessed (regression; 0 = no limit).
        tolerance: How much worse than the champion the challenger may be: absolute on accuracy,
            relative on RMSE.
        slicing_specs: Slices to evaluate, TFMA's SlicingSpec as a JSON list: [{"feature_keys": ["island"]},
            {"feature_keys": ["island", "sex"]}, {"feature_values": {"island": "Dream"}}] ("" = none).
        slice_min_examples: With slicing_specs, every slice with at least this many examples must meet the
            thresholds and the champion's same slice within the tolerance (0 = slices are reported, not gated).
        model_name: Registered model whose `champion` alias is looked up when no champion is given.
        backend: Registry of that lookup: `local` (MLflow under local_root) or `vertex`/`bigquery`.
        project: Google Cloud project (vertex registry).
        location: Vertex AI region (vertex registry).
        local_root: Directory of the embedded backend's state (local registry).

    Returns:
        metrics: Test metrics (accuracy, ROC AUC, log loss, F1; or RMSE, MAE, R²).
        classification_metrics: Confusion matrix and, for binary tasks, the ROC curve, as Vertex renders them.
        report: HTML report with the metrics, confusion matrix, ROC curve or residuals.
        reason: Why it was or was not blessed.
        slices: JSON list of the slices' metrics, each in the shape of Vertex's ModelEvaluationSlice, with counts,
            95% intervals and, for classifiers, Fairness Indicators' rates.
        Output: blessed, True when the model may go on to registration. (A single return value:
            kfp.local 2.17.0 resolves dsl.If conditions only on a task's `Output`.)
    """
    import json
    import logging

    from kfkit.components.evaluate.evaluate import Thresholds, evaluate_with_gate, render_report
    from kfkit.components.evaluate.slices import parse_slicing_specs
    from kfkit.atomic import atomic_file

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    champion = champion_model.path if champion_model is not None else (champion_model_uri or None)
    if champion is None and model_name:
        from kfkit.components.register.register import champion_model_dir

        champion = champion_model_dir(model_name, "local" if backend == "local" else "vertex", local_root,
                                      project, location)
        logging.getLogger("kfkit.evaluate").info("champion of %s: %s", model_name, champion or "none yet")
    thresholds = Thresholds(min_accuracy, min_roc_auc, max_log_loss, max_rmse, tolerance)
    evaluation, decision = evaluate_with_gate(model.path, test_data.path, thresholds, champion,
                                              parse_slicing_specs(slicing_specs), slice_min_examples)
    for name, value in evaluation.metrics.items():
        metrics.log_metric(name, value)
    if decision.champion is not None:
        for name, value in decision.champion.metrics.items():
            metrics.log_metric(f"champion_{name}", value)
    if evaluation.confusion:
        classification_metrics.log_confusion_matrix(evaluation.classes, evaluation.confusion)
    if evaluation.roc:
        classification_metrics.log_roc_curve(evaluation.roc["fpr"], evaluation.roc["tpr"], evaluation.roc["thresholds"])
    with atomic_file(report.path) as handle:
        handle.write(render_report(evaluation, decision, thresholds))
    metrics.metadata["blessed"] = decision.blessed
    # the limits the decision applied, for the model card (text: never counted as a metric)
    metrics.metadata["thresholds"] = {name: f"{op} {bound:g}" for name, (op, bound) in thresholds.limits().items()}
    with atomic_file(slices.path) as handle:
        json.dump(evaluation.slices, handle, indent=1)
    slices.metadata["slices"] = len(evaluation.slices)
    with open(reason, "w") as handle:
        handle.write(decision.reason)

    from kfkit import quick_exit

    quick_exit.after_success()  # skip TensorFlow's and MLflow's second of teardown
    return decision.blessed
