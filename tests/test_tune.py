"""Hyperparameter tuning: the search space, the local study (Optuna), Vertex AI's tuning job at the
SDK boundary, and the metric a Vertex trial reports."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from kfkit.components.tune import space as sp
from kfkit.components.tune.tune import TrainingInputs, Trial, TuneResult, tune_local
from kfkit.errors import ConfigError

SPACE = {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
         "hidden_units": {"type": "categorical", "choices": [[16], [32, 16]]},
         "dropout": {"type": "float", "low": 0.0, "high": 0.3}}
FAST = {"epochs": 3, "patience": 2}


# ---- the search space ------------------------------------------------------------------------------
def test_a_yaml_search_space_becomes_one_dimension_per_hyperparameter():
    dims = sp.parse_space("learning_rate: {type: float, low: 0.0001, high: 0.1, log: true}\n"
                          "batch_size: {type: categorical, choices: [32, 64]}\n"
                          "hidden_units: {type: categorical, choices: [[64, 32], [128]]}\n"
                          "epochs: {type: int, low: 5, high: 40}\n")

    assert dims == [sp.Dimension("learning_rate", "float", 0.0001, 0.1, True),
                    sp.Dimension("batch_size", "categorical", choices=(32, 64)),
                    sp.Dimension("hidden_units", "categorical", choices=((64, 32), (128,))),
                    sp.Dimension("epochs", "int", 5.0, 40.0)]
    assert dims[2].encoded_choices() == ["64,32", "128"]
    assert sp.decode("hidden_units", "64,32") == [64, 32] and sp.decode("epochs", "7.0") == 7


def test_a_json_search_space_reads_the_same():
    assert sp.parse_space(json.dumps(SPACE)) == sp.parse_space(SPACE)


@pytest.mark.parametrize("text, message", [
    ("", "search space is empty"),
    ("learning_rte: {type: float, low: 0.1, high: 1}", "names 'learning_rte', which train does not take"),
    ("learning_rate: 0.1", "learning_rate: expected a mapping with a type"),
    ("learning_rate: {type: real, low: 0, high: 1}", "type must be one of float, int, categorical"),
    ("learning_rate: {type: float, low: 0.1, high: 0.01}", "low must be below high"),
    ("learning_rate: {type: float, low: 0, high: 0.1, log: true}", "a log scale needs low > 0"),
    ("learning_rate: {type: float, low: 0.1, high: .inf}", "high must be a finite number"),
    ("learning_rate: {type: float, low: 0.01, high: 0.1, step: 2}", "unknown key\\(s\\) step"),
    ("epochs: {type: int, low: 1.5, high: 4}", "int bounds must be whole numbers"),
    ("epochs: {type: float, low: 1, high: 4}", "is an integer in train; use type int"),
    ("dropout: {type: int, low: 0, high: 1}", "is a float in train; use type float"),
    ("hidden_units: {type: int, low: 8, high: 64}", "hidden_units: only categorical"),
    ("hidden_units: {type: categorical, choices: [[64, 0]]}", "list of positive layer widths"),
    ("batch_size: {type: categorical, choices: []}", "non-empty list of choices"),
    ("batch_size: {type: categorical, choices: [32, 32]}", "choices repeat"),
    ("batch_size: {type: categorical, choices: [32, 'big']}", "choices must be integers"),
    ("learning_rate: {type: float, low: [1", "neither YAML nor JSON"),
])
def test_a_bad_search_space_is_refused_naming_the_entry(text, message):
    with pytest.raises(ConfigError, match=message):
        sp.parse_space(text)


@pytest.mark.parametrize("text, message", [
    ("learning_rte: {type: float, low: 0.1, high: 1}",
     "search space names 'learning_rte', which train does not take; tunable: hidden_units, learning_rate, epochs, "
     "batch_size, patience, dropout"),
    ("dropout: {type: float, low: 0, high: 0.5, step: 2, unit: x}", "search space dropout: unknown key(s) step, unit"),
    ("dropout: {type: float, low: 0.1, high: 0.1}", "search space dropout: low must be below high, got 0.1 and 0.1"),
    ("dropout: {type: float, low: a, high: 0.5}", "search space dropout: low must be a finite number, got 'a'"),
    ("dropout: {type: float, low: true, high: 0.5}", "search space dropout: low must be a finite number, got True"),
    ("dropout: {type: float, low: 0, high: b}", "search space dropout: high must be a finite number, got 'b'"),
    ("dropout: {type: float, low: 0.1, high: 0.5, log: maybe}",
     "search space dropout: log must be true or false, got 'maybe'"),
    ("dropout: {type: categorical, choices: [0.1, .nan]}", "search space dropout: choice must be a finite number, got nan"),
    ("hidden_units: {type: float, low: 8, high: 64}",
     "search space hidden_units: only categorical (a list of layer-width lists), e.g. "
     "{type: categorical, choices: [[64, 32], [128]]}"),
    ("   ", "search space is empty: give at least one hyperparameter, e.g. "
           "'learning_rate: {type: float, low: 0.0001, high: 0.1, log: true}'"),
    ("[learning_rate]", "search space is empty: give at least one hyperparameter, e.g. "
                        "'learning_rate: {type: float, low: 0.0001, high: 0.1, log: true}'"),
])
def test_a_refusal_says_exactly_which_entry_and_why(text, message):
    with pytest.raises(ConfigError) as refused:
        sp.parse_space(text)
    assert str(refused.value) == message


def test_values_come_back_in_trains_types():
    assert sp.decode("hidden_units", [64.0, 32.0]) == [64, 32]  # a JSON list of floats
    assert sp.decode("batch_size", 64.0) == 64 and isinstance(sp.decode("batch_size", "128"), int)
    assert sp.decode("dropout", "0.25") == 0.25 and isinstance(sp.decode("dropout", 1), float)
    assert sp.encode(64) == 64 and sp.encode((1,)) == "1"
    assert sp.parse_space("hidden_units: {type: categorical, choices: [[1]]}")[0].choices == ((1,),)


# ---- the local study ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(penguin_splits, penguin_validation):
    return TrainingInputs(str(penguin_splits["train"]), str(penguin_splits["eval"]), penguin_validation.statistics,
                          penguin_validation.schema, "species")


def test_the_best_trial_is_the_one_with_the_lowest_eval_loss_and_fills_every_hyperparameter(inputs, tmp_path):
    result = tune_local(inputs, SPACE, base=FAST, max_trials=3, local_root=str(tmp_path), study_name="s")

    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(result.trials) == 3 and complete
    best = min(complete, key=lambda t: t.value)
    assert (result.best_trial, result.best_value) == (best.number, best.value)
    assert result.best == {"hidden_units": best.params["hidden_units"], "learning_rate": best.params["learning_rate"],
                           "epochs": 3, "batch_size": 64, "patience": 2, "dropout": best.params["dropout"]}
    assert isinstance(result.best["hidden_units"], list) and (tmp_path / "tuning" / "s.journal").exists()


def test_an_interrupted_study_resumes_counting_its_finished_trials(inputs, tmp_path):
    import optuna

    first = tune_local(inputs, SPACE, base=FAST, max_trials=2, local_root=str(tmp_path), study_name="s")
    # a trial a killed run left RUNNING: it never reports, and must not block or count
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "tuning" / "s.journal")))
    optuna.load_study(study_name="s", storage=storage).ask()

    second = tune_local(inputs, SPACE, base=FAST, max_trials=4, local_root=str(tmp_path), study_name="s")

    states = [(t.number, t.state) for t in second.trials]
    assert states[:2] == [(t.number, t.state) for t in first.trials]
    assert states[2] == (2, "FAIL")  # the interrupted one
    assert sum(s in ("COMPLETE", "PRUNED") for _, s in states) == 4 and len(states) == 5
    assert [t.params for t in second.trials[3:]] != [t.params for t in first.trials]  # new draws, not a replay


def test_trials_run_in_parallel_processes_sharing_one_study(inputs, tmp_path):
    result = tune_local(inputs, SPACE, base=FAST, max_trials=3, parallelism=2, local_root=str(tmp_path),
                        study_name="p")

    assert len(result.trials) == 3  # each process took its share (2 and 1): the budget is exact
    logs = sorted(p.name for p in (tmp_path / "tuning").glob("p.worker*.log"))
    assert logs == ["p.worker0.log", "p.worker1.log"]


def test_a_worker_that_fails_fails_the_tuning_naming_its_log(inputs, tmp_path):
    broken = TrainingInputs(str(tmp_path / "gone"), inputs.eval_data, inputs.statistics, inputs.schema, "species")
    with pytest.raises(ConfigError, match=r"tuning failed: worker p\.worker0\.log exited 1: .*gone"):
        tune_local(broken, SPACE, base=FAST, max_trials=2, parallelism=2, local_root=str(tmp_path), study_name="p")


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "accuracy"}, "metric must be one of eval_loss, eval_accuracy, eval_mae"),
    ({"goal": "best"}, "goal must be minimize or maximize"),
    ({"max_trials": 0}, "max_trials must be >= 1"),
    ({"sampler": "grid"}, "sampler must be one of tpe, random"),
    ({"base": {"dropout": 1.0}}, r"dropout must be in \[0, 1\)"),
])
def test_bad_tuning_parameters_are_refused_before_any_trial(inputs, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tune_local(inputs, SPACE, local_root=str(tmp_path), **kwargs)
    assert not (tmp_path / "tuning").exists() or not list((tmp_path / "tuning").glob("*.journal"))


def test_a_metric_the_model_does_not_have_is_refused_before_any_trial_naming_the_ones_it_has(inputs, tmp_path):
    with pytest.raises(ConfigError, match="'eval_mae' is not one of this multiclass model's eval metrics: "
                                          "eval_accuracy, eval_loss"):
        tune_local(inputs, SPACE, base=FAST, metric="eval_mae", max_trials=1, local_root=str(tmp_path))
    assert not (tmp_path / "tuning").exists()


def test_the_pruner_stops_a_trial_whose_curve_is_below_the_median_of_earlier_trials():
    import optuna

    from kfkit.components.tune.tune import _pruner, pruning_callback

    study = optuna.create_study(direction="minimize", pruner=_pruner(True))
    for loss in (0.5, 0.4, 0.3):
        study.add_trial(optuna.trial.create_trial(value=loss, params={}, distributions={},
                                                  intermediate_values={0: loss, 1: loss, 2: loss, 3: loss}))
    trial = study.ask()
    callback = pruning_callback(trial, "eval_loss")

    callback.on_epoch_end(0, {"val_loss": 2.0})  # warm-up epochs are never pruned
    callback.on_epoch_end(1, {"val_loss": 2.0})
    with pytest.raises(optuna.TrialPruned, match="epoch 3: eval_loss 2"):
        callback.on_epoch_end(2, {"val_loss": 2.0})

    good = pruning_callback(study.ask(), "eval_loss")
    for epoch in range(4):
        good.on_epoch_end(epoch, {"val_loss": 0.1})  # better than the median: runs on


# ---- what a Vertex trial reports -----------------------------------------------------------------------
HYPERTUNE = "cloudml-hypertune==0.1.0.dev6"


def hypertune_package(cache: Path):
    """Google's cloudml-hypertune (an sdist: downloaded once, its module loaded, not installed)."""
    found = sorted(cache.glob("cloudml-hypertune-*.tar.gz"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", HYPERTUNE, "--no-deps", "--no-binary", ":all:",
                        "-q", "-d", str(cache)], check=True, timeout=300)
        found = sorted(cache.glob("cloudml-hypertune-*.tar.gz"))
    with tarfile.open(found[-1]) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("hypertune/hypertune.py"))
        source = archive.extractfile(member).read().decode()
    namespace: dict = {}
    exec(compile(source, member.name, "exec"), namespace)
    return namespace["HyperTune"]


