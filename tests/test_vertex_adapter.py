"""Vertex AI registry and endpoint calls checked at the SDK boundary with a fake aiplatform module."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from google.cloud import aiplatform, storage
from google.cloud.aiplatform.compat.types import endpoint as gca_endpoint
from google.cloud.aiplatform.models import ModelRegistry

from kfkit.components.deploy.deploy import deploy_model
from kfkit.components.register.register import register_model
from google.api_core.operation import Operation

from kfkit.adapters.vertex import VertexAdapter, previous_split_labels
from kfkit.cloud_jobs import CloudJobs
from kfkit.errors import ConfigError
from tests.fakes import bound_to


PARENT = "projects/p/locations/us-central1/models/123"


class Recorder:
    """The calls made on the fakes, in order, as (name, arguments)."""

    def __init__(self):
        self.calls = []


def FakeModel(rec, resource=PARENT, version="2", labels=None):  # noqa: N802 - stands in for the class
    """An aiplatform.Model built from the real class: a wrong attribute or argument fails."""
    model = mock.create_autospec(aiplatform.Model, spec_set=True, instance=True)
    model.resource_name = resource
    model.version_id = version
    model.versioned_resource_name = f"{resource}@{version}"
    model.display_name = "penguins"
    model.uri = "gs://bucket/model"
    model.labels = labels or {}
    model.versioning_registry = mock.create_autospec(ModelRegistry, spec_set=True, instance=True)
    model.versioning_registry.add_version_aliases.side_effect = (
        lambda new_aliases, version: rec.calls.append(("add_version_aliases", new_aliases, version)))
    model.update.side_effect = lambda **kwargs: rec.calls.append(("Model.update", model.versioned_resource_name, kwargs))
    return model


def deployed_model(id_, create_time, model="", version=""):
    return SimpleNamespace(id=id_, create_time=create_time, model=model, model_version_id=version)


def FakeEndpoint(rec, split=None, deployed=None, description="", labels=None):  # noqa: N802
    """An aiplatform.Endpoint built from the real class; the fake service clients change its state."""
    endpoint = mock.create_autospec(aiplatform.Endpoint, spec_set=True, instance=True)
    endpoint.resource_name = "projects/p/locations/us-central1/endpoints/9"
    endpoint.traffic_split = dict(split or {})
    endpoint.labels = dict(labels or {})
    endpoint.gca_resource = gca_endpoint.Endpoint(description=description)
    _DEPLOYED[id(endpoint)] = (endpoint, list(deployed or []))  # Endpoint has no attribute for it

    def update(**kwargs):
        rec.calls.append(("update", kwargs))
        if "traffic_split" in kwargs:
            endpoint.traffic_split = dict(kwargs["traffic_split"])
        if "labels" in kwargs:
            endpoint.labels = dict(kwargs["labels"])
        return endpoint

    endpoint.update.side_effect = update
    endpoint.list_models.side_effect = lambda **kwargs: list(models_of(endpoint))
    return endpoint


_DEPLOYED: dict = {}


def models_of(endpoint) -> list:
    """The fake endpoint's deployed models (changed in place by the fake EndpointServiceClient)."""
    return _DEPLOYED[id(endpoint)][1]


@bound_to(Operation)
class FakeOperation:
    """A google.api_core Operation: done after `polls` checks, then its result."""

    def __init__(self, rec, name, response, polls=1):
        self.rec = rec
        self.operation = SimpleNamespace(name=name)
        self.response = response
        self.polls = polls

    def done(self, retry=None):
        self.rec.calls.append(("Operation.done", self.operation.name))
        self.polls -= 1
        return self.polls <= 0

    def cancel(self):
        self.rec.calls.append(("Operation.cancel", self.operation.name))
        return True

    def result(self, timeout=None, retry=None, polling=None):
        return self.response


