"""Vertex AI registry and endpoint calls checked at the SDK boundary with a fake aiplatform module."""

import json
from types import SimpleNamespace

import pytest

from components.deploy.deploy import deploy_model
from components.register.register import register_model
from kfkit.adapters.vertex import PREVIOUS_SPLIT_PREFIX, VertexAdapter
from kfkit.errors import ConfigError


class Recorder:
    def __init__(self):
        self.calls = []


class FakeModel:
    def __init__(self, rec, resource="projects/p/locations/us-central1/models/123", version="2", labels=None):
        self.rec = rec
        self.resource_name = resource
        self.version_id = version
        self.versioned_resource_name = f"{resource}@{version}"
        self.display_name = "penguins"
        self.uri = "gs://bucket/model"
        self.labels = labels or {}
        self.versioning_registry = SimpleNamespace(
            add_version_aliases=lambda new_aliases, version: rec.calls.append(("add_version_aliases", new_aliases, version)))


class FakeEndpoint:
    def __init__(self, rec, split=None, deployed=None, description=""):
        self.rec = rec
        self.resource_name = "projects/p/locations/us-central1/endpoints/9"
        self.traffic_split = dict(split or {})
        self.deployed = list(deployed or [])
        self.description = description

    def deploy(self, **kwargs):
        self.rec.calls.append(("deploy", kwargs))
        new = SimpleNamespace(id=f"d{len(self.deployed) + 1}", create_time=f"t{len(self.deployed) + 1}")
        self.deployed.append(new)
        pct = kwargs["traffic_percentage"]
        rest = 100 - pct
        total = sum(self.traffic_split.values()) or 1
        self.traffic_split = {k: v * rest // total for k, v in self.traffic_split.items()}
        self.traffic_split[new.id] = pct

    def update(self, **kwargs):
        self.rec.calls.append(("update", kwargs))
        if "traffic_split" in kwargs:
            self.traffic_split = dict(kwargs["traffic_split"])
        if "description" in kwargs:
            self.description = kwargs["description"]

    def list_models(self):
        return list(self.deployed)

    def undeploy(self, deployed_model_id, sync):
        self.rec.calls.append(("undeploy", deployed_model_id))
        self.deployed = [d for d in self.deployed if d.id != deployed_model_id]


def fake_aiplatform(rec, existing_models=(), endpoints=()):
    def model_list(filter, **kwargs):
        rec.calls.append(("Model.list", filter, kwargs))
        if filter.startswith("labels."):
            return [m for m in existing_models if m.labels.get("kfkit-task-id") == filter.split('"')[1]]
        return list(existing_models)

    def upload(**kwargs):
        rec.calls.append(("Model.upload", kwargs))
        return FakeModel(rec)

    model_cls = lambda model_name, **kw: rec.calls.append(("Model", model_name)) or FakeModel(rec, resource=model_name)  # noqa: E731
    model_cls.list, model_cls.upload = model_list, upload

    def endpoint_list(filter, **kwargs):
        rec.calls.append(("Endpoint.list", filter))
        return list(endpoints)

    def endpoint_create(**kwargs):
        rec.calls.append(("Endpoint.create", kwargs))
        return FakeEndpoint(rec)

    return SimpleNamespace(Model=model_cls, Endpoint=SimpleNamespace(list=endpoint_list, create=endpoint_create))


def test_register_uploads_a_new_version_under_the_parent_with_aliases_labels_and_metrics():
    rec = Recorder()
    parent = FakeModel(rec, version="1")
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[parent]))

    meta = register_model("/gcs/bucket/run/model", model_name="penguins", backend="vertex", blessed=True,
                          metrics={"accuracy": 0.97}, labels={"pipeline-run": "Run_1"}, task_id="task-42",
                          project="p", location="us-central1", vertex=vertex)

    upload = next(c[1] for c in rec.calls if c[0] == "Model.upload")
    assert upload["artifact_uri"] == "gs://bucket/run/model"
    assert upload["parent_model"] == parent.resource_name
    assert upload["version_aliases"] == ["challenger", "champion"] and upload["is_default_version"] is True
    assert upload["labels"] == {"pipeline-run": "run_1", "kfkit-task-id": "task-42"}
    assert upload["serving_container_image_uri"].startswith("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu")
    assert json.loads(upload["version_description"].split(": ", 1)[1]) == {"accuracy": 0.97}
    assert upload["project"] == "p" and upload["location"] == "us-central1"
    assert meta["resourceName"] == "projects/p/locations/us-central1/models/123@2" and meta["created"]
    assert meta["uri"] == "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/models/123@2"


