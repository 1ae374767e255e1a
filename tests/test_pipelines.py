"""Pipelines end to end through kfp.local, compiled templates through the Vertex SDK's own checks,
and the CLI a user types."""

import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from kfkit import pipelines
from kfkit import cli
from kfkit.runs.compile import compile_all
from kfkit.runs.local import PipelineFailed, run_local

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out)
    return out


def vertex_job(template: Path, values: dict):
    return aiplatform.PipelineJob(display_name="kfkit-test", template_path=str(template),
                                  pipeline_root="gs://kfkit-test-bucket/root", parameter_values=values,
                                  project="kfkit-test", location="us-central1",
                                  credentials=AnonymousCredentials(), enable_caching=False)


@pytest.mark.parametrize("name", sorted(pipelines.PIPELINES))
def test_every_compiled_pipeline_passes_vertex_client_validation(compiled, name):
    template = compiled / "pipelines" / f"{name}.yaml"

    inputs = pipelines.load(name).component_spec.inputs
    wanted = {"backend": "bigquery", "project": "kfkit-test", "train_fraction": 0.7, "eval_fraction": 0.15,
              "test_fraction": 0.15, "window_hours": 6.0, "model_alias": "challenger"}

    job = vertex_job(template, {})
    custom = vertex_job(template, {k: v for k, v in wanted.items() if k in inputs})

    assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == f"kfkit-{name}"
    assert dict(custom._gca_resource.runtime_config.parameter_values)["backend"] == "bigquery"


def test_vertex_refuses_unknown_parameter_names(compiled):
    with pytest.raises(ValueError, match="nope is not found"):
        vertex_job(compiled / "pipelines" / "training.yaml", {"nope": 1})


def test_component_specs_load_back_with_kfp(compiled):
    from kfp import components

    for spec in (compiled / "components").glob("*.yaml"):
        component = components.load_component_from_file(str(spec))
        assert component.component_spec.implementation.container.image.startswith("ghcr.io/kfkit/kfkit-")