def test_a_trials_metric_file_is_what_googles_hypertune_package_writes(tmp_path, monkeypatch):
    from kfkit.components.tune.hypertune import MetricReporter

    HyperTune = hypertune_package(Path(sys.prefix) / "kfkit-test-cache" / "hypertune")  # noqa: N806
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    lines = {}
    for name, make, report in (
            ("google", HyperTune, lambda r, v, s: r.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag="eval_loss", metric_value=v, global_step=s)),
            ("kfkit", MetricReporter, lambda r, v, s: r.report("eval_loss", v, s))):
        monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / name / "output.metrics"))
        reporter = make()
        for step, value in ((1, 0.9), (2, 0.5), (None, 0.25)):
            report(reporter, value, step)
        lines[name] = [{k: v for k, v in json.loads(line).items() if k != "timestamp"}
                       for line in (tmp_path / name / "output.metrics").read_text().splitlines()]

    assert lines["kfkit"] == lines["google"]
    assert lines["kfkit"][-1] == {"checkpoint_path": "", "eval_loss": "0.25", "global_step": "0", "trial": "7"}


def test_a_vertex_trial_trains_with_the_values_vertex_passes_and_reports_the_objective(
        penguin_splits, penguin_validation, tmp_path, monkeypatch):
    from kfkit.components.tune import trial

    (tmp_path / "stats.json").write_text(json.dumps(penguin_validation.statistics))
    (tmp_path / "schema.json").write_text(json.dumps(penguin_validation.schema))
    config = {"inputs": {"train_data": str(penguin_splits["train"]), "eval_data": str(penguin_splits["eval"]),
                         "statistics": str(tmp_path / "stats.json"), "schema": str(tmp_path / "schema.json"),
                         "label": "species", "task": "auto", "exclude_columns": [], "categorical_columns": []},
              "space": [d.__dict__ for d in sp.parse_space(SPACE)], "base": {**FAST, "seed": 3}, "metric": "eval_loss"}
    (tmp_path / "config.json").write_text(json.dumps(config, default=list))
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "hp" / "output.metrics"))

    value = trial.run(["--config", str(tmp_path / "config.json"), "--learning_rate=0.02", "--hidden_units=16",
                       "--dropout=0.1"])

    reports = [json.loads(line) for line in (tmp_path / "hp" / "output.metrics").read_text().splitlines()]
    assert [r["global_step"] for r in reports] == ["1", "2", "3", "4"]  # each epoch, then the result
    assert float(reports[-1]["eval_loss"]) == value


