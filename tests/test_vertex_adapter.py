"""Vertex AI registry and endpoint calls checked at the SDK boundary with a fake aiplatform module."""

import json
from types import SimpleNamespace
from unittest import mock

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform.compat.types import endpoint as gca_endpoint
from google.cloud.aiplatform.models import ModelRegistry

from components.deploy.deploy import deploy_model
from components.register.register import register_model
from kfkit.adapters.vertex import PREVIOUS_SPLIT_PREFIX, VertexAdapter
from kfkit.errors import ConfigError


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
    return model


def FakeEndpoint(rec, split=None, deployed=None, description=""):  # noqa: N802
    """An aiplatform.Endpoint built from the real class, with Vertex's traffic arithmetic on deploy."""
    endpoint = mock.create_autospec(aiplatform.Endpoint, spec_set=True, instance=True)
    endpoint.resource_name = "projects/p/locations/us-central1/endpoints/9"
    endpoint.traffic_split = dict(split or {})
    endpoint.gca_resource = gca_endpoint.Endpoint(description=description)
    models = list(deployed or [])

    def deploy(model, deployed_model_display_name=None, traffic_percentage=0, **kwargs):
        rec.calls.append(("deploy", {"model": model, "deployed_model_display_name": deployed_model_display_name,
                                     "traffic_percentage": traffic_percentage, **kwargs}))
        new = SimpleNamespace(id=f"d{len(models) + 1}", create_time=f"t{len(models) + 1}")
        models.append(new)
        # Vertex scales the other deployed models down in proportion to their share
        rest, total = 100 - traffic_percentage, sum(endpoint.traffic_split.values()) or 1
        split = {k: v * rest // total for k, v in endpoint.traffic_split.items()}
        split[new.id] = traffic_percentage
        endpoint.traffic_split = split

    def update(**kwargs):
        rec.calls.append(("update", kwargs))
        if "traffic_split" in kwargs:
            endpoint.traffic_split = dict(kwargs["traffic_split"])
        if "description" in kwargs:
            endpoint.gca_resource = gca_endpoint.Endpoint(description=kwargs["description"])
        return endpoint

    def undeploy(deployed_model_id, **kwargs):
        rec.calls.append(("undeploy", deployed_model_id))
        rec.calls.append(("undeploy-options", kwargs))
        models[:] = [d for d in models if d.id != deployed_model_id]

    endpoint.deploy.side_effect = deploy
    endpoint.update.side_effect = update
    endpoint.undeploy.side_effect = undeploy
    endpoint.list_models.side_effect = lambda **kwargs: list(models)
    return endpoint


def fake_aiplatform(rec, existing_models=(), endpoints=()):
    """The parts of google.cloud.aiplatform kfkit calls, each autospecced from the real class."""
    Model = mock.create_autospec(aiplatform.Model, spec_set=True)  # noqa: N806
    Endpoint = mock.create_autospec(aiplatform.Endpoint, spec_set=True)  # noqa: N806
    BatchPredictionJob = mock.create_autospec(aiplatform.BatchPredictionJob, spec_set=True)  # noqa: N806

    def model_list(filter=None, order_by=None, **kwargs):
        rec.calls.append(("Model.list", filter, {"order_by": order_by, **kwargs}))
        if filter.startswith("labels."):
            return [m for m in existing_models if m.labels.get("kfkit-task-id") == filter.split('"')[1]]
        return list(existing_models)

    def upload(**kwargs):
        rec.calls.append(("Model.upload", kwargs))
        return FakeModel(rec)

    def endpoint_create(**kwargs):
        rec.calls.append(("Endpoint.create", kwargs))
        return FakeEndpoint(rec)

    def endpoint_list(filter=None, **kwargs):
        rec.calls.append(("Endpoint.list", filter))
        rec.calls.append(("Endpoint.list-where", kwargs))
        return list(endpoints)

    Model.list.side_effect = model_list
    Model.upload.side_effect = upload
    Model.side_effect = lambda model_name, **kw: rec.calls.append(("Model", model_name)) or FakeModel(rec, resource=model_name)
    Endpoint.list.side_effect = endpoint_list
    Endpoint.create.side_effect = endpoint_create
    BatchPredictionJob.create.side_effect = lambda **kw: rec.calls.append(("BatchPredictionJob.create", kw))
    return SimpleNamespace(Model=Model, Endpoint=Endpoint, BatchPredictionJob=BatchPredictionJob)


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
    assert endpoint.gca_resource.description == PREVIOUS_SPLIT_PREFIX + json.dumps({"d1": 0, "d2": 100})


def test_rollback_restores_the_recorded_split_and_records_the_split_it_replaced():
    rec = Recorder()
    deployed = [SimpleNamespace(id="d2", create_time="t2"), SimpleNamespace(id="d3", create_time="t3")]
    endpoint = FakeEndpoint(rec, split={"d2": 10, "d3": 90}, deployed=deployed,
                            description=PREVIOUS_SPLIT_PREFIX + json.dumps({"d2": 100}))
    vertex = VertexAdapter("p", "asia-east1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    restored = vertex.rollback("penguins")

    assert restored == {"d2": 100} and endpoint.traffic_split == {"d2": 100}
    assert ("Endpoint.list", 'display_name="penguins"') in rec.calls
    assert ("Endpoint.list-where", {"project": "p", "location": "asia-east1"}) in rec.calls
    update = next(c[1] for c in rec.calls if c[0] == "update")
    assert update == {"traffic_split": {"d2": 100},
                      "description": PREVIOUS_SPLIT_PREFIX + json.dumps({"d2": 10, "d3": 90})}


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


def test_model_lookups_send_exactly_vertexs_filter_and_order_strings():
    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec)]))

    vertex.find_version_by_task("Task 42/x")
    vertex.model_by_alias("penguins", "champion")

    assert rec.calls[0] == ("Model.list", 'labels.kfkit-task-id="task-42-x"',
                            {"order_by": None, "project": "p", "location": "us-central1"})
    assert rec.calls[1] == ("Model.list", 'display_name="penguins"',
                            {"order_by": "create_time desc", "project": "p", "location": "us-central1"})
    assert rec.calls[2] == ("Model", f"{PARENT}@champion")


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

    upload = next(c[1] for c in rec.calls if c[0] == "Model.upload")
    assert upload["version_aliases"] == ["challenger"]
    assert upload["is_default_version"] is False
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
    old = [SimpleNamespace(id=f"d{i}", create_time=f"t{i}") for i in (3, 1, 4, 2)]  # listed out of order
    endpoint = FakeEndpoint(rec, split={"d1": 0, "d2": 0, "d3": 0, "d4": 100}, deployed=old)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    vertex.deploy(endpoint, FakeModel(rec), machine_type="n1-standard-2", min_replicas=1, max_replicas=1,
                  traffic_percent=100, keep_previous=keep_previous)

    # d4 served until now and is the newest idle version; the new one (d5) takes all the traffic
    assert [c[1] for c in rec.calls if c[0] == "undeploy"] == undeployed