def test_compile_names_the_images_given_on_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kfkit.cli", "compile", "--output", str(tmp_path),
                           "--image-registry", "europe-docker.pkg.dev/p/r", "--image-tag", "abc123", "--no-catalog"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load((tmp_path / "components" / "ingest.yaml").read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-docker.pkg.dev/p/r/kfkit-runtime:abc123"}


def test_ingest_component_outputs_a_google_bqtable(compiled):
    spec = yaml.safe_load((compiled / "components" / "ingest.yaml").read_text())
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert outputs["destination_table"]["artifactType"]["schemaTitle"] == "google.BQTable"
    assert outputs["train_data"]["artifactType"]["schemaTitle"] == "system.Dataset"


@pytest.mark.slow
def test_training_pipeline_runs_end_to_end_and_blesses_a_good_model(tmp_path, capsys):
    code = cli.main(["run", "training", "--local", "--local-root", str(tmp_path)])

    assert code == 0
    printed = capsys.readouterr().out
    assert "Pipeline 'training' succeeded" in printed and ": BLESSED" in printed
    assert "Registered models:/penguins/1 (version 1; aliases challenger, champion)" in printed
    assert "Deployed to endpoint penguins (revision 1)" in printed
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    stats = json.loads((run_dir / "validate-data" / "statistics").read_text())
    assert stats["label"] == "species" and stats["rows"] > 200
    assert (run_dir / "validate-data" / "report").read_text().startswith("<!doctype html>")
    ingest_out = json.loads((run_dir / "bigquery-query-to-dataset" / "executor_output.json").read_text())
    train_meta = ingest_out["artifacts"]["train_data"]["artifacts"][0]["metadata"]
    assert train_meta["rows"] == stats["rows"] and train_meta["format"] == "parquet"
    assert (run_dir / "train-tensorflow-model" / "model" / "saved_model.pb").exists()
    evaluation = json.loads((run_dir / "evaluate-model" / "executor_output.json").read_text())
    assert evaluation["parameterValues"]["Output"] is True
    assert "meets every threshold" in (run_dir / "evaluate-model" / "reason").read_text()
    card = (run_dir / "write-model-card" / "model_card").read_text()
    assert "multiclass on label `species`" in card and "| accuracy |" in card
    # the outcome is the product: a few lines, no colour codes in a non-terminal, only real paths
    assert "\x1b[" not in printed and len(printed.splitlines()) < 30
    assert "executorInput" not in printed
    uris = re.findall(r"file://\S+", printed)
    assert uris and all(Path(urllib.parse.urlparse(u).path).exists() for u in uris)
    assert all(u.endswith(".html") for u in uris)
    assert "<table>" in (run_dir / "reports" / "model-card.html").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["decision"] == "BLESSED" and summary["status"] == "succeeded"
    assert all(Path(step["log"]).exists() for step in summary["steps"])
    assert cli.main(["runs", "--local-root", str(tmp_path)]) == 0
    assert run_dir.name in capsys.readouterr().out
    assert cli.main(["runs", "show", run_dir.name, "--local-root", str(tmp_path)]) == 0
    assert "Registered models:/penguins/1" in capsys.readouterr().out
    run = _mlflow_runs(tmp_path, "kfkit-training")[0]
    assert run.data.tags["kfkit.decision"] == "BLESSED" and run.data.tags["kfkit.data_snapshot"]
    assert run.data.params["epochs"] == "30" and run.data.params["label_column"] == "species"
    assert run.data.metrics["evaluate-model.accuracy"] > 0.8 and "train-tensorflow-model.seconds" in run.data.metrics
    version = _mlflow_client(tmp_path).get_model_version("penguins", "1")
    assert version.tags["kfkit.pipeline_run"] == run.info.run_id


def _mlflow_client(root):
    from mlflow import MlflowClient

    from kfkit.adapters.mlflow_registry import tracking_uri
    return MlflowClient(tracking_uri=tracking_uri(root), registry_uri=tracking_uri(root))


def _mlflow_runs(root, experiment):
    client = _mlflow_client(root)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow
def test_a_training_run_with_slices_and_explain_stores_feature_importance_with_its_version(tmp_path):
    summary = run_local("training", {"epochs": 3, "slicing_specs": '[{"feature_keys": ["island"]}]',
                                     "explain": True}, str(tmp_path))

    slices = json.loads((summary.run_dir / "evaluate-model" / "slices").read_text())
    # the test split's islands, one slice each (the penguins table has three)
    assert {tuple(s["slice"]["sliceSpec"]["configs"]) for s in slices} == {("island",)} and 2 <= len(slices) <= 3
    assert {t.name for t in summary.tasks} >= {"register-model", "explain-model"}
    explained = json.loads((summary.run_dir / "explain-model" / "attributions").read_text())
    version = _mlflow_client(tmp_path).get_model_version("penguins", "1")
    stored = json.loads(version.tags["kfkit.feature_importance"])
    assert stored == {k: round(v, 6) for k, v in explained["feature_importance"].items()}
    recipe = json.loads((summary.run_dir / "record-recipe" / "recipe").read_text())
    assert recipe["explain"] is True and recipe["slicing_specs"] == '[{"feature_keys": ["island"]}]'


@pytest.mark.slow
def test_model_below_the_thresholds_is_not_blessed_and_gated_steps_do_not_run(tmp_path):
    summary = run_local("training", {"epochs": 1, "hidden_units": [2], "learning_rate": 0.0001,
                                     "min_accuracy": 0.9}, str(tmp_path))

    evaluation = json.loads((summary.run_dir / "evaluate-model" / "executor_output.json").read_text())
    assert evaluation["parameterValues"]["Output"] is False
    assert (summary.run_dir / "evaluate-model" / "reason").read_text().startswith("below the thresholds: accuracy")
    assert not (summary.run_dir / "write-model-card").exists()
    assert [t.name for t in summary.tasks][-1] == "evaluate-model"
    rendered = summary.render()
    assert summary.outcome["decision"] == "NOT BLESSED"
    assert "Model not blessed: below the thresholds: accuracy" in rendered
    assert "Not registered, not deployed" in rendered
    [run] = _mlflow_runs(tmp_path, "kfkit-training")
    assert run.data.tags["kfkit.decision"] == "NOT BLESSED" and run.data.params["min_accuracy"] == "0.9"


def test_customjob_variant_runs_the_train_step_as_a_vertex_custom_job(compiled):
    spec = yaml.safe_load((compiled / "pipelines" / "training-customjob.yaml").read_text())
    executor = spec["deploymentSpec"]["executors"]["exec-train-tensorflow-model"]
    payload = json.dumps(executor)
    assert "google_cloud_pipeline_components.container.v1.custom_job.launcher" in payload
    # the worker pools are a step's output, sized at run time by the pipeline's train_* parameters
    trains = [(name, c["dag"]["tasks"][name]) for c in spec["components"].values()
              for name in c.get("dag", {}).get("tasks", {}) if name.startswith("train-tensorflow-model")]
    assert "worker-pools" in spec["root"]["dag"]["tasks"]
    assert sorted(name for name, _ in trains) == ["train-tensorflow-model", "train-tensorflow-model-2"]
    assert all(task["inputs"]["parameters"]["worker_pool_specs"]["componentInputParameter"]
               == "pipelinechannel--worker-pools-Output" for _, task in trains)


def test_customjob_pools_come_from_the_pipeline_parameters():
    from kfkit.pipelines.training import REDUCTION_SERVER_IMAGE, training_customjob_pipeline, worker_pools
    import json as json_

    template = json_.dumps([{"container_spec": {"image_uri": "trainer", "args": ["{{$.json_escape[1]}}"]},
                             "machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1}] * 2)
    inputs = training_customjob_pipeline.component_spec.inputs

    chief_only = worker_pools(template, "n1-standard-4", "", 0, 0, "n1-standard-4", "", 0, 0, "n1-highcpu-16",
                              REDUCTION_SERVER_IMAGE)
    gpus = worker_pools(template, "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1, 3, "g2-standard-8", "NVIDIA_L4", 1, 2,
                        "n1-highcpu-16", REDUCTION_SERVER_IMAGE)

    assert inputs["train_worker_count"].default == 1 and inputs["train_reduction_server_count"].default == 0
    assert chief_only == [{"container_spec": {"image_uri": "trainer", "args": ["{{$.json_escape[1]}}"]},
                           "replica_count": 1, "machine_spec": {"machine_type": "n1-standard-4"}}]
    assert [p["replica_count"] for p in gpus] == [1, 3, 2]
    assert gpus[0]["machine_spec"] == {"machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100",
                                       "accelerator_count": 1}
    assert gpus[1]["machine_spec"]["accelerator_type"] == "NVIDIA_L4"
    assert gpus[1]["container_spec"] == gpus[0]["container_spec"]  # every training pool runs the train step
    assert gpus[2] == {"container_spec": {"image_uri": REDUCTION_SERVER_IMAGE}, "replica_count": 2,
                       "machine_spec": {"machine_type": "n1-highcpu-16"}}
    with pytest.raises(ValueError, match="set train_worker_count as well"):
        worker_pools(template, "n1-standard-4", "", 0, 0, "n1-standard-4", "", 0, 1, "n1-highcpu-16", "rs")


def test_customjob_pool_parameters_pass_vertex_client_validation(compiled):
    values = {"backend": "bigquery", "project": "kfkit-test", "train_chief_machine_type": "a2-highgpu-1g",
              "train_chief_accelerator_type": "NVIDIA_TESLA_A100", "train_chief_accelerator_count": 1,
              "train_worker_count": 3, "train_reduction_server_count": 2}

    job = vertex_job(compiled / "pipelines" / "training-customjob.yaml", values)

    sent = dict(job._gca_resource.runtime_config.parameter_values)
    assert sent["train_worker_count"] == 3 and sent["train_chief_machine_type"] == "a2-highgpu-1g"


@pytest.mark.slow
def test_blocking_anomaly_fails_the_local_run_with_the_column_named(tmp_path, capfd):
    query = ("SELECT species, island, CAST(NULL AS FLOAT64) AS culmen_length_mm "
             "FROM `bigquery-public-data.ml_datasets.penguins`")
    with pytest.raises(PipelineFailed, match="pipeline 'training' failed") as failed:
        run_local("training", {"query": query}, str(tmp_path))

    message = str(failed.value)
    assert "Step 'validate-data' failed: data validation found blocking anomalies" in message
    assert "column 'culmen_length_mm' in split 'train': null in all" in message
    assert "Traceback" not in message  # kfkit's own errors come without one
    log = Path(failed.value.summary.outcome["failure"]["log"])
    assert log.exists() and "culmen_length_mm" in log.read_text()
    assert "\x1b[" not in log.read_text()
    [run] = _mlflow_runs(tmp_path, "kfkit-training")
    assert run.data.tags["kfkit.status"] == "failed" and run.data.tags["kfkit.failed_step"] == "validate-data"


def test_cli_refuses_unknown_parameter_before_running(tmp_path, capsys):
    code = cli.main(["run", "training", "--local", "--local-root", str(tmp_path), "--param", "epochz=3"])
    assert code == 1
    assert "has no parameter 'epochz'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_refuses_parameter_of_the_wrong_type(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("train_fraction: lots\n")
    code = cli.main(["run", "training", "--local", "--local-root", str(tmp_path), "--params", str(params)])
    assert code == 1
    assert "parameter 'train_fraction' of pipeline 'training' expects float, got 'lots'" in capsys.readouterr().err


def test_help_and_compile_do_not_import_tensorflow():
    script = ("import sys; from kfkit import cli; cli.build_parser().format_help(); "
              "import kfkit.runs.compile; kfkit.runs.compile.compile_all.__name__; "
              "print('tensorflow' in sys.modules, 'mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_vertex_only_pipeline_is_refused_locally_with_the_reason(tmp_path, capsys):
    assert cli.main(["run", "training-customjob", "--local", "--local-root", str(tmp_path)]) == 1
    assert "its train step is a Vertex AI CustomJob" in capsys.readouterr().err


def test_kfkit_compile_writes_what_kfp_dsl_compile_writes(compiled, tmp_path):
    kfp_cli = Path(sys.executable).parent / "kfp"
    done = subprocess.run([str(kfp_cli), "dsl", "compile", "--py", "pipelines/training.py", "--function",
                           "training_pipeline", "--output", str(tmp_path / "t.yaml")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.yaml").read_text() == (compiled / "pipelines" / "training.yaml").read_text()


def test_a_pipeline_compiled_with_step_env_still_passes_vertex_client_validation(tmp_path):
    from kfkit.runs.compile import compile_pipeline

    template = compile_pipeline("training", tmp_path / "training.yaml", {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})

    vertex_job(template, {"backend": "bigquery", "project": "kfkit-test"})


def test_training_pipeline_hands_its_kserve_parameters_to_deploy_under_the_same_names():
    spec = pipelines.load("training").pipeline_spec
    deploy = next(c.dag.tasks["deploy-model"] for c in spec.components.values()
                  if c.HasField("dag") and "deploy-model" in c.dag.tasks)

    for name in ("endpoint_backend", "namespace", "model_storage_uri", "serving_service_account"):
        bound = deploy.inputs.parameters[name]
        assert bound.component_input_parameter.startswith("pipelinechannel--" + name), name


def test_the_monitoring_pipeline_runs_its_monitor_step_where_tensorflow_is_for_attribution_drift(compiled):
    from kfkit.config import runtime_image, trainer_image

    spec = yaml.safe_load((compiled / "pipelines" / "monitoring.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]

    assert executors["exec-monitor-endpoint"]["container"]["image"] == trainer_image()
    # the component itself keeps the runtime image for pipelines that reuse it without attributions
    component = yaml.safe_load((compiled / "components" / "monitor.yaml").read_text())
    assert next(iter(component["deploymentSpec"]["executors"].values()))["container"]["image"] == runtime_image()
