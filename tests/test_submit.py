"""Submission checked at the SDK boundary: the real aiplatform.PipelineJob is built (its client-side
validation runs); only submit/create_schedule, which would call Google Cloud, are recorded."""

from types import SimpleNamespace

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform as real_aiplatform

from kfkit import cli
from kfkit.runs import submit
from kfkit.adapters.kfp_backend import KfpTarget, download_template, parse_registry_url
from kfkit.adapters.vertex_pipelines import VertexSubmission, wait
from kfkit.errors import ConfigError, KfkitError
from kfkit.params import load_file

SUB = VertexSubmission(project="kfkit-test", region="europe-west4", pipeline_root="gs://bucket/root",
                       service_account="pipelines@kfkit-test.iam.gserviceaccount.com",
                       network="projects/123/global/networks/vpc",
                       encryption_key="projects/p/locations/l/keyRings/r/cryptoKeys/k",
                       labels={"team": "ml"}, enable_caching=False)


class RecordingJob:
    """Builds the real aiplatform.PipelineJob (anonymous credentials), records what would be sent."""

    sent = []

    def __new__(cls, **kwargs):
        kwargs["credentials"] = AnonymousCredentials()
        job = real_aiplatform.PipelineJob(**kwargs)
        RecordingJob.sent.append(("init", kwargs))
        job.submit = lambda **kw: RecordingJob.sent.append(("submit", kw))
        job.create_schedule = lambda **kw: (RecordingJob.sent.append(("create_schedule", kw)) or
                                            SimpleNamespace(resource_name="projects/p/locations/l/schedules/1"))
        job._gca_resource.name = "projects/kfkit-test/locations/europe-west4/pipelineJobs/fake"
        return job


@pytest.fixture
def fake_aiplatform():
    RecordingJob.sent = []
    return SimpleNamespace(PipelineJob=RecordingJob)


def test_submit_builds_the_pipeline_job_with_service_account_network_and_key(fake_aiplatform):
    job = submit.submit_vertex("training", {"epochs": 3, "backend": "bigquery", "project": "kfkit-test"}, SUB,
                               aiplatform=fake_aiplatform, echo=lambda *_: None)

    (_, init), (_, sent) = RecordingJob.sent
    assert init["pipeline_root"] == "gs://bucket/root" and init["enable_caching"] is False
    assert init["encryption_spec_key_name"] == SUB.encryption_key and init["labels"] == {"team": "ml"}
    assert init["project"] == "kfkit-test" and init["location"] == "europe-west4"
    assert sent == {"service_account": SUB.service_account, "network": SUB.network}
    runtime = job._gca_resource.runtime_config
    assert runtime.gcs_output_directory == "gs://bucket/root"
    assert dict(runtime.parameter_values)["epochs"] == 3
    assert job._gca_resource.encryption_spec.kms_key_name == SUB.encryption_key


