"""Deployment logic for both backends; returns the metadata of a google.VertexEndpoint artifact."""

from __future__ import annotations

from typing import Any

from kfkit.errors import ConfigError


ENDPOINT_BACKENDS = ("local", "vertex", "kserve")


def resolve_backend(backend: str, endpoint_backend: str = "") -> str:
    """Where the endpoint lives: endpoint_backend when given, else the data backend's own (bigquery: vertex)."""
    chosen = endpoint_backend or ("vertex" if backend == "bigquery" else backend)
    if chosen not in ENDPOINT_BACKENDS:
        which = "endpoint_backend" if endpoint_backend else "backend"
        raise ConfigError(f"{which} must be one of {', '.join(ENDPOINT_BACKENDS)}"
                          f"{'' if endpoint_backend else ' (or bigquery: vertex)'}, got {chosen!r}")
    return chosen


def deploy_model(registered: dict[str, Any], *, endpoint_name: str, backend: str = "local",
                 traffic_percent: int = 100, keep_previous: int = 1, machine_type: str = "n1-standard-2",
                 min_replicas: int = 1, max_replicas: int = 1, logging_table: str = "",
                 logging_sample_rate: float = 1.0, local_root: str | None = None, project: str = "",
                 location: str = "", labels: dict[str, str] | None = None, gcp_resources: str | None = None,
                 endpoint_backend: str = "", namespace: str = "", model_storage_uri: str = "",
                 service_account: str = "", request_logger_url: str = "", vertex=None, kserve=None, registry=None,
                 filesystem=None, kserve_explainer: bool = False) -> dict[str, Any]:
    """Deploy a registered version behind endpoint_name; gcp_resources: where deploy/undeploy operations go.

    backend: local, vertex (also its data backend's name, bigquery) or kserve; endpoint_backend, when
    given, overrides it (a pipeline's data backend stays local while its endpoint is on KServe).
    """
    from kfkit.cloud_jobs import CloudJobs

    backend = resolve_backend(backend, endpoint_backend)
    if kserve_explainer and backend != "kserve":
        raise ConfigError(f"kserve_explainer adds an explainer to a KServe InferenceService; this endpoint is on "
                          f"{backend} (kfkit serve answers /explain there already)")
    if not 0 <= traffic_percent <= 100:
        raise ConfigError(f"traffic_percent must be between 0 and 100, got {traffic_percent}")
    if not 1 <= min_replicas <= max_replicas:
        raise ConfigError(f"replicas must satisfy 1 <= min_replicas <= max_replicas, got {min_replicas} and {max_replicas}")
    if backend == "local":
        from kfkit.serving.endpoints import LocalEndpoints

        CloudJobs(gcp_resources)  # no Google Cloud operation: an empty gcp_resources
        state = LocalEndpoints(local_root).deploy(endpoint_name, registered["model_name"], registered["version"],
                                                  registered["model_dir"], traffic_percent, keep_previous)
        return {"backend": "local", "resourceName": f"local-endpoints/{endpoint_name}", "endpoint": endpoint_name,
                "revision": state["revision"],
                "traffic_split": {m["id"]: m["traffic"] for m in state["deployed_models"]}}
    if backend == "kserve":
        CloudJobs(gcp_resources)  # no Google Cloud operation: an empty gcp_resources
        return _deploy_kserve(registered, endpoint_name, traffic_percent, min_replicas, max_replicas, local_root,
                              namespace, model_storage_uri, service_account, kserve, registry, filesystem,
                              request_logger_url, kserve_explainer)
    from kfkit.adapters.vertex import VertexAdapter

    vertex = vertex or VertexAdapter(project, location, jobs=CloudJobs(gcp_resources))
    with vertex.jobs:
        endpoint = vertex.get_or_create_endpoint(endpoint_name, labels or {}, logging_table, logging_sample_rate)
        model = vertex.ai.Model(model_name=registered["resourceName"], project=project, location=location)
        split = vertex.deploy(endpoint, model, machine_type=machine_type, min_replicas=min_replicas,
                              max_replicas=max_replicas, traffic_percent=traffic_percent, keep_previous=keep_previous)
    return {"backend": "vertex", "resourceName": endpoint.resource_name, "endpoint": endpoint_name,
            "traffic_split": split, "uri": f"https://{location}-aiplatform.googleapis.com/v1/{endpoint.resource_name}"}


def _deploy_kserve(registered, endpoint_name, traffic_percent, min_replicas, max_replicas, local_root, namespace,
                   model_storage_uri, service_account, kserve, registry, filesystem,
                   request_logger_url="", explainer=False) -> dict[str, Any]:
    """The registered version copied to TF Serving's layout, then KServe's canary (kfkit.adapters.kserve)."""
    from kfkit.adapters import kserve as kserve_mod
    from kfkit.components.deploy import model_storage
    from kfkit.config import serving_image

    if registered.get("backend", "local") != "local":
        raise ConfigError("backend kserve deploys versions of the MLflow registry (register with backend local, "
                          f"MLFLOW_TRACKING_URI naming the cluster's MLflow server), got a {registered['backend']} model")
    if not model_storage_uri:
        raise ConfigError("model_storage_uri is empty: backend kserve needs an object store the cluster's KServe "
                          "reads models from, e.g. s3://models/kfkit (Kubeflow's MinIO) or gs://BUCKET/models")
    model_storage.storage_uri(model_storage_uri, registered["model_name"], registered["version"])  # refuse early
    if registry is None:
        from kfkit.adapters.mlflow_registry import MlflowRegistry

        registry = MlflowRegistry(local_root)
    # the register step's copy stayed in its own pod: fetch the version here
    model_dir = registry.model_dir_of(registered["model_name"], registered["version"])
    uri = model_storage.stage(model_dir, model_storage_uri, registered["model_name"], registered["version"], filesystem)
    kserve = kserve or kserve_mod.KServeAdapter(namespace)
    result = kserve.deploy(endpoint_name, uri, model_name=registered["model_name"], model_version=registered["version"],
                           traffic_percent=traffic_percent, service_account=service_account,
                           min_replicas=min_replicas, max_replicas=max_replicas,
                           request_logger_url=request_logger_url,
                           explainer_image=serving_image() if explainer else "")
    service = kserve.wait_ready(endpoint_name)
    canary = service["spec"]["predictor"].get("canaryTrafficPercent")
    version, previous = registered["version"], result["previous_version"]
    if canary is None:
        split = {f"{endpoint_name}-v{kserve_mod.served_version(service)}": 100}
    else:  # a retried step finds the canary in place and no longer knows which version it replaced
        split = {f"{endpoint_name}-v{version}": canary,
                 f"{endpoint_name}-v{previous}" if previous else f"{endpoint_name}-previous": 100 - canary}
    return {"backend": "kserve", "resourceName": f"namespaces/{kserve.namespace}/inferenceservices/{endpoint_name}",
            "endpoint": endpoint_name, "namespace": kserve.namespace, "storage_uri": uri,
            "traffic_split": split, "revisions": kserve_mod.traffic(service),
            **({"explain_uri": f"{service.get('status', {}).get('url') or ''}/v1/models/{endpoint_name}:explain"}
               if explainer else {}),
            "uri": service.get("status", {}).get("url") or f"kserve://{kserve.namespace}/{endpoint_name}"}