def fake_services(rec, endpoints, polls=1, models=()):
    """ModelServiceClient and EndpointServiceClient stand-ins with Vertex's effects on the fake endpoints."""
    counter = {"op": 0}

    def operation(response):
        counter["op"] += 1
        return FakeOperation(rec, f"projects/p/locations/us-central1/operations/{counter['op']}", response, polls)

    @bound_to(aiplatform.gapic.ModelServiceClient)
    class ModelService:
        def __init__(self, client_options=None):
            rec.calls.append(("ModelServiceClient", client_options))

        def upload_model(self, request=None, *, parent=None, model=None, retry=None, timeout=None, metadata=()):
            rec.calls.append(("upload_model", request))
            return operation(SimpleNamespace(model=request.parent_model or f"{request.parent}/models/new",
                                             model_version_id="2"))

        def list_model_versions(self, request=None, *, name=None, retry=None, timeout=None, metadata=()):
            # as Vertex: the model's versions whose labels match `labels.K="V"`
            rec.calls.append(("list_model_versions", request.name, request.filter))
            key, _, value = request.filter.removeprefix("labels.").partition("=")
            return [SimpleNamespace(version_id=m.version_id) for m in models if m.labels.get(key) == value.strip('"')]

        def update_model(self, request=None, *, model=None, update_mask=None, retry=None, timeout=None,
                         metadata=()):
            rec.calls.append(("update_model", request.model.name, dict(request.model.labels),
                              list(request.update_mask.paths)))
            return request.model

    @bound_to(aiplatform.gapic.EndpointServiceClient)
    class EndpointService:
        def __init__(self, client_options=None):
            rec.calls.append(("EndpointServiceClient", client_options))

        def deploy_model(self, request=None, *, endpoint=None, deployed_model=None, traffic_split=None, retry=None,
                         timeout=None, metadata=()):
            rec.calls.append(("deploy_model", {"endpoint": endpoint, "deployed_model": deployed_model,
                                               "traffic_split": dict(traffic_split)}))
            target = endpoints[endpoint]
            model, _, version = deployed_model.model.partition("@")
            models = models_of(target)
            new = deployed_model_fn(f"d{len(models) + 1}", f"t{len(models) + 1}", model, version)
            models.append(new)
            target.traffic_split = {(new.id if k == "0" else k): v for k, v in traffic_split.items()}
            return operation(SimpleNamespace(deployed_model=new))

        def undeploy_model(self, request=None, *, endpoint=None, deployed_model_id=None, traffic_split=None,
                           retry=None, timeout=None, metadata=()):
            rec.calls.append(("undeploy", deployed_model_id))
            target = endpoints[endpoint]
            models_of(target)[:] = [d for d in models_of(target) if d.id != deployed_model_id]
            target.traffic_split = {k: v for k, v in target.traffic_split.items() if k != deployed_model_id}
            return operation(SimpleNamespace())

    deployed_model_fn = deployed_model
    return ModelService, EndpointService


def fake_aiplatform(rec, existing_models=(), endpoints=(), batch_jobs=(), polls=1):
    """The parts of google.cloud.aiplatform kfkit calls, each autospecced from the real class."""
    Model = mock.create_autospec(aiplatform.Model, spec_set=True)  # noqa: N806
    Endpoint = mock.create_autospec(aiplatform.Endpoint, spec_set=True)  # noqa: N806
    BatchPredictionJob = mock.create_autospec(aiplatform.BatchPredictionJob, spec_set=True)  # noqa: N806
    by_name = {e.resource_name: e for e in endpoints}

    def model_list(filter=None, order_by=None, **kwargs):
        rec.calls.append(("Model.list", filter, {"order_by": order_by, **kwargs}))
        if filter.startswith("labels."):
            return [m for m in existing_models if m.labels.get("kfkit-task-id") == filter.split('"')[1]]
        return list(existing_models)

    def endpoint_create(**kwargs):
        rec.calls.append(("Endpoint.create", kwargs))
        endpoint = FakeEndpoint(rec)
        by_name[endpoint.resource_name] = endpoint
        return endpoint

    def endpoint_list(filter=None, **kwargs):
        rec.calls.append(("Endpoint.list", filter))
        rec.calls.append(("Endpoint.list-where", kwargs))
        return list(endpoints)

    def batch_submit(**kwargs):
        rec.calls.append(("BatchPredictionJob.submit", kwargs))
        return FakeBatchJob(rec, "projects/p/locations/us-central1/batchPredictionJobs/77", polls=polls)

    def batch_list(filter=None, **kwargs):
        rec.calls.append(("BatchPredictionJob.list", filter, kwargs))
        return list(batch_jobs)

    Model.list.side_effect = model_list
    def model(model_name, version=None, **kwargs):
        # as the SDK: "name@3" is version 3 of "name"; an alias resolves to a version (here 2)
        rec.calls.append(("Model", model_name))
        base, _, at = model_name.partition("@")
        return FakeModel(rec, resource=base, version=version or (at if at.isdigit() else "2"))

    Model.side_effect = model
    Endpoint.list.side_effect = endpoint_list
    Endpoint.create.side_effect = endpoint_create
    Endpoint.side_effect = lambda endpoint_name, **kw: by_name[endpoint_name]
    BatchPredictionJob.submit.side_effect = batch_submit
    BatchPredictionJob.list.side_effect = batch_list
    ModelService, EndpointService = fake_services(rec, by_name, polls, existing_models)  # noqa: N806
    gapic = SimpleNamespace(**{name: getattr(aiplatform.gapic, name) for name in (
        "Model", "ModelContainerSpec", "UploadModelRequest", "DeployedModel", "DedicatedResources", "MachineSpec",
        "ListModelVersionsRequest", "UpdateModelRequest")},
        ModelServiceClient=ModelService, EndpointServiceClient=EndpointService)
    return SimpleNamespace(Model=Model, Endpoint=Endpoint, BatchPredictionJob=BatchPredictionJob, gapic=gapic)


