"""Issue 4 end to end on the local backend: the training pipeline registers and deploys; `kfkit serve`
answers real requests; a second run deploys a canary; rollback restores the split."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kfkit.adapters.mlflow_registry import MlflowRegistry
from kfkit.runs.local import run_local
from kfkit.serving.model_io import LoadedModel

REPO = Path(__file__).resolve().parent.parent
PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)  # polling a live server, not waiting for time to pass
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-root")
    first = run_local("training", {"epochs": 20, "git_commit": "0123abcd"}, str(root))
    return root, first


@pytest.fixture(scope="module")
def server(deployed):
    root, _ = deployed
    port = free_port()
    # the server writes an access-log line per request: to a file, as an unread pipe would fill up
    log = open(root / "serve.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "kfkit.cli", "serve", "--endpoint", "penguins", "--local-root",
                                str(root), "--port", str(port)], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: call(port, "/health")[0] == 200, what="the server's health route")
        yield port
    finally:
        process.terminate()
        assert process.wait(timeout=30) in (0, -15)  # SIGTERM drains, then exits (uvicorn re-raises the signal)
        log.close()


def test_pipeline_registered_the_blessed_model_as_champion_in_mlflow(deployed):
    root, _ = deployed
    registry = MlflowRegistry(root)
    champion = registry.version_by_alias("penguins", "champion")
    assert champion.version == "1"
    version = registry.client.get_model_version("penguins", "1")
    assert set(version.aliases) == {"champion", "challenger"}
    assert version.tags["pipeline-run"].startswith("kfkit-training")
    assert version.tags["data-snapshot"].startswith("342-")  # the rows the model was trained on
    assert version.tags["git-commit"] == "0123abcd"  # the README: every version names the code it came from
    run = registry.client.get_run(version.run_id)
    assert run.data.metrics["accuracy"] > 0.8


def test_server_answers_like_the_model_loaded_directly(deployed, server):
    root, _ = deployed
    state = json.loads((root / "endpoints" / "penguins.json").read_text())
    direct = LoadedModel(state["deployed_models"][0]["model_dir"])
    instances = [PENGUIN, dict(PENGUIN, island="Torgersen", culmen_length_mm=39.1, flipper_length_mm=181.0,
                               body_mass_g=3750.0, sex=None)]

    status, body = call(server, "/predict", {"instances": instances})

    assert status == 200
    expected = direct.predict_instances(instances)
    assert [p["classes"] for p in body["predictions"]] == [p["classes"] for p in expected]
    assert body["predictions"][0]["scores"] == pytest.approx(expected[0]["scores"], abs=1e-6)
    assert body["deployedModelId"] == state["deployed_models"][0]["id"] and body["modelVersionId"] == "1"


@pytest.mark.parametrize("body, status, message", [
    ({"instances": [{"island": "Biscoe"}]}, 400, "instance 0: missing field 'culmen_length_mm'"),
    ({"instances": [dict(PENGUIN, body_mass_g="heavy")]}, 400, "field 'body_mass_g' expects a number"),
    ({"rows": []}, 400, "'instances' list"),
    ({"instances": []}, 400, "non-empty list"),
])
def test_server_refuses_bad_requests_naming_the_field_and_keeps_serving(server, body, status, message):
    got, answer = call(server, "/predict", body)
    assert got == status and message in answer["error"]
    assert call(server, "/predict", {"instances": [PENGUIN]})[0] == 200


def test_server_refuses_bodies_over_vertex_limit_with_413(server):
    got, answer = call(server, "/predict", raw=b"x" * (int(1.5 * 1024 * 1024) + 1))
    assert got == 413 and "1.5 MB" in answer["error"]


def test_server_refuses_invalid_json(server):
    got, answer = call(server, "/predict", raw=b"{not json")
    assert got == 400 and "not valid JSON" in answer["error"]


def test_requests_are_logged_with_timestamp_and_model_version(deployed, server):
    from kfkit.serving.request_logs import records

    root, _ = deployed
    sent = time.time()
    call(server, "/predict", {"instances": [dict(PENGUIN, body_mass_g=4321.0)]})

    # read as the monitor and the canary analysis read: a window that has just ended waits out the
    # server's flush bound (its records are written in batches, off the request path)
    logged = list(records(root / "request_logs" / "penguins", sent, time.time()))

    assert [r["instances"] for r in logged] == [[dict(PENGUIN, body_mass_g=4321.0)]]
    assert logged[0]["model_version"] == "1" and logged[0]["timestamp"] >= sent


def test_canary_deploy_splits_traffic_and_rollback_restores_it(deployed, server):
    root, _ = deployed
    # canary_window_seconds=0: the split stays as deployed (the analysis has its own tests)
    second = run_local("training", {"epochs": 20, "traffic_percent": 50, "seed": 3, "canary_window_seconds": 0.0},
                       str(root))
    evaluation = (second.run_dir / "evaluate-model" / "reason").read_text()
    assert "champion" in evaluation  # the second run compared itself with version 1 from the registry
    wait_until(lambda: call(server, "/health")[1]["revision"] == 2, what="the server to load revision 2")

    versions = [call(server, "/predict", {"instances": [PENGUIN]})[1]["modelVersionId"] for _ in range(300)]

    share = versions.count("2") / len(versions)
    assert set(versions) == {"1", "2"} and 0.38 < share < 0.62

    done = subprocess.run([sys.executable, "-m", "kfkit.cli", "rollback", "--endpoint", "penguins", "--local-root",
                           str(root)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: call(server, "/health")[1]["revision"] == 3, what="the server to load the rollback")
    assert {call(server, "/predict", {"instances": [PENGUIN]})[1]["modelVersionId"] for _ in range(50)} == {"1"}
