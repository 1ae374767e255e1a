"""A guarded canary end to end on the local backend, as a user runs it.

Train once (the champion, 100%), serve the endpoint with `kfkit serve`, then run the training
pipeline again with traffic_percent=20 while a client sends the test split's rows: the analysis step
watches the window and promotes the canary. Then a deliberately bad challenger (a label made from
body mass alone, blessed with the gate relaxed) deployed as a canary is rolled back automatically:
its predicted classes are far from the champion's (the monitor's L-infinity distance).
Bounded in time: each run waits at most its window (20 s) and the client stops with it.
"""

import json
import subprocess
import sys
import threading
import urllib.request

import pyarrow.parquet as pq
import pytest

from kfkit.adapters.mlflow_registry import MlflowRegistry
from tests.test_serving_e2e import REPO, call, free_port, wait_until

pytestmark = pytest.mark.slow
WINDOW = ["--param", "canary_window_seconds=20", "--param", "canary_min_requests=25"]
# the three species' names, given by body mass alone: a multiclass model like the champion, badly wrong
# (most penguins become Chinstrap, which the champion predicts for about a fifth of them)
BAD_QUERY = ("SELECT * REPLACE (CASE WHEN body_mass_g > 5200 THEN 'Gentoo penguin (Pygoscelis papua)' "
             "WHEN body_mass_g > 3300 THEN 'Chinstrap penguin (Pygoscelis antarctica)' "
             "ELSE 'Adelie Penguin (Pygoscelis adeliae)' END AS species) "
             "FROM `bigquery-public-data.ml_datasets.penguins` WHERE body_mass_g IS NOT NULL AND species IS NOT NULL")


def train(root, *params):
    return subprocess.Popen([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root", str(root),
                             "--param", "epochs=10", *params], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rows_of_test_split(root) -> list[dict]:
    [run] = sorted((root / "runs").glob("kfkit-training-*"))[:1]
    rows = pq.read_table(run / "bigquery-query-to-dataset" / "test_data").to_pylist()
    return [{k: v for k, v in row.items() if k != "species"} for row in rows]


def drive(port, rows, stop: threading.Event, statuses: list):
    """Send one row per request, round the test split, until stopped."""
    i = 0
    while not stop.is_set():
        body = json.dumps({"instances": [rows[i % len(rows)]]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        i += 1


def run_with_traffic(root, port, rows, *params):
    stop, statuses = threading.Event(), []
    client = threading.Thread(target=drive, args=(port, rows, stop, statuses), daemon=True)
    client.start()
    try:
        process = train(root, *params)
        output, _ = process.communicate(timeout=600)
    finally:
        stop.set()
        client.join(timeout=30)
    return process.returncode, output, statuses


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary-root")
    first = train(root)
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output
    port = free_port()
    log = open(root / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "kfkit.cli", "serve", "--endpoint", "penguins", "--local-root",
                               str(root), "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: call(port, "/health")[0] == 200, what="the server's health route")
        yield root, port, rows_of_test_split(root)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_a_good_canary_is_watched_under_traffic_and_promoted(served):
    root, port, rows = served

    code, output, statuses = run_with_traffic(root, port, rows, "--param", "traffic_percent=20", *WINDOW)

    assert code == 0, output
    assert "Pipeline 'training' succeeded" in output and "BLESSED, canary PROMOTE" in output
    assert "Canary promote: promoted penguins-v2-" in output
    state = json.loads((root / "endpoints" / "penguins.json").read_text())
    assert {m["version"]: m["traffic"] for m in state["deployed_models"]} == {"1": 0, "2": 100}
    assert MlflowRegistry(root).version_by_alias("penguins", "champion").version == "2"
    assert set(statuses) == {200}  # no request failed while the split moved


def test_a_bad_challenger_deployed_as_a_canary_is_rolled_back_automatically(served):
    root, port, rows = served
    registry = MlflowRegistry(root)
    champion = registry.version_by_alias("penguins", "champion").version
    before = json.loads((root / "endpoints" / "penguins.json").read_text())
    relaxed = ["--param", "min_accuracy=0", "--param", "tolerance=1", "--param", f"query={BAD_QUERY}"]

    code, output, statuses = run_with_traffic(root, port, rows, "--param", "traffic_percent=20", *relaxed, *WINDOW)

    bad = str(int(champion) + 1)
    assert code == 0, output
    assert "BLESSED, canary ROLLBACK" in output, output
    assert f"rolled back to the split before penguins-v{bad}-" in output
    after = json.loads((root / "endpoints" / "penguins.json").read_text())
    assert after["deployed_models"] == before["deployed_models"]  # the split before the canary, exactly
    assert registry.version_by_alias("penguins", "champion").version == champion
    assert registry.client.get_model_version("penguins", bad).tags["kfkit.canary"] == "rejected"
    report = sorted((root / "runs").glob("kfkit-training-*/analyze-canary/report"))[-1]
    assert "prediction_distance" in report.read_text()
    assert set(statuses) == {200}
