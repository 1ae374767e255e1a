"""A fake of Vertex AI's v1 API on the wire: ModelService, EndpointService, JobService, PipelineService,
ScheduleService and google.longrunning.Operations, served over TLS on 127.0.0.1 (tests/grpc_tls.py) and
reached by the real SDK (google.cloud.aiplatform and its gapic clients) over its real gRPC transport.

Requests are decoded into the services' own messages (the gapic transports name them) and unknown
fields are refused. The rules enforced are the published ones, each cited where it is applied: the
docstrings of google.cloud.aiplatform_v1.types (model.py, model_service.py, endpoint.py,
endpoint_service.py, batch_prediction_job.py, io.py, pipeline_service.py, schedule.py) and, where
those point to them, Google Cloud's label rules (https://cloud.google.com/resource-manager/docs/labels-overview)
and AIP-154 (etags). The state is in memory; `calls` lists (method, request) for the tests.
"""

from __future__ import annotations

import collections.abc
import itertools
import re
import threading
from typing import Any

import grpc
from google.cloud.aiplatform_v1.types import (batch_prediction_job as bpj_types, custom_job as cj_types,
                                              endpoint as endpoint_types, model_evaluation as evaluation_types,
                                              endpoint_service, hyperparameter_tuning_job as hpt_types,
                                              job_state, model as model_types, model_service,
                                              pipeline_state, schedule as schedule_types, study as study_types,
                                              operation as op_types)
from google.cloud.aiplatform_v1.types import pipeline_job as pipeline_types
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from tests.grpc_tls import Refused, rpcs, service_handler

V1 = "google.cloud.aiplatform.v1"
INVALID, NOT_FOUND, ABORTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                               grpc.StatusCode.ABORTED)
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

# https://cloud.google.com/resource-manager/docs/labels-overview (the "goo.gl/xmQnxf" that Model.labels,
# Endpoint.labels and PipelineJob.labels point to): keys start with a lowercase letter; keys and values
# hold lowercase letters, digits, - and _, at most 63 characters; at most 64 labels per resource.
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
# Model.version_aliases (model.py): "[a-z][a-zA-Z0-9-]{0,126}[a-z0-9] to distinguish from version_id"
ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
# CreatePipelineJobRequest.pipeline_job_id (pipeline_service.py): under 128 characters of [a-z0-9-]
PIPELINE_JOB_ID = re.compile(r"[a-z][a-z0-9-]{0,127}")


def check_worker_pools(pools, where: str) -> None:
    """CustomJobSpec.worker_pool_specs as https://cloud.google.com/vertex-ai/docs/training/distributed-training
    describes them: pool 0 is the primary replica, required, with replicaCount exactly 1; pools 1 to 3
    (workers; parameter servers or Reduction Server; evaluators) are optional, skipped by an empty
    value. CustomJobSpec (custom_job.py): "Required. The spec of the worker pools including machine
    type and Docker image". MachineSpec (machine_resources.py): accelerator_count is the number of
    accelerator_type attached, so one without the other names nothing."""
    if not pools:
        raise Refused(INVALID, f"{where}.worker_pool_specs is required")
    if len(pools) > 4:
        raise Refused(INVALID, f"{where}.worker_pool_specs: at most 4 pools, got {len(pools)}")
    for index, pool in enumerate(pools):
        here = f"{where}.worker_pool_specs[{index}]"
        if index and pool == cj_types.WorkerPoolSpec():
            continue  # a skipped pool
        if not (pool.container_spec.image_uri or pool.python_package_spec.executor_image_uri):
            raise Refused(INVALID, f"{here}: a container_spec.image_uri or python_package_spec is required")
        if not pool.machine_spec.machine_type:
            raise Refused(INVALID, f"{here}.machine_spec.machine_type is required")
        accelerator = pool.machine_spec.accelerator_type != pool.machine_spec.accelerator_type.ACCELERATOR_TYPE_UNSPECIFIED
        if accelerator != (pool.machine_spec.accelerator_count > 0):
            raise Refused(INVALID, f"{here}.machine_spec: accelerator_type and accelerator_count go together")
        if index == 0 and pool.replica_count != 1:
            raise Refused(INVALID, f"{here}: the primary replica's pool must have replica_count 1, "
                                   f"got {pool.replica_count}")
        if pool.replica_count < 1:
            raise Refused(INVALID, f"{here}.replica_count must be at least 1 (an unused pool is left empty)")


def check_labels(labels, what: str) -> None:
    if len(labels) > 64:
        raise Refused(INVALID, f"{what}: {len(labels)} labels, at most 64 are allowed")
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise Refused(INVALID, f"{what}: invalid label {key!r}: {value!r}")


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _filter(text: str, fields: dict[str, Any]) -> bool:
    """The AIP-160 subset kfkit sends: `key="value"` terms joined by AND; keys display_name and labels.K."""
    if not text:
        return True
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = re.fullmatch(r'\s*(display_name|labels\.[a-z0-9_-]+)\s*=\s*"?([^"]*)"?\s*', term)
        if not match:
            raise Refused(INVALID, f"unsupported filter term {term!r}")
        key, value = match.groups()
        actual = fields["labels"].get(key[len("labels."):]) if key.startswith("labels.") else fields.get(key)
        if actual != value:
            return False
    return True


