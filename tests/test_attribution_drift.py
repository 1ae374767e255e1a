"""Feature attribution drift in the monitor (components/monitor/attribution.py).

Vertex AI Model Monitoring's definition, which kfkit follows: a feature's attribution score is a number
in [0, 1] (aiplatform_v1beta1 FeatureStatsAnomaly.score, "feature attribution score within range [0, 1]
for FEATURE_ATTRIBUTION_SKEW and FEATURE_ATTRIBUTION_DRIFT"), compared between the baseline and the
window against a threshold ("attribution score distance", ModelMonitoringObjectiveConfig's
attribution_score_skew_thresholds / attribution_score_drift_thresholds; v2: FeatureAttributionSpec's
alert conditions). kfkit's score is the feature's share of the mean |attribution|; its distance the
absolute change of that share.
"""

from types import SimpleNamespace

import numpy as np
import pyarrow.dataset as pads
import pytest

from kfkit.components.monitor import attribution, drift, monitor as mon

WEIGHTS = {"a": 2.0, "b": -1.0, "c": 0.5}
MEANS = {"a": 1.0, "b": 0.0, "c": 4.0}


def linear_model():
    """A regressor y = sum w_f x_f on three numeric features with known training means."""
    features = [SimpleNamespace(name=f, kind="numeric", mean=MEANS[f], value_type="float32") for f in WEIGHTS]
    spec = SimpleNamespace(features=features, task="regression", label="y")

    def predict_arrays(arrays):
        return {"value": sum(w * np.asarray(arrays[f], dtype=np.float64) for f, w in WEIGHTS.items())}

    return SimpleNamespace(spec=spec, signature={f: "float32" for f in WEIGHTS}, predict_arrays=predict_arrays)


def test_attribution_score_is_each_features_share_of_the_mean_absolute_attribution():
    rng = np.random.default_rng(3)
    rows = [{f: float(v) for f, v in zip(WEIGHTS, rng.normal(size=3))} for _ in range(40)]

    result = attribution.profile(linear_model(), rows, sample_rows=0)

    # Shapley values of an additive function are exact: w_f (x_f - baseline_f), the baseline being the
    # training means (Strumbelj & Kononenko 2014; every sampled path credits each term the same)
    expected = {f: np.mean([abs(w * (np.float32(r[f]) - MEANS[f])) for r in rows]) for f, w in WEIGHTS.items()}
    total = sum(expected.values())
    assert result.rows == 40
    assert result.mean_abs == pytest.approx(expected, rel=1e-5)
    assert result.scores == pytest.approx({f: v / total for f, v in expected.items()}, rel=1e-5)
    assert sum(result.scores.values()) == pytest.approx(1.0)


def test_the_distance_is_the_change_of_the_score_and_the_verdict_follows_the_monitor_rules():
    base = attribution.AttributionProfile({"a": 3.0, "b": 1.0}, rows=200)      # scores 0.75, 0.25
    window = attribution.AttributionProfile({"a": 1.0, "b": 1.0}, rows=150)    # scores 0.5, 0.5

    verdicts = {v.feature: v for v in attribution.compare(base, window, threshold=0.2,
                                                          thresholds={"attribution:b": 0.3}, min_count=100)}

    assert verdicts["attribution:a"].distance == pytest.approx(0.25) and verdicts["attribution:a"].status == drift.DRIFT
    assert verdicts["attribution:b"].distance == pytest.approx(0.25) and verdicts["attribution:b"].status == drift.OK
    assert verdicts["attribution:b"].threshold == 0.3  # a per-feature threshold overrides the default
    evidence = verdicts["attribution:a"].to_json()["evidence"]
    assert evidence == {"baseline_score": 0.75, "window_score": 0.5, "baseline_mean_abs_attribution": 3.0,
                        "window_mean_abs_attribution": 1.0, "baseline_rows": 200, "window_rows": 150}
    assert "0.750" in verdicts["attribution:a"].message and "0.500" in verdicts["attribution:a"].message


