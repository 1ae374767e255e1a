"""The wire tier for Vertex AI: every Vertex path of kfkit's components and CLI, through the real
google-cloud-aiplatform SDK over its real gRPC transport, against tests/vertex_api.py on 127.0.0.1.

The autospec tests (test_vertex_adapter.py ...) prove the Python calls; these prove what goes over the
wire and how Vertex answers it (names with the project number, LROs, etags, label and alias rules).
"""

from __future__ import annotations

import grpc
import pytest

from tests.grpc_tls import Refused
from tests.wire import LOCATION, PARENT, PROJECT, adapter
from tests.wire import certificate, vertex_api  # noqa: F401 - the fixtures, by name

# ruff: noqa: F811 - each test names the imported vertex_api fixture as its parameter

MODEL = f"{PARENT}/models/1"


def killed(_response):
    """The step dies after Vertex did what it asked: its call never answers."""
    raise Refused(grpc.StatusCode.INTERNAL, "the step was killed")


def register(tmp_path, *, blessed=True, task_id="t1", vertex=None, **kwargs):
    from kfkit.components.register.register import register_model

    return register_model(f"gs://my-proj-models/{task_id}", model_name="penguins", backend="vertex", blessed=blessed,
                          task_id=task_id, project=PROJECT, location=LOCATION, metrics={"accuracy": 0.9},
                          labels={"pipeline-run": f"run-{task_id}"}, vertex=vertex, **kwargs)


def deploy(tmp_path, registered, *, traffic_percent=100, keep_previous=1, vertex=None, labels=None, **kwargs):
    from kfkit.components.deploy.deploy import deploy_model

    return deploy_model(registered, endpoint_name="penguins", backend="vertex", traffic_percent=traffic_percent,
                        keep_previous=keep_previous, project=PROJECT, location=LOCATION, labels=labels,
                        vertex=vertex or adapter(tmp_path), **kwargs)


def versions(fake):
    return {v.version_id: sorted(v.version_aliases) for v in fake.models["1"]["versions"].values()}


def endpoint(fake):
    return next(iter(fake.endpoints.values()))


# ---- register ---------------------------------------------------------------------------------------
def test_a_blessed_model_is_uploaded_as_version_1_with_champion_and_default_named_by_project_number(vertex_api,
                                                                                                  tmp_path):
    registered = register(tmp_path)

    assert registered["resourceName"] == f"{MODEL}@1"
    assert versions(vertex_api) == {"1": ["challenger", "champion", "default"]}
    upload = vertex_api.called("UploadModel")[0]
    assert upload.parent == f"projects/{PROJECT}/locations/{LOCATION}" and not upload.parent_model
    assert upload.model.labels == {"pipeline-run": "run-t1", "kfkit-task-id": "t1"}


def test_the_next_blessed_version_takes_champion_and_default_from_the_first(vertex_api, tmp_path):
    register(tmp_path, task_id="t1")

    registered = register(tmp_path, task_id="t2")

    assert registered["resourceName"] == f"{MODEL}@2"
    assert vertex_api.called("UploadModel")[1].parent_model == MODEL
    assert versions(vertex_api) == {"1": [], "2": ["challenger", "champion", "default"]}


def test_a_version_not_blessed_leaves_champion_and_default_where_they_were(vertex_api, tmp_path):
    from kfkit.components.register.register import champion_model_dir  # noqa: F401

    register(tmp_path, task_id="t1")

    register(tmp_path, task_id="t2", blessed=False)

    assert versions(vertex_api) == {"1": ["champion", "default"], "2": ["challenger"]}
    assert adapter(tmp_path).model_by_alias("penguins", "champion").version_id == "1"


def test_the_champion_model_dir_is_the_artifact_of_the_version_holding_champion(vertex_api, tmp_path, monkeypatch):
    from kfkit.adapters import gcs
    from kfkit.components.register.register import champion_model_dir

    register(tmp_path, task_id="t1")
    register(tmp_path, task_id="t2", blessed=False)
    monkeypatch.setattr(gcs, "readable_dir", lambda uri, cache_root: f"copy of {uri}")  # Cloud Storage: not here

    found = champion_model_dir("penguins", backend="vertex", project=PROJECT, location=LOCATION,
                               local_root=str(tmp_path / "root"))

    assert found == "copy of gs://my-proj-models/t1"
    assert vertex_api.called("GetModel")[-1].name.endswith("/models/1@champion")


