"""KFP wrapper of the deploy stage."""

from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint, VertexModel
from kfp import dsl
from kfp.dsl import Input, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def deploy_model(
    registered_model: Input[VertexModel],
    endpoint_name: str,
    endpoint: Output[VertexEndpoint],
    gcp_resources: dsl.OutputPath(str),
    traffic_percent: int = 100,
    keep_previous: int = 1,
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    machine_type: str = "n1-standard-2",
    min_replicas: int = 1,
    max_replicas: int = 1,
    request_logging_table: str = "",
    request_logging_sample_rate: float = 1.0,
    local_root: str = ".kfkit",
    endpoint_backend: str = "",
    namespace: str = "",
    model_storage_uri: str = "",
    serving_service_account: str = "",
    request_logger_url: str = "",
    kserve_explainer: bool = False,
):
    """Deploys a registered model version behind an endpoint (created if missing) with a traffic share.

    Args:
        registered_model: The version to deploy (google.VertexModel from register, or Google's ModelUploadOp).
        endpoint_name: Endpoint display name.
        traffic_percent: Share of traffic for the new version (canary); the rest keeps its proportions.
            100 switches fully.
        keep_previous: Previous versions kept deployed with no traffic (for a quick rollback).
        backend: `local` (kfkit's model server), `vertex` (also `bigquery`, the data backend that
            implies it) or `kserve` (a KServe InferenceService on the Kubernetes cluster).
        project: Google Cloud project (vertex backend).
        location: Vertex AI region (vertex backend).
        machine_type: Serving machine type (vertex backend).
        min_replicas: Fewest serving replicas (vertex backend).
        max_replicas: Most serving replicas (vertex backend).
        request_logging_table: bq://project.dataset.table for request-response logging on a new
            Vertex endpoint (the monitor reads it); empty: no logging.
        request_logging_sample_rate: Share of requests logged.
        local_root: Directory of the embedded backend's state (local backend).
        endpoint_backend: Where the endpoint lives when not where `backend` implies: `kserve`,
            `local` or `vertex`; empty: `backend` decides.
        namespace: Kubernetes namespace of the InferenceService (kserve); empty: the step's own
            namespace (a Kubeflow profile's).
        model_storage_uri: s3:// or gs:// prefix the version is copied under in TF Serving's layout
            (`<uri>/<model>/<version>/1/`), the InferenceService's storageUri (kserve).
        serving_service_account: Kubernetes service account of the model server, whose credentials let KServe's
            storage initializer read model_storage_uri (kserve).
        request_logger_url: http(s):// address of a `kfkit log-sink` KServe's inference logger posts
            every request and response to, where the canary analysis reads the predictions (kserve;
            empty: no logging).
        kserve_explainer: Also run `kfkit serve` (kfkit's serving image) as the InferenceService's explainer
            (spec.explainer, on the same version, following the predictor's canary), so POST
            /v1/models/<endpoint_name>:explain answers sampled Shapley attributions (kserve; default: none).

    Returns:
        endpoint: google.VertexEndpoint artifact with the traffic split in its metadata (kserve: its
            URI is the InferenceService's URL; metadata names the namespace and storage URI, and
            explain_uri with kserve_explainer).
        gcp_resources: The deploy and undeploy operations (GCPC's GcpResources JSON, VertexLro
            entries); empty on the local backend or when the version was already deployed.
    """
    from kfkit.components.deploy.deploy import deploy_model as deploy

    meta = deploy(dict(registered_model.metadata), endpoint_name=endpoint_name,
                  backend=backend, endpoint_backend=endpoint_backend, namespace=namespace,
                  model_storage_uri=model_storage_uri, service_account=serving_service_account,
                  request_logger_url=request_logger_url, kserve_explainer=kserve_explainer,
                  traffic_percent=traffic_percent,
                  keep_previous=keep_previous, machine_type=machine_type,
                  min_replicas=min_replicas, max_replicas=max_replicas, logging_table=request_logging_table,
                  logging_sample_rate=request_logging_sample_rate, local_root=local_root, project=project,
                  location=location, gcp_resources=gcp_resources)
    endpoint.uri = meta.pop("uri", None) or meta["resourceName"]
    endpoint.metadata.update(meta)

    from kfkit import quick_exit

    # forked from a local run's zygote, this process holds TensorFlow and MLflow too: skip their
    # second of teardown
    quick_exit.after_success()
