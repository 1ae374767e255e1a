"""A shared registry: steps on different machines register to and read from one real `mlflow server`.

Two training runs with two different local roots (two machines that share nothing but the server)
and MLFLOW_TRACKING_URI pointing at a real MLflow tracking server on 127.0.0.1, with a database
backend and proxied artifact storage: the second run finds the first's champion there.
"""

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def run_training(root, uri, *params):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root", str(root),
                           "--param", "epochs=3", *params], env=env, capture_output=True, text=True, timeout=600)


def test_two_machines_share_one_registry_through_an_mlflow_server(mlflow_server, tmp_path):
    first = run_training(tmp_path / "machine-a", mlflow_server)
    second = run_training(tmp_path / "machine-b", mlflow_server, "--param", "traffic_percent=10",
                          "--param", "canary_window_seconds=0")  # the canary stays as deployed: nothing serves here

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert "there is no champion yet" in first.stdout
    assert "vs champion" in second.stdout  # machine b read machine a's champion from the server
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    # a canary holds the challenger alias; with no analysis (window 0) the champion stays machine a's
    assert client.get_model_version_by_alias("penguins", "challenger").version == "2"
    assert client.get_model_version_by_alias("penguins", "champion").version == "1"
    assert not (tmp_path / "machine-a" / "mlflow.db").exists()  # nothing registered beside the steps
    assert f"MLflow run: {mlflow_server}/#/experiments/" in second.stdout
    # the model machine b serves is its own copy of the server's version 2
    assert (tmp_path / "machine-b" / "cache" / "mlflow" / "penguins" / "2").is_dir()


@pytest.mark.parametrize("value, shared", [("http://mlflow.internal:5000", True), ("https://m.example.com", True),
                                           ("sqlite:////elsewhere/mlflow.db", False), ("", False)])
def test_only_a_tracking_server_in_mlflow_tracking_uri_replaces_the_local_store(value, shared, tmp_path, monkeypatch):
    from kfkit.adapters.mlflow_registry import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", value)

    assert tracking_uri(tmp_path) == (value if shared else f"sqlite:///{tmp_path / 'mlflow.db'}")