def FakeBatchJob(rec, name, polls=1, state="JOB_STATE_SUCCEEDED"):  # noqa: N802
    job = mock.create_autospec(aiplatform.BatchPredictionJob, spec_set=True, instance=True)
    job.resource_name = name
    job.state = SimpleNamespace(name=state)
    job.error = None
    job.output_info = SimpleNamespace(bigquery_output_table="p.predictions.out")
    left = {"polls": polls}

    def done():
        rec.calls.append(("BatchPredictionJob.done", name))
        left["polls"] -= 1
        return left["polls"] <= 0

    job.done.side_effect = done
    job.cancel.side_effect = lambda: rec.calls.append(("BatchPredictionJob.cancel", name))
    return job


def quiet_jobs(tmp_path=None):
    return CloudJobs(str(tmp_path / "gcp_resources") if tmp_path else None, sleep=lambda s: None)


def upload_request(rec):
    return next(c[1] for c in rec.calls if c[0] == "upload_model")


def test_register_uploads_a_new_version_under_the_parent_with_aliases_labels_and_metrics(tmp_path):
    rec = Recorder()
    parent = FakeModel(rec, version="1")
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[parent]),
                           jobs=quiet_jobs())

    meta = register_model("/gcs/bucket/run/model", model_name="penguins", backend="vertex", blessed=True,
                          metrics={"accuracy": 0.97}, labels={"pipeline-run": "Run_1"}, task_id="task-42",
                          project="p", location="us-central1", vertex=vertex)

    request = upload_request(rec)
    assert request.parent == "projects/p/locations/us-central1" and request.parent_model == parent.resource_name
    assert request.model.artifact_uri == "gs://bucket/run/model"
    # is_default_version=True is the "default" alias, as the SDK's Model.upload sends it
    assert list(request.model.version_aliases) == ["challenger", "champion", "default"]
    assert dict(request.model.labels) == {"pipeline-run": "run_1", "kfkit-task-id": "task-42"}
    assert request.model.container_spec.image_uri.startswith("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu")
    assert json.loads(request.model.version_description.split(": ", 1)[1]) == {"accuracy": 0.97}
    assert ("ModelServiceClient", {"api_endpoint": "us-central1-aiplatform.googleapis.com"}) in rec.calls
    assert meta["resourceName"] == "projects/p/locations/us-central1/models/123@2" and meta["created"]
    assert meta["uri"] == "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/models/123@2"


def test_a_registered_version_records_the_hyperparameters_train_used_in_its_description():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec), jobs=quiet_jobs())

    register_model("gs://bucket/run/model", model_name="penguins", backend="vertex", metrics={"accuracy": 0.9},
                   params={"task": "multiclass", "hp_learning_rate": 0.02, "hp_hidden_units": [32, 16]},
                   project="p", location="us-central1", vertex=vertex)

    evaluation, hyperparameters = upload_request(rec).model.version_description.split("; hyperparameters: ")
    assert json.loads(evaluation.split(": ", 1)[1]) == {"accuracy": 0.9}
    assert json.loads(hyperparameters) == {"hidden_units": [32, 16], "learning_rate": 0.02}


def test_the_upload_operation_is_in_gcp_resources_polled_and_cancellable(tmp_path):
    rec = Recorder()
    jobs = CloudJobs(str(tmp_path / "gcp_resources"), sleep=lambda s: None)
    vertex = VertexAdapter("p", "europe-west4", aiplatform=fake_aiplatform(rec, polls=3), jobs=jobs)

    vertex.upload_version(display_name="penguins", artifact_uri="gs://b/m", serving_image="img", aliases=["challenger"],
                          labels={}, metrics={}, task_id="t", make_default=False)

    resources = json.loads((tmp_path / "gcp_resources").read_text())["resources"]
    assert resources == [{"resourceType": "VertexLro", "resourceUri":
                          "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/operations/1"}]
    assert [c[0] for c in rec.calls].count("Operation.done") == 3


def test_retried_register_finds_its_version_by_task_label_instead_of_uploading_again():
    rec = Recorder()
    done = FakeModel(rec, version="7", labels={"kfkit-task-id": "task-42"})
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[done]))

    meta = register_model("gs://b/m", model_name="penguins", backend="vertex", task_id="task-42",
                          project="p", location="us-central1", vertex=vertex)

    assert not any(c[0] == "upload_model" for c in rec.calls)
    assert ("add_version_aliases", ["challenger", "champion"], "7") in rec.calls
    assert meta["version"] == "7" and meta["created"] is False


def deploy_request(rec, index=0):
    return [c[1] for c in rec.calls if c[0] == "deploy_model"][index]