def test_a_vertex_trial_without_a_value_for_a_tuned_hyperparameter_fails(tmp_path):
    from kfkit.components.tune import trial

    (tmp_path / "config.json").write_text(json.dumps({"space": [d.__dict__ for d in sp.parse_space(SPACE)],
                                                      "base": {}, "inputs": {}, "metric": "eval_loss"}, default=list))
    with pytest.raises(SystemExit):
        trial.run(["--config", str(tmp_path / "config.json"), "--learning_rate=0.02"])


# ---- Vertex AI's tuning job ------------------------------------------------------------------------------
def fake_vertex_tuning(rec, trials, state="JOB_STATE_SUCCEEDED"):
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning

    from kfkit.adapters.vertex import VertexAdapter

    CustomJob = mock.create_autospec(aiplatform.CustomJob, spec_set=True)  # noqa: N806
    Tuning = mock.create_autospec(aiplatform.HyperparameterTuningJob, spec_set=True)  # noqa: N806

    def make_job(**kwargs):
        rec.append(("HyperparameterTuningJob", kwargs))
        job = mock.create_autospec(aiplatform.HyperparameterTuningJob, instance=True, spec_set=True)
        job.resource_name = "projects/p/locations/us-central1/hyperparameterTuningJobs/55"
        job.done.side_effect = [False, True]
        job.state = SimpleNamespace(name=state)
        job.error = None
        job.trials = trials
        job.run.side_effect = lambda **kw: rec.append(("run", kw))
        return job

    CustomJob.side_effect = lambda **kwargs: rec.append(("CustomJob", kwargs)) or "custom-job"
    Tuning.side_effect = make_job
    ai = SimpleNamespace(CustomJob=CustomJob, HyperparameterTuningJob=Tuning, hyperparameter_tuning=hyperparameter_tuning)
    from kfkit.cloud_jobs import CloudJobs

    return VertexAdapter("p", "us-central1", aiplatform=ai, jobs=CloudJobs(None, sleep=lambda s: None))