def test_a_retried_registration_of_a_version_not_blessed_finds_the_version_its_first_attempt_uploaded(vertex_api,
                                                                                                     tmp_path):
    register(tmp_path, task_id="t1")
    first = register(tmp_path, task_id="t2", blessed=False)

    retried = register(tmp_path, task_id="t2", blessed=False)

    assert retried["resourceName"] == first["resourceName"] == f"{MODEL}@2" and retried["created"] is False
    assert len(vertex_api.called("UploadModel")) == 2


def test_a_registration_retried_after_its_upload_completed_reuses_the_version(vertex_api, tmp_path):
    vertex_api.after["UploadModel"] = killed
    with pytest.raises(Exception):
        register(tmp_path, task_id="t1")

    retried = register(tmp_path, task_id="t1")

    assert retried["resourceName"] == f"{MODEL}@1" and retried["created"] is False
    assert len(vertex_api.called("UploadModel")) == 1


def test_an_upload_waits_for_its_operation_through_get_operation(vertex_api, tmp_path):
    vertex_api.lro_polls = 2
    sleeps = []

    registered = register(tmp_path, vertex=adapter(tmp_path, sleeps))

    assert registered["resourceName"] == f"{MODEL}@1"
    operations = vertex_api.called("GetOperation")
    assert len(operations) >= 3 and operations[0].name.startswith(f"{MODEL}/operations/")
    assert sleeps == [1.0, 2.0]
    resources = (tmp_path / "gcp_resources").read_text()
    assert f"https://{LOCATION}-aiplatform.googleapis.com/v1/{MODEL}/operations/" in resources


# ---- explanations stored with the version -----------------------------------------------------------
def _attributions(tmp_path, importance):
    import json

    path = tmp_path / "attributions.json"
    path.write_text(json.dumps({"method": "sampled_shapley", "rows": 30, "feature_importance": importance}))
    return str(path)


def test_feature_importance_is_imported_as_an_evaluation_of_the_registered_version(vertex_api, tmp_path):
    from kfkit.components.register.register import attach_explanation

    register(tmp_path, task_id="t1")
    registered = register(tmp_path, task_id="t2", blessed=False)

    where = attach_explanation(registered, _attributions(tmp_path, {"flipper_length_mm": 0.31, "island": 0.12}),
                               task="multiclass", metrics={"accuracy": 0.97, "roc_auc": 0.99, "log_loss": 0.1},
                               project=PROJECT, location=LOCATION, vertex=adapter(tmp_path))

    (request,) = vertex_api.called("ImportModelEvaluation")
    assert request.parent == f"{MODEL}@2"
    evaluation = request.model_evaluation
    assert evaluation.metrics_schema_uri.endswith("/classification_metrics_1.0.0.yaml")
    assert dict(evaluation.metrics) == {"auRoc": 0.99, "logLoss": 0.1}
    (mean,) = evaluation.model_explanation.mean_attributions
    assert dict(mean.feature_attributions) == {"flipper_length_mm": 0.31, "island": 0.12}
    assert list(vertex_api.evaluations) == [("1", "2")], "the version's evaluation, not the default version's"
    assert where == f"the evaluation {vertex_api.evaluations[('1', '2')][0].name}"


def test_a_retried_explain_step_finds_the_evaluation_it_imported(vertex_api, tmp_path):
    from kfkit.components.register.register import attach_explanation

    registered = register(tmp_path, task_id="t1")
    path = _attributions(tmp_path, {"rate": 2.0})
    vertex_api.after["ImportModelEvaluation"] = killed
    with pytest.raises(Exception):
        attach_explanation(registered, path, task="regression", metrics={"rmse": 1.5}, project=PROJECT,
                           location=LOCATION, vertex=adapter(tmp_path))

    attach_explanation(registered, path, task="regression", metrics={"rmse": 1.5}, project=PROJECT,
                       location=LOCATION, vertex=adapter(tmp_path))

    (evaluation,) = vertex_api.evaluations[("1", "1")]
    assert evaluation.metrics_schema_uri.endswith("/regression_metrics_1.0.0.yaml")
    assert dict(evaluation.metrics) == {"rootMeanSquaredError": 1.5}
    assert len(vertex_api.called("ImportModelEvaluation")) == 1