def test_deploy_creates_the_endpoint_with_request_logging_and_deploys_with_the_machine_asked_for():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec), jobs=quiet_jobs())

    meta = deploy_model({"resourceName": "projects/p/locations/us-central1/models/123@2"}, endpoint_name="penguins",
                        backend="vertex", traffic_percent=100, machine_type="n1-standard-4", min_replicas=1,
                        max_replicas=3, logging_table="bq://p.logs.penguins", logging_sample_rate=0.5,
                        project="p", location="us-central1", vertex=vertex)

    create = next(c[1] for c in rec.calls if c[0] == "Endpoint.create")
    assert create["display_name"] == "penguins" and create["enable_request_response_logging"] is True
    assert create["request_response_logging_bq_destination_table"] == "bq://p.logs.penguins"
    assert create["request_response_logging_sampling_rate"] == 0.5
    request = deploy_request(rec)
    resources = request["deployed_model"].dedicated_resources
    assert (resources.machine_spec.machine_type, resources.min_replica_count, resources.max_replica_count) == (
        "n1-standard-4", 1, 3)
    assert request["deployed_model"].model == "projects/p/locations/us-central1/models/123@2"
    assert request["deployed_model"].display_name == "penguins-v2"
    assert request["traffic_split"] == {"0": 100}
    assert meta["traffic_split"] == {"d1": 100}


def test_deploy_undeploys_idle_versions_beyond_keep_previous_and_remembers_the_split_in_labels():
    rec = Recorder()
    old = [deployed_model("d1", "t1"), deployed_model("d2", "t2")]
    endpoint = FakeEndpoint(rec, split={"d1": 0, "d2": 100}, deployed=old, labels={"team": "research"},
                            description="the user's own words")
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]), jobs=quiet_jobs())

    split = vertex.deploy(endpoint, FakeModel(rec), machine_type="n1-standard-2", min_replicas=1, max_replicas=1,
                          traffic_percent=100, keep_previous=1)

    assert ("undeploy", "d1") in rec.calls and ("undeploy", "d2") not in rec.calls
    assert split == {"d2": 0, "d3": 100}
    assert endpoint.labels == {"team": "research", "kfkit-prev-d1": "0", "kfkit-prev-d2": "100"}
    assert endpoint.gca_resource.description == "the user's own words"
    assert not any("description" in c[1] for c in rec.calls if c[0] == "update")


def test_a_retried_deploy_of_a_version_already_deployed_deploys_nothing():
    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d1": 100}, deployed=[deployed_model("d1", "t1", PARENT, "2")])
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    split = vertex.deploy(endpoint, FakeModel(rec, version="2"), machine_type="m", min_replicas=1, max_replicas=1,
                          traffic_percent=100, keep_previous=1)

    assert split == {"d1": 100}
    assert not any(c[0] in ("deploy_model", "undeploy", "update") for c in rec.calls)


def test_rollback_restores_the_split_recorded_in_labels_and_records_the_split_it_replaced():
    rec = Recorder()
    deployed = [deployed_model("d2", "t2"), deployed_model("d3", "t3")]
    endpoint = FakeEndpoint(rec, split={"d2": 10, "d3": 90}, deployed=deployed,
                            labels={"team": "x", **previous_split_labels({"d2": 100})})
    vertex = VertexAdapter("p", "asia-east1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    restored = vertex.rollback("penguins")

    assert restored == {"d2": 100} and endpoint.traffic_split == {"d2": 100}
    assert ("Endpoint.list", 'display_name="penguins"') in rec.calls
    assert ("Endpoint.list-where", {"project": "p", "location": "asia-east1"}) in rec.calls
    update = next(c[1] for c in rec.calls if c[0] == "update")
    assert update == {"traffic_split": {"d2": 100},
                      "labels": {"team": "x", "kfkit-prev-d2": "10", "kfkit-prev-d3": "90"}}


def test_rollback_refuses_when_the_previous_versions_are_gone():
    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d3": 100}, deployed=[deployed_model("d3", "t3")],
                            labels=previous_split_labels({"d1": 100}))
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))
    with pytest.raises(ConfigError, match=r"deployed model\(s\) \['d1'\] are gone"):
        vertex.rollback("penguins")


def test_previous_split_labels_follow_vertex_label_rules_for_real_deployed_model_ids():
    split = {"1234567890123456789": 90, "987654321": 10}

    labels = previous_split_labels(split)

    assert labels == {"kfkit-prev-1234567890123456789": "90", "kfkit-prev-987654321": "10"}
    assert all(len(k) <= 63 and k[0].isalpha() and set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
               for k in labels)


