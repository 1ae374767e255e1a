"""Vertex AI Model Registry and Endpoints adapter: the only module that calls google-cloud-aiplatform
for models and endpoints. Tests hand it a fake `aiplatform` module and check every call.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.vertex")
TASK_LABEL = "kfkit-task-id"
# a Private Service Connect endpoint (or any other) for a step in a container: host[:port]
ENDPOINT_ENV = "KFKIT_VERTEX_API_ENDPOINT"
STAGING_ENV = "KFKIT_STAGING_BUCKET"  # gs://bucket[/dir] a hybrid run stages local models into
# Vertex's prebuilt TensorFlow 2 CPU prediction container (loads a SavedModel from artifact_uri)
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


def label_value(value: str) -> str:
    """Vertex label values: lowercase letters, digits, - and _, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


def vertex_labels(labels: dict[str, Any]) -> dict[str, str]:
    """Labels as Vertex takes them (keys and values by label_value; a key must start with a letter,
    https://cloud.google.com/resource-manager/docs/labels-overview); empty values dropped."""
    if len(labels) > 64:
        raise ConfigError(f"{len(labels)} labels: Vertex AI takes at most 64")
    out = {}
    for key, value in labels.items():
        name = label_value(key)
        if not re.match(r"[a-z]", name):
            raise ConfigError(f"label key {key!r} must start with a letter")
        if value is not None and str(value) != "":
            out[name] = label_value(value)
    return out


def _global_config(aiplatform):
    initializer = getattr(aiplatform, "initializer", None)
    return getattr(initializer, "global_config", None)


def _configured_credentials(aiplatform):
    """The credentials the SDK's own classes use; None where it has none to give (the client then
    looks for application default credentials itself, as it would have)."""
    config = _global_config(aiplatform)
    if config is None:
        return None
    import google.auth.exceptions

    try:
        return config.credentials
    except google.auth.exceptions.DefaultCredentialsError:
        return None


# Vertex's evaluation metrics schemas (ModelEvaluation.metrics_schema_uri) and their names for
# kfkit's metrics (the schemas' fields: classification auRoc, logLoss; regression
# rootMeanSquaredError, meanAbsoluteError, rSquared)
_SCHEMAS = "gs://google-cloud-aiplatform/schema/modelevaluation/"
VERTEX_METRICS = {
    "classification": (_SCHEMAS + "classification_metrics_1.0.0.yaml", {"roc_auc": "auRoc", "log_loss": "logLoss"}),
    "regression": (_SCHEMAS + "regression_metrics_1.0.0.yaml",
                   {"rmse": "rootMeanSquaredError", "mae": "meanAbsoluteError", "r2": "rSquared"}),
}
VERTEX_METRICS["binary"] = VERTEX_METRICS["multiclass"] = VERTEX_METRICS["classification"]


def api_endpoint(location: str, aiplatform=None) -> str:
    """Where Vertex AI is reached: $KFKIT_VERTEX_API_ENDPOINT, else aiplatform.init(api_endpoint=...),
    else the region's public endpoint."""
    configured = getattr(_global_config(aiplatform), "api_endpoint", None) if aiplatform is not None else None
    return os.environ.get(ENDPOINT_ENV) or configured or f"{location}-aiplatform.googleapis.com"


def use_endpoint_variable(aiplatform, project: str) -> None:
    """$KFKIT_VERTEX_API_ENDPOINT for the SDK's own classes (Model, Endpoint, jobs, PipelineJob), which
    read the endpoint from aiplatform's global config."""
    config = _global_config(aiplatform)
    wanted = os.environ.get(ENDPOINT_ENV)
    if wanted and config is not None and config.api_endpoint != wanted:
        # with the project kfkit names in every call anyway: init without one would also switch the
        # SDK to its REST transport (initializer.init)
        aiplatform.init(project=project, api_endpoint=wanted)


def fuse_to_gcs(path: str) -> str:
    from kfkit.config import gcs_uri
    return gcs_uri(path) or path