def test_retried_register_finds_its_version_by_task_label_instead_of_uploading_again():
    rec = Recorder()
    done = FakeModel(rec, version="7", labels={"kfkit-task-id": "task-42"})
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[done]))

    meta = register_model("gs://b/m", model_name="penguins", backend="vertex", task_id="task-42",
                          project="p", location="us-central1", vertex=vertex)

    assert not any(c[0] == "Model.upload" for c in rec.calls)
    assert ("add_version_aliases", ["challenger", "champion"], "7") in rec.calls
    assert meta["version"] == "7" and meta["created"] is False


def test_deploy_creates_the_endpoint_with_request_logging_and_deploys_a_canary():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec))

    meta = deploy_model({"resourceName": "projects/p/locations/us-central1/models/123@2"}, endpoint_name="penguins",
                        backend="vertex", traffic_percent=100, machine_type="n1-standard-4", min_replicas=1,
                        max_replicas=3, logging_table="bq://p.logs.penguins", logging_sample_rate=0.5,
                        project="p", location="us-central1", vertex=vertex)

    create = next(c[1] for c in rec.calls if c[0] == "Endpoint.create")
    assert create["display_name"] == "penguins" and create["enable_request_response_logging"] is True
    assert create["request_response_logging_bq_destination_table"] == "bq://p.logs.penguins"
    assert create["request_response_logging_sampling_rate"] == 0.5
    deploy = next(c[1] for c in rec.calls if c[0] == "deploy")
    assert (deploy["machine_type"], deploy["min_replica_count"], deploy["max_replica_count"],
            deploy["traffic_percentage"]) == ("n1-standard-4", 1, 3, 100)
    assert ("Model", "projects/p/locations/us-central1/models/123@2") in rec.calls
    assert meta["traffic_split"] == {"d1": 100}


def test_deploy_undeploys_idle_versions_beyond_keep_previous():
    rec = Recorder()
    old = [SimpleNamespace(id="d1", create_time="t1"), SimpleNamespace(id="d2", create_time="t2")]
    endpoint = FakeEndpoint(rec, split={"d1": 0, "d2": 100}, deployed=old)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    split = vertex.deploy(endpoint, FakeModel(rec), machine_type="n1-standard-2", min_replicas=1, max_replicas=1,
                          traffic_percent=100, keep_previous=1)

    assert ("undeploy", "d1") in rec.calls and ("undeploy", "d2") not in rec.calls
    assert split == {"d1": 0, "d2": 0, "d3": 100}
    assert endpoint.description == PREVIOUS_SPLIT_PREFIX + json.dumps({"d1": 0, "d2": 100})


def test_rollback_restores_the_recorded_split():
    rec = Recorder()
    deployed = [SimpleNamespace(id="d2", create_time="t2"), SimpleNamespace(id="d3", create_time="t3")]
    endpoint = FakeEndpoint(rec, split={"d2": 0, "d3": 100}, deployed=deployed,
                            description=PREVIOUS_SPLIT_PREFIX + json.dumps({"d2": 100}))
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    assert vertex.rollback("penguins") == {"d2": 100}
    assert endpoint.traffic_split == {"d2": 100}


def test_rollback_refuses_when_the_previous_versions_are_gone():
    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d3": 100}, deployed=[SimpleNamespace(id="d3", create_time="t3")],
                            description=PREVIOUS_SPLIT_PREFIX + json.dumps({"d1": 100}))
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))
    with pytest.raises(ConfigError, match=r"deployed model\(s\) \['d1'\] are gone"):
        vertex.rollback("penguins")


def test_champion_is_found_by_alias_and_read_through_the_gcs_mount():
    from components.register.register import champion_model_dir

    rec = Recorder()
    parent = FakeModel(rec, version="3")
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[parent]))

    path = champion_model_dir("penguins", backend="vertex", project="p", location="us-central1", vertex=vertex)

    assert ("Model", f"{parent.resource_name}@champion") in rec.calls
    assert path == "/gcs/bucket/model"