def vertex_trial(id_, state, value, **params):
    from google.cloud.aiplatform_v1.types import study

    return study.Trial(id=id_, state=state, parameters=[{"parameter_id": k, "value": v} for k, v in params.items()],
                       final_measurement={"metrics": [{"metric_id": "eval_loss", "value": value}]} if value else None)


def gcs_paths():
    return {"train_data": "/gcs/b/run/train", "eval_data": "/gcs/b/run/eval", "statistics": "/gcs/b/run/stats",
            "schema": "/gcs/b/run/schema", "label": "species", "task": "auto", "exclude_columns": [],
            "categorical_columns": []}


def test_vertex_tuning_submits_the_space_as_a_hyperparameter_tuning_job_and_reads_back_the_best(tmp_path):
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    from kfkit.components.tune.vertex import tune_on_vertex

    rec = []
    vertex = fake_vertex_tuning(rec, [vertex_trial("1", "SUCCEEDED", 0.4, learning_rate=0.01, hidden_units="16",
                                                   batch_size=32.0, dropout=0.1),
                                      vertex_trial("2", "SUCCEEDED", 0.2, learning_rate=0.05, hidden_units="32,16",
                                                   batch_size=64.0, dropout=0.2),
                                      vertex_trial("3", "INFEASIBLE", None, learning_rate=0.09, hidden_units="16",
                                                   batch_size=32.0, dropout=0.3)])
    space = sp.parse_space({**SPACE, "batch_size": {"type": "categorical", "choices": [64, 32]}})
    config_dir = "/gcs/b/run/tune"
    written = {}
    with mock.patch("kfkit.components.tune.vertex.write_config", lambda path, config: written.update({path: config})):
        result = tune_on_vertex(gcs_paths(), space, base={**FAST, "seed": 42, "hidden_units": [64],
                                                          "learning_rate": 0.01, "batch_size": 64, "dropout": 0.0},
                                metric="eval_loss", goal="minimize", max_trials=12, parallelism=3, project="p",
                                location="us-central1", machine_type="n1-standard-4", image_uri="ghcr.io/kfkit/t:1",
                                config_dir=config_dir, display_name="kfkit-tune", vertex=vertex)

    custom = next(kw for name, kw in rec if name == "CustomJob")
    assert custom["worker_pool_specs"] == [{
        "machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
        "container_spec": {"image_uri": "ghcr.io/kfkit/t:1", "command": [
            "python", "-m", "kfkit.components.tune.trial", "--config", "/gcs/b/run/tune/trial_config.json"]}}]
    job = next(kw for name, kw in rec if name == "HyperparameterTuningJob")
    assert job["metric_spec"] == {"eval_loss": "minimize"}
    assert (job["max_trial_count"], job["parallel_trial_count"], job["measurement_selection"]) == (12, 3, "last")
    specs = {k: v.__class__ for k, v in job["parameter_spec"].items()}
    assert specs == {"learning_rate": hpt.DoubleParameterSpec, "hidden_units": hpt.CategoricalParameterSpec,
                     "dropout": hpt.DoubleParameterSpec, "batch_size": hpt.DiscreteParameterSpec}
    assert job["parameter_spec"]["learning_rate"].scale == "log" and job["parameter_spec"]["dropout"].scale == "linear"
    assert job["parameter_spec"]["hidden_units"].values == ["16", "32,16"]
    assert job["parameter_spec"]["batch_size"].values == [32.0, 64.0]
    assert ("run", {"sync": False}) in rec
    assert result.best == {"hidden_units": [32, 16], "learning_rate": 0.05, "epochs": 3, "batch_size": 64,
                           "patience": 2, "dropout": 0.2}
    assert (result.best_trial, result.best_value, result.library) == (2, 0.2, "vertex-vizier")
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert result.storage == ("https://us-central1-aiplatform.googleapis.com/v1/"
                              "projects/p/locations/us-central1/hyperparameterTuningJobs/55")
    config = written["/gcs/b/run/tune/trial_config.json"]
    assert config["inputs"]["train_data"] == "/gcs/b/run/train" and config["metric"] == "eval_loss"
    assert [d["name"] for d in config["space"]] == ["learning_rate", "hidden_units", "dropout", "batch_size"]


