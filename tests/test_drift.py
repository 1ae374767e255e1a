import json

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon

from components.monitor.drift import (NULL, NumericProfile, categorical_counts, compare, js_divergence,
                                      linf_distance, numeric_counts)
from components.monitor.monitor import alert, monitor, read_request_logs
from kfkit.errors import ConfigError


def test_js_divergence_equals_scipy_squared_distance_base_2():
    rng = np.random.default_rng(0)
    p, q = rng.random(22), rng.random(22)
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)


def test_identical_distributions_have_distance_zero_and_disjoint_ones_the_maximum():
    assert js_divergence([3, 1, 0], [3, 1, 0]) == 0.0
    assert js_divergence([5, 0], [0, 7]) == pytest.approx(1.0)
    assert linf_distance({"a": 2, "b": 2}, {"a": 1, "b": 1}) == 0.0
    assert linf_distance({"a": 4}, {"b": 9}) == 1.0


def test_linf_on_a_hand_computed_example():
    # baseline a .5 b .3 c .2 ; target a .2 b .3 d .5 -> differences .3 0 .2 .5
    assert linf_distance({"a": 5, "b": 3, "c": 2}, {"a": 2, "b": 3, "d": 5}) == pytest.approx(0.5)


def test_missing_values_and_out_of_range_numbers_are_counted_not_dropped():
    counts = numeric_counts(pa.array([-5.0, 0.0, 0.5, 1.0, 9.0, None]), [0.0, 0.5, 1.0])
    assert counts == [1, 1, 2, 1, 1]  # below, [0,.5), [.5,1], above, null


def test_unseen_categories_and_nulls_count_in_the_distance():
    baseline = {"Dream": 50, "Biscoe": 50}
    target = pa.table({"island": ["Dream"] * 5 + ["Atlantis"] * 3 + [None] * 2})

    [result] = compare({"island": baseline}, target)

    assert result.unseen == 3 and result.nulls == 2
    assert result.distance == pytest.approx(0.5)  # Biscoe: .5 -> 0
    assert categorical_counts(target.column("island"))[NULL] == 2


def test_empty_window_is_a_clear_error_not_zero():
    with pytest.raises(ConfigError, match="target window has no logged requests"):
        monitor(pa.table({}), None, statistics={"label": "", "columns": {}})


def test_shift_is_found_on_the_shifted_feature_only():
    rng = np.random.default_rng(1)
    edges = np.linspace(-4, 4, 21).tolist()
    base_values = rng.normal(size=20000)
    baseline = {"x": NumericProfile(edges, numeric_counts(base_values, edges)),
                "y": NumericProfile(edges, numeric_counts(base_values, edges))}
    target = pa.table({"x": rng.normal(size=5000), "y": rng.normal(loc=2.0, size=5000)})

    results = {r.feature: r for r in compare(baseline, target)}

    assert results["x"].distance < 0.02 and not results["x"].anomalous
    assert results["y"].distance > 0.3 and results["y"].anomalous


def test_request_logs_in_the_window_are_read_and_a_torn_last_line_is_skipped(tmp_path):
    lines = [{"timestamp": 100.0, "instances": [{"a": 1}], "predictions": [{"classes": "x"}]},
             {"timestamp": 200.0, "instances": [{"a": 2}, {"a": 3}], "predictions": [{"classes": "y"}, {"classes": "y"}]}]
    path = tmp_path / "1970-01-01.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + '\n{"timestamp": 150, "inst')

    rows, predictions = read_request_logs(tmp_path, 150.0, 300.0)

    assert rows.column("a").to_pylist() == [2, 3]
    assert predictions.column("prediction").to_pylist() == ["y", "y"]


def test_alert_logs_a_warning_and_writes_an_alert_file(tmp_path, caplog):
    rng = np.random.default_rng(2)
    edges = np.linspace(-4, 4, 21).tolist()
    counts = numeric_counts(rng.normal(size=5000), edges)[1:-2]
    stats = {"label": "", "columns": {"y": {"kind": "numeric", "nulls": 0, "histogram": {"edges": edges, "counts": counts}}}}
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

    stats = {"label": "", "columns": {"c": {"kind": "categorical", "count": 10, "nulls": 0, "frequencies": {"a": 10}}}}
    result = monitor(pa.table({"c": ["b"] * 10}), None, statistics=stats)
    publisher = FakePublisher()

    assert alert(result, endpoint="e", destination="pubsub://projects/p/topics/alerts", publisher=publisher) == "msg-1"
    topic, payload, attrs = publisher.sent[0]
    assert topic == "projects/p/topics/alerts" and payload["features"] == ["c"] and attrs == {"source": "kfkit-monitor"}