def test_a_window_below_min_count_is_insufficient_data_not_drift():
    base = attribution.AttributionProfile({"a": 3.0, "b": 1.0}, rows=200)
    window = attribution.AttributionProfile({"a": 0.0, "b": 1.0}, rows=20)

    verdicts = attribution.compare(base, window, threshold=0.1, min_count=100)

    assert {v.status for v in verdicts} == {drift.INSUFFICIENT}


def test_rows_the_model_cannot_take_are_left_out_and_counted():
    rows = [{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": "heavy", "b": 2.0, "c": 3.0}, "not a row", {"a": 0.5, "b": None}]

    result = attribution.profile(linear_model(), rows, sample_rows=0)

    assert result.rows == 2 and result.invalid == 2  # a missing or null field is the model's null, not invalid


@pytest.fixture(scope="module")
def penguins(penguin_model, penguin_splits, shared_root):
    from kfkit.serving.model_io import LoadedModel
    from kfkit.warehouse.local import LocalWarehouse

    train = pads.dataset(str(penguin_splits["train"]), format="parquet").to_table()
    import pyarrow as pa

    batches = LocalWarehouse(shared_root).query_batches(
        "SELECT * EXCLUDE (species) FROM `bigquery-public-data.ml_datasets.penguins` WHERE species IS NOT NULL")
    return LoadedModel(penguin_model), train, pa.Table.from_batches(list(batches)).to_pylist()


def test_a_window_whose_feature_lost_its_importance_is_flagged_naming_that_feature(penguins):
    model, train, rows = penguins
    rng = np.random.default_rng(0)
    window = [dict(rows[i]) for i in rng.integers(0, len(rows), size=150)]
    for row in window[: 3 * len(window) // 4]:
        row["culmen_length_mm"] = None  # the feature's coverage is gone from three requests in four

    verdicts = attribution.attribution_drift(model, train, window, threshold=0.1, min_count=100)

    drifted = [v for v in verdicts if v.status == drift.DRIFT]
    assert [v.feature for v in drifted][:1] == ["attribution:culmen_length_mm"]
    evidence = drifted[0].evidence
    assert evidence["window_score"] < evidence["baseline_score"] - 0.1
    assert evidence["baseline_rows"] == attribution.SAMPLE_ROWS and evidence["window_rows"] == 150
    # the distribution verdict cannot see it: missing values are left out of its distance
    baseline = drift.baseline_from_columns(drift.columns_of(train))
    value_verdict = drift.compare({"culmen_length_mm": baseline["culmen_length_mm"]}, drift.columns_of(window),
                                  min_count=10, features=["culmen_length_mm"])[0]
    assert value_verdict.status == drift.OK


def test_in_distribution_windows_raise_no_attribution_alarm_over_repeated_seeded_samples(penguins):
    model, train, rows = penguins
    base = attribution.profile(model, train, seed=0)
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(5):  # benchmarks/attribution_guard.py runs 100 per window size
        window = [rows[i] for i in rng.integers(0, len(rows), size=200)]
        verdicts = attribution.compare(base, attribution.profile(model, window, seed=1), threshold=0.1)
        alarms += any(v.status == drift.DRIFT for v in verdicts)

    assert alarms == 0


def test_monitor_result_gains_attribution_verdicts_worst_first_and_drift_is_detected(penguins, penguin_model):
    model, train, rows = penguins
    window = [dict(r) for r in rows[:150]]
    for row in window:
        row["culmen_length_mm"] = None
    result = mon.monitor(window, None, baseline_table=train.drop(["species"]), min_count=100)
    assert not any(f.feature.startswith("attribution:") for f in result.features)

    mon.add_attribution_drift(result, str(penguin_model), train, window, threshold=0.1)

    assert result.drift_detected and result.features[0].feature == "attribution:culmen_length_mm"
    report = mon.render_report(result)
    assert "attribution score distance" in report
    assert "attribution:culmen_length_mm" in {a["feature"] for a in result.anomalies_json()["anomalies"]}


def test_without_tensorflow_the_monitor_says_what_attribution_drift_needs(monkeypatch):
    import importlib.util

    from kfkit.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    result = mon.MonitorResult([], (0.0, 0.0), 0, "skew")

    with pytest.raises(ConfigError, match="needs TensorFlow: the kfkit-runtime image"):
        mon.add_attribution_drift(result, "/nowhere", [], [], threshold=0.1)