# ---- deploy, promote, rollback ---------------------------------------------------------------------
def test_a_first_deploy_creates_the_endpoint_and_gives_the_version_all_the_traffic(vertex_api, tmp_path):
    registered = register(tmp_path)

    deployed = deploy(tmp_path, registered)

    live = endpoint(vertex_api)
    assert deployed["resourceName"] == live.name and live.name.startswith(f"{PARENT}/endpoints/")
    (only,) = live.deployed_models
    assert (only.model, only.model_version_id) == (MODEL, "1")
    assert dict(live.traffic_split) == {only.id: 100} == deployed["traffic_split"]
    assert vertex_api.called("DeployModel")[0].traffic_split == {"0": 100}


def test_a_new_endpoint_logs_requests_to_the_table_and_carries_the_labels_as_vertex_takes_them(vertex_api,
                                                                                                 tmp_path):
    deploy(tmp_path, register(tmp_path), labels={"Team": "ML Platform"}, logging_table=f"bq://{PROJECT}.logs.penguins",
           logging_sample_rate=0.5)

    created = vertex_api.called("CreateEndpoint")[0].endpoint
    logging = created.predict_request_response_logging_config
    assert (logging.enabled, logging.sampling_rate) == (True, 0.5)
    assert logging.bigquery_destination.output_uri == f"bq://{PROJECT}.logs.penguins"
    assert dict(endpoint(vertex_api).labels) == {"team": "ml-platform"}


def test_a_canary_deploy_splits_the_traffic_and_remembers_the_previous_split_for_rollback(vertex_api, tmp_path):
    deploy(tmp_path, register(tmp_path, task_id="t1"))
    first = endpoint(vertex_api).deployed_models[0].id

    result = deploy(tmp_path, register(tmp_path, task_id="t2"), traffic_percent=10)

    live = endpoint(vertex_api)
    canary = live.deployed_models[1].id
    assert dict(live.traffic_split) == {first: 90, canary: 10} == result["traffic_split"]
    assert live.labels[f"kfkit-prev-{first}"] == "100"


def test_a_deploy_retried_after_its_model_went_live_still_has_the_previous_split_recorded(vertex_api, tmp_path):
    deploy(tmp_path, register(tmp_path, task_id="t1"))
    first = endpoint(vertex_api).deployed_models[0].id
    second = register(tmp_path, task_id="t2")
    vertex_api.after["DeployModel"] = killed
    with pytest.raises(Exception):
        deploy(tmp_path, second, traffic_percent=10)

    deploy(tmp_path, second, traffic_percent=10)

    live = endpoint(vertex_api)
    assert len(live.deployed_models) == 2
    assert {k: v for k, v in live.labels.items() if k.startswith("kfkit-prev-")} == {f"kfkit-prev-{first}": "100"}


def test_keep_previous_undeploys_the_oldest_idle_versions(vertex_api, tmp_path):
    deploy(tmp_path, register(tmp_path, task_id="t1"), keep_previous=1)
    oldest = endpoint(vertex_api).deployed_models[0].id

    for task in ("t2", "t3"):
        deploy(tmp_path, register(tmp_path, task_id=task), keep_previous=1)

    live = endpoint(vertex_api)
    assert [d.model_version_id for d in live.deployed_models] == ["2", "3"]
    assert {k: v for k, v in live.traffic_split.items() if v} == {live.deployed_models[1].id: 100}
    assert [r.deployed_model_id for r in vertex_api.called("UndeployModel")] == [oldest]


def test_promote_rollback_and_its_undo_from_the_cli(vertex_api, tmp_path, capsys):
    from kfkit import cli

    deploy(tmp_path, register(tmp_path, task_id="t1"))
    deploy(tmp_path, register(tmp_path, task_id="t2"), traffic_percent=10)
    old, new = (d.id for d in endpoint(vertex_api).deployed_models)
    where = ["--backend", "vertex", "--project", PROJECT, "--region", LOCATION, "--endpoint", "penguins"]

    assert cli.main(["promote", *where]) == 0
    assert dict(endpoint(vertex_api).traffic_split) == {new: 100}
    assert cli.main(["rollback", *where]) == 0
    assert dict(endpoint(vertex_api).traffic_split) == {old: 90, new: 10}
    assert cli.main(["rollback", *where, "--undo"]) == 0
    assert dict(endpoint(vertex_api).traffic_split) == {new: 100}
    assert f"traffic split now {{'{new}': 100}}" in capsys.readouterr().out