class VertexAdapter:
    """Vertex AI models, endpoints and batch prediction for one project and region.

    Uploads, deploys and undeploys go through the service clients so their long-running
    operations are visible: each is written to the step's gcp_resources as a VertexLro the moment
    it exists, polled with backoff and cancelled if the pipeline run is (kfkit.cloud_jobs), as
    google-cloud-pipeline-components' ModelUploadOp and ModelDeployOp do.
    """

    def __init__(self, project: str, location: str, aiplatform=None, jobs=None, gcs_utils=None):
        if not project or not location:
            raise ConfigError("project and location are required for the Vertex AI backend")
        if aiplatform is None:
            from google.cloud import aiplatform
        from kfkit.cloud_jobs import CloudJobs
        self.ai = aiplatform
        self.project = project
        self.location = location
        self.jobs = jobs or CloudJobs()
        self._where = {"project": project, "location": location}
        self._clients: dict[str, Any] = {}
        self._gcs_utils = gcs_utils
        use_endpoint_variable(aiplatform, project)

    def stage(self, path: str) -> str:
        """A local model directory copied to Cloud Storage (hybrid mode: Vertex reads models only from
        there): into $KFKIT_STAGING_BUCKET, else aiplatform.init(staging_bucket=...), else the regional
        bucket gs://<project>-vertex-staging-<location>, made when missing and checked to be the
        project's. Named by kfkit, not left to the SDK: the SDK salts its default bucket's name with a
        uuid drawn once per process, so every step that staged a model would make a bucket of its own."""
        if self._gcs_utils is None:
            from google.cloud.aiplatform.utils import gcs_utils
            self._gcs_utils = gcs_utils
        staged = self._gcs_utils.stage_local_data_in_gcs(str(path), staging_gcs_dir=self.staging_dir(),
                                                         project=self.project, location=self.location)
        log.info("copied the model %s to %s for Vertex AI", path, staged)
        return staged

    def staging_dir(self) -> str | None:
        """Where stage() copies to; None where aiplatform.init(staging_bucket=...) names it for the SDK."""
        if os.environ.get(STAGING_ENV):
            return os.environ[STAGING_ENV]
        if getattr(_global_config(self.ai), "staging_bucket", None):
            return None
        from google.cloud.aiplatform.utils import resource_manager_utils

        from kfkit.adapters import gcs
        # bucket names are at most 63 characters (https://cloud.google.com/storage/docs/buckets#naming)
        name = f"{self.project}-vertex-staging-{self.location}"[:63].rstrip("-")
        number = resource_manager_utils.get_project_number(self.project, credentials=_configured_credentials(self.ai))
        return gcs.ensure_bucket(name, self.project, self.location, number)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _client(self, name: str):
        if name not in self._clients:
            client_class = getattr(self.ai.gapic, name)
            kwargs: dict[str, Any] = {"client_options": {"api_endpoint": api_endpoint(self.location, self.ai)}}
            credentials = _configured_credentials(self.ai)
            if credentials is not None:  # aiplatform.init(credentials=...) as the SDK's own classes use them
                kwargs["credentials"] = credentials
            self._clients[name] = client_class(**kwargs)
        return self._clients[name]

    def _finish(self, operation, what: str):
        """Record, poll and return the result of one long-running operation."""
        from kfkit.cloud_jobs import vertex_uri
        self.jobs.run("VertexLro", vertex_uri(self.location, operation.operation.name), operation.done,
                      operation.cancel, what)
        return operation.result()

    # ---- model registry ---------------------------------------------------------------------------
    def find_version_by_task(self, task_id: str, display_name: str):
        """The version of display_name a pipeline task uploaded, if any. Among the model's versions:
        ListModels answers each model's default version only, so it misses a version not made default."""
        if not task_id:
            return None
        parent = self.parent_model(display_name)
        if parent is None:
            return None
        found = list(self._client("ModelServiceClient").list_model_versions(request=self.ai.gapic.ListModelVersionsRequest(
            name=parent, filter=f'labels.{TASK_LABEL}="{label_value(task_id)}"')))
        if not found:
            return None
        return self.ai.Model(model_name=parent, version=found[0].version_id, **self._where)

    def parent_model(self, display_name: str) -> str | None:
        found = self.ai.Model.list(filter=f'display_name="{display_name}"', order_by="create_time desc",
                                   **self._where)
        return found[0].resource_name if found else None

    def upload_version(self, *, display_name: str, artifact_uri: str, serving_image: str, aliases: list[str],
                       labels: dict[str, str], metrics: dict[str, float], task_id: str, make_default: bool,
                       hyperparameters: dict[str, Any] | None = None):
        """Upload a new version of `display_name` (idempotent per pipeline task id)."""
        existing = self.find_version_by_task(task_id, display_name)
        if existing is not None:
            log.info("task %s already uploaded %s; reusing it", task_id, existing.resource_name)
            self.add_aliases(existing, aliases)
            return existing, False
        labels = vertex_labels({**labels, TASK_LABEL: task_id})
        description = "kfkit evaluation: " + json.dumps({k: round(v, 6) for k, v in sorted(metrics.items())})
        if hyperparameters:  # label values cannot hold them (lowercase, no dots)
            description += "; hyperparameters: " + json.dumps(hyperparameters, sort_keys=True)
        version_aliases = list(aliases)
        if make_default and "default" not in version_aliases:  # as the SDK's Model.upload(is_default_version=True)
            version_aliases.append("default")
        gapic = self.ai.gapic
        artifact_uri = fuse_to_gcs(artifact_uri)
        if not artifact_uri.startswith("gs://"):
            artifact_uri = self.stage(artifact_uri)
        model = gapic.Model(display_name=display_name, description=description, version_description=description,
                            version_aliases=version_aliases, labels=labels, artifact_uri=artifact_uri,
                            container_spec=gapic.ModelContainerSpec(image_uri=serving_image))
        operation = self._client("ModelServiceClient").upload_model(
            request=gapic.UploadModelRequest(parent=self.parent, model=model,
                                             parent_model=self.parent_model(display_name) or ""))
        response = self._finish(operation, f"upload of {display_name}")
        return self.ai.Model(model_name=response.model, version=response.model_version_id, **self._where), True

    def import_explanation(self, versioned_name: str, importance: dict[str, float], method: str,
                           metrics: dict[str, float], task: str) -> str:
        """A ModelEvaluation of the version `versioned_name` (models/ID@VERSION) holding kfkit's mean
        |attribution| per feature as ModelExplanation.mean_attributions (model_evaluation.py: "Aggregated
        explanation metrics for the Model's prediction output over the data this ModelEvaluation uses")
        and the evaluation's metrics under Vertex's metrics schema for the task. A retried step finds
        the one it imported (by display name) instead of adding another. Its resource name."""
        from google.protobuf import json_format, struct_pb2

        gapic = self.ai.gapic
        client = self._client("ModelServiceClient")
        display_name = f"kfkit-explanation-{method.replace('_', '-')}"
        for found in client.list_model_evaluations(request=gapic.ListModelEvaluationsRequest(parent=versioned_name)):
            if found.display_name == display_name:
                return found.name
        schema, values = VERTEX_METRICS.get(task, VERTEX_METRICS["classification"])
        attribution = gapic.Attribution(feature_attributions=json_format.ParseDict(
            {k: float(v) for k, v in importance.items()}, struct_pb2.Value()))
        evaluation = gapic.ModelEvaluation(
            display_name=display_name, metrics_schema_uri=schema,
            metrics=json_format.ParseDict({vertex_name: float(metrics[ours]) for ours, vertex_name in values.items()
                                           if ours in metrics}, struct_pb2.Value()),
            model_explanation=gapic.ModelExplanation(mean_attributions=[attribution]))
        created = client.import_model_evaluation(request=gapic.ImportModelEvaluationRequest(
            parent=versioned_name, model_evaluation=evaluation))
        log.info("imported %s: mean |attribution| of %d features", created.name, len(importance))
        return created.name

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
                                       labels=vertex_labels(labels),
                                       **kwargs, **self._where)

    def deploy(self, endpoint, model, *, machine_type: str, min_replicas: int, max_replicas: int,
               traffic_percent: int, keep_previous: int) -> dict[str, int]:
        """Deploy with a share of the traffic, remember the old split, undeploy idle old versions.

        Idempotent: if this model version is already deployed on the endpoint (a retried step),
        nothing is deployed again.
        """
        from kfkit.serving.endpoints import split_traffic
        gapic = self.ai.gapic
        versioned = model.versioned_resource_name
        deployed = list(endpoint.list_models())
        if any(_deployed_version(d) == versioned for d in deployed):
            log.info("%s is already deployed on %s; not deploying it again", versioned, endpoint.resource_name)
            return dict(endpoint.traffic_split or {})
        previous = {k: int(v) for k, v in (endpoint.traffic_split or {}).items()}
        # recorded before deploying: the deployment changes the endpoint's etag (an update with this read's
        # would be refused), and a retry that finds the model deployed must find the split recorded too
        self.remember_split(endpoint, previous)
        # the new deployed model is "0" in a DeployModelRequest's traffic split
        split = split_traffic({k: v for k, v in previous.items() if k != "0"}, "0", traffic_percent)
        operation = self._client("EndpointServiceClient").deploy_model(
            endpoint=endpoint.resource_name, traffic_split=split,
            deployed_model=gapic.DeployedModel(
                model=versioned, display_name=f"{model.display_name}-v{model.version_id}",
                dedicated_resources=gapic.DedicatedResources(
                    machine_spec=gapic.MachineSpec(machine_type=machine_type),
                    min_replica_count=min_replicas, max_replica_count=max_replicas)))
        self._finish(operation, f"deploy of {versioned}")
        endpoint = self.ai.Endpoint(endpoint_name=endpoint.resource_name, **self._where)  # the split after deploy
        split = {k: int(v) for k, v in (endpoint.traffic_split or {}).items()}
        idle = [d for d in sorted(endpoint.list_models(), key=lambda d: str(d.create_time))
                if split.get(d.id, 0) == 0]
        for old in idle[:max(len(idle) - keep_previous, 0)]:
            operation = self._client("EndpointServiceClient").undeploy_model(
                endpoint=endpoint.resource_name, deployed_model_id=old.id)
            self._finish(operation, f"undeploy of {old.id}")
            split.pop(old.id, None)
        return split

    def remember_split(self, endpoint, split: dict[str, int]) -> None:
        """Keep the split in kfkit's own endpoint labels (never the user's description) for rollback."""
        labels = {k: v for k, v in (endpoint.labels or {}).items() if not k.startswith(PREVIOUS_LABEL_PREFIX)}
        labels.update(previous_split_labels(split))
        if labels != dict(endpoint.labels or {}):  # an update with nothing in its mask is refused
            endpoint.update(labels=labels)

    def endpoint(self, display_name: str):
        found = self.ai.Endpoint.list(filter=f'display_name="{display_name}"', **self._where)
        if not found:
            raise ConfigError(f"no Vertex AI endpoint named {display_name!r} in {self.project}/{self.location}")
        return found[0]

    def endpoint_state(self, display_name: str) -> dict[str, Any]:
        """The endpoint as kfkit.serving.endpoints describes a local one: each deployed model's id, model, version,
        traffic and deployment time (epoch seconds)."""
        endpoint = self.endpoint(display_name)
        split = {k: int(v) for k, v in (endpoint.traffic_split or {}).items()}
        models = [{"id": d.id, "model": str(getattr(d, "model", "")).partition("@")[0],
                   "version": str(getattr(d, "model_version_id", "") or ""), "traffic": split.get(d.id, 0),
                   "deployed_at": _epoch(getattr(d, "create_time", None))} for d in endpoint.list_models()]
        return {"endpoint": display_name, "resource_name": endpoint.resource_name,
                "endpoint_id": endpoint.resource_name.rsplit("/", 1)[-1], "deployed_models": models}

    def promote(self, endpoint_name: str, deployed_model_id: str) -> dict[str, int]:
        """All traffic to one deployed model; the split it replaces is remembered for `rollback`."""
        endpoint = self.endpoint(endpoint_name)
        if deployed_model_id not in {d.id for d in endpoint.list_models()}:
            raise ConfigError(f"endpoint {endpoint_name!r} has no deployed model {deployed_model_id!r}")
        current = {k: int(v) for k, v in (endpoint.traffic_split or {}).items()}
        labels = {k: v for k, v in (endpoint.labels or {}).items() if not k.startswith(PREVIOUS_LABEL_PREFIX)}
        endpoint.update(traffic_split={deployed_model_id: 100}, labels={**labels, **previous_split_labels(current)})
        return {deployed_model_id: 100}

    def rollback(self, endpoint_name: str) -> dict[str, int]:
        endpoint = self.endpoint(endpoint_name)
        previous = split_from_labels(endpoint.labels or {})
        if not previous:
            raise ConfigError(f"endpoint {endpoint_name!r} has no previous traffic split recorded by kfkit deploy")
        deployed = {d.id for d in endpoint.list_models()}
        missing = [k for k, v in previous.items() if v and k not in deployed]
        if missing:
            raise ConfigError(f"cannot restore the previous split {previous}: deployed model(s) {missing} are gone")
        # an idle version undeployed since (keep_previous) had no share to restore; Vertex refuses a split
        # naming a deployed model the endpoint no longer has
        previous = {k: v for k, v in previous.items() if k in deployed}
        current = {k: int(v) for k, v in (endpoint.traffic_split or {}).items()}
        labels = {k: v for k, v in (endpoint.labels or {}).items() if not k.startswith(PREVIOUS_LABEL_PREFIX)}
        endpoint.update(traffic_split=previous, labels={**labels, **previous_split_labels(current)})
        return previous

    def set_alias(self, model_resource: str, version: str, alias: str) -> None:
        """Move `alias` to this version (Vertex keeps an alias on one version of a model)."""
        self.add_aliases(self.ai.Model(model_name=model_resource, version=version, **self._where), [alias])

    def tag_version(self, model_resource: str, version: str, key: str, value: str) -> None:
        """A label on one model version (kept beside the user's labels)."""
        model = self.ai.Model(model_name=model_resource, version=version, **self._where)
        # UpdateModel changes the version's labels only when the name carries @version; the SDK's
        # Model.update sends the bare model name, a model-scope update that every version shows
        gapic = self.ai.gapic
        self._client("ModelServiceClient").update_model(request=gapic.UpdateModelRequest(
            model=gapic.Model(name=f"{model_resource.partition('@')[0]}@{version}",
                              labels={**(model.labels or {}), label_value(key): label_value(value)}),
            update_mask={"paths": ["labels"]}))


    # ---- hyperparameter tuning -----------------------------------------------------------------------
    def run_tuning_job(self, *, display_name: str, image_uri: str, command: list[str], metric: str, goal: str,
                       space: list, max_trials: int, parallelism: int, machine_type: str,
                       staging_bucket: str = "", labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """A HyperparameterTuningJob (Vizier) over `space` (components/tune/space.py Dimensions), each trial a
        CustomJob running `command` in image_uri; submitted, written to gcp_resources, polled and
        cancellable. Returns every trial: id, state, parameters (as Vertex hands them), final value."""
        from kfkit.cloud_jobs import vertex_uri

        hpt = self.ai.hyperparameter_tuning
        specs = {}
        for dim in space:
            scale = "log" if dim.log else "linear"
            if dim.kind == "float":
                specs[dim.name] = hpt.DoubleParameterSpec(min=dim.low, max=dim.high, scale=scale)
            elif dim.kind == "int":
                specs[dim.name] = hpt.IntegerParameterSpec(min=int(dim.low), max=int(dim.high), scale=scale)
            elif all(isinstance(c, (int, float)) for c in dim.choices):
                specs[dim.name] = hpt.DiscreteParameterSpec(values=sorted(float(c) for c in dim.choices),
                                                            scale="linear")
            else:
                specs[dim.name] = hpt.CategoricalParameterSpec(values=[str(c) for c in dim.encoded_choices()])
        staging_bucket = staging_bucket or getattr(_global_config(self.ai), "staging_bucket", None) or ""
        if not staging_bucket.startswith("gs://"):
            # the SDK's CustomJob refuses to exist without one: the trials' outputs go under it
            raise ConfigError(f"staging_bucket is {staging_bucket!r}: a Vertex AI tuning job needs a gs:// staging "
                              "directory for its trials (the tune step derives it from its pipeline root)")
        custom_job = self.ai.CustomJob(
            display_name=f"{display_name}-trial",
            worker_pool_specs=[{"machine_spec": {"machine_type": machine_type}, "replica_count": 1,
                                "container_spec": {"image_uri": image_uri, "command": list(command)}}],
            staging_bucket=staging_bucket, **self._where)
        job = self.ai.HyperparameterTuningJob(
            display_name=display_name, custom_job=custom_job, metric_spec={metric: goal}, parameter_spec=specs,
            max_trial_count=max_trials, parallel_trial_count=parallelism, max_failed_trial_count=max_trials,
            measurement_selection="last",
            labels=vertex_labels(labels or {}) or None, **self._where)
        job.run(sync=False)
        job.wait_for_resource_creation()
        self.jobs.run("HyperparameterTuningJob", vertex_uri(self.location, job.resource_name), job.done, job.cancel,
                      f"hyperparameter tuning job {job.resource_name}")
        state = getattr(job.state, "name", str(job.state))
        if state != "JOB_STATE_SUCCEEDED":
            raise ConfigError(f"Vertex AI hyperparameter tuning job {job.resource_name} ended {state}: {job.error}")
        trials = []
        for trial in job.trials:
            measurement = getattr(trial, "final_measurement", None)
            values = [m.value for m in getattr(measurement, "metrics", []) if m.metric_id == metric]
            trials.append({"id": str(trial.id), "state": getattr(trial.state, "name", str(trial.state)),
                           "parameters": {p.parameter_id: p.value for p in trial.parameters},
                           "value": float(values[0]) if values else None})
        return trials


def _epoch(stamp) -> float:
    """A DeployedModel's create_time (a datetime from the SDK) as epoch seconds; 0 when unknown."""
    return float(stamp.timestamp()) if hasattr(stamp, "timestamp") else 0.0


PREVIOUS_LABEL_PREFIX = "kfkit-prev-"


def previous_split_labels(split: dict[str, int]) -> dict[str, str]:
    """A traffic split as endpoint labels, one per deployed model: kfkit-prev-<deployed model id> = percent.

    Deployed model ids are digits, so each key fits Vertex's label rules (lowercase, digits, -, at
    most 63 characters) and an endpoint's 64 labels hold any split Vertex allows.
    """
    return {f"{PREVIOUS_LABEL_PREFIX}{label_value(k)}": str(int(v)) for k, v in split.items()}


def split_from_labels(labels: dict[str, str]) -> dict[str, int]:
    return {k[len(PREVIOUS_LABEL_PREFIX):]: int(v) for k, v in labels.items() if k.startswith(PREVIOUS_LABEL_PREFIX)}


def _deployed_version(deployed) -> str:
    """projects/.../models/M@V of a DeployedModel (Vertex returns the version id apart)."""
    model = getattr(deployed, "model", "") or ""
    version = getattr(deployed, "model_version_id", "") or ""
    return f"{model}@{version}" if version and "@" not in model else model


TERMINAL_JOB_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
                       "JOB_STATE_PARTIALLY_SUCCEEDED"}


