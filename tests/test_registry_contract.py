"""The MLflow registry adapter's contract, on a real MLflow (sqlite store) with a model directory
that has kfkit's files but needs no training: versions, aliases, retried registrations, tags,
parameters and metrics, tracked pipeline runs. The trained-model paths are in test_registry.py."""

import json

import pytest

from kfkit.adapters.mlflow_registry import EXPERIMENT, TASK_TAG, MlflowRegistry, tracking_uri
from kfkit.errors import ConfigError


@pytest.fixture
def model_dir(tmp_path):
    directory = tmp_path / "exported" / "model"
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"not read by the registry")
    (directory / "kfkit_model.json").write_text(json.dumps({"label": "species"}))
    return directory


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    # one database for the module (MLflow creates its schema in seconds); each test its own model name
    return MlflowRegistry(tmp_path_factory.mktemp("registry") / "root")


def test_the_registry_lives_in_a_sqlite_database_under_the_local_root(tmp_path):
    import mlflow

    registry = MlflowRegistry(tmp_path / "root")

    assert registry.root == tmp_path / "root"
    assert registry.uri == tracking_uri(tmp_path / "root") == f"sqlite:///{tmp_path / 'root' / 'mlflow.db'}"
    # runs are started through the mlflow module: its tracking and registry URIs must be ours too
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == registry.uri
    assert registry.client.tracking_uri == registry.uri and registry.client._registry_uri == registry.uri
    assert registry.client.tracking_uri == registry.uri


def test_register_logs_a_run_with_params_metrics_and_tags_and_a_version_with_its_aliases(registry, model_dir):
    version = registry.register("logged", model_dir, aliases=["challenger", "champion"],
                                params={"epochs": 3, "note": "x" * 600}, metrics={"accuracy": 0.9},
                                tags={"git-commit": "abc"}, task_id="task-1")

    assert (version.name, version.version, version.created) == ("logged", "1", True)
    assert version.aliases == ["challenger", "champion"]
    assert version.uri == "models:/logged/1"
    run = registry.client.get_run(version.run_id)
    assert run.info.run_name == "logged-register"
    assert run.data.params == {"epochs": "3", "note": "x" * 500}  # MLflow-safe length
    assert run.data.metrics == {"accuracy": 0.9}
    assert run.data.tags["git-commit"] == "abc" and run.data.tags[TASK_TAG] == "task-1"
    assert registry.client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    stored = registry.client.get_model_version("logged", "1")
    assert stored.tags == {"git-commit": "abc", TASK_TAG: "task-1"}
    assert stored.run_id == version.run_id
    assert set(stored.aliases) == {"challenger", "champion"}
    assert registry.client.get_registered_model("logged").tags == {"created-by": "kfkit"}


def test_the_registered_model_directory_is_the_kfkit_model_inside_mlflows_artifacts(registry, model_dir):
    version = registry.register("located", model_dir, aliases=["champion"])

    assert version.model_dir.startswith(str(registry.root / "mlartifacts"))
    assert json.loads(open(f"{version.model_dir}/kfkit_model.json").read()) == {"label": "species"}
    champion = registry.version_by_alias("located", "champion")
    assert (champion.name, champion.version, champion.run_id) == ("located", "1", version.run_id)
    assert champion.model_dir == version.model_dir and champion.created is False


def test_a_retried_task_reuses_its_version_and_sets_the_aliases_again(registry, model_dir, caplog):
    first = registry.register("retried", model_dir, aliases=["challenger"], task_id="task-1")
    registry.register("retried", model_dir, aliases=["challenger", "champion"], task_id="task-2")

    with caplog.at_level("INFO", logger="kfkit.registry"):
        again = registry.register("retried", model_dir, aliases=["challenger", "champion"], task_id="task-1")

    assert "task task-1 already registered retried version 1; reusing it" in caplog.messages
    assert (again.name, again.version, again.created, again.run_id) == ("retried", "1", False, first.run_id)
    assert again.model_dir == first.model_dir
    assert again.aliases == ["challenger", "champion"]
    assert registry.version_by_alias("retried", "champion").version == "1"
    assert len(registry.client.search_model_versions("name = 'retried'")) == 2


def test_without_a_task_id_every_registration_is_a_new_version(registry, model_dir):
    assert registry.find_by_task("untasked", "") is None
    versions = [registry.register("untasked", model_dir, aliases=[]).version for _ in range(2)]

    assert versions == ["1", "2"]
    assert TASK_TAG not in registry.client.get_model_version("untasked", "1").tags
    assert registry.version_by_alias("untasked", "champion") is None
    assert registry.version_by_alias("nobody", "champion") is None


def test_a_registered_model_without_kfkits_files_is_refused(registry, model_dir):
    (model_dir / "kfkit_model.json").unlink()

    with pytest.raises(ConfigError, match=r"^registered model bare version 1 has no kfkit SavedModel under .*artifacts$"):
        registry.register("bare", model_dir, aliases=["champion"])


def test_a_pipeline_run_is_tracked_in_its_own_experiment_and_linked_to_the_version(registry, model_dir, tmp_path):
    version = registry.register("tracked", model_dir, aliases=["champion"])
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").write_text("<html></html>")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")

    experiment, run_id = registry.track_pipeline_run(
        "training", "kfkit-training-1", params={"epochs": 3, "hidden_units": [8, 4], "query": "q" * 7000},
        metrics={"seconds": 12.5}, tags={"kfkit.status": "succeeded"}, artifacts=[reports, summary, tmp_path / "none"],
        registered=("tracked", version.version))

    run = registry.client.get_run(run_id)
    assert registry.client.get_experiment(experiment).name == "kfkit-training"
    assert run.info.run_name == "kfkit-training-1"
    assert run.info.experiment_id == experiment
    assert run.data.params == {"epochs": "3", "hidden_units": "[8, 4]", "query": "q" * 6000}  # MLflow's limit
    assert run.data.metrics == {"seconds": 12.5}
    assert run.data.tags["kfkit.status"] == "succeeded"
    assert run.data.tags["kfkit.registered_version"] == "models:/tracked/1"
    assert sorted(a.path for a in registry.client.list_artifacts(run_id)) == ["reports", "summary.json"]
    assert [a.path for a in registry.client.list_artifacts(run_id, "reports")] == ["reports/index.html"]
    assert registry.client.get_model_version("tracked", "1").tags["kfkit.pipeline_run"] == run_id
    # a second run of the same pipeline goes to the same experiment
    assert registry.track_pipeline_run("training", "kfkit-training-2", params={}, metrics={}, tags={},
                                       artifacts=[])[0] == experiment
