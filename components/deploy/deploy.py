"""Deployment logic for both backends; returns the metadata of a google.VertexEndpoint artifact."""

from __future__ import annotations

from typing import Any

from kfkit.errors import ConfigError


def deploy_model(registered: dict[str, Any], *, endpoint_name: str, backend: str = "local",
                 traffic_percent: int = 100, keep_previous: int = 1, machine_type: str = "n1-standard-2",
                 min_replicas: int = 1, max_replicas: int = 1, logging_table: str = "",
                 logging_sample_rate: float = 1.0, local_root: str | None = None, project: str = "",
                 location: str = "", labels: dict[str, str] | None = None, gcp_resources: str | None = None,
                 vertex=None) -> dict[str, Any]:
    """Deploy a registered version behind endpoint_name; gcp_resources: where deploy/undeploy operations go."""
    from kfkit.cloud_jobs import CloudJobs

    if backend not in ("local", "vertex"):
        raise ConfigError(f"backend must be local or vertex, got {backend!r}")
    if not 0 <= traffic_percent <= 100:
        raise ConfigError(f"traffic_percent must be between 0 and 100, got {traffic_percent}")
    if not 1 <= min_replicas <= max_replicas:
        raise ConfigError(f"replicas must satisfy 1 <= min_replicas <= max_replicas, got {min_replicas} and {max_replicas}")
    if backend == "local":
        from kfkit.endpoints import LocalEndpoints

        CloudJobs(gcp_resources)  # no Google Cloud operation: an empty gcp_resources
        state = LocalEndpoints(local_root).deploy(endpoint_name, registered["model_name"], registered["version"],
                                                  registered["model_dir"], traffic_percent, keep_previous)
        return {"backend": "local", "resourceName": f"local-endpoints/{endpoint_name}", "endpoint": endpoint_name,
                "revision": state["revision"],
                "traffic_split": {m["id"]: m["traffic"] for m in state["deployed_models"]}}
    from kfkit.adapters.vertex import VertexAdapter

    vertex = vertex or VertexAdapter(project, location, jobs=CloudJobs(gcp_resources))
    with vertex.jobs:
        endpoint = vertex.get_or_create_endpoint(endpoint_name, labels or {}, logging_table, logging_sample_rate)
        model = vertex.ai.Model(model_name=registered["resourceName"], project=project, location=location)
        split = vertex.deploy(endpoint, model, machine_type=machine_type, min_replicas=min_replicas,
                              max_replicas=max_replicas, traffic_percent=traffic_percent, keep_previous=keep_previous)
    return {"backend": "vertex", "resourceName": endpoint.resource_name, "endpoint": endpoint_name,
            "traffic_split": split, "uri": f"https://{location}-aiplatform.googleapis.com/v1/{endpoint.resource_name}"}
