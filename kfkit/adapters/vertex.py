"""Vertex AI Model Registry and Endpoints adapter: the only module that calls google-cloud-aiplatform
for models and endpoints. Tests hand it a fake `aiplatform` module and check every call.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.vertex")
TASK_LABEL = "kfkit-task-id"
PREVIOUS_SPLIT_PREFIX = "kfkit-previous-traffic-split:"
# Vertex's prebuilt TensorFlow 2 CPU prediction container (loads a SavedModel from artifact_uri)
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


def label_value(value: str) -> str:
    """Vertex label values: lowercase letters, digits, - and _, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


def fuse_to_gcs(path: str) -> str:
    return "gs://" + path[len("/gcs/"):] if path.startswith("/gcs/") else path


class VertexAdapter:
    def __init__(self, project: str, location: str, aiplatform=None):
        if not project or not location:
            raise ConfigError("project and location are required for the Vertex AI backend")
        if aiplatform is None:
            from google.cloud import aiplatform
        self.ai = aiplatform
        self.project = project
        self.location = location
        self._where = {"project": project, "location": location}

    # ---- model registry ---------------------------------------------------------------------------
    def find_version_by_task(self, task_id: str):
        if not task_id:
            return None
        found = self.ai.Model.list(filter=f'labels.{TASK_LABEL}="{label_value(task_id)}"', **self._where)
        return found[0] if found else None

    def parent_model(self, display_name: str) -> str | None:
        found = self.ai.Model.list(filter=f'display_name="{display_name}"', order_by="create_time desc",
                                   **self._where)
        return found[0].resource_name if found else None

    def upload_version(self, *, display_name: str, artifact_uri: str, serving_image: str, aliases: list[str],
                       labels: dict[str, str], metrics: dict[str, float], task_id: str, make_default: bool):
        """Upload a new version of `display_name` (idempotent per pipeline task id)."""
        existing = self.find_version_by_task(task_id)
        if existing is not None:
            log.info("task %s already uploaded %s; reusing it", task_id, existing.resource_name)
            self.add_aliases(existing, aliases)
            return existing, False
        labels = {label_value(k): label_value(v) for k, v in {**labels, TASK_LABEL: task_id}.items() if v}
        description = "kfkit evaluation: " + json.dumps({k: round(v, 6) for k, v in sorted(metrics.items())})
        model = self.ai.Model.upload(
            display_name=display_name, artifact_uri=fuse_to_gcs(artifact_uri),
            serving_container_image_uri=serving_image, parent_model=self.parent_model(display_name),
            is_default_version=make_default, version_aliases=list(aliases), version_description=description,
            labels=labels, description=description, sync=True, **self._where)
        return model, True

    def add_aliases(self, model, aliases: list[str]) -> None:
        if aliases:
            model.versioning_registry.add_version_aliases(new_aliases=list(aliases), version=model.version_id)

    def model_by_alias(self, display_name: str, alias: str):
        parent = self.parent_model(display_name)
        if parent is None:
            return None
        return self.ai.Model(model_name=f"{parent}@{alias}", **self._where)

    # ---- endpoints --------------------------------------------------------------------------------
    def get_or_create_endpoint(self, display_name: str, labels: dict[str, str], logging_table: str = "",
                               logging_sample_rate: float = 1.0):
        found = self.ai.Endpoint.list(filter=f'display_name="{display_name}"', **self._where)
        if found:
            return found[0]
        kwargs: dict[str, Any] = {}
        if logging_table:
            kwargs = {"enable_request_response_logging": True,
                      "request_response_logging_sampling_rate": logging_sample_rate,
                      "request_response_logging_bq_destination_table": logging_table}
        return self.ai.Endpoint.create(display_name=display_name,
                                       labels={label_value(k): label_value(v) for k, v in labels.items()},
                                       **kwargs, **self._where)

    def deploy(self, endpoint, model, *, machine_type: str, min_replicas: int, max_replicas: int,
               traffic_percent: int, keep_previous: int) -> dict[str, int]:
        """Deploy with a share of the traffic, remember the old split, undeploy idle old versions."""
        previous = dict(endpoint.traffic_split or {})
        endpoint.deploy(model=model, deployed_model_display_name=f"{model.display_name}-v{model.version_id}",
                        machine_type=machine_type, min_replica_count=min_replicas, max_replica_count=max_replicas,
                        traffic_percentage=traffic_percent, sync=True)
        endpoint.update(description=PREVIOUS_SPLIT_PREFIX + json.dumps(previous))
        split = dict(endpoint.traffic_split or {})
        idle = [d for d in sorted(endpoint.list_models(), key=lambda d: str(d.create_time))
                if split.get(d.id, 0) == 0]
        for deployed in idle[:max(len(idle) - keep_previous, 0)]:
            endpoint.undeploy(deployed_model_id=deployed.id, sync=True)
        return split

    def rollback(self, endpoint_name: str) -> dict[str, int]:
        found = self.ai.Endpoint.list(filter=f'display_name="{endpoint_name}"', **self._where)
        if not found:
            raise ConfigError(f"no Vertex AI endpoint named {endpoint_name!r} in {self.project}/{self.location}")
        endpoint = found[0]
        # the SDK's Endpoint has no `description` attribute: it lives on the resource proto
        description = endpoint.gca_resource.description or ""
        if not description.startswith(PREVIOUS_SPLIT_PREFIX):
            raise ConfigError(f"endpoint {endpoint_name!r} has no previous traffic split recorded by kfkit deploy")
        previous = json.loads(description[len(PREVIOUS_SPLIT_PREFIX):])
        deployed = {d.id for d in endpoint.list_models()}
        missing = [k for k, v in previous.items() if v and k not in deployed]
        if missing or not previous:
            raise ConfigError(f"cannot restore the previous split {previous}: deployed model(s) {missing} are gone")
        endpoint.update(traffic_split=previous, description=PREVIOUS_SPLIT_PREFIX + json.dumps(dict(endpoint.traffic_split)))
        return previous


def batch_predict_bigquery(vertex: VertexAdapter, *, model_resource: str, source_table: str,
                           destination_prefix: str, machine_type: str, replicas: int, display_name: str):
    """A Vertex AI batch prediction job from a BigQuery table to a new table under destination_prefix."""
    return vertex.ai.BatchPredictionJob.create(
        job_display_name=display_name, model_name=model_resource, instances_format="bigquery",
        predictions_format="bigquery", bigquery_source=f"bq://{source_table.removeprefix('bq://')}",
        bigquery_destination_prefix=f"bq://{destination_prefix.removeprefix('bq://')}", machine_type=machine_type,
        starting_replica_count=replicas, max_replica_count=replicas, sync=True,
        project=vertex.project, location=vertex.location)
