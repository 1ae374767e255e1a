"""KFP wrapper of the register stage."""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def register_model(
    model: Input[Model],
    metrics: Input[Metrics],
    model_name: str,
    registered_model: Output[VertexModel],
    gcp_resources: dsl.OutputPath(str),
    blessed: bool = True,
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    local_root: str = ".kfkit",
    serving_image: str = "",
    labels: dict = {},
    data_snapshot: str = "",
    task_id: str = "",
    traffic_percent: int = 100,
):
    """Registers the model as a new version with aliases, labels and its evaluation metrics.

    Args:
        model: The SavedModel from train.
        metrics: Its evaluation metrics (attached to the version).
        model_name: Registered model name (Vertex display name / MLflow registered model).
        blessed: Whether evaluate blessed it: with all the traffic (traffic_percent 100) the `champion`
            alias moves to it (and on Vertex it becomes the default version). `challenger` is always set.
        backend: `local` (MLflow registry under local_root) or `vertex` (Vertex AI Model Registry).
        project: Google Cloud project (vertex backend).
        location: Vertex AI region (vertex backend).
        local_root: Directory of the embedded backend's state (local backend).
        serving_image: Serving container for Vertex; default: Vertex's prebuilt TensorFlow CPU image.
        labels: Labels of the version (pipeline run, git commit).
        data_snapshot: Id of the training data (ingest's output), added as the `data-snapshot` label.
        task_id: Pipeline task id; a retried task finds the version it created instead of adding one.
        traffic_percent: The share deploy gives it: under 100 it is a canary, which gets `challenger`
            only; `champion` moves to it when the canary analysis promotes it.

    Returns:
        registered_model: google.VertexModel artifact (on the local backend its metadata holds the
            MLflow `models:/name/version` URI and the model directory).
        gcp_resources: The model upload operation (GCPC's GcpResources JSON, a VertexLro); empty
            on the local backend or when a retried task reuses its version.
    """
    from kfkit.components.evaluate.evaluate import metric_values
    from kfkit.components.register.register import register_model as register

    values = metric_values(dict(metrics.metadata))
    params = {k: v for k, v in model.metadata.items() if k in ("task", "label", "framework_version", "epochs_run")}
    # the hyperparameters train used (tuned or given), recorded with the version
    params.update({f"hp_{k}": v for k, v in dict(model.metadata.get("hyperparameters") or {}).items()})
    all_labels = {**labels, **({"data-snapshot": data_snapshot} if data_snapshot else {})}
    meta = register(model.path, model_name=model_name, backend="vertex" if backend in ("vertex", "bigquery") else "local",
                    blessed=blessed, metrics=values, params=params, labels=all_labels, task_id=task_id,
                    local_root=local_root, project=project, location=location, serving_image=serving_image,
                    gcp_resources=gcp_resources, traffic_percent=traffic_percent)
    registered_model.uri = meta.pop("uri", meta["resourceName"])
    registered_model.metadata.update(meta)

    from kfkit import quick_exit

    quick_exit.after_success()  # skip TensorFlow's and MLflow's second of teardown
