import json
import math

import numpy as np
import pyarrow as pa
import pytest

from kfkit.components.monitor import drift
from kfkit.components.monitor.drift import (DRIFT, ERROR, INSUFFICIENT, MISSING, NEW, OK, categorical_profile, compare,
                                      numeric_profile)
from kfkit.components.monitor.monitor import INSUFFICIENT_VERDICT, alert, monitor, read_request_logs, render_report
from kfkit import tfdv
from tests import tfdv_reference as ref


def _reference_jsd(a, b):
    return ref.jensen_shannon_divergence(ref.equi_width_histogram(list(a)), ref.equi_width_histogram(list(b)))


def _samples(rng, kind, n):
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "lognormal":  # heavy tail: the case where kfkit's old bins disagreed with TFDV's
        return rng.lognormal(sigma=2.0, size=n)
    if kind == "integers":
        return rng.integers(0, 5, size=n).astype(float)
    if kind == "constant":
        return np.full(n, 3.25)
    if kind == "with_inf":
        values = rng.normal(size=n)
        values[: n // 10] = np.inf
        values[n // 10: n // 8] = -np.inf
        return values
    if kind == "with_nan":
        values = rng.normal(size=n)
        values[: n // 7] = np.nan
        return values
    if kind == "all_nan":
        return np.full(n, np.nan)
    if kind == "only_inf":
        return np.full(n, np.inf)
    raise ValueError(kind)


KINDS = ["normal", "lognormal", "integers", "constant", "with_inf", "with_nan"]


@pytest.mark.parametrize("seed", range(12))
def test_numeric_js_divergence_matches_tfdv_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    a = _samples(rng, KINDS[seed % len(KINDS)], int(rng.integers(5, 400)))
    b = _samples(rng, KINDS[(seed * 5 + 1) % len(KINDS)], int(rng.integers(5, 400))) * rng.uniform(0.5, 2)

    ours = tfdv.jensen_shannon(tfdv.histogram(a), tfdv.histogram(b))

    assert abs(ours - _reference_jsd(a, b)) < 1e-9


@pytest.mark.parametrize("a_kind, b_kind", [
    ("normal", "normal"), ("constant", "normal"), ("constant", "constant"), ("with_inf", "normal"),
    ("with_nan", "with_nan"), ("with_inf", "with_inf"), ("all_nan", "with_nan"), ("only_inf", "normal"),
    ("integers", "integers"), ("lognormal", "normal")])
def test_numeric_js_divergence_matches_tfdv_reference_on_edge_cases(a_kind, b_kind):
    rng = np.random.default_rng(7)
    a, b = _samples(rng, a_kind, 300), _samples(rng, b_kind, 200)

    try:
        expected = _reference_jsd(a, b)
    except ValueError:  # TFDV cannot normalize an empty (all-NaN after re-bucketing) histogram
        with pytest.raises(ValueError, match="empty histogram"):
            tfdv.jensen_shannon(tfdv.histogram(a), tfdv.histogram(b))
        return

    assert abs(tfdv.jensen_shannon(tfdv.histogram(a), tfdv.histogram(b)) - expected) < 1e-9


def test_same_boundaries_keep_nan_apart_and_rebucketing_drops_them_as_tfdv_does():
    same = tfdv.Histogram([(0.0, 1.0, 10.0)], num_nan=10.0)
    other = tfdv.Histogram([(0.0, 1.0, 10.0)], num_nan=0.0)
    shifted = tfdv.Histogram([(0.0, 2.0, 10.0)], num_nan=0.0)

    # NaN on one side only, in its own bucket: P = (.5, 0, .5), Q = (1, 0, 0), M = (.75, 0, .25)
    by_hand = (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25) + math.log2(1 / 0.75)) / 2
    assert tfdv.jensen_shannon(same, other) == pytest.approx(by_hand, abs=1e-12)
    ref_same = ref.jensen_shannon_divergence(ref.Hist([[0.0, 1.0, 10.0]], 10.0), ref.Hist([[0.0, 1.0, 10.0]], 0.0))
    assert ref_same == pytest.approx(by_hand, abs=1e-12)
    # different boundaries: TFDV's rebucketing starts new histograms without num_nan
    ours = tfdv.jensen_shannon(same, shifted)
    theirs = ref.jensen_shannon_divergence(ref.Hist([[0.0, 1.0, 10.0]], 10.0), ref.Hist([[0.0, 2.0, 10.0]], 0.0))
    assert abs(ours - theirs) < 1e-12


def test_hand_computed_rebucketing():
    # [0,2] with 4 values vs [1,3] with 4: union boundaries 0,1,2,3 -> (2,2,0) vs (0,2,2)
    a, b = tfdv.Histogram([(0.0, 2.0, 4.0)]), tfdv.Histogram([(1.0, 3.0, 4.0)])
    assert tfdv.aligned_counts(a, b) == ([2.0, 2.0, 0.0], [0.0, 2.0, 2.0])
    # P = (.5,.5,0) Q = (0,.5,.5), M = (.25,.5,.25): KL(P||M) = .5*log2(2) = .5 -> JSD .5
    assert tfdv.jensen_shannon(a, b) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(6))
def test_categorical_linf_matches_tfdv_reference(seed):
    rng = np.random.default_rng(seed)
    a = {f"v{i}": float(rng.integers(1, 50)) for i in range(rng.integers(1, 30))}
    b = {f"v{i}": float(rng.integers(1, 50)) for i in range(rng.integers(1, 30))}

    assert tfdv.linf(a, b)[1] == pytest.approx(ref.linf_distance(a, b)[1], abs=1e-12)
    assert tfdv.linf(a, b)[0] == ref.linf_distance(a, b)[0]


def test_high_cardinality_categorical_against_an_identical_copy_is_zero():
    values = pa.array([f"user-{i % 5000}" for i in range(20000)])
    base, target = categorical_profile(values), categorical_profile(values)

    [result] = compare({"u": base}, {"u": values}, min_count=1)

    assert len(base.counts) == tfdv.TOP_K and target.counts == base.counts
    assert result.distance == 0.0 and result.status == OK


def test_missing_values_are_left_out_of_both_distances():
    with_missing = pa.array([1.0, 2.0, None, None, 3.0] * 100)
    without = pa.array([1.0, 2.0, 3.0] * 100)
    cats = pa.array(["a", None, "b"] * 100)

    assert tfdv.jensen_shannon(numeric_profile(with_missing).histogram, numeric_profile(without).histogram) == 0.0
    assert tfdv.linf(categorical_profile(cats).counts, {"a": 1, "b": 1})[1] == 0.0
    assert numeric_profile(with_missing).missing == 200


def test_a_few_normal_requests_are_insufficient_data_not_drift(penguin_validation):
    rows = [{"island": "Biscoe", "culmen_length_mm": 45.0, "culmen_depth_mm": 15.0, "flipper_length_mm": 215.0,
             "body_mass_g": 5000.0, "sex": "FEMALE"}] * 5

    result = monitor(rows, statistics=penguin_validation.statistics)

    assert not result.drift_detected
    assert result.verdict == INSUFFICIENT_VERDICT
    assert {f.status for f in result.features} == {INSUFFICIENT}


def test_empty_window_is_a_verdict_with_a_report_not_an_error(penguin_validation):
    result = monitor([], [], statistics=penguin_validation.statistics, window=(0.0, 3600.0))

    assert result.verdict == INSUFFICIENT_VERDICT and result.rows == 0 and not result.drift_detected
    assert "insufficient data" in render_report(result)


def test_hostile_values_are_reported_on_their_feature_and_never_stop_the_others(penguin_validation):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(600):
        row = {"island": rng.choice(["Biscoe", "Dream", "Torgersen"]), "culmen_length_mm": float(rng.normal(44, 5)),
               "culmen_depth_mm": float(rng.normal(17, 2)), "flipper_length_mm": float(rng.normal(200, 14)),
               "body_mass_g": float(rng.normal(4200, 800)), "sex": rng.choice(["MALE", "FEMALE"]),
               "extra_feature": i}
        rows.append(row)
    rows[0]["culmen_length_mm"] = math.inf
    rows[1]["culmen_length_mm"] = math.nan
    rows[2]["culmen_length_mm"] = "forty"            # a string in a numeric column
    rows[3]["culmen_length_mm"] = 10 ** 400          # beyond float range
    rows[4]["culmen_length_mm"] = [1, 2]             # mixed types within the column
    rows[5]["island"] = "x" * 100_000                # a very long string
    rows[6]["island"] = {"nested": True}
    for row in rows:
        row["flipper_length_mm"] = math.nan          # an all-NaN feature
        row.pop("body_mass_g")                       # a feature missing from every request

    result = monitor(rows, statistics=penguin_validation.statistics)

    by_name = {f.feature: f for f in result.features}
    assert by_name["culmen_length_mm"].invalid == 2 and by_name["culmen_length_mm"].status in (OK, DRIFT)
    assert by_name["island"].invalid == 1 and by_name["island"].unseen == 1
    assert by_name["flipper_length_mm"].status == ERROR  # all NaN: reported on that feature, with the reason
    assert "NaN" in by_name["flipper_length_mm"].message
    assert by_name["body_mass_g"].status == MISSING
    assert by_name["extra_feature"].status == NEW
    assert by_name["sex"].status == OK and by_name["culmen_depth_mm"].status == OK
    assert len(max(by_name["island"].labels, key=len)) <= drift.MAX_LABEL
    render_report(result)  # renders whatever the window held
    json.dumps(result.anomalies_json(), allow_nan=False)


def test_one_feature_that_cannot_be_compared_is_an_error_on_that_feature_only():
    base = {"a": drift.Profile("numeric", histogram=tfdv.Histogram([])), "b": categorical_profile(pa.array(["x"] * 300))}

    results = {r.feature: r for r in compare(base, {"a": [1.0] * 300, "b": ["x"] * 300})}

    assert results["a"].status == ERROR and "empty" in results["a"].message
    assert results["b"].status == OK


def test_shift_is_found_on_the_shifted_feature_only():
    rng = np.random.default_rng(1)
    base_values = rng.normal(size=20000)
    baseline = {"x": numeric_profile(pa.array(base_values)), "y": numeric_profile(pa.array(base_values))}
    target = {"x": pa.array(rng.normal(size=5000)), "y": pa.array(rng.normal(loc=2.0, size=5000))}

    results = {r.feature: r for r in compare(baseline, target)}

    assert results["x"].distance < 0.05 and results["x"].status == OK
    assert results["y"].distance > 0.3 and results["y"].status == DRIFT


def test_request_logs_of_any_shape_are_read_without_failing(tmp_path):
    lines = [json.dumps({"timestamp": 100.0, "instances": [{"a": 1}], "predictions": [{"classes": "x"}]}),
             json.dumps({"timestamp": 200.0, "instances": [{"a": 2}, {"a": "three"}],
                         "predictions": [{"classes": "y"}, {"classes": "y"}]}),
             json.dumps({"timestamp": "soon", "instances": [{"a": 9}]}),
             json.dumps([1, 2, 3]),
             json.dumps({"timestamp": 210.0, "instances": "not a list", "predictions": None}),
             "[" * 10000,
             '{"timestamp": 150, "inst']
    (tmp_path / "1970-01-01.jsonl").write_text("\n".join(lines) + "\n")

    rows, predictions = read_request_logs(tmp_path, 150.0, 300.0)

    assert rows == [{"a": 2}, {"a": "three"}]
    assert [p["prediction"] for p in predictions] == ["y", "y"]


def test_alert_logs_a_warning_and_writes_an_alert_file(tmp_path, caplog):
    rng = np.random.default_rng(2)
    stats = {"label": "", "columns": {"y": {"kind": "numeric", "count": 5000,
                                            "tfdv_histogram": tfdv.histogram(rng.normal(size=5000)).to_json()}}}
    result = monitor(pa.table({"y": rng.normal(loc=3, size=1000)}), None, statistics=stats)

    with caplog.at_level("WARNING"):
        path = alert(result, endpoint="e", local_root=tmp_path)

    assert "1 feature(s) over threshold: y" in caplog.text
    assert json.loads(open(path).read())["features"] == ["y"]


def test_alert_publishes_to_pubsub_through_the_adapter():
    class FakePublisher:
        def __init__(self):
            self.sent = []

        def publish(self, topic, data, **attrs):
            self.sent.append((topic, json.loads(data), attrs))
            return type("F", (), {"result": lambda self, timeout: "msg-1"})()

    stats = {"label": "", "columns": {"c": {"kind": "categorical", "count": 300, "nulls": 0, "frequencies": {"a": 300}}}}
    result = monitor(pa.table({"c": ["b"] * 300}), None, statistics=stats)
    publisher = FakePublisher()

    assert alert(result, endpoint="e", destination="pubsub://projects/p/topics/alerts", publisher=publisher) == "msg-1"
    topic, payload, attrs = publisher.sent[0]
    assert topic == "projects/p/topics/alerts" and payload["features"] == ["c"] and attrs == {"source": "kfkit-monitor"}


def test_heavy_tailed_window_from_the_training_data_alarms_under_tfdv_but_not_on_baseline_bins():
    # why baseline_bins exists: TFDV's per-side ranges re-bucket a long tail uniformly (benchmarks/monitor_guard.py)
    rng = np.random.default_rng(11)
    training = rng.lognormal(sigma=2.5, size=20000)
    window = pa.array(rng.choice(training, size=2000))
    baseline = {"miles": numeric_profile(pa.array(training))}

    [tfdv_result] = compare(baseline, {"miles": window}, method="tfdv")
    [bins_result] = compare(baseline, {"miles": window}, method="baseline_bins")

    assert tfdv_result.status == DRIFT and "heavy tail" in tfdv_result.message
    assert bins_result.status == OK and bins_result.distance < 0.05


def test_baseline_bins_counts_the_window_on_the_baseline_edges_with_open_ends():
    counts = drift.counts_on_edges(np.array([-5.0, 0.0, 0.5, 1.0, 9.0, np.nan, np.inf]), [0.0, 0.5, 1.0])
    assert counts == [1.0, 1.0, 2.0, 2.0, 1.0]  # below, [0,.5), [.5,1], above (9 and inf), NaN


def test_window_bounds_typed_as_rfc3339_on_the_command_line_stay_strings():
    from kfkit.components.monitor.monitor import parse_time
    from kfkit.params import check, parse_assignments
    from kfkit.pipelines.monitoring import monitoring_pipeline

    values = check(monitoring_pipeline, parse_assignments(["window_end=2026-11-22T10:00:00Z", "window_hours=2"]))

    assert values["window_end"] == "2026-11-22T10:00:00Z"
    assert parse_time(values["window_end"], 0.0) == 1795341600.0
    assert parse_time("2026-11-22T11:00:00+01:00", 0.0) == 1795341600.0


def test_recipe_defaults_are_the_training_pipelines_own():
    import inspect

    from kfkit.components.recipe.recipe import TRAINING_DEFAULTS
    from kfkit.pipelines.training import PLACEMENT_PARAMETERS, training_pipeline

    signature = inspect.signature(training_pipeline.pipeline_func)
    declared = {n: signature.parameters[n].default for n in training_pipeline.component_spec.inputs
                if n not in PLACEMENT_PARAMETERS}

    assert declared == TRAINING_DEFAULTS and list(declared) == list(TRAINING_DEFAULTS)


def test_whatever_the_server_accepted_the_monitor_reads_and_judges(tmp_path, penguin_model, penguin_validation):
    from kfkit.serving.server import ModelServer

    server = ModelServer(model_dir=str(penguin_model), local_root=str(tmp_path), endpoint="corpus")
    base = {"island": "Biscoe", "culmen_length_mm": 45.0, "culmen_depth_mm": 15.0, "flipper_length_mm": 215.0,
            "body_mass_g": 5000.0, "sex": "FEMALE"}
    odd_values = {"culmen_length_mm": [math.nan, math.inf, -math.inf, 1e308, 10 ** 30, -0.0, None, 0],
                  "island": ["", "x" * 50_000, "\u2028", "Biscoe\x00", None, "Ünïcødé"],
                  "sex": [None, "", "male"], "extra": [1, "a", [1, 2], {"k": "v"}]}
    accepted = 0
    for name, values in odd_values.items():
        for value in values:
            try:
                server.predict({"instances": [{**base, name: value}] * 3})
                accepted += 1
            except Exception:
                pass  # refused requests are the server's business (and never logged)
    for _ in range(40):
        server.predict({"instances": [base] * 5})
    start, end = 0.0, 4e9

    rows, predictions = read_request_logs(tmp_path / "request_logs" / "corpus", start, end)
    result = monitor(rows, predictions, statistics=penguin_validation.statistics, window=(start, end))

    assert accepted > 5 and len(rows) >= 200
    assert result.verdict in ("drift", "no drift", "insufficient data")
    json.dumps(result.anomalies_json(), allow_nan=False)
    render_report(result)


def test_a_high_cardinality_column_keeps_tfdvs_top_values_with_ties_broken_by_value():
    import pyarrow.compute as pc

    from kfkit import tfdv
    from kfkit.components.monitor.drift import categorical_profile

    rng = np.random.default_rng(7)
    values = np.array([f"v{j:05d}" for j in range(5000)])
    column = pa.array(list(values[rng.zipf(1.5, size=50_000) % 5000]) + ["é", "ß", None] * 40)
    every = {r["values"]: float(r["counts"]) for r in pc.value_counts(pc.drop_null(column)).to_pylist()}

    profile = categorical_profile(column, k=100)

    assert profile.counts == tfdv.top_k(every, 100)
    assert profile.missing == 40 and profile.present == len(column) - 40
