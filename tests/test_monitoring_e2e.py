"""Monitoring end to end: serve a trained model, send in-distribution then shifted traffic; the
monitoring pipeline reports drift on exactly the shifted features, then retrains with the
champion's own recipe; a window of a few requests is insufficient data and retrains nothing."""

import datetime as dt
import json
import random
import time

import pyarrow.dataset as ds
import pytest

from kfkit.runs.local import run_local
from kfkit.serving.server import ModelServer

pytestmark = pytest.mark.slow
SHIFTED = {"body_mass_g": 1500.0, "flipper_length_mm": 40.0}


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring-root")
    first = run_local("training", {"epochs": 20}, str(root))
    rows = ds.dataset(first.run_dir / "bigquery-query-to-dataset" / "train_data").to_table().drop(["species"]).to_pylist()
    server = ModelServer(endpoint="penguins", local_root=str(root))  # the server code, without HTTP
    rnd = random.Random(0)
    start = time.time()
    for _ in range(100):
        server.predict({"instances": [rnd.choice(rows) for _ in range(5)]})
    middle = time.time()
    for _ in range(100):
        batch = [dict(r) for r in (rnd.choice(rows) for _ in range(5))]
        for row in batch:
            for name, delta in SHIFTED.items():
                row[name] += delta
        server.predict({"instances": batch})
    return root, start, middle, time.time() + 0.001


def anomalies(summary):
    return json.loads((summary.run_dir / "monitor-endpoint" / "anomalies").read_text())


def test_in_distribution_traffic_shows_no_skew(traffic):
    root, start, middle, _ = traffic
    summary = run_local("monitoring", {"window_end": iso(middle), "window_hours": (middle - start) / 3600 + 1e-6,
                                       "retrain": False}, str(root))
    result = anomalies(summary)
    assert result["rows"] == 500 and result["drift_detected"] is False and result["verdict"] == "no drift"
    assert max(result["distances"].values()) < 0.3
    assert [t.name for t in summary.tasks] == ["monitor-endpoint"]


def test_a_handful_of_requests_is_insufficient_data_and_retrains_nothing(traffic):
    root, _, middle, end = traffic
    server = ModelServer(endpoint="penguins", local_root=str(root))
    rows = [{"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
             "body_mass_g": 4950.0, "sex": "FEMALE"}]
    late = time.time()
    for _ in range(5):
        server.predict({"instances": rows})
    now = time.time() + 0.001
    summary = run_local("monitoring", {"window_end": iso(now), "window_hours": (now - late) / 3600}, str(root))

    result = anomalies(summary)
    assert result["rows"] == 5 and result["verdict"] == "insufficient data" and result["drift_detected"] is False
    assert summary.outcome["decision"] == "INSUFFICIENT DATA" and "No retrain." in summary.render()
    assert [t.name for t in summary.tasks] == ["monitor-endpoint"]
    assert "insufficient data" in (summary.run_dir / "monitor-endpoint" / "report").read_text()


def test_an_empty_window_ends_well_with_that_verdict(traffic):
    root, start, _, _ = traffic
    summary = run_local("monitoring", {"window_end": iso(start - 7200), "window_hours": 1.0}, str(root))

    assert anomalies(summary)["verdict"] == "insufficient data" and anomalies(summary)["rows"] == 0


def test_shifted_traffic_drifts_on_the_shifted_features_only_and_triggers_retraining(traffic):
    root, _, middle, end = traffic
    summary = run_local("monitoring", {"window_end": iso(end), "window_hours": (end - middle) / 3600}, str(root))

    result = anomalies(summary)
    drifted = {a["feature"] for a in result["anomalies"]} - {"prediction"}
    assert result["drift_detected"] is True and drifted == set(SHIFTED)
    report = (summary.run_dir / "monitor-endpoint" / "report").read_text()
    assert report.index("flipper_length_mm") < report.index("culmen_depth_mm")  # worst first
    assert list((root / "alerts").glob("penguins-*.json"))
    assert "train-tensorflow-model" in [t.name for t in summary.tasks]  # the retraining sub-pipeline ran
    rendered = summary.render()
    assert summary.outcome["decision"] == "DRIFT" and "Retrained with the champion's recipe" in rendered
    assert "body_mass_g" in rendered or "flipper_length_mm" in rendered  # the worst features are named


def test_drift_between_two_serving_windows(traffic):
    root, start, middle, end = traffic
    summary = run_local("monitoring", {"window_end": iso(end), "window_hours": (end - middle) / 3600,
                                       "baseline_window_hours": (middle - start) / 3600 + 1e-6, "retrain": False},
                        str(root))
    result = anomalies(summary)
    assert result["mode"] == "drift" and {a["feature"] for a in result["anomalies"]} >= set(SHIFTED)


@pytest.fixture(scope="module")
def lost_coverage(traffic):
    """After the other phases: 100 requests of 5 training rows, culmen_length_mm null in three rows of four."""
    root, *_ = traffic
    train_data = min(root.rglob("bigquery-query-to-dataset/train_data"), key=lambda p: p.stat().st_mtime)
    rows = ds.dataset(train_data).to_table().drop(["species"]).to_pylist()
    server = ModelServer(endpoint="penguins", local_root=str(root))
    rnd = random.Random(1)
    start = time.time()
    for _ in range(100):
        batch = [dict(rnd.choice(rows)) for _ in range(5)]
        for row in batch[:4]:
            if rnd.random() < 0.95:
                row["culmen_length_mm"] = None
        server.predict({"instances": batch})
    return root, train_data, start, time.time() + 0.001


def test_attribution_skew_names_the_feature_whose_coverage_was_lost(lost_coverage):
    root, train_data, start, end = lost_coverage
    summary = run_local("monitoring", {"window_end": iso(end), "window_hours": (end - start) / 3600, "retrain": False,
                                       "attribution_drift_threshold": 0.1,
                                       "attribution_baseline_data": str(train_data)}, str(root))

    result = anomalies(summary)
    drifted = {a["feature"]: a for a in result["anomalies"]}
    assert result["drift_detected"] is True and "attribution:culmen_length_mm" in drifted
    evidence = drifted["attribution:culmen_length_mm"]["evidence"]
    assert evidence["window_score"] < evidence["baseline_score"] - 0.1 and evidence["window_rows"] == 200
    assert "culmen_length_mm" not in drifted  # its values, where present, are still the training's


def test_in_distribution_traffic_shows_no_attribution_skew(traffic):
    root, start, middle, _ = traffic
    train_data = min(root.rglob("bigquery-query-to-dataset/train_data"), key=lambda p: p.stat().st_mtime)
    summary = run_local("monitoring", {"window_end": iso(middle), "window_hours": (middle - start) / 3600 + 1e-6,
                                       "retrain": False, "attribution_drift_threshold": 0.1,
                                       "attribution_baseline_data": str(train_data)}, str(root))

    result = anomalies(summary)
    attributions = [v for v in result["verdicts"] if v["feature"].startswith("attribution:")]
    assert len(attributions) == 6 and all(v["status"] == "ok" for v in attributions)
    assert result["verdict"] == "no drift"
