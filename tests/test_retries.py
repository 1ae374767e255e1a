"""The pipelines' Google Cloud steps carry a retry policy; a local run runs without it."""

import pytest
from kfp import dsl, local

from kfkit import pipelines
from kfkit.runs.local import without_retries
from kfkit.pipelines.retries import RETRY


def retried_tasks(pipeline) -> dict:
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    return {name: task.retry_policy for dag in dags for name, task in dag.tasks.items() if task.HasField("retry_policy")}


@pytest.mark.parametrize("name, cloud_steps", [
    ("training", {"bigquery-query-to-dataset", "register-model", "deploy-model"}),
    ("batch-prediction", {"batch-predict"}),
])
def test_exactly_the_cloud_steps_are_retried_with_backoff(name, cloud_steps):
    policies = retried_tasks(pipelines.load(name))

    assert set(policies) == cloud_steps
    for policy in policies.values():
        assert policy.max_retry_count == RETRY["num_retries"] == 3
        assert (policy.backoff_duration.seconds, policy.backoff_factor, policy.backoff_max_duration.seconds) == (
            30, 2.0, 600)


def test_a_local_run_clears_the_retry_policies_and_puts_them_back_after():
    pipeline = pipelines.load("training")
    before = {k: v.SerializeToString() for k, v in retried_tasks(pipeline).items()}

    with without_retries(pipeline):
        during = retried_tasks(pipeline)

    assert during == {}
    assert {k: v.SerializeToString() for k, v in retried_tasks(pipeline).items()} == before


@dsl.component
def fails_once_per_call(counter: str) -> str:
    from pathlib import Path
    path = Path(counter)
    path.write_text(path.read_text() + "x" if path.exists() else "x")
    raise RuntimeError("a local failure is not transient")


@dsl.pipeline
def retried_pipeline(counter: str):
    fails_once_per_call(counter=counter).set_retry(num_retries=2, backoff_duration="0s")


def test_under_without_retries_a_failing_local_step_runs_once(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"),
               raise_on_error=False)
    counter = tmp_path / "attempts"

    with without_retries(retried_pipeline):
        retried_pipeline(counter=str(counter))

    assert counter.read_text() == "x"
