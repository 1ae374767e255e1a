"""A pipeline of one's own gets what kfkit's pipelines get: `kfkit run FILE:FUNCTION` or a compiled
YAML, the outcome, reports, an MLflow run with the run's own times, and a `kfkit runs` entry."""

import json
import textwrap
from pathlib import Path

import pytest

from kfkit import cli
from kfkit.errors import ConfigError
from kfkit.runs import outcome as outcome_mod

PIPELINE = textwrap.dedent('''
    from kfp import dsl


    @dsl.component(base_image="python:3.11")
    def add(a: int, b: int) -> int:
        return a + b


    @dsl.component(base_image="python:3.11")
    def halve(x: int) -> int:
        if x % 2:
            raise ValueError(f"x must be even, got {x}")
        return x // 2


    @dsl.pipeline(name="sum-and-halve")
    def sum_and_halve(a: int = 1, b: int = 3):
        halve(x=add(a=a, b=b).output)


    def not_a_pipeline():
        pass
''')


@pytest.fixture
def own(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "own.py"
    path.write_text(PIPELINE)
    monkeypatch.setenv("KFKIT_LOCAL_ROOT", str(tmp_path / "root"))
    return path


def summaries(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/summary.json"))]


def test_kfkit_run_takes_a_pipeline_function_from_a_file_and_says_each_step(own, tmp_path, capsys):
    code = cli.main(["run", f"{own}:sum_and_halve", "--local", "--param", "a=5"])

    out = capsys.readouterr().out
    assert code == 0
    assert "Pipeline 'sum-and-halve' succeeded" in out
    assert "Step add: succeeded" in out and "(Output 8)" in out and "Step halve: succeeded" in out
    [summary] = summaries(tmp_path / "root")
    assert summary["status"] == "succeeded" and summary["mlflow"]["run_id"]


def test_a_compiled_pipeline_runs_the_same_way(own, tmp_path, capsys):
    from kfp import compiler

    from kfkit import pipelines

    compiled = tmp_path / "sum.yaml"
    compiler.Compiler().compile(pipelines.load(f"{own}:sum_and_halve"), str(compiled))

    code = cli.main(["run", str(compiled), "--local"])

    assert code == 0
    assert "Step halve: succeeded" in capsys.readouterr().out and "(Output 2)" in open(
        next((tmp_path / "root" / "runs").glob("*/summary.json"))).read()


def test_a_failed_step_of_ones_own_pipeline_is_named_in_kfkit_runs_with_its_error(own, tmp_path, capsys):
    assert cli.main(["run", f"{own}:sum_and_halve", "--local", "--param", "a=2"]) == 1  # 5 is odd
    capsys.readouterr()

    cli.main(["runs"])

    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["RUN", "STATUS", "DECISION", "TIME", "WHY", "IT", "FAILED"]
    assert " failed " in row and row.endswith("halve: x must be even, got 5")
    # columns line up: each header word starts where its column starts
    assert row.index("failed") == header.index("STATUS")


def test_a_run_whose_first_step_fails_still_gets_its_run_directory(own, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text(PIPELINE.replace("halve(x=add(a=a, b=b).output)", "halve(x=a)"))

    assert cli.main(["run", f"{bad}:sum_and_halve", "--local"]) == 1

    [summary] = summaries(tmp_path / "root")
    assert summary["status"] == "failed" and summary["failure"]["step"] == "halve"
    assert Path(summary["run_dir"], "logs", "halve.log").exists()


def test_the_mlflow_run_carries_the_pipelines_own_start_end_and_status(own, tmp_path, capsys):
    import mlflow

    cli.main(["run", f"{own}:sum_and_halve", "--local"])
    cli.main(["run", f"{own}:sum_and_halve", "--local", "--param", "a=2"])
    capsys.readouterr()

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'root' / 'mlflow.db'}")
    for summary in summaries(tmp_path / "root"):
        run = client.get_run(summary["mlflow"]["run_id"])
        assert run.info.start_time == int(summary["started"] * 1000)
        assert run.info.end_time == int(summary["ended"] * 1000)
        assert run.info.status == ("FINISHED" if summary["status"] == "succeeded" else "FAILED")


@pytest.mark.parametrize("spec, message", [
    ("nowhere.py:f", "no Python file at 'nowhere.py'"),
    ("{own}", "name the pipeline function in"),
    ("trainnig", "unknown pipeline .trainnig.: give one of batch-prediction, monitoring"),
    ("{own}:missing", "has no 'missing'; its pipelines: sum_and_halve"),
    ("{own}:not_a_pipeline", "is not a KFP pipeline"),
    ("{own}:add", "is not a KFP pipeline"),
    ("nowhere.yaml", "no compiled pipeline at 'nowhere.yaml'"),
])
def test_a_pipeline_that_cannot_be_loaded_is_refused_naming_why(own, spec, message):
    from kfkit import pipelines

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        pipelines.load(spec.format(own=own))


def test_ones_own_pipeline_with_kfkits_evaluate_step_gets_the_training_outcome(tmp_path):
    run_dir = tmp_path / "fare-2026"
    (run_dir / "evaluate-model").mkdir(parents=True)

    assert outcome_mod.decider_for("fare-regression", run_dir) is outcome_mod.training_lines
    assert outcome_mod.decider_for("sum-and-halve", tmp_path / "other") is None
