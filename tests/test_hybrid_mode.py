"""Hybrid mode: `kfkit run training --local --param backend=bigquery --param project=P` runs every step
on this machine against BigQuery, Vertex AI and Cloud Storage.

Google Cloud is out of reach here, so the SDK is faked at its boundary in every process of the run
(tests/hybrid/sitecustomize.py and fake_gcp.py: BigQuery runs its SQL on a local warehouse, Vertex
AI and Cloud Storage keep their state in files). Everything else is the real CLI, kfp.local and the
real components.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_hybrid(tmp_path, *params):
    env = {**os.environ, "KFKIT_FAKE_GCP": str(tmp_path / "gcp"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "hybrid"), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root",
                           str(tmp_path / "root"), "--param", "backend=bigquery", "--param", "project=my-proj",
                           "--param", "epochs=3", *params],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def calls(tmp_path) -> list[list]:
    return [json.loads(line) for line in (tmp_path / "gcp" / "calls.jsonl").read_text().splitlines()]


def run_dirs(tmp_path) -> list[Path]:
    return sorted((tmp_path / "root" / "runs").glob("kfkit-training-*"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A first hybrid run (no champion yet), then a canary run that is compared with the first's model."""
    tmp_path = tmp_path_factory.mktemp("hybrid")
    first = run_hybrid(tmp_path)
    after_first = len(calls(tmp_path)) if (tmp_path / "gcp" / "calls.jsonl").exists() else 0
    second = run_hybrid(tmp_path, "--param", "traffic_percent=10")
    return tmp_path, first, second, after_first


def test_a_hybrid_run_queries_bigquery_and_registers_and_deploys_on_vertex(two_runs):
    tmp_path, first, _, after_first = two_runs

    assert first.returncode == 0, first.stdout + first.stderr
    assert "Registered projects/my-proj/locations/us-central1/models/1@1 (version 1; aliases challenger, champion)" \
        in first.stdout
    assert "Deployed to endpoint penguins (projects/my-proj/locations/us-central1/endpoints/1): 1001 100%" in first.stdout
    made = [c[0] for c in calls(tmp_path)[:after_first]]
    assert made.index("bigquery.query") < made.index("stage_local_data_in_gcs") < made.index("upload_model") \
        < made.index("deploy_model")
    queries = [c for c in calls(tmp_path)[:after_first] if c[0] == "bigquery.query"]
    assert queries[0][2] is True  # the dry run (cost estimate) comes first
    assert {q[3] for q in queries[1:]} == {1_000_000_000_000}  # every job carries maximum_bytes_billed


def test_the_model_vertex_gets_is_a_copy_in_cloud_storage_labelled_with_its_run(two_runs):
    tmp_path, *_ = two_runs

    upload = next(c for c in calls(tmp_path) if c[0] == "upload_model")

    _, model, version, artifact_uri, labels, aliases = upload
    assert artifact_uri.startswith("gs://my-proj-vertex-staging-us-central1/")
    staged = tmp_path / "gcp" / "gcs" / artifact_uri[len("gs://"):]
    assert (staged / "saved_model.pb").exists()
    assert labels["pipeline-run"].startswith("kfkit-training-") and labels["data-snapshot"]
    assert aliases == ["challenger", "champion", "default"]


def test_each_cloud_step_writes_its_jobs_in_gcp_resources(two_runs):
    tmp_path, *_ = two_runs
    first = run_dirs(tmp_path)[0]

    def kinds(step):
        return [r["resourceType"] for r in json.loads((first / step / "gcp_resources").read_text())["resources"]]

    assert kinds("bigquery-query-to-dataset") == ["BigQueryJob"]
    assert kinds("register-model") == ["VertexLro"]
    assert kinds("deploy-model") == ["VertexLro"]
    assert json.loads((first / "validate-data" / "gcp_resources").read_text()) == {}  # read from its shards


def test_a_second_run_compares_with_the_champion_copied_from_cloud_storage_and_deploys_a_canary(two_runs):
    tmp_path, _, second, after_first = two_runs
    later = calls(tmp_path)[after_first:]

    assert second.returncode == 0, second.stdout + second.stderr
    assert "vs champion" in second.stdout
    assert any(c[0] == "storage.list_blobs" for c in later)
    deploy = next(c for c in later if c[0] == "deploy_model")
    assert deploy[3] == {"1001": 90, "0": 10}
    assert "(projects/my-proj/locations/us-central1/endpoints/1): 1001 90%, 1003 10%" in second.stdout
    vertex = json.loads((tmp_path / "gcp" / "vertex.json").read_text())
    assert vertex["endpoints"][0]["labels"] == {"kfkit-prev-1001": "100"}  # rollback state, in kfkit's labels