@bound_to(storage.Client)
class FakeStorage:
    """Cloud Storage as a local directory: gs://bucket/x is <root>/bucket/x."""

    def __init__(self, root):
        self.root = root
        self.calls = []

    def list_blobs(self, bucket_or_name, max_results=None, page_token=None, prefix=None, **kwargs):
        self.calls.append(("list_blobs", bucket_or_name, prefix))
        base = self.root / bucket_or_name
        return [SimpleNamespace(name=str(p.relative_to(base)),
                                download_to_filename=lambda filename, p=p: shutil.copy(p, filename))
                for p in sorted(base.rglob("*")) if p.is_file() and str(p.relative_to(base)).startswith(prefix)]


def test_the_champion_is_read_from_a_copy_of_its_cloud_storage_directory_where_gcs_is_not_mounted(tmp_path,
                                                                                                monkeypatch):
    from google.cloud import storage as storage_module

    from kfkit.components.register.register import champion_model_dir

    (tmp_path / "gcs" / "bucket" / "model" / "variables").mkdir(parents=True)
    (tmp_path / "gcs" / "bucket" / "model" / "saved_model.pb").write_text("pb")
    (tmp_path / "gcs" / "bucket" / "model" / "variables" / "v.index").write_text("i")
    fake = FakeStorage(tmp_path / "gcs")
    monkeypatch.setattr(storage_module, "Client", lambda *a, **k: fake)
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec, version="3")]))

    path = champion_model_dir("penguins", backend="vertex", local_root=str(tmp_path / "root"), project="p",
                              location="us-central1", vertex=vertex)

    assert ("Model", f"{PARENT}@champion") in rec.calls
    assert path == str(tmp_path / "root" / "cache" / "gcs" / "bucket" / "model")
    assert sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file()) == [
        "saved_model.pb", "variables/v.index"]
    assert fake.calls == [("list_blobs", "bucket", "model/")]


def test_the_gcs_mount_is_read_directly_where_it_exists(tmp_path, monkeypatch):
    from kfkit import config
    from kfkit.adapters.gcs import readable_dir

    (tmp_path / "mnt" / "bucket" / "model").mkdir(parents=True)
    monkeypatch.setattr(config, "local_path",
                        lambda uri: tmp_path / "mnt" / uri[len("gs://"):] if uri.startswith("gs://") else Path(uri))

    assert readable_dir("gs://bucket/model", tmp_path / "cache") == tmp_path / "mnt" / "bucket" / "model"
    assert readable_dir("/already/local", tmp_path / "cache") == Path("/already/local")


def test_an_empty_cloud_storage_prefix_is_an_error_and_leaves_nothing(tmp_path):
    from kfkit.adapters.gcs import download_dir

    (tmp_path / "gcs" / "bucket").mkdir(parents=True)

    with pytest.raises(ConfigError, match="nothing in Cloud Storage under gs://bucket/none"):
        download_dir("gs://bucket/none", tmp_path / "out" / "model", client=FakeStorage(tmp_path / "gcs"))
    assert list((tmp_path / "out").iterdir()) == []


def test_a_local_model_is_staged_to_cloud_storage_before_upload(tmp_path, monkeypatch):
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setenv("KFKIT_STAGING_BUCKET", "gs://p-vertex-staging-us-central1")
    rec = Recorder()
    staging = mock.create_autospec(gcs_utils, spec_set=True)
    staging.stage_local_data_in_gcs.return_value = "gs://p-vertex-staging-us-central1/vertex_ai_auto_staging/m"
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec), jobs=quiet_jobs(), gcs_utils=staging)

    vertex.upload_version(display_name="penguins", artifact_uri=str(tmp_path / "model"), serving_image="img",
                          aliases=[], labels={}, metrics={}, task_id="t", make_default=True)

    staging.stage_local_data_in_gcs.assert_called_once_with(
        str(tmp_path / "model"), staging_gcs_dir="gs://p-vertex-staging-us-central1", project="p", location="us-central1")
    assert upload_request(rec).model.artifact_uri == "gs://p-vertex-staging-us-central1/vertex_ai_auto_staging/m"


def test_model_lookups_send_exactly_vertexs_filter_and_order_strings():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec)]))

    vertex.find_version_by_task("Task 42/x", "penguins")
    rec.calls = [c for c in rec.calls if c[0] != "ModelServiceClient"]
    vertex.model_by_alias("penguins", "champion")

    by_name = ("Model.list", 'display_name="penguins"',
               {"order_by": "create_time desc", "project": "p", "location": "us-central1"})
    # the task's version is looked for among the model's versions, not the models' default versions
    assert rec.calls[:2] == [by_name, ("list_model_versions", PARENT, 'labels.kfkit-task-id="task-42-x"')]
    assert rec.calls[2:4] == [by_name, ("Model", f"{PARENT}@champion")]