def test_submit_with_a_parameter_file_passes_vertex_validation(fake_aiplatform, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("backend: bigquery\nproject: kfkit-test\nquery: SELECT 1 AS species\nhidden_units: [8]\n")
    job = submit.submit_vertex("training", load_file(params), SUB, aiplatform=fake_aiplatform, echo=lambda *_: None)
    values = dict(job._gca_resource.runtime_config.parameter_values)
    assert values["backend"] == "bigquery" and list(values["hidden_units"]) == [8.0]


@pytest.mark.parametrize("values, message", [
    ({"epochz": 3}, "has no parameter 'epochz'"),
    ({"epochs": "three"}, "parameter 'epochs' of pipeline 'training' expects integer, got 'three'"),
])
def test_wrong_parameter_is_refused_before_anything_is_sent(fake_aiplatform, values, message):
    with pytest.raises(ConfigError, match=message):
        submit.submit_vertex("training", values, SUB, aiplatform=fake_aiplatform)
    assert RecordingJob.sent == []


def test_schedule_creates_a_pipeline_job_schedule_with_the_cron(fake_aiplatform):
    submit.schedule_vertex("monitoring", {"backend": "bigquery"}, SUB, "0 6 * * *", aiplatform=fake_aiplatform,
                           echo=lambda *_: None)
    _, scheduled = RecordingJob.sent[-1]
    assert scheduled == {"display_name": "kfkit-monitoring-schedule", "cron": "0 6 * * *",
                         "max_concurrent_run_count": 1, "service_account": SUB.service_account, "network": SUB.network}


def test_wait_prints_task_states_and_fails_with_the_failing_task_error():
    states = iter(["RUNNING", "FAILED"])
    task_state = {"v": "RUNNING"}

    class Job:
        resource_name = "projects/p/locations/l/pipelineJobs/j"

        @property
        def state(self):
            return SimpleNamespace(name="PIPELINE_STATE_RUNNING" if task_state["v"] == "RUNNING" else "PIPELINE_STATE_FAILED")

        def _sync_gca_resource(self):
            task_state["v"] = next(states)

        @property
        def task_details(self):
            return [SimpleNamespace(task_name="ingest", state=SimpleNamespace(name=task_state["v"]),
                                    error=SimpleNamespace(message="Not found: Table p:d.t"))]

    lines = []
    with pytest.raises(KfkitError, match="ended PIPELINE_STATE_FAILED \\(task ingest: Not found: Table p:d.t\\)"):
        wait(Job(), echo=lines.append, sleep=lambda s: None)
    assert [line.split()[-1] for line in lines] == ["RUNNING", "FAILED"]


@pytest.mark.parametrize("ran, outcome", [
    ({"evaluate-model": "SUCCEEDED", "register-model": "SUCCEEDED", "deploy-model": "SUCCEEDED"},
     "Outcome: BLESSED: the model was registered and deployed"),
    ({"evaluate-model": "SUCCEEDED", "register-model": "SKIPPED", "deploy-model": "SKIPPED"},
     "Outcome: NOT BLESSED: register and deploy did not run"),
])
def test_wait_ends_with_what_the_job_decided(ran, outcome):
    job = SimpleNamespace(resource_name="projects/p/locations/l/pipelineJobs/j",
                          state=SimpleNamespace(name="PIPELINE_STATE_SUCCEEDED"),
                          task_details=[SimpleNamespace(task_name=n, state=SimpleNamespace(name=s), error=None)
                                        for n, s in ran.items()])
    lines = []

    wait(job, echo=lines.append, sleep=lambda s: None)

    assert lines[-2].startswith("Tasks: ") and lines[-1].startswith(outcome)


def test_submit_to_kubeflow_pipelines_uses_kfp_client():
    class Client:
        calls = []

        def create_run_from_pipeline_package(self, path, **kwargs):
            Client.calls.append((path, kwargs))
            return SimpleNamespace(run_id="run-1")

    submit.submit_kfp("training", {"epochs": 2}, KfpTarget("http://kfp.example"), experiment="penguins",
                      client=Client(), echo=lambda *_: None)
    path, kwargs = Client.calls[0]
    assert path.endswith("training.yaml")
    assert kwargs == {"arguments": {"epochs": 2}, "run_name": "kfkit-training", "experiment_name": "penguins",
                      "namespace": None, "pipeline_root": None, "enable_caching": None, "service_account": None}


def test_templates_come_from_artifact_registry_by_tag(tmp_path):
    class Registry:
        def download_pipeline(self, package_name, tag, file_name):
            self.args = (package_name, tag)
            open(file_name, "w").write("x")

    registry = Registry()
    path = download_template("https://europe-west4-kfp.pkg.dev/proj/kfkit-templates/kfkit-training:main", tmp_path, registry)
    assert registry.args == ("kfkit-training", "main") and path.exists()
    assert parse_registry_url("https://us-kfp.pkg.dev/p/r/pkg")["tag"] == "latest"
    with pytest.raises(ConfigError, match="not an Artifact Registry"):
        parse_registry_url("https://example.com/pkg")


def test_cli_submit_without_project_says_what_is_missing(capsys):
    assert cli.main(["submit", "training"]) == 1
    assert "needs --project and --pipeline-root" in capsys.readouterr().err


def test_step_env_reaches_every_step_of_a_kubeflow_submission():
    import yaml

    class Client:
        sent = None

        def create_run_from_pipeline_package(self, path, **kwargs):
            Client.sent = yaml.safe_load(open(path))
            return SimpleNamespace(run_id="run-1")

    submit.submit_kfp("training", {}, KfpTarget("http://kfp.example"), client=Client(), echo=lambda *_: None,
                      step_env={"MLFLOW_TRACKING_URI": "http://mlflow.kubeflow:5000"})

    executors = Client.sent["deploymentSpec"]["executors"]
    assert len(executors) >= 8
    assert all(e["container"]["env"] == [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.kubeflow:5000"}]
               for e in executors.values())


def test_step_env_on_a_given_template_writes_a_copy_and_replaces_a_variable_of_the_same_name(tmp_path):
    import yaml

    from kfkit.runs.compile import compile_pipeline

    original = compile_pipeline("batch-prediction", tmp_path / "given.yaml", {"A": "1", "B": "2"})
    before = original.read_text()

    work = tmp_path / "work"
    work.mkdir()

    path = submit.template_for("batch-prediction", str(original), work, {"A": "3"})

    assert original.read_text() == before
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    assert all(e["container"]["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]
               for e in executors.values())


@pytest.mark.parametrize("item", ["NOEQUALS", "=x", "1A=x", "A-B=x"])
def test_cli_refuses_a_step_env_that_is_not_name_equals_value(item, capsys):
    code = cli.main(["compile", "--output", "/nonexistent/never", "--step-env", item])

    assert code == 1
    assert f"--step-env takes NAME=VALUE with NAME a variable name, got {item!r}" in capsys.readouterr().err