def test_rollback_leaves_out_an_idle_version_undeployed_since(vertex_api, tmp_path, capsys):
    from kfkit import cli

    for task in ("t1", "t2", "t3"):  # each at 100%: the oldest idle one is undeployed by the third
        deploy(tmp_path, register(tmp_path, task_id=task), keep_previous=1)
    second, third = (d.id for d in endpoint(vertex_api).deployed_models)

    code = cli.main(["rollback", "--backend", "vertex", "--project", PROJECT, "--region", LOCATION,
                     "--endpoint", "penguins"])

    assert code == 0, capsys.readouterr().err
    assert {k: v for k, v in endpoint(vertex_api).traffic_split.items() if v} == {second: 100}


def test_an_update_with_a_stale_etag_is_refused_as_vertex_refuses_it(vertex_api, tmp_path):
    from google.api_core import exceptions
    from google.cloud import aiplatform

    deploy(tmp_path, register(tmp_path))
    (read,) = aiplatform.Endpoint.list()  # a whole endpoint, its etag with it
    deploy(tmp_path, register(tmp_path, task_id="t2"), traffic_percent=10)  # changes the endpoint

    with pytest.raises(exceptions.Aborted):
        read.update(labels={"team": "ml"})


# ---- labels on versions ------------------------------------------------------------------------------
def test_a_version_tag_lands_on_that_version_only(vertex_api, tmp_path):
    from google.cloud import aiplatform

    register(tmp_path, task_id="t1")
    register(tmp_path, task_id="t2")

    adapter(tmp_path).tag_version(MODEL, "2", "kfkit-canary", "promoted")

    def labels(version):
        return dict(aiplatform.Model(MODEL, version=version).labels)

    assert labels("2")["kfkit-canary"] == "promoted"
    assert "kfkit-canary" not in labels("1")
    assert labels("1")["kfkit-task-id"] == "t1" and labels("2")["kfkit-task-id"] == "t2"


def test_set_alias_moves_champion_to_the_version(vertex_api, tmp_path):
    register(tmp_path, task_id="t1")
    register(tmp_path, task_id="t2", blessed=False)

    adapter(tmp_path).set_alias(MODEL, "2", "champion")

    assert versions(vertex_api) == {"1": ["default"], "2": ["challenger", "champion"]}


# ---- batch prediction --------------------------------------------------------------------------------
class PredictionTables:
    """BigQuery as far as batch prediction needs it: tables in a local warehouse."""

    def __init__(self, root):
        import pyarrow as pa

        from kfkit.warehouse.local import LocalWarehouse

        self.warehouse = LocalWarehouse(root, project=PROJECT)
        self.warehouse.write_table(f"{PROJECT}.scoring.penguins", pa.table({"bill_length_mm": [39.1, 46.5, 50.0]}))

    def create_predictions(self, source: str, destination: str, version: str) -> None:
        import pyarrow as pa

        rows = pa.Table.from_batches(list(self.warehouse.query_batches(f"SELECT * FROM `{source}`")))
        self.warehouse.write_table(destination, rows.append_column("model_version", pa.array([version] * len(rows))))

    def rows(self, uri: str) -> list[dict]:
        table = uri.removeprefix("bq://")
        return [r for b in self.warehouse.query_batches(f"SELECT * FROM `{table}`") for r in b.to_pylist()]


def test_batch_prediction_writes_the_uri_of_the_table_vertex_created(vertex_api, tmp_path):
    from kfkit.components.batch_predict.batch_predict import batch_predict

    vertex_api.warehouse = tables = PredictionTables(tmp_path / "bq")
    register(tmp_path)
    vertex_api.job_steps = 2
    sleeps = []

    result = batch_predict(f"{PROJECT}.scoring.penguins", f"{PROJECT}.predictions", model_name="penguins",
                           backend="vertex", project=PROJECT, location=LOCATION, task_id="b1",
                           vertex=adapter(tmp_path, sleeps))

    job = vertex_api.called("CreateBatchPredictionJob")[0].batch_prediction_job
    assert job.model == f"{MODEL}@1" or job.model.endswith("@1")
    assert job.output_config.bigquery_destination.output_uri == f"bq://{PROJECT}.predictions"
    assert result["uri"].startswith(f"bq://{PROJECT}.predictions.predictions_")
    assert [r["model_version"] for r in tables.rows(result["uri"])] == ["1", "1", "1"]
    assert (result["projectId"], result["datasetId"]) == (PROJECT, "predictions")
    assert sleeps == [1.0]