def test_endpoint_lookup_filters_on_the_display_name():
    rec = Recorder()
    endpoint = FakeEndpoint(rec)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    assert vertex.get_or_create_endpoint("penguins", {}) is endpoint
    assert rec.calls == [("Endpoint.list", 'display_name="penguins"'),
                         ("Endpoint.list-where", {"project": "p", "location": "us-central1"})]


def test_an_unblessed_model_is_uploaded_as_challenger_only_and_not_made_the_default():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec)]))

    meta = register_model("gs://b/m", model_name="penguins", backend="vertex", blessed=False, task_id="t1",
                          project="p", location="us-central1", vertex=vertex)

    assert list(upload_request(rec).model.version_aliases) == ["challenger"]
    assert meta["aliases"] == ["challenger"]


def test_a_retried_unblessed_register_adds_only_the_challenger_alias():
    rec = Recorder()
    done = FakeModel(rec, version="7", labels={"kfkit-task-id": "t1"})
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[done]))

    register_model("gs://b/m", model_name="penguins", backend="vertex", blessed=False, task_id="t1",
                   project="p", location="us-central1", vertex=vertex)

    assert ("add_version_aliases", ["challenger"], "7") in rec.calls


@pytest.mark.parametrize("keep_previous, undeployed", [(0, ["d1", "d2", "d3", "d4"]), (1, ["d1", "d2", "d3"]),
                                                       (2, ["d1", "d2"])])
def test_deploy_keeps_exactly_keep_previous_idle_versions_newest_first(keep_previous, undeployed):
    rec = Recorder()
    old = [deployed_model(f"d{i}", f"t{i}") for i in (3, 1, 4, 2)]  # listed out of order
    endpoint = FakeEndpoint(rec, split={"d1": 0, "d2": 0, "d3": 0, "d4": 100}, deployed=old)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]), jobs=quiet_jobs())

    vertex.deploy(endpoint, FakeModel(rec), machine_type="n1-standard-2", min_replicas=1, max_replicas=1,
                  traffic_percent=100, keep_previous=keep_previous)

    # d4 served until now and is the newest idle version; the new one (d5) takes all the traffic
    assert [c[1] for c in rec.calls if c[0] == "undeploy"] == undeployed


def test_a_canary_deploy_sends_the_share_and_scales_the_serving_version_as_the_local_backend_does():
    from kfkit.serving.endpoints import split_traffic

    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d1": 67, "d2": 33},
                            deployed=[deployed_model("d1", "t1"), deployed_model("d2", "t2")])
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]), jobs=quiet_jobs())

    split = vertex.deploy(endpoint, FakeModel(rec, version="5"), machine_type="n1-standard-2", min_replicas=1,
                          max_replicas=2, traffic_percent=10, keep_previous=0)

    assert deploy_request(rec)["traffic_split"] == {"d1": 60, "d2": 30, "0": 10}
    assert deploy_request(rec)["traffic_split"] == split_traffic({"d1": 67, "d2": 33}, "0", 10)
    assert split == {"d1": 60, "d2": 30, "d3": 10}
    assert not any(c[0] == "undeploy" for c in rec.calls)


def test_vertex_batch_prediction_reads_and_writes_bigquery_labelled_with_its_task(tmp_path):
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, polls=2), jobs=quiet_jobs(tmp_path))

    batch_predict_bigquery(vertex, model_resource=f"{PARENT}@3", source_table="p.data.rows",
                           destination_prefix="bq://p.predictions", machine_type="n1-standard-4", replicas=2,
                           display_name="kfkit-batch", task_id="Task-9")

    assert rec.calls[0] == ("BatchPredictionJob.list", 'labels.kfkit-task-id="task-9"',
                            {"project": "p", "location": "us-central1"})
    assert rec.calls[1] == ("BatchPredictionJob.submit", {
        "job_display_name": "kfkit-batch", "model_name": f"{PARENT}@3", "instances_format": "bigquery",
        "predictions_format": "bigquery", "bigquery_source": "bq://p.data.rows",
        "bigquery_destination_prefix": "bq://p.predictions", "machine_type": "n1-standard-4",
        "starting_replica_count": 2, "max_replica_count": 2, "labels": {"kfkit-task-id": "task-9"},
        "project": "p", "location": "us-central1"})
    assert [c[0] for c in rec.calls[2:]] == ["BatchPredictionJob.done"] * 2
    resources = json.loads((tmp_path / "gcp_resources").read_text())["resources"]
    assert resources == [{"resourceType": "BatchPredictionJob", "resourceUri": "https://us-central1-aiplatform."
                          "googleapis.com/v1/projects/p/locations/us-central1/batchPredictionJobs/77"}]


def test_a_retried_batch_prediction_waits_for_the_job_its_task_started():
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    running = FakeBatchJob(rec, "projects/p/locations/us-central1/batchPredictionJobs/5")
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, batch_jobs=[running]), jobs=quiet_jobs())

    job = batch_predict_bigquery(vertex, model_resource="m", source_table="p.d.t", destination_prefix="p.out",
                                 machine_type="m", replicas=1, display_name="b", task_id="task-9")

    assert job is running
    assert not any(c[0] == "BatchPredictionJob.submit" for c in rec.calls)