def batch_predict_bigquery(vertex: VertexAdapter, *, model_resource: str, source_table: str,
                           destination_prefix: str, machine_type: str, replicas: int, display_name: str,
                           task_id: str = ""):
    """A Vertex AI batch prediction job from a BigQuery table to a new table in the dataset destination_prefix
    (or a new dataset when it is a project), named by Vertex: see output_table_id.

    Submitted (not waited on in the SDK), written to gcp_resources, polled and cancellable; one job
    per pipeline task: a retried step finds the job its first attempt started (by label) and
    waits for that one instead of starting a second.
    """
    from kfkit.cloud_jobs import vertex_uri
    ai = vertex.ai
    destination = destination_prefix.removeprefix("bq://")
    if destination.count(".") > 1:
        # BatchPredictionJob.OutputConfig.bigquery_destination: a project or a dataset; Vertex names the table
        raise ConfigError(f"destination_table {destination_prefix!r} names a table: on Vertex AI give the BigQuery "
                          "dataset (project.dataset) in which the batch prediction job creates predictions_<time>")
    job = None
    if task_id:
        found = ai.BatchPredictionJob.list(filter=f'labels.{TASK_LABEL}="{label_value(task_id)}"',
                                           project=vertex.project, location=vertex.location)
        job = found[0] if found else None
        if job is not None:
            log.info("task %s already started %s; waiting for it instead of starting another", task_id,
                     job.resource_name)
    if job is None:
        job = ai.BatchPredictionJob.submit(
            job_display_name=display_name, model_name=model_resource, instances_format="bigquery",
            predictions_format="bigquery", bigquery_source=f"bq://{source_table.removeprefix('bq://')}",
            bigquery_destination_prefix=f"bq://{destination}", machine_type=machine_type,
            starting_replica_count=replicas, max_replica_count=replicas,
            labels={TASK_LABEL: label_value(task_id)} if task_id else None,
            project=vertex.project, location=vertex.location)
    vertex.jobs.run("BatchPredictionJob", vertex_uri(vertex.location, job.resource_name), job.done, job.cancel,
                    f"batch prediction job {job.resource_name}")
    state = getattr(job.state, "name", str(job.state))
    if state != "JOB_STATE_SUCCEEDED":
        raise ConfigError(f"Vertex AI batch prediction job {job.resource_name} ended {state}: {job.error}")
    return job


def output_table_id(job) -> str:
    """project.dataset.table of the predictions, as Vertex reports them (OutputInfo: the dataset as
    bq://project.dataset, the table apart, predictions_<timestamp>); "" when it reports none."""
    info = getattr(job, "output_info", None)
    dataset = str(getattr(info, "bigquery_output_dataset", "") or "").removeprefix("bq://")
    table = str(getattr(info, "bigquery_output_table", "") or "")
    return f"{dataset}.{table}" if dataset and table else ""