def test_batch_prediction_refuses_a_table_as_its_destination_before_sending_anything(vertex_api, tmp_path):
    from kfkit.components.batch_predict.batch_predict import batch_predict
    from kfkit.errors import ConfigError

    register(tmp_path)

    with pytest.raises(ConfigError, match="destination_table .* names a table"):
        batch_predict(f"{PROJECT}.scoring.penguins", f"{PROJECT}.predictions.penguins", model_name="penguins",
                      backend="vertex", project=PROJECT, location=LOCATION, vertex=adapter(tmp_path))
    assert not vertex_api.called("CreateBatchPredictionJob")


def test_a_retried_batch_prediction_waits_for_the_job_its_first_attempt_started(vertex_api, tmp_path):
    from kfkit.components.batch_predict.batch_predict import batch_predict

    register(tmp_path)
    vertex_api.job_steps = 3
    vertex_api.after["CreateBatchPredictionJob"] = killed
    kwargs = dict(model_name="penguins", backend="vertex", project=PROJECT, location=LOCATION, task_id="b1")
    with pytest.raises(Exception):
        batch_predict(f"{PROJECT}.scoring.penguins", f"{PROJECT}.predictions", vertex=adapter(tmp_path), **kwargs)

    result = batch_predict(f"{PROJECT}.scoring.penguins", f"{PROJECT}.predictions", vertex=adapter(tmp_path),
                           **kwargs)

    assert len(vertex_api.called("CreateBatchPredictionJob")) == 1
    assert result["job"] == next(iter(vertex_api.jobs))


def test_a_cancelled_run_cancels_its_batch_prediction_job_on_vertex(vertex_api, tmp_path):
    from kfkit.adapters.vertex import VertexAdapter
    from kfkit.cloud_jobs import CloudJobs
    from kfkit.components.batch_predict.batch_predict import batch_predict
    from kfkit.errors import ConfigError

    register(tmp_path)
    vertex_api.job_steps = 100  # still running when the run is cancelled
    # the run is cancelled while the step waits: what its SIGTERM handler does (kfkit.cloud_jobs)
    jobs = CloudJobs(str(tmp_path / "gcp_resources"), sleep=lambda seconds: jobs.cancel_running())

    with pytest.raises(ConfigError, match="ended JOB_STATE_CANCELLED"):
        batch_predict(f"{PROJECT}.scoring.penguins", f"{PROJECT}.predictions", model_name="penguins",
                      backend="vertex", project=PROJECT, location=LOCATION,
                      vertex=VertexAdapter(PROJECT, LOCATION, jobs=jobs))

    (cancelled,) = vertex_api.called("CancelBatchPredictionJob")
    assert cancelled.name == next(iter(vertex_api.jobs))


# ---- tuning ------------------------------------------------------------------------------------------
def test_tuning_on_vertex_runs_its_trials_with_a_staging_bucket_under_the_pipeline_root(vertex_api, tmp_path,
                                                                                      monkeypatch):
    from kfkit.components.tune import vertex as tune_vertex
    from kfkit.components.tune.space import parse_space

    written = {}
    monkeypatch.setattr(tune_vertex, "write_config", lambda path, config: written.update({path: config}))
    paths = {k: f"/gcs/my-proj-root/run/{k}" for k in ("train_data", "eval_data", "statistics", "schema")}
    space = parse_space({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                         "epochs": {"type": "int", "low": 5, "high": 40},
                         "batch_size": {"type": "categorical", "choices": [32, 64]},
                         "hidden_units": {"type": "categorical", "choices": [[64, 32], [32]]}})

    result = tune_vertex.tune_on_vertex(
        {**paths, "label": "species"}, space, base={"epochs": 3}, metric="accuracy", goal="maximize", max_trials=3,
        parallelism=1, project=PROJECT, location=LOCATION, machine_type="n1-standard-4",
        image_uri="us-docker.pkg.dev/my-proj/kfkit/trainer:1", config_dir="/gcs/my-proj-root/run/tune",
        display_name="kfkit-tune", labels={"pipeline-run": "Run-1"}, vertex=adapter(tmp_path))

    request = vertex_api.called("CreateHyperparameterTuningJob")[0].hyperparameter_tuning_job
    spec = request.trial_job_spec
    assert spec.base_output_directory.output_uri_prefix.startswith("gs://my-proj-root/run/tune/")
    assert list(spec.worker_pool_specs[0].container_spec.command)[-1] == "/gcs/my-proj-root/run/tune/trial_config.json"
    assert request.labels == {"pipeline-run": "run-1"}
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    # the fake's last trial, the highest of each range and the last choice, is its best
    assert result.best_value == pytest.approx(0.9)
    assert result.best == {"learning_rate": pytest.approx(0.1), "epochs": 40, "batch_size": 64, "hidden_units": [32]}


