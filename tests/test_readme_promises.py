"""What the README promises a user can do, each tried as the user would (the CLI in-process,
the component logic with real local parts): data commands, endpoints, rollback on Vertex,
the champion never going to an unblessed model, webhook alerts, batch prediction that fails
mid-stream, the git-commit label."""

import http.server
import json
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import aiplatform

from kfkit.components.batch_predict.batch_predict import predict_local
from kfkit.components.register.register import champion_model_dir, register_model
from kfkit import cli
from kfkit.adapters.mlflow_registry import MlflowRegistry
from kfkit.adapters.vertex import previous_split_labels
from kfkit.serving.endpoints import LocalEndpoints
from kfkit.errors import KfkitError
from kfkit.warehouse.local import LocalWarehouse
from tests.test_vertex_adapter import FakeEndpoint, Recorder, deployed_model, fake_aiplatform


def rows(root, table) -> pa.Table:
    return pa.Table.from_batches(list(LocalWarehouse(root).query_batches(f"SELECT * FROM `{table}`")))


def test_data_synth_writes_the_rows_asked_for_and_data_tables_lists_them(tmp_path, capsys):
    assert cli.main(["data", "--local-root", str(tmp_path), "synth", "synthetic.rows", "--rows", "500",
                     "--numeric", "3", "--categorical", "2", "--task", "regression", "--seed", "4"]) == 0
    assert cli.main(["data", "--local-root", str(tmp_path), "tables"]) == 0

    table = rows(tmp_path, "local-project.synthetic.rows")
    assert table.num_rows == 500
    assert table.column_names == ["id", "num_00", "num_01", "num_02", "cat_00", "cat_01", "label"]
    assert "local-project.synthetic.rows" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_data_load_makes_a_file_a_table(tmp_path, suffix):
    source = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "x": [0.5, 1.5, 2.5]})
    path = tmp_path / f"input.{suffix}"
    if suffix == "csv":
        path.write_text("id,name,x\n1,a,0.5\n2,b,1.5\n3,c,2.5\n")
    else:
        pq.write_table(source, path)

    assert cli.main(["data", "--local-root", str(tmp_path), "load", "mine.input", str(path)]) == 0

    loaded = rows(tmp_path, "local-project.mine.input")
    assert loaded.to_pydict() == source.to_pydict()


def test_data_load_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    status = cli.main(["data", "--local-root", str(tmp_path), "load", "mine.input", str(tmp_path / "nope.csv")])

    assert status != 0
    assert "nope.csv" in capsys.readouterr().err


def test_endpoints_lists_each_endpoint_with_its_split(tmp_path, capsys):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "saved_model.pb").write_bytes(b"x")
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("penguins", "penguins", "1", str(model_dir))
    endpoints.deploy("penguins", "penguins", "2", str(model_dir), traffic_percent=25)

    assert cli.main(["endpoints", "--local-root", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert "penguins" in out and "75%" in out and "25%" in out


def test_rollback_on_vertex_restores_the_split_recorded_by_deploy(monkeypatch, capsys):

    rec = Recorder()
    endpoint = FakeEndpoint(rec, split={"d1": 0, "d2": 100},
                            deployed=[deployed_model("d1", "t1"), deployed_model("d2", "t2")],
                            labels=previous_split_labels({"d1": 100}))
    fake = fake_aiplatform(rec, endpoints=[endpoint])
    monkeypatch.setattr(aiplatform, "Endpoint", fake.Endpoint)

    status = cli.main(["rollback", "--endpoint", "penguins", "--backend", "vertex", "--project", "p",
                       "--region", "europe-west4"])

    assert status == 0
    assert endpoint.traffic_split == {"d1": 100}
    assert rec.calls[0] == ("Endpoint.list", 'display_name="penguins"')
    fake.Endpoint.list.assert_called_once_with(filter='display_name="penguins"', project="p", location="europe-west4")


def test_an_unblessed_model_never_takes_the_champion_alias(tmp_path, penguin_model):
    register_model(str(penguin_model), model_name="penguins", blessed=True, local_root=str(tmp_path), task_id="a")

    meta = register_model(str(penguin_model), model_name="penguins", blessed=False, local_root=str(tmp_path),
                          task_id="b")

    registry = MlflowRegistry(tmp_path)
    assert meta["aliases"] == ["challenger"]
    assert registry.version_by_alias("penguins", "champion").version == "1"
    assert registry.version_by_alias("penguins", "challenger").version == "2"
    assert champion_model_dir("penguins", "local", str(tmp_path)) == registry.version_by_alias("penguins", "champion").model_dir


def test_a_drift_alert_is_posted_to_a_webhook_as_json():
    from kfkit.components.monitor.monitor import alert, monitor
    from kfkit import tfdv

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    rng = np.random.default_rng(5)
    stats = {"label": "", "columns": {"y": {"kind": "numeric", "count": 5000,
                                            "tfdv_histogram": tfdv.histogram(rng.normal(size=5000)).to_json()}}}
    result = monitor(pa.table({"y": rng.normal(loc=3, size=1000)}), None, statistics=stats)
    url = f"http://127.0.0.1:{server.server_port}/alerts"

    sent_to = alert(result, endpoint="penguins", destination=url)
    thread.join(10)
    server.server_close()

    assert sent_to == url
    content_type, payload = received[0]
    assert content_type == "application/json"
    assert payload["endpoint"] == "penguins" and payload["features"] == ["y"]


def test_batch_prediction_that_fails_mid_stream_leaves_no_table(tmp_path, penguin_model, monkeypatch):
    from kfkit.serving.model_io import LoadedModel

    register_model(str(penguin_model), model_name="penguins", blessed=True, local_root=str(tmp_path))
    warehouse = LocalWarehouse(tmp_path)
    warehouse.ensure_sample_data()
    before = set(warehouse.tables())
    real_predict, calls = LoadedModel.predict_arrays, []

    def fails_on_the_fifth_batch(self, features):
        calls.append(len(next(iter(features.values()))))
        if len(calls) == 5:  # after the first batches were already written to the staging table
            raise KfkitError("the model failed on batch 5")
        return real_predict(self, features)

    monkeypatch.setattr(LoadedModel, "predict_arrays", fails_on_the_fifth_batch)

    with pytest.raises(KfkitError, match="batch 5"):
        predict_local("bigquery-public-data.ml_datasets.penguins", "scored.bad", model_name="penguins",
                      local_root=str(tmp_path), batch_rows=16)

    assert len(calls) == 5
    assert set(warehouse.tables()) == before


def test_champion_model_uri_makes_the_gate_compare_with_that_model(tmp_path, penguin_model, penguin_splits):
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

    from kfkit.components.evaluate.component import evaluate_model

    def output(kind, name):
        return kind(uri=str(tmp_path / name))

    metrics = output(Metrics, "metrics")
    blessed = evaluate_model.python_func(
        model=Model(uri=str(penguin_model)), test_data=Dataset(uri=str(penguin_splits["test"])), metrics=metrics,
        classification_metrics=output(ClassificationMetrics, "cm"), report=output(HTML, "report.html"),
        reason=str(tmp_path / "reason"), slices=output(Artifact, "slices"), champion_model_uri=str(penguin_model),
        tolerance=0.0)

    reason = (tmp_path / "reason").read_text()
    assert blessed is True  # the same model is not worse than itself
    assert reason.startswith("meets every threshold and is not worse than the champion: accuracy")
    assert metrics.metadata["champion_accuracy"] == metrics.metadata["accuracy"]