def test_a_failed_batch_prediction_job_is_an_error_naming_the_job_and_its_state():
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    failed = FakeBatchJob(rec, "projects/p/locations/us-central1/batchPredictionJobs/5", state="JOB_STATE_FAILED")
    failed.error = "quota exceeded"
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, batch_jobs=[failed]), jobs=quiet_jobs())

    with pytest.raises(ConfigError, match=r"batchPredictionJobs/5 ended JOB_STATE_FAILED: quota exceeded"):
        batch_predict_bigquery(vertex, model_resource="m", source_table="p.d.t", destination_prefix="p.out",
                               machine_type="m", replicas=1, display_name="b", task_id="task-9")


def test_upload_sends_every_field_vertex_needs():
    rec = Recorder()
    vertex = VertexAdapter("p", "europe-west4", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec)]),
                           jobs=quiet_jobs())

    vertex.upload_version(display_name="penguins", artifact_uri="/gcs/b/run/model", serving_image="img:1",
                          aliases=["challenger"], labels={"Team": "Research"}, metrics={"accuracy": 0.123456789},
                          task_id="t-1", make_default=False)

    request = upload_request(rec)
    description = 'kfkit evaluation: {"accuracy": 0.123457}'
    assert request == aiplatform.gapic.UploadModelRequest(
        parent="projects/p/locations/europe-west4", parent_model=PARENT,
        model=aiplatform.gapic.Model(display_name="penguins", description=description,
                                     version_description=description, version_aliases=["challenger"],
                                     labels={"team": "research", "kfkit-task-id": "t-1"},
                                     artifact_uri="gs://b/run/model",
                                     container_spec=aiplatform.gapic.ModelContainerSpec(image_uri="img:1")))


def test_a_reused_upload_is_logged_with_its_task_and_version(caplog):
    rec = Recorder()
    done = FakeModel(rec, version="7", labels={"kfkit-task-id": "t-1"})
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[done]))

    with caplog.at_level("INFO", logger="kfkit.vertex"):
        vertex.upload_version(display_name="penguins", artifact_uri="gs://b/m", serving_image="img", aliases=[],
                              labels={}, metrics={}, task_id="t-1", make_default=True)

    assert f"task t-1 already uploaded {PARENT}; reusing it" in caplog.messages


def test_the_endpoint_is_created_with_vertex_labels_and_no_logging_unless_asked():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec))

    vertex.get_or_create_endpoint("penguins", {"Pipeline Run": "Run_1"})

    create = next(c[1] for c in rec.calls if c[0] == "Endpoint.create")
    assert create == {"display_name": "penguins", "labels": {"pipeline-run": "run_1"}, "project": "p",
                      "location": "us-central1"}


def test_request_logging_samples_every_request_by_default():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec))

    vertex.get_or_create_endpoint("penguins", {}, logging_table="bq://p.logs.t")

    create = next(c[1] for c in rec.calls if c[0] == "Endpoint.create")
    assert create["request_response_logging_sampling_rate"] == 1.0


def test_idle_versions_are_undeployed_and_never_more_than_there_are(tmp_path):
    rec = Recorder()
    old = [deployed_model("d1", "t1"), deployed_model("d2", "t2")]
    # d1 is deployed but missing from the split: it takes no traffic
    endpoint = FakeEndpoint(rec, split={"d2": 100}, deployed=old)
    jobs = CloudJobs(str(tmp_path / "gcp_resources"), sleep=lambda s: None)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]), jobs=jobs)

    vertex.deploy(endpoint, FakeModel(rec), machine_type="m", min_replicas=1, max_replicas=1, traffic_percent=50,
                  keep_previous=0)
    vertex.deploy(endpoint, FakeModel(rec, version="3"), machine_type="m", min_replicas=1, max_replicas=1,
                  traffic_percent=50, keep_previous=5)

    assert [c[1] for c in rec.calls if c[0] == "undeploy"] == ["d1"]
    kinds = [r["resourceType"] for r in json.loads((tmp_path / "gcp_resources").read_text())["resources"]]
    assert kinds == ["VertexLro"] * 3  # deploy, undeploy, deploy


def test_rollback_refusals_name_the_endpoint_and_where_it_was_looked_for():
    rec = Recorder()
    bare = FakeEndpoint(rec, split={"d1": 100}, deployed=[deployed_model("d1", "t1")])

    with pytest.raises(ConfigError, match=r"^no Vertex AI endpoint named 'penguins' in p/us-central1$"):
        VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec)).rollback("penguins")
    with pytest.raises(ConfigError, match=r"^endpoint 'penguins' has no previous traffic split recorded by kfkit deploy$"):
        VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[bare])).rollback("penguins")