def test_vertex_tuning_refuses_inputs_its_trials_cannot_read():
    from kfkit.components.tune.vertex import tune_on_vertex

    paths = {**gcs_paths(), "train_data": "/tmp/run/train"}
    with pytest.raises(ConfigError, match="train_data is at /tmp/run/train: Vertex AI tuning trials read their "
                                          "inputs through /gcs/"):
        tune_on_vertex(paths, sp.parse_space(SPACE), base={}, metric="eval_loss", goal="minimize", max_trials=2,
                       parallelism=1, project="p", location="us-central1", machine_type="m", image_uri="i",
                       config_dir="/gcs/b/t", display_name="t", vertex=object())


def test_a_vertex_tuning_job_without_a_staging_bucket_is_refused_naming_the_parameter():
    vertex = fake_vertex_tuning([], [])
    with pytest.raises(ConfigError, match="staging_bucket is '': a Vertex AI tuning job needs a gs:// staging"):
        vertex.run_tuning_job(display_name="t", image_uri="i", command=["c"], metric="eval_loss", goal="minimize",
                              space=sp.parse_space(SPACE), max_trials=2, parallelism=1, machine_type="m")


def test_a_failed_vertex_tuning_job_is_an_error_naming_its_state(tmp_path):
    vertex = fake_vertex_tuning([], [], state="JOB_STATE_FAILED")
    with pytest.raises(ConfigError, match="hyperparameter tuning job projects/p/locations/us-central1/"
                                          "hyperparameterTuningJobs/55 ended JOB_STATE_FAILED"):
        vertex.run_tuning_job(display_name="t", image_uri="i", command=["c"], metric="eval_loss", goal="minimize",
                              space=sp.parse_space(SPACE), max_trials=2, parallelism=1, machine_type="m",
                              staging_bucket="gs://b/staging")