def _ordered(items: list, order_by: str, time_of) -> list:
    if not order_by:
        return items
    if not re.fullmatch(r"create_time( desc| asc)?", order_by.strip()):
        raise Refused(INVALID, f"unsupported order_by {order_by!r}")
    return sorted(items, key=time_of, reverse=order_by.strip().endswith("desc"))


class FakeVertex:
    def __init__(self, project_id: str = "my-proj", project_number: str = "123456789012",
                 location: str = "us-central1", warehouse=None):
        self.project_id, self.project_number, self.location = project_id, project_number, location
        self.lock = threading.RLock()
        self.calls: list[tuple[str, Any]] = []
        self.ids = itertools.count(1)
        self.models: dict[str, dict] = {}
        self.endpoints: dict[str, endpoint_types.Endpoint] = {}
        self.operations: dict[str, list] = {}  # name: [Operation, GetOperation polls before it is done]
        self.jobs: dict[str, Any] = {}  # batch prediction, tuning and pipeline jobs by name
        self.job_gets: dict[str, int] = {}
        self.schedules: dict[str, schedule_types.Schedule] = {}
        self.evaluations: dict[tuple[str, str], list] = {}  # (model id, version id): its ModelEvaluations
        self.lro_polls = 0  # GetOperation answers "not done" this many times first
        self.job_steps = 1  # Get answers of a job before it ends (each moves it one state on)
        self.fail_next: dict[str, Refused] = {}  # method: the refusal its next call gets (a flaky service)
        # method: called with its response once the call took effect; may raise Refused (the caller
        # never hears of the effect, as a step killed just then)
        self.after: dict[str, Any] = {}
        self.warehouse = warehouse  # where batch prediction writes its BigQuery tables, when given

    # ---- names ---------------------------------------------------------------------------------
    @property
    def parent(self) -> str:
        # Vertex answers with the project NUMBER whatever the request named the project by
        return f"projects/{self.project_number}/locations/{self.location}"

    def check_parent(self, parent: str) -> None:
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)", parent)
        if not match:
            raise Refused(INVALID, f"parent {parent!r} is not projects/{{project}}/locations/{{location}}")
        if match.group(1) not in (self.project_id, self.project_number):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"no access to project {match.group(1)}")
        if match.group(2) != self.location:  # a regional endpoint serves its own region only
            raise Refused(INVALID, f"location {match.group(2)} is not this endpoint's {self.location}")

    def resource_id(self, name: str, collection: str) -> str:
        """The id of projects/{project}/locations/{location}/{collection}/{id} (project id or number)."""
        match = re.fullmatch(rf"(projects/[^/]+/locations/[^/]+)/{collection}/([^/@]+)(@[^/]*)?", name)
        if not match:
            raise Refused(INVALID, f"{name!r} is not a {collection} resource name")
        self.check_parent(match.group(1))
        return match.group(2)

    def _id(self) -> str:
        return str(next(self.ids))

    # ---- long-running operations -----------------------------------------------------------------
    def operation(self, resource: str, response, metadata_type) -> operations_pb2.Operation:
        """A done LRO named projects/NUMBER/locations/L/<resource>/operations/ID, its response packed."""
        op = operations_pb2.Operation(name=f"{resource}/operations/{next(self.ids) + 5_000_000}")
        metadata = any_pb2.Any()
        metadata.Pack(metadata_type.pb(metadata_type(generic_metadata=op_types.GenericOperationMetadata(
            create_time=_now(), update_time=_now()))))
        op.metadata.CopyFrom(metadata)
        packed = any_pb2.Any()
        packed.Pack(type(response).pb(response))
        op.response.CopyFrom(packed)
        op.done = True
        self.operations[op.name] = [op, self.lro_polls]
        pending = operations_pb2.Operation(name=op.name, metadata=op.metadata)
        return pending if self.lro_polls else op

    def get_operation(self, request):
        with self.lock:
            if request.name not in self.operations:
                raise Refused(NOT_FOUND, f"operation {request.name} not found")
            entry = self.operations[request.name]
            if entry[1] > 0:
                entry[1] -= 1
                return operations_pb2.Operation(name=entry[0].name, metadata=entry[0].metadata)
            return entry[0]

    def cancel_operation(self, request):
        self.get_operation(request)
        return empty_pb2.Empty()

    # ---- models ----------------------------------------------------------------------------------
    def _version(self, model_id: str, spec: str) -> model_types.Model:
        """A version by id or alias; no spec: the `default` one (GetModelRequest.name, model_service.py)."""
        if model_id not in self.models:
            raise Refused(NOT_FOUND, f"model {model_id} not found")
        entry = self.models[model_id]
        spec = spec or "default"
        for version in entry["versions"].values():
            if spec in (version.version_id, *version.version_aliases):
                return self._merged(entry, version)
        raise Refused(NOT_FOUND, f"model {model_id} has no version or alias {spec!r}")

    def _merged(self, entry, version) -> model_types.Model:
        # UpdateModelRequest.model (model_service.py): "Both the model and the version labels are merged
        # when a model is returned"
        merged = model_types.Model(version)
        merged.display_name, merged.description = entry["display_name"], entry["description"]
        merged.labels = {**entry["labels"], **entry["version_labels"][version.version_id]}
        return merged

    def _split(self, name: str) -> tuple[str, str]:
        model_id = self.resource_id(name, "models")
        return model_id, name.partition("@")[2]

    def upload_model(self, request):
        self.check_parent(request.parent)
        model = request.model
        if not model.display_name:
            raise Refused(INVALID, "model.display_name is required")  # Model.display_name: Required
        check_labels(model.labels, "model")
        if not model.container_spec.image_uri:
            raise Refused(INVALID, "model.container_spec.image_uri is required for a custom-trained model")
        if model.artifact_uri and not model.artifact_uri.startswith("gs://"):
            raise Refused(INVALID, f"artifact_uri {model.artifact_uri!r} is not a Cloud Storage URI")
        for alias in model.version_aliases:
            if not ALIAS.fullmatch(alias):
                raise Refused(INVALID, f"version alias {alias!r} does not match {ALIAS.pattern}")
        if request.parent_model:
            model_id, _ = self._split(request.parent_model)
            if model_id not in self.models:
                raise Refused(NOT_FOUND, f"parent model {request.parent_model} not found")
        else:
            model_id = self._id()
            self.models[model_id] = {"display_name": model.display_name, "description": model.description,
                                     "labels": {}, "versions": {}, "version_labels": {}}
        entry = self.models[model_id]
        version_id = str(len(entry["versions"]) + 1)  # Model.version_id: auto-incrementing decimal
        stored = model_types.Model(model)
        stored.name = f"{self.parent}/models/{model_id}"
        stored.version_id = version_id
        stored.create_time = stored.update_time = stored.version_create_time = stored.version_update_time = _now()
        stored.labels = {}
        stored.version_aliases = []
        # the uploaded labels are the version's own (a model-scope update is what changes the model's)
        entry["version_labels"][version_id] = dict(model.labels)
        entry["versions"][version_id] = stored
        aliases = list(model.version_aliases)
        if not entry["versions"].keys() - {version_id}:
            # Model.version_aliases (model.py): the first version gets the `default` alias
            aliases.append("default")
        self._move_aliases(entry, version_id, aliases)
        return self.operation(f"{self.parent}/models/{model_id}",
                              model_service.UploadModelResponse(model=stored.name, model_version_id=version_id),
                              model_service.UploadModelOperationMetadata)

    def _move_aliases(self, entry, version_id: str, aliases: list[str]) -> None:
        """An alias names one version of a model: given to this one, it leaves the others (the SDK's
        Model.upload: 'When set to False, the "default" alias will not be moved')."""
        for other_id, other in entry["versions"].items():
            if other_id != version_id:
                other.version_aliases = [a for a in other.version_aliases if a not in aliases]
        mine = entry["versions"][version_id]
        mine.version_aliases = list(dict.fromkeys([*mine.version_aliases, *aliases]))

    def get_model(self, request):
        return self._version(*self._split(request.name))

    # ModelEvaluation (model_evaluation.py): named .../models/{model}/evaluations/{evaluation}; kept per
    # version (a name with @version or alias, as every version-scoped ModelService call takes it;
    # a bare model name: its default version)
    METRICS_SCHEMAS = ("gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml",
                       "gs://google-cloud-aiplatform/schema/modelevaluation/regression_metrics_1.0.0.yaml",
                       "gs://google-cloud-aiplatform/schema/modelevaluation/forecasting_metrics_1.0.0.yaml")

    def import_model_evaluation(self, request):
        model_id, spec = self._split(request.parent)
        version = self._version(model_id, spec)
        evaluation = evaluation_types.ModelEvaluation(request.model_evaluation)
        # metrics_schema_uri: "Points to a YAML file stored on Google Cloud Storage describing the metrics"
        if evaluation.metrics_schema_uri not in self.METRICS_SCHEMAS:
            raise Refused(INVALID, f"metrics_schema_uri {evaluation.metrics_schema_uri!r} is not a model evaluation schema")
        for attribution in evaluation.model_explanation.mean_attributions:
            # Attribution.feature_attributions: a struct keyed by the input feature names
            if not isinstance(attribution.feature_attributions, collections.abc.Mapping):
                raise Refused(INVALID, "mean_attributions[].feature_attributions must be a struct of features")
        evaluation.name = f"{self.parent}/models/{model_id}/evaluations/{self._id()}"
        evaluation.create_time = _now()
        self.evaluations.setdefault((model_id, version.version_id), []).append(evaluation)
        return evaluation

    def list_model_evaluations(self, request):
        model_id, spec = self._split(request.parent)
        version = self._version(model_id, spec)
        return model_service.ListModelEvaluationsResponse(
            model_evaluations=self.evaluations.get((model_id, version.version_id), []))

    def list_models(self, request):
        # ListModels answers one Model per model: its default version (GetModelRequest.name)
        self.check_parent(request.parent)
        found = [self._version(model_id, "") for model_id in self.models]
        found = [m for m in found if _filter(request.filter, {"display_name": m.display_name, "labels": m.labels})]
        found = _ordered(found, request.order_by, lambda m: m.create_time)
        return model_service.ListModelsResponse(models=found)

    def list_model_versions(self, request):
        model_id, _ = self._split(request.name)
        if model_id not in self.models:
            raise Refused(NOT_FOUND, f"model {model_id} not found")
        entry = self.models[model_id]
        found = [self._merged(entry, v) for v in entry["versions"].values()]
        found = [m for m in found if _filter(request.filter, {"display_name": m.display_name, "labels": m.labels})]
        return model_service.ListModelVersionsResponse(models=found)

    def update_model(self, request):
        """UpdateModelRequest.model (model_service.py): name with @version updates that version
        (version_description, labels), without it (or @-) the model (display_name, description, labels);
        a field of the other scope is a precondition error; update_mask is required."""
        model_id, spec = self._split(request.model.name)
        if model_id not in self.models:
            raise Refused(NOT_FOUND, f"model {model_id} not found")
        paths = list(request.update_mask.paths)
        if not paths:
            raise Refused(INVALID, "update_mask is required")
        entry = self.models[model_id]
        if spec and spec != "-":
            version = self._version(model_id, spec)
            if set(paths) - {"labels", "version_description"}:
                raise Refused(PRECONDITION, f"a version update cannot change {paths}")
            stored = entry["versions"][version.version_id]
            if "labels" in paths:
                check_labels(request.model.labels, "model version")
                entry["version_labels"][version.version_id] = dict(request.model.labels)
            if "version_description" in paths:
                stored.version_description = request.model.version_description
            stored.version_update_time = _now()
            return self._merged(entry, stored)
        if set(paths) - {"labels", "display_name", "description"}:
            raise Refused(PRECONDITION, f"a model update cannot change {paths}")
        if "labels" in paths:
            check_labels(request.model.labels, "model")
            entry["labels"] = dict(request.model.labels)
        for field in ("display_name", "description"):
            if field in paths:
                entry[field] = getattr(request.model, field)
        return self._version(model_id, "")

    def merge_version_aliases(self, request):
        """MergeVersionAliasesRequest (model_service.py): the name carries a version ID; `-alias` removes."""
        model_id, spec = self._split(request.name)
        if not spec.isdigit():
            raise Refused(INVALID, f"{request.name}: name the version by its ID")
        version = self._version(model_id, spec)
        entry = self.models[model_id]
        add = [a for a in request.version_aliases if not a.startswith("-")]
        remove = [a[1:] for a in request.version_aliases if a.startswith("-")]
        for alias in add + remove:
            if not ALIAS.fullmatch(alias):
                raise Refused(INVALID, f"version alias {alias!r} does not match {ALIAS.pattern}")
        if "default" in remove:  # Model.version_aliases: "there must be exactly one default version alias"
            raise Refused(PRECONDITION, "the default alias cannot be removed, only moved")
        self._move_aliases(entry, version.version_id, add)
        stored = entry["versions"][version.version_id]
        stored.version_aliases = [a for a in stored.version_aliases if a not in remove]
        return self._merged(entry, stored)

    # ---- endpoints -------------------------------------------------------------------------------
    def _touch(self, endpoint) -> None:
        endpoint.etag = f"etag-{next(self.ids)}"
        endpoint.update_time = _now()

    def _endpoint(self, name: str) -> endpoint_types.Endpoint:
        endpoint_id = self.resource_id(name, "endpoints")
        if endpoint_id not in self.endpoints:
            raise Refused(NOT_FOUND, f"endpoint {endpoint_id} not found")
        return self.endpoints[endpoint_id]

    def create_endpoint(self, request):
        self.check_parent(request.parent)
        if not request.endpoint.display_name:
            raise Refused(INVALID, "endpoint.display_name is required")  # Endpoint.display_name: Required
        check_labels(request.endpoint.labels, "endpoint")
        if request.endpoint.traffic_split or request.endpoint.deployed_models:
            raise Refused(INVALID, "a new endpoint has no deployed models")
        endpoint = endpoint_types.Endpoint(request.endpoint)
        endpoint_id = request.endpoint_id or self._id()
        endpoint.name = f"{self.parent}/endpoints/{endpoint_id}"
        endpoint.create_time = _now()
        self._touch(endpoint)
        self.endpoints[endpoint_id] = endpoint
        return self.operation(endpoint.name, endpoint, endpoint_service.CreateEndpointOperationMetadata)

    def get_endpoint(self, request):
        return self._endpoint(request.name)

    def list_endpoints(self, request):
        self.check_parent(request.parent)
        found = [e for e in self.endpoints.values()
                 if _filter(request.filter, {"display_name": e.display_name, "labels": e.labels})]
        return endpoint_service.ListEndpointsResponse(endpoints=_ordered(found, request.order_by,
                                                                         lambda e: e.create_time))

    @staticmethod
    def check_split(split, deployed_ids: set[str]) -> None:
        # Endpoint.traffic_split (endpoint.py): percentages of existing DeployedModels adding up to 100,
        # or empty
        if split and sum(split.values()) != 100:
            raise Refused(INVALID, f"traffic split {dict(split)} does not add up to 100")
        unknown = set(split) - deployed_ids
        if unknown:
            raise Refused(INVALID, f"traffic split names deployed model(s) {sorted(unknown)} the endpoint lacks")

    def update_endpoint(self, request):
        """UpdateEndpointRequest: the fields in update_mask; Endpoint.etag (endpoint.py): 'used to perform
        consistent read-modify-write updates', so a stale etag is refused with ABORTED (AIP-154)."""
        endpoint = self._endpoint(request.endpoint.name)
        if request.endpoint.etag and request.endpoint.etag != endpoint.etag:
            raise Refused(ABORTED, f"etag {request.endpoint.etag} does not match the endpoint's {endpoint.etag}: "
                                   "it changed since it was read")
        paths = list(request.update_mask.paths)
        if not paths:
            raise Refused(INVALID, "update_mask is required")
        allowed = {"display_name", "description", "labels", "traffic_split",
                   "predict_request_response_logging_config"}
        if set(paths) - allowed:
            raise Refused(INVALID, f"cannot update {sorted(set(paths) - allowed)}")
        if "labels" in paths:
            check_labels(request.endpoint.labels, "endpoint")
        if "traffic_split" in paths:
            self.check_split(request.endpoint.traffic_split, {d.id for d in endpoint.deployed_models})
        for path in paths:
            setattr(endpoint, path, getattr(request.endpoint, path))
        self._touch(endpoint)
        return endpoint

    def deploy_model(self, request):
        endpoint = self._endpoint(request.endpoint)
        deployed = request.deployed_model
        model_id, spec = self._split(deployed.model)
        version = self._version(model_id, spec)
        resources = deployed.dedicated_resources
        # DedicatedResources.min_replica_count (machine_resources.py): required, at least 1
        if resources.min_replica_count < 1 or resources.max_replica_count < resources.min_replica_count:
            raise Refused(INVALID, f"replicas {resources.min_replica_count}..{resources.max_replica_count}")
        if not resources.machine_spec.machine_type:
            raise Refused(INVALID, "dedicated_resources.machine_spec.machine_type is required")
        new_id = str(1000 + next(self.ids))
        existing = {d.id for d in endpoint.deployed_models}
        # DeployModelRequest.traffic_split (endpoint_service.py): "0" is the model being deployed;
        # empty: a first model takes all the traffic, a later one none
        split = dict(request.traffic_split)
        self.check_split(split, existing | {"0"})
        stored = endpoint_types.DeployedModel(deployed)
        stored.id = new_id
        stored.model = f"{self.parent}/models/{model_id}"
        stored.model_version_id = version.version_id
        stored.create_time = _now()
        endpoint.deployed_models.append(stored)
        if split:
            endpoint.traffic_split = {(new_id if k == "0" else k): v for k, v in split.items()}
        elif not existing:
            endpoint.traffic_split = {new_id: 100}
        self._touch(endpoint)
        return self.operation(endpoint.name, endpoint_service.DeployModelResponse(deployed_model=stored),
                              endpoint_service.DeployModelOperationMetadata)

    def undeploy_model(self, request):
        endpoint = self._endpoint(request.endpoint)
        ids = [d.id for d in endpoint.deployed_models]
        if request.deployed_model_id not in ids:
            raise Refused(NOT_FOUND, f"endpoint has no deployed model {request.deployed_model_id}")
        split = dict(request.traffic_split) or dict(endpoint.traffic_split)
        # UndeployModelRequest.traffic_split: only a model with no traffic (after the new split) goes
        if split.get(request.deployed_model_id, 0):
            raise Refused(PRECONDITION, f"deployed model {request.deployed_model_id} still takes traffic")
        remaining = [d for d in endpoint.deployed_models if d.id != request.deployed_model_id]
        del endpoint.deployed_models[:]
        endpoint.deployed_models.extend(remaining)
        split.pop(request.deployed_model_id, None)
        endpoint.traffic_split = split if remaining else {}
        self._touch(endpoint)
        return self.operation(endpoint.name, endpoint_service.UndeployModelResponse(),
                              endpoint_service.UndeployModelOperationMetadata)

    # ---- jobs ------------------------------------------------------------------------------------
    def _advance(self, name: str, states: list) -> Any:
        """Each Get moves a job one state on, to its last after job_steps Gets."""
        job = self.jobs.get(name)
        if job is None:
            raise Refused(NOT_FOUND, f"{name} not found")
        self.job_gets[name] = self.job_gets.get(name, 0) + 1
        if self.job_gets[name] >= self.job_steps and job.state != states[-1]:
            self.finish(name)
        elif job.state == states[0]:
            job.state = states[1]
        return job

    def create_batch_prediction_job(self, request):
        self.check_parent(request.parent)
        job = bpj_types.BatchPredictionJob(request.batch_prediction_job)
        check_labels(job.labels, "batch prediction job")
        model_id, spec = self._split(job.model)
        version = self._version(model_id, spec)
        source = job.input_config.bigquery_source.input_uri
        if job.input_config.instances_format != "bigquery" or not re.fullmatch(r"bq://[^.]+\.[^.]+\.[^.]+", source):
            # BigQuerySource.input_uri (io.py): bq://projectId.bqDatasetId.bqTableId
            raise Refused(INVALID, f"input {job.input_config.instances_format} {source!r}")
        destination = job.output_config.bigquery_destination.output_uri
        # BatchPredictionJob.OutputConfig.bigquery_destination (batch_prediction_job.py): "The BigQuery
        # project or dataset location where the output is to be written to"
        if not re.fullmatch(r"bq://[^.]+(\.[^.]+)?", destination):
            raise Refused(INVALID, f"bigquery_destination {destination!r} must be bq://project or bq://project.dataset")
        job_id = self._id()
        job.name = f"{self.parent}/batchPredictionJobs/{job_id}"
        job.model_version_id = version.version_id
        job.state = job_state.JobState.JOB_STATE_PENDING
        job.create_time = _now()
        self.jobs[job.name] = job
        return job

    def _write_predictions(self, job) -> None:
        """OutputInfo (batch_prediction_job.py): bq://project gets a new dataset
        prediction_<model-display-name>_<job-create-time>; in the (given or new) dataset the table is
        predictions_<timestamp>."""
        stamp = job.create_time.strftime("%Y_%m_%dT%H_%M_%S_") + f"{job.create_time.microsecond // 1000:03d}Z"
        destination = job.output_config.bigquery_destination.output_uri[len("bq://"):]
        if "." not in destination:
            model = self.models[self.resource_id(job.model, "models")]["display_name"]
            destination += f".prediction_{re.sub(r'[^A-Za-z0-9_]', '_', model)}_{stamp}"
        table = f"predictions_{stamp}"
        job.output_info = bpj_types.BatchPredictionJob.OutputInfo(bigquery_output_dataset=f"bq://{destination}",
                                                                  bigquery_output_table=table)
        if self.warehouse is not None:
            source = job.input_config.bigquery_source.input_uri[len("bq://"):]
            self.warehouse.create_predictions(source, f"{destination}.{table}", job.model_version_id)

    def finish(self, name: str, state=None) -> None:
        """End a job now (SUCCEEDED unless told otherwise), with what it produces."""
        job = self.jobs[name]
        done = {bpj_types.BatchPredictionJob: job_state.JobState.JOB_STATE_SUCCEEDED,
                hpt_types.HyperparameterTuningJob: job_state.JobState.JOB_STATE_SUCCEEDED,
                cj_types.CustomJob: job_state.JobState.JOB_STATE_SUCCEEDED,
                pipeline_types.PipelineJob: pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED}[type(job)]
        job.state = state or done
        job.end_time = _now()
        if job.state == done and isinstance(job, bpj_types.BatchPredictionJob):
            self._write_predictions(job)
        if job.state == done and isinstance(job, hpt_types.HyperparameterTuningJob):
            self._run_trials(job)
        if isinstance(job, pipeline_types.PipelineJob):
            for task in job.job_detail.task_details:
                task.state = pipeline_types.PipelineTaskDetail.State.SUCCEEDED

    def get_batch_prediction_job(self, request):
        return self._advance(request.name, [job_state.JobState.JOB_STATE_PENDING,
                                            job_state.JobState.JOB_STATE_RUNNING,
                                            job_state.JobState.JOB_STATE_SUCCEEDED])

    def list_batch_prediction_jobs(self, request):
        self.check_parent(request.parent)
        found = [j for j in self.jobs.values() if isinstance(j, bpj_types.BatchPredictionJob)
                 and _filter(request.filter, {"display_name": j.display_name, "labels": j.labels})]
        from google.cloud.aiplatform_v1.types import job_service
        return job_service.ListBatchPredictionJobsResponse(batch_prediction_jobs=found)

    def cancel_job(self, request):
        job = self.jobs.get(request.name)
        if job is None:
            raise Refused(NOT_FOUND, f"{request.name} not found")
        # Cancel*Job: best effort, the job ends CANCELLED (a pipeline job in its own state enum)
        job.state = (pipeline_state.PipelineState.PIPELINE_STATE_CANCELLED if isinstance(job, pipeline_types.PipelineJob)
                     else job_state.JobState.JOB_STATE_CANCELLED)
        return empty_pb2.Empty()

    def create_custom_job(self, request):
        self.check_parent(request.parent)
        job = cj_types.CustomJob(request.custom_job)
        check_labels(job.labels, "custom job")
        if not job.display_name:
            raise Refused(INVALID, "custom_job.display_name is required")  # CustomJob.display_name: Required
        check_worker_pools(job.job_spec.worker_pool_specs, "custom_job.job_spec")
        output = job.job_spec.base_output_directory.output_uri_prefix
        if output and not output.startswith("gs://"):  # GcsDestination.output_uri_prefix: a Cloud Storage directory
            raise Refused(INVALID, f"base_output_directory {output!r} is not a gs:// directory")
        job.name = f"{self.parent}/customJobs/{self._id()}"
        job.state = job_state.JobState.JOB_STATE_PENDING
        job.create_time = _now()
        self.jobs[job.name] = job
        return job

    def get_custom_job(self, request):
        return self._advance(request.name, [job_state.JobState.JOB_STATE_PENDING,
                                            job_state.JobState.JOB_STATE_RUNNING,
                                            job_state.JobState.JOB_STATE_SUCCEEDED])

    def create_hyperparameter_tuning_job(self, request):
        self.check_parent(request.parent)
        job = hpt_types.HyperparameterTuningJob(request.hyperparameter_tuning_job)
        check_labels(job.labels, "hyperparameter tuning job")
        spec = job.trial_job_spec
        check_worker_pools(spec.worker_pool_specs, "trial_job_spec")
        if not job.study_spec.metrics or not job.study_spec.parameters:
            raise Refused(INVALID, "study_spec.metrics and study_spec.parameters are required")
        if job.max_trial_count < 1 or job.parallel_trial_count < 1:
            raise Refused(INVALID, "max_trial_count and parallel_trial_count are required")
        job.name = f"{self.parent}/hyperparameterTuningJobs/{self._id()}"
        job.state = job_state.JobState.JOB_STATE_PENDING
        job.create_time = _now()
        self.jobs[job.name] = job
        return job

    def _run_trials(self, job) -> None:
        """Each trial a point of the study's space; its metric a fixed function of the point, so a test
        knows which trial is best (the highest learning rate-like value)."""
        metric = job.study_spec.metrics[0].metric_id
        for number in range(job.max_trial_count):
            share = number / max(job.max_trial_count - 1, 1)
            parameters = [self._parameter(p, share) for p in job.study_spec.parameters]
            value = 0.5 + 0.4 * share
            job.trials.append(study_types.Trial(
                id=str(number + 1), state=study_types.Trial.State.SUCCEEDED, parameters=parameters,
                final_measurement=study_types.Measurement(metrics=[study_types.Measurement.Metric(
                    metric_id=metric, value=value)])))

    @staticmethod
    def _parameter(spec, share: float):
        from google.protobuf import struct_pb2
        if spec.double_value_spec.max_value or spec.double_value_spec.min_value:
            low, high = spec.double_value_spec.min_value, spec.double_value_spec.max_value
            value = struct_pb2.Value(number_value=low + (high - low) * share)
        elif spec.integer_value_spec.max_value:
            low, high = spec.integer_value_spec.min_value, spec.integer_value_spec.max_value
            value = struct_pb2.Value(number_value=float(round(low + (high - low) * share)))
        elif spec.discrete_value_spec.values:
            values = list(spec.discrete_value_spec.values)
            value = struct_pb2.Value(number_value=values[round(share * (len(values) - 1))])
        else:
            values = list(spec.categorical_value_spec.values)
            value = struct_pb2.Value(string_value=values[round(share * (len(values) - 1))])
        return study_types.Trial.Parameter(parameter_id=spec.parameter_id, value=value)

    def get_hyperparameter_tuning_job(self, request):
        return self._advance(request.name, [job_state.JobState.JOB_STATE_PENDING,
                                            job_state.JobState.JOB_STATE_RUNNING,
                                            job_state.JobState.JOB_STATE_SUCCEEDED])

    def list_hyperparameter_tuning_jobs(self, request):
        from google.cloud.aiplatform_v1.types import job_service
        self.check_parent(request.parent)
        found = [j for j in self.jobs.values() if isinstance(j, hpt_types.HyperparameterTuningJob)
                 and _filter(request.filter, {"display_name": j.display_name, "labels": j.labels})]
        return job_service.ListHyperparameterTuningJobsResponse(hyperparameter_tuning_jobs=found)

    # ---- pipelines and schedules -----------------------------------------------------------------
    def _pipeline_job(self, job, job_id: str) -> pipeline_types.PipelineJob:
        check_labels(job.labels, "pipeline job")
        if job_id and not PIPELINE_JOB_ID.fullmatch(job_id):
            raise Refused(INVALID, f"pipeline_job_id {job_id!r} must be under 128 characters of a-z, 0-9 and -")
        spec = dict(job.pipeline_spec)
        if not spec.get("root") or not spec.get("pipelineInfo", {}).get("name"):
            raise Refused(INVALID, "pipeline_spec has no root or pipelineInfo.name")
        if not job.runtime_config.gcs_output_directory.startswith("gs://"):
            raise Refused(INVALID, "runtime_config.gcs_output_directory (the pipeline root) must be a gs:// URI")
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set(job.runtime_config.parameter_values) - set(declared)
        if unknown:
            raise Refused(INVALID, f"parameter(s) {sorted(unknown)} are not inputs of the pipeline")
        return job

    def create_pipeline_job(self, request):
        self.check_parent(request.parent)
        job = pipeline_types.PipelineJob(self._pipeline_job(request.pipeline_job, request.pipeline_job_id))
        job.name = f"{self.parent}/pipelineJobs/{request.pipeline_job_id or self._id()}"
        if job.name in self.jobs:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"{job.name} exists")
        job.state = pipeline_state.PipelineState.PIPELINE_STATE_PENDING
        job.create_time = _now()
        tasks = dict(job.pipeline_spec)["root"].get("dag", {}).get("tasks", {})
        job.job_detail = pipeline_types.PipelineJobDetail(task_details=[
            pipeline_types.PipelineTaskDetail(task_name=name, state=pipeline_types.PipelineTaskDetail.State.PENDING)
            for name in tasks])
        self.jobs[job.name] = job
        return job

    def get_pipeline_job(self, request):
        return self._advance(request.name, [pipeline_state.PipelineState.PIPELINE_STATE_PENDING,
                                            pipeline_state.PipelineState.PIPELINE_STATE_RUNNING,
                                            pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED])

    def create_schedule(self, request):
        self.check_parent(request.parent)
        schedule = schedule_types.Schedule(request.schedule)
        # Schedule.cron (schedule.py): a cron tab, optionally prefixed CRON_TZ=/TZ=
        if len(re.sub(r"^(CRON_TZ|TZ)=\S+\s+", "", schedule.cron).split()) != 5:
            raise Refused(INVALID, f"cron {schedule.cron!r} is not a cron tab")
        if schedule.max_concurrent_run_count < 1:  # Schedule.max_concurrent_run_count: Required
            raise Refused(INVALID, "max_concurrent_run_count is required")
        inner = schedule.create_pipeline_job_request
        self.check_parent(inner.parent)
        self._pipeline_job(inner.pipeline_job, inner.pipeline_job_id)
        schedule.name = f"{self.parent}/schedules/{self._id()}"
        schedule.state = schedule_types.Schedule.State.ACTIVE
        schedule.create_time = _now()
        self.schedules[schedule.name] = schedule
        return schedule

    def get_schedule(self, request):
        if request.name not in self.schedules:
            raise Refused(NOT_FOUND, f"{request.name} not found")
        return self.schedules[request.name]

    # ---- serving ---------------------------------------------------------------------------------
    def handlers(self) -> list[grpc.GenericRpcHandler]:
        from google.cloud.aiplatform_v1.services.endpoint_service.transports.grpc import EndpointServiceGrpcTransport
        from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport
        from google.cloud.aiplatform_v1.services.model_service.transports.grpc import ModelServiceGrpcTransport
        from google.cloud.aiplatform_v1.services.pipeline_service.transports.grpc import PipelineServiceGrpcTransport
        from google.cloud.aiplatform_v1.services.schedule_service.transports.grpc import ScheduleServiceGrpcTransport

        served = {
            ModelServiceGrpcTransport: ("UploadModel", "GetModel", "ListModels", "ListModelVersions", "UpdateModel",
                                        "MergeVersionAliases", "ImportModelEvaluation", "ListModelEvaluations"),
            EndpointServiceGrpcTransport: ("CreateEndpoint", "GetEndpoint", "ListEndpoints", "UpdateEndpoint",
                                           "DeployModel", "UndeployModel"),
            JobServiceGrpcTransport: ("CreateBatchPredictionJob", "GetBatchPredictionJob", "ListBatchPredictionJobs",
                                      "CancelBatchPredictionJob", "CreateHyperparameterTuningJob",
                                      "GetHyperparameterTuningJob", "ListHyperparameterTuningJobs",
                                      "CancelHyperparameterTuningJob", "CreateCustomJob", "GetCustomJob"),
            PipelineServiceGrpcTransport: ("CreatePipelineJob", "GetPipelineJob", "CancelPipelineJob"),
            ScheduleServiceGrpcTransport: ("CreateSchedule", "GetSchedule"),
        }
        handlers = []
        for transport, methods in served.items():
            found = rpcs(transport)
            service = found[methods[0]][0].split("/")[1]
            handlers.append(service_handler(service, {m: (found[m][1], self._recorded(m)) for m in methods}))
        handlers.append(service_handler("google.longrunning.Operations", {
            "GetOperation": (operations_pb2.GetOperationRequest, self._recorded("GetOperation")),
            "CancelOperation": (operations_pb2.CancelOperationRequest, self._recorded("CancelOperation"))}))
        return handlers

    def _recorded(self, method: str):
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
        snake = {"cancel_batch_prediction_job": "cancel_job", "cancel_hyperparameter_tuning_job": "cancel_job",
                 "cancel_pipeline_job": "cancel_job"}.get(snake, snake)
        handler = getattr(self, snake)

        def call(request):
            with self.lock:
                self.calls.append((method, request))
                refusal = self.fail_next.pop(method, None)
                if refusal is not None:
                    raise refusal
                response = handler(request)
                if method in self.after:
                    self.after.pop(method)(response)
                return response

        return call

    def called(self, method: str) -> list:
        return [request for name, request in self.calls if name == method]