@pytest.mark.parametrize("project, location", [("", "us-central1"), ("p", ""), ("", "")])
def test_the_adapter_needs_a_project_and_a_location(project, location):
    with pytest.raises(ConfigError, match=r"^project and location are required for the Vertex AI backend$"):
        VertexAdapter(project, location, aiplatform=fake_aiplatform(Recorder()))


def test_a_champion_alias_is_looked_up_in_the_adapters_project_and_none_without_a_model():
    rec = Recorder()
    fake = fake_aiplatform(rec, existing_models=[FakeModel(rec)])

    VertexAdapter("p", "us-east1", aiplatform=fake).model_by_alias("penguins", "champion")

    fake.Model.assert_called_once_with(model_name=f"{PARENT}@champion", project="p", location="us-east1")
    assert VertexAdapter("p", "us-east1", aiplatform=fake_aiplatform(Recorder())).model_by_alias("x", "champion") is None


def test_label_values_and_gcs_paths_follow_vertexs_rules():
    from kfkit.adapters.vertex import fuse_to_gcs, label_value

    assert label_value("A" * 70) == "a" * 63
    assert label_value("Run 1/ü") == "run-1--"
    assert fuse_to_gcs("/gcs/bucket/m") == "gs://bucket/m"
    assert fuse_to_gcs("gs://bucket/m") == "gs://bucket/m"
    assert fuse_to_gcs("/tmp/gcs/m") == "/tmp/gcs/m"


def test_batch_prediction_accepts_bq_uris_for_its_source():
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec), jobs=quiet_jobs())

    batch_predict_bigquery(vertex, model_resource="m", source_table="bq://p.data.rows", destination_prefix="p.out",
                           machine_type="n1-standard-2", replicas=1, display_name="b")

    submit = next(c[1] for c in rec.calls if c[0] == "BatchPredictionJob.submit")
    assert (submit["bigquery_source"], submit["bigquery_destination_prefix"]) == ("bq://p.data.rows", "bq://p.out")
    assert submit["labels"] is None


def test_a_deployed_model_is_named_by_its_versioned_resource_as_vertex_returns_it_apart():
    from kfkit.adapters.vertex import _deployed_version

    assert _deployed_version(deployed_model("d1", "t1", PARENT, "3")) == f"{PARENT}@3"
    assert _deployed_version(deployed_model("d1", "t1", f"{PARENT}@3", "")) == f"{PARENT}@3"
    assert _deployed_version(deployed_model("d1", "t1", PARENT, "")) == PARENT
    assert _deployed_version(SimpleNamespace(id="d1")) == ""


@pytest.mark.parametrize("state", ["JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"])
def test_a_batch_prediction_job_that_did_not_succeed_is_an_error(state):
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    ended = FakeBatchJob(rec, "projects/p/locations/us-central1/batchPredictionJobs/5", state=state)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, batch_jobs=[ended]), jobs=quiet_jobs())

    with pytest.raises(ConfigError, match=f"ended {state}"):
        batch_predict_bigquery(vertex, model_resource="m", source_table="p.d.t", destination_prefix="p.out",
                               machine_type="m", replicas=1, display_name="b", task_id="task-9")


def test_labels_are_made_vertex_labels_and_a_key_not_starting_with_a_letter_is_refused():
    from kfkit.adapters.vertex import vertex_labels

    assert vertex_labels({"Team": "ML Platform", "cost.center": "R&D", "empty": ""}) == {
        "team": "ml-platform", "cost-center": "r-d"}
    with pytest.raises(ConfigError, match="label key '1st' must start with a letter"):
        vertex_labels({"1st": "x"})
    with pytest.raises(ConfigError, match="65 labels: Vertex AI takes at most 64"):
        vertex_labels({f"k{i}": "v" for i in range(65)})


def test_the_api_endpoint_is_the_variable_then_aiplatform_init_then_the_regional_one(monkeypatch):
    from kfkit.adapters.vertex import api_endpoint

    configured = SimpleNamespace(initializer=SimpleNamespace(global_config=SimpleNamespace(api_endpoint="psc:443")))
    unset = SimpleNamespace(initializer=SimpleNamespace(global_config=SimpleNamespace(api_endpoint=None)))
    monkeypatch.delenv("KFKIT_VERTEX_API_ENDPOINT", raising=False)

    assert api_endpoint("europe-west4", unset) == "europe-west4-aiplatform.googleapis.com"
    assert api_endpoint("europe-west4", configured) == "psc:443"
    monkeypatch.setenv("KFKIT_VERTEX_API_ENDPOINT", "vertex.p.example:443")
    assert api_endpoint("europe-west4", configured) == "vertex.p.example:443"