# ---- submit and schedule ------------------------------------------------------------------------------
@pytest.fixture
def no_bucket_creation(monkeypatch):
    # PipelineJob.submit checks (and creates) the pipeline root's bucket through Cloud Storage, which this
    # tier does not fake: its own errors are only logged by the SDK, but it must not reach the network
    from google.cloud.aiplatform.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                        lambda **kwargs: None)


def test_kfkit_submit_sends_a_pipeline_job_the_sdk_validated_and_waits_for_it(vertex_api, no_bucket_creation,
                                                                              capsys):
    from kfkit import cli

    vertex_api.job_steps = 1

    code = cli.main(["submit", "training", "--project", PROJECT, "--region", LOCATION,
                     "--pipeline-root", "gs://my-proj-root/pipelines", "--param", "epochs=3", "--param",
                     "backend=bigquery", "--param", f"project={PROJECT}", "--labels", "team=ml", "--wait"])

    assert code == 0
    created = vertex_api.called("CreatePipelineJob")[0]
    assert created.parent == f"projects/{PROJECT}/locations/{LOCATION}"
    job = created.pipeline_job
    assert job.runtime_config.gcs_output_directory == "gs://my-proj-root/pipelines"
    assert dict(job.runtime_config.parameter_values)["epochs"] == 3
    assert job.labels["team"] == "ml"
    out = capsys.readouterr().out
    assert f"submitted {PARENT}/pipelineJobs/" in out and "succeeded" in out


def test_kfkit_submit_labels_follow_the_label_rules(vertex_api, no_bucket_creation):
    from kfkit import cli

    code = cli.main(["submit", "training", "--project", PROJECT, "--region", LOCATION,
                     "--pipeline-root", "gs://my-proj-root/pipelines", "--labels", "Team=ML Platform",
                     "--labels", "cost.center=R&D"])

    assert code == 0
    labels = vertex_api.called("CreatePipelineJob")[0].pipeline_job.labels
    assert labels["team"] == "ml-platform" and labels["cost-center"] == "r-d"


def test_kfkit_schedule_creates_a_schedule_of_the_pipeline_job(vertex_api, no_bucket_creation, capsys):
    from kfkit import cli

    code = cli.main(["schedule", "training", "--project", PROJECT, "--region", LOCATION,
                     "--pipeline-root", "gs://my-proj-root/pipelines", "--cron", "TZ=Europe/Paris 0 6 * * *"])

    assert code == 0
    schedule = vertex_api.called("CreateSchedule")[0].schedule
    assert schedule.cron == "TZ=Europe/Paris 0 6 * * *" and schedule.max_concurrent_run_count == 1
    assert schedule.create_pipeline_job_request.pipeline_job.runtime_config.gcs_output_directory == \
        "gs://my-proj-root/pipelines"
    assert f"{PARENT}/schedules/" in capsys.readouterr().out


# ---- configuration ------------------------------------------------------------------------------------
def test_the_adapter_follows_aiplatform_init_api_endpoint_without_the_variable(vertex_api, tmp_path, monkeypatch):
    from google.cloud import aiplatform

    monkeypatch.delenv("KFKIT_VERTEX_API_ENDPOINT")
    aiplatform.init(project=PROJECT, api_endpoint=vertex_api.api_endpoint)

    assert register(tmp_path)["resourceName"] == f"{MODEL}@1"


def test_the_fake_refuses_a_request_field_its_service_does_not_know(vertex_api, certificate):
    from google.cloud.aiplatform_v1.types import model_service

    cert, _, _ = certificate
    known = model_service.GetModelRequest.serialize(model_service.GetModelRequest(name=MODEL))
    unknown = known + b"\xf8\x06\x01"  # field 111, a varint: not in GetModelRequest
    channel = grpc.secure_channel(vertex_api.api_endpoint, grpc.ssl_channel_credentials(cert))
    get = channel.unary_unary("/google.cloud.aiplatform.v1.ModelService/GetModel")

    with pytest.raises(grpc.RpcError) as refused:
        get(unknown, timeout=10)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "#111" in refused.value.details()
    channel.close()