def test_a_canary_deploy_sends_the_share_and_keeps_the_serving_version():
    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d1": 100}, deployed=[SimpleNamespace(id="d1", create_time="t1")])
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))
    model = FakeModel(rec, version="5")

    split = vertex.deploy(endpoint, model, machine_type="n1-standard-2", min_replicas=1, max_replicas=2,
                          traffic_percent=10, keep_previous=0)

    endpoint.deploy.assert_called_once_with(model=model, deployed_model_display_name="penguins-v5",
                                            machine_type="n1-standard-2", min_replica_count=1, max_replica_count=2,
                                            traffic_percentage=10, sync=True)
    assert split == {"d1": 90, "d2": 10}
    assert not any(c[0] == "undeploy" for c in rec.calls)


def test_vertex_batch_prediction_reads_and_writes_bigquery():
    from kfkit.adapters.vertex import batch_predict_bigquery

    rec = Recorder()
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec))

    batch_predict_bigquery(vertex, model_resource=f"{PARENT}@3", source_table="p.data.rows",
                           destination_prefix="bq://p.predictions", machine_type="n1-standard-4", replicas=2,
                           display_name="kfkit-batch")

    assert rec.calls == [("BatchPredictionJob.create", {
        "job_display_name": "kfkit-batch", "model_name": f"{PARENT}@3", "instances_format": "bigquery",
        "predictions_format": "bigquery", "bigquery_source": "bq://p.data.rows",
        "bigquery_destination_prefix": "bq://p.predictions", "machine_type": "n1-standard-4",
        "starting_replica_count": 2, "max_replica_count": 2, "sync": True, "project": "p",
        "location": "us-central1"})]


def test_upload_sends_every_argument_vertex_needs(caplog):
    rec = Recorder()
    vertex = VertexAdapter("p", "europe-west4", aiplatform=fake_aiplatform(rec, existing_models=[FakeModel(rec)]))

    vertex.upload_version(display_name="penguins", artifact_uri="/gcs/b/run/model", serving_image="img:1",
                          aliases=["challenger"], labels={"Team": "Research"}, metrics={"accuracy": 0.123456789},
                          task_id="t-1", make_default=False)

    upload = next(c[1] for c in rec.calls if c[0] == "Model.upload")
    description = 'kfkit evaluation: {"accuracy": 0.123457}'
    assert upload == {"display_name": "penguins", "artifact_uri": "gs://b/run/model", "serving_container_image_uri": "img:1",
                      "parent_model": PARENT, "is_default_version": False, "version_aliases": ["challenger"],
                      "version_description": description, "labels": {"team": "research", "kfkit-task-id": "t-1"},
                      "description": description, "sync": True, "project": "p", "location": "europe-west4"}


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


def test_idle_versions_are_undeployed_synchronously_and_never_more_than_there_are():
    rec = Recorder()
    old = [SimpleNamespace(id="d1", create_time="t1"), SimpleNamespace(id="d2", create_time="t2")]
    # d1 is deployed but missing from the split: it takes no traffic
    endpoint = FakeEndpoint(rec, split={"d2": 100}, deployed=old)
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))

    vertex.deploy(endpoint, FakeModel(rec), machine_type="m", min_replicas=1, max_replicas=1, traffic_percent=50,
                  keep_previous=0)
    vertex.deploy(endpoint, FakeModel(rec, version="3"), machine_type="m", min_replicas=1, max_replicas=1,
                  traffic_percent=50, keep_previous=5)

    assert [c[1] for c in rec.calls if c[0] == "undeploy"] == ["d1"]
    assert ("undeploy-options", {"sync": True}) in rec.calls


def test_rollback_refusals_name_the_endpoint_and_where_it_was_looked_for():
    rec = Recorder()
    bare = FakeEndpoint(rec, split={"d1": 100}, deployed=[SimpleNamespace(id="d1", create_time="t1")])

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
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec))

    batch_predict_bigquery(vertex, model_resource="m", source_table="bq://p.data.rows", destination_prefix="p.out",
                           machine_type="n1-standard-2", replicas=1, display_name="b")

    create = rec.calls[0][1]
    assert (create["bigquery_source"], create["bigquery_destination_prefix"]) == ("bq://p.data.rows", "bq://p.out")