# ---- the report -----------------------------------------------------------------------------------------
def test_the_report_draws_one_line_per_finished_trial_and_highlights_the_best():
    from kfkit.components.tune.report import render

    dims = sp.parse_space(SPACE)
    trials = [Trial(0, "COMPLETE", {"learning_rate": 0.01, "hidden_units": [16], "dropout": 0.1}, 0.5, 1.0, 3),
              Trial(1, "PRUNED", {"learning_rate": 0.05, "hidden_units": [32, 16], "dropout": 0.2}, None, 0.5, 2),
              Trial(2, "COMPLETE", {"learning_rate": 0.002, "hidden_units": [32, 16], "dropout": 0.0}, 0.25, 1.0, 3)]
    result = TuneResult({"hidden_units": [32, 16], "learning_rate": 0.002, "epochs": 3, "batch_size": 64,
                         "patience": 2, "dropout": 0.0}, 0.25, 2, "eval_loss", "minimize", trials, "s", "/x", 2.0)

    page = render(result, dims)

    assert page.count("<polyline") == 2  # the pruned trial has no value to plot
    assert "stroke='#d62728' stroke-width='3'" in page and "<title>trial 2: 0.25</title>" in page
    assert "3 trials (2 complete, 1 pruned, 0 failed) with optuna" in page
    assert "Best eval_loss 0.25 (minimize) in trial 2" in page


# ---- kfp.local and dsl.OneOf ------------------------------------------------------------------------------
def test_the_oneof_patch_is_applied_only_to_the_kfp_it_was_written_for(monkeypatch):
    import kfp

    from kfkit.pipelines.kfp_local_compat import PATCHED_VERSION, enable_artifact_oneof

    assert kfp.__version__ == PATCHED_VERSION, "a new kfp: check whether kfp.local resolves dsl.OneOf artifacts now"
    assert enable_artifact_oneof() is True
    monkeypatch.setattr(kfp, "__version__", "2.18.0")
    assert enable_artifact_oneof() is False


# ---- in the training pipeline ------------------------------------------------------------------------------
@pytest.mark.slow
def test_tune_true_inserts_the_tune_step_and_train_and_the_registry_use_its_best(tmp_path, capsys):
    from kfkit import cli
    from kfkit.adapters.mlflow_registry import MlflowRegistry

    code = cli.main(["run", "training", "--local", "--local-root", str(tmp_path), "--param", "tune=true",
                     "--param", "tune_max_trials=3", "--param", "epochs=4",
                     "--param", 'search_space={"learning_rate": {"type": "float", "low": 0.005, "high": 0.1, '
                                '"log": true}, "hidden_units": {"type": "categorical", "choices": [[8], [16, 8]]}}'])

    printed = capsys.readouterr().out
    assert code == 0 and ": BLESSED" in printed
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    tuned = json.loads((run_dir / "tune-hyperparameters" / "executor_output.json").read_text())["parameterValues"]
    assert not (run_dir / "train-tensorflow-model").exists()  # the untuned branch did not run
    trained = json.loads((run_dir / "train-tensorflow-model-2" / "executor_output.json").read_text())
    used = trained["artifacts"]["model"]["artifacts"][0]["metadata"]["hyperparameters"]
    assert {k: used[k] for k in ("learning_rate", "hidden_units", "epochs")} == {
        "learning_rate": tuned["learning_rate"], "hidden_units": [int(u) for u in tuned["hidden_units"]], "epochs": 4}
    assert "Tuned (optuna, 3 trials: " in printed and f"learning_rate={tuned['learning_rate']:.4g}" in printed
    version = MlflowRegistry(tmp_path).client.get_model_version("penguins", "1")
    run = MlflowRegistry(tmp_path).client.get_run(version.run_id)
    assert float(run.data.params["hp_learning_rate"]) == pytest.approx(tuned["learning_rate"])
    assert (run_dir / "tune-hyperparameters" / "report").read_text().count("<polyline") == 3
