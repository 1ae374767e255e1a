"""Canary analysis: the verdict from what each version served, and what it does about it.

The prediction distance is the monitor's (TFDV's L-infinity distance between class distributions,
its Jensen-Shannon divergence between numeric histograms: see tests/test_drift.py for their
conformance to TFDV's code); the figures here are computed by hand.
"""

import json
import math
import time

import numpy as np

import pytest

from kfkit.components.canary import traffic
from kfkit.components.canary.analysis import INCONCLUSIVE, PROMOTE, ROLLBACK, Served, Thresholds, analyze
from kfkit.components.canary.canary import analyze_canary, sides
from kfkit.errors import ConfigError


def side(name, n, errors=0, latency=10.0, predictions=None, labelled=None):
    return Served(name, requests=n, errors=errors, latencies_ms=[latency] * (n - errors),
                  predictions=list(predictions if predictions is not None else ["a", "b"] * ((n - errors) // 2)),
                  labelled=list(labelled or []))


def test_too_little_traffic_on_either_side_is_inconclusive_naming_the_counts():
    result = analyze(side("canary", 40), side("baseline", 400), Thresholds(min_requests=50))

    assert result.verdict == INCONCLUSIVE and result.criteria == []
    assert result.reason == "too little traffic to judge: canary 40 requests (min_requests=50)"


def test_a_canary_that_serves_like_the_baseline_is_promoted():
    result = analyze(side("canary", 100), side("baseline", 400))

    assert result.verdict == PROMOTE
    assert [(c.name, c.passed) for c in result.criteria] == [("error_rate", True), ("latency_p99_ms", True),
                                                             ("prediction_distance", True)]
    assert result.criteria[2].canary == 0.0  # the same class shares: L-infinity distance 0


def test_significantly_more_errors_than_allowed_roll_back_with_the_tests_p_value():
    # canary 30/1000 vs baseline 10/2000; allowed 1.1 x 0.005 = 0.0055. Agresti-Caffo by hand:
    # pc = 31/1002, pb = 11/2002, z = (pc - 1.1 pb) / sqrt(pc(1-pc)/1002 + 1.21 pb(1-pb)/2002) = 4.319
    result = analyze(side("canary", 1000, errors=30), side("baseline", 2000, errors=10))

    assert result.verdict == ROLLBACK
    [error_rate] = [c for c in result.criteria if c.name == "error_rate"]
    assert (error_rate.canary, error_rate.baseline, error_rate.limit, error_rate.status) == (
        0.03, 0.005, pytest.approx(0.0055), "fail")
    assert error_rate.p_value == pytest.approx(0.5 * math.erfc(4.319 / math.sqrt(2)), rel=0.01)
    assert result.reason.startswith("error_rate: canary 30/1000 failed vs 10/2000")


def test_a_few_more_errors_on_a_hundred_requests_is_noise_not_a_rollback():
    # the old absolute rule rolled 7/100 against 6/100 back (by rounding at its +0.01 limit)
    result = analyze(side("canary", 100, errors=7), side("baseline", 100, errors=6))

    [error_rate] = [c for c in result.criteria if c.name == "error_rate"]
    assert error_rate.status == "pass" and result.verdict == PROMOTE


def test_a_near_tripling_of_errors_over_20000_requests_rolls_back():
    # the old absolute rule promoted 1.4% against 0.5% (+0.009 < +0.01)
    result = analyze(side("canary", 20000, errors=280), side("baseline", 20000, errors=100))

    [error_rate] = [c for c in result.criteria if c.name == "error_rate"]
    assert error_rate.status == "fail" and error_rate.p_value < 1e-6 and result.verdict == ROLLBACK


def test_mann_whitney_matches_scipys_one_sided_asymptotic_test_with_ties():
    from kfkit.components.canary.analysis import _mann_whitney_greater
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = np.round(rng.lognormal(2.1, 0.3, 300), 1)  # rounded: ties, as logged milliseconds have
    y = np.round(rng.lognormal(2.0, 0.3, 500), 1)

    expected = scipy_stats.mannwhitneyu(x, y, alternative="greater", use_continuity=True, method="asymptotic").pvalue

    assert _mann_whitney_greater(x, y) == pytest.approx(expected, rel=1e-9)


def test_a_canary_without_latencies_is_inconclusive_naming_the_missing_side():
    canary = side("canary", 200)
    canary.latencies_ms = []

    result = analyze(canary, side("baseline", 400))

    [latency] = [c for c in result.criteria if c.name == "latency_p99_ms"]
    assert latency.status == "insufficient" and "canary" in latency.detail
    assert result.verdict == INCONCLUSIVE and result.reason.startswith("latency_p99_ms: no latencies to judge")


def test_warm_up_requests_are_left_out_of_the_latency_test():
    canary = side("canary", 200)
    canary.latencies_ms = [500.0] * 20 + [10.0] * 180  # a cold start's first 20

    assert analyze(canary, side("baseline", 400)).verdict == PROMOTE
    assert analyze(canary, side("baseline", 400), Thresholds(warmup_requests=0)).verdict == ROLLBACK


def timed_side(name, times, rng, slow_after=None, factor=1.0):
    """A side whose latencies are lognormal around 8 ms, x3 for requests after slow_after (a slow
    spell of the whole machine), x factor throughout."""
    times = np.asarray(times, dtype=float)
    ms = rng.lognormal(math.log(8), 0.25, len(times)) * factor
    if slow_after is not None:
        ms[times > slow_after] *= 3
    return Served(name, requests=len(times), latencies_ms=list(ms), latency_times=list(times),
                  predictions=["a", "b"] * (len(times) // 2))


def test_a_slow_spell_of_the_machine_when_the_canary_took_more_traffic_is_not_blamed_on_it():
    # the canary's traffic mostly in the last fifth of the window, when the machine is 3x slower for both
    rng = np.random.default_rng(5)
    baseline = timed_side("baseline", np.linspace(0, 100, 2000), rng, slow_after=80)
    canary = timed_side("canary", np.concatenate([np.linspace(0, 80, 100), np.linspace(80.01, 100, 300)]), rng,
                        slow_after=80)
    untimed = Served("canary", requests=canary.requests, latencies_ms=canary.latencies_ms,
                     predictions=canary.predictions)

    result = analyze(canary, baseline, Thresholds(warmup_requests=0))

    [latency] = [c for c in result.criteria if c.name == "latency_p99_ms"]
    assert result.verdict == PROMOTE and "in 10 time slices" in latency.detail
    assert analyze(untimed, baseline, Thresholds(warmup_requests=0)).verdict == ROLLBACK  # the pooled window blames it


def test_a_canary_slower_in_every_time_slice_rolls_back():
    rng = np.random.default_rng(6)
    baseline = timed_side("baseline", np.linspace(0, 100, 2000), rng, slow_after=80)
    canary = timed_side("canary", np.linspace(0, 100, 400), rng, slow_after=80, factor=1.6)

    result = analyze(canary, baseline, Thresholds(warmup_requests=0))

    assert result.verdict == ROLLBACK and result.reason.startswith("latency_p99_ms")


def test_a_shift_in_the_predicted_classes_beyond_noise_and_allowance_rolls_back():
    # 40/60 against 60/40 over 1,000 answers each: L-infinity 0.2, far beyond 0.05 + its noise
    canary = side("canary", 1000, predictions=["a"] * 400 + ["b"] * 600)
    baseline = side("baseline", 1000, predictions=["a"] * 600 + ["b"] * 400)

    result = analyze(canary, baseline)

    [distance] = [c for c in result.criteria if c.name == "prediction_distance"]
    assert distance.canary == pytest.approx(0.2) and distance.status == "fail"
    assert 0.05 < distance.limit < 0.2 and distance.p_value < 0.01


def test_a_slower_p99_than_the_ratio_allows_rolls_back():
    canary = side("canary", 100)
    canary.latencies_ms = [10.0] * 90 + [100.0] * 10  # p99 100 ms (numpy's linear interpolation)

    result = analyze(canary, side("baseline", 400, latency=20.0), Thresholds(max_latency_ratio=2.0))

    [latency] = [c for c in result.criteria if c.name == "latency_p99_ms"]
    assert (latency.canary, latency.baseline, latency.limit) == (100.0, 20.0, 40.0)
    assert result.verdict == ROLLBACK


def test_a_shift_in_the_predicted_classes_beyond_the_distance_rolls_back():
    # baseline a:b = 50:50, canary 90:10 -> L-infinity distance |0.9 - 0.5| = 0.4 > 0.3
    result = analyze(side("canary", 100, predictions=["a"] * 90 + ["b"] * 10),
                     side("baseline", 400, predictions=["a"] * 200 + ["b"] * 200))

    [distance] = [c for c in result.criteria if c.name == "prediction_distance"]
    assert distance.canary == pytest.approx(0.4) and not distance.passed
    assert "L-infinity distance between the versions' predictions 0.4000" in result.reason


def test_numeric_predictions_use_the_jensen_shannon_divergence():
    values = [float(i % 10) for i in range(200)]

    result = analyze(side("canary", 200, predictions=values), side("baseline", 200, predictions=values))

    [distance] = [c for c in result.criteria if c.name == "prediction_distance"]
    assert distance.canary == pytest.approx(0.0, abs=1e-12)
    assert "Jensen-Shannon divergence" in distance.detail


def test_with_ground_truth_an_accuracy_drop_beyond_the_allowance_rolls_back():
    # baseline 900/1000 right, canary 800/1000: drop 0.10, significantly over 0.02
    canary = side("canary", 1000, labelled=[("a", "a")] * 800 + [("a", "b")] * 200)
    baseline = side("baseline", 1000, labelled=[("a", "a")] * 900 + [("a", "b")] * 100)

    result = analyze(canary, baseline)

    [accuracy] = [c for c in result.criteria if c.name == "accuracy"]
    assert (accuracy.canary, accuracy.baseline, accuracy.limit) == (0.8, 0.9, pytest.approx(0.88))
    assert result.verdict == ROLLBACK


def test_with_numeric_ground_truth_rmse_may_grow_by_the_ratio_only():
    # baseline errors of 1 -> RMSE 1; canary errors of 2 -> RMSE 2 > 1.1
    canary = side("canary", 100, predictions=[1.0] * 100, labelled=[(3.0, 1.0)] * 100)
    baseline = side("baseline", 100, predictions=[1.0] * 100, labelled=[(2.0, 1.0)] * 100)

    result = analyze(canary, baseline)

    [rmse] = [c for c in result.criteria if c.name == "rmse"]
    assert (rmse.canary, rmse.baseline, rmse.limit, rmse.passed) == (2.0, 1.0, pytest.approx(1.1), False)


@pytest.mark.parametrize("field, value", [("min_requests", 0), ("max_latency_ratio", -1.0),
                                          ("max_prediction_distance", float("nan"))])
def test_thresholds_out_of_range_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match=field):
        analyze(side("c", 10), side("b", 10), Thresholds(**{field: value}))


def write_log(root, endpoint, records):
    directory = root / "request_logs" / endpoint
    directory.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime(records[0]["timestamp"]))
    with open(directory / f"{day}.jsonl", "a") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def test_the_request_logs_give_each_version_its_requests_errors_latency_predictions_and_labels(tmp_path):
    records = [
        {"timestamp": 100.0, "deployed_model_id": "v1", "status": 200, "latency_ms": 5.0,
         "instances": [{"id": 1}, {"id": 2}], "predictions": [{"classes": "a"}, {"classes": "b"}]},
        {"timestamp": 101.0, "deployed_model_id": "v2", "status": 400, "latency_ms": 1.0, "error": "bad"},
        {"timestamp": 102.0, "deployed_model_id": "v2", "latency_ms": 7.0,  # before 0.6.0: no status, answered
         "instances": [{"id": 3}], "predictions": [{"value": 2.5}]},
        {"timestamp": 99.0, "deployed_model_id": "v1", "status": 200, "instances": [{}], "predictions": ["x"]},
        {"timestamp": 103.0, "deployed_model_id": 7},
    ]
    write_log(tmp_path, "e", records)
    write_log(tmp_path, "e", [{"timestamp": 104.0}, '{"timestamp": 104.5, "deployed_mod'])

    served, timeline = traffic.read_served(tmp_path / "request_logs" / "e", 100.0, 200.0,
                                           labels={"1": "a", "3": 2.0}, request_key="id", buckets=4)

    v1, v2 = served["v1"], served["v2"]
    assert (v1.requests, v1.errors, v1.latencies_ms, v1.predictions, v1.labelled) == (1, 0, [5.0], ["a", "b"], [("a", "a")])
    assert (v2.requests, v2.errors, v2.latencies_ms, v2.predictions, v2.labelled) == (2, 1, [1.0, 7.0], [2.5], [(2.5, 2.0)])
    assert timeline["v2"][0] == [2, 1, pytest.approx(6.94)]  # both in the first of 4 slices; p99 of [1, 7]


def test_an_endpoint_without_a_canary_is_refused():
    state = {"endpoint": "e", "deployed_models": [{"id": "a", "traffic": 100}, {"id": "b", "traffic": 0}]}

    with pytest.raises(ConfigError, match="endpoint 'e' has no canary: one version takes all its traffic"):
        sides(state)


@pytest.fixture
def endpoint_with_canary(tmp_path, penguin_model):
    """Versions 1 and 2 of `penguins` registered; 1 serving, 2 deployed as a 20% canary."""
    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.register.register import register_model
    from kfkit.serving.endpoints import LocalEndpoints

    registry = MlflowRegistry(tmp_path)
    register_model(str(penguin_model), model_name="penguins", registry=registry)
    register_model(str(penguin_model), model_name="penguins", registry=registry)
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("penguins", "penguins", "1", str(penguin_model), 100)
    state = endpoints.deploy("penguins", "penguins", "2", str(penguin_model), 20)
    [v1, v2] = sorted(state["deployed_models"], key=lambda m: m["version"])
    return tmp_path, registry, v1, v2


class Clock:
    """Time that moves only when the analysis sleeps: the window passes without waiting."""

    def __init__(self, now):
        self.now, self.sleeps = now, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def traffic_for(v1, v2, n1, n2, canary_errors=0, canary_classes=("Adelie", "Gentoo")):
    at = v2["deployed_at"] + 0.001  # just after the canary arrived (and before any test's "now")
    records = [{"timestamp": at, "deployed_model_id": v1["id"], "status": 200, "latency_ms": 4.0,
                "instances": [{}], "predictions": [{"classes": ("Adelie", "Gentoo")[i % 2]}]} for i in range(n1)]
    records += [{"timestamp": at, "deployed_model_id": v2["id"], "status": 500 if i < canary_errors else 200,
                 "latency_ms": 4.0, "instances": [{}], "predictions": [{"classes": canary_classes[i % 2]}]}
                for i in range(n2)]
    return records


def test_a_good_canary_is_promoted_and_becomes_the_champion(endpoint_with_canary):
    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100))
    clock = Clock(v2["deployed_at"] + 2)

    result = analyze_canary("penguins", local_root=str(root), window_seconds=60, poll_seconds=5,
                            thresholds=Thresholds(min_requests=100), clock=clock, sleep=clock.sleep)

    assert result.verdict == PROMOTE and sum(clock.sleeps) == 60
    assert result.split == {v1["id"]: 0, v2["id"]: 100}
    assert registry.version_by_alias("penguins", "champion").version == "2"
    assert registry.client.get_model_version("penguins", "2").tags["kfkit.canary"] == "promoted"


def test_a_failing_canary_is_rolled_back_and_the_champion_restored(endpoint_with_canary):
    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100, canary_errors=10))
    clock = Clock(v2["deployed_at"] + 2)

    result = analyze_canary("penguins", local_root=str(root), window_seconds=60, clock=clock, sleep=clock.sleep,
                            thresholds=Thresholds(min_requests=100))

    assert result.verdict == ROLLBACK and "error_rate" in result.analysis.reason
    assert result.split == {v1["id"]: 100}  # the split before the canary
    assert registry.version_by_alias("penguins", "champion").version == "1"
    assert registry.client.get_model_version("penguins", "2").tags["kfkit.canary"] == "rejected"


def test_too_little_traffic_extends_the_window_then_keeps_the_split(endpoint_with_canary):
    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 10))
    clock = Clock(v2["deployed_at"] + 2)

    result = analyze_canary("penguins", local_root=str(root), window_seconds=30, max_extensions=2, poll_seconds=30,
                            clock=clock, sleep=clock.sleep, thresholds=Thresholds(min_requests=100))

    assert result.verdict == INCONCLUSIVE and clock.sleeps == [30, 30, 30]  # the window, then two extensions
    assert result.split == {v1["id"]: 80, v2["id"]: 20} and result.action == "kept the split (inconclusive)"


def test_inconclusive_can_roll_back_when_asked(endpoint_with_canary):
    root, registry, v1, v2 = endpoint_with_canary
    clock = Clock(v2["deployed_at"] + 2)

    result = analyze_canary("penguins", local_root=str(root), window_seconds=1, on_inconclusive="rollback",
                            clock=clock, sleep=clock.sleep)

    assert result.verdict == INCONCLUSIVE and result.split == {v1["id"]: 100}


def test_the_report_says_the_verdict_and_each_criterion(endpoint_with_canary):
    from kfkit.components.canary.report import render

    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100, canary_classes=("Adelie", "Adelie")))
    clock = Clock(v2["deployed_at"] + 2)
    result = analyze_canary("penguins", local_root=str(root), window_seconds=5, clock=clock, sleep=clock.sleep,
                            thresholds=Thresholds(min_requests=100), act=False)

    page = render(result)

    assert result.verdict == ROLLBACK and result.action == "none"
    assert "Verdict: ROLLBACK: prediction_distance: L-infinity distance" in page
    assert page.count("<svg") >= 3  # requests and latency over time, and the predictions
    assert "no errors in the window" in page  # said, not drawn as an empty chart


@pytest.mark.parametrize("kwargs, message", [
    ({"endpoint_backend": "kserve"}, "prometheus_url is empty: a canary on KServe is judged on the request counts"),
    ({"endpoint_backend": "kserve", "prometheus_url": "http://prometheus:9090"},
     "request_logger_url is empty: a canary on KServe is judged on the predictions"),
    ({"endpoint_backend": "kserve", "prometheus_url": "prometheus:9090", "request_logger_url": "http://sink"},
     "prometheus_url must be the http"),
    ({"backend": "vertex"}, "request_logging_table is empty"),
    ({"backend": "tpu"}, "backend must be one of local, vertex, kserve"),
    ({"on_inconclusive": "promote"}, "on_inconclusive must be one of keep, rollback"),
    ({"window_seconds": -1}, "window_seconds and max_extensions must be >= 0")])
def test_bad_parameters_are_refused_before_watching(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        analyze_canary("penguins", local_root=str(tmp_path), **kwargs)


def test_canary_status_prints_each_sides_figures_and_the_verdict_so_far_without_acting(endpoint_with_canary, capsys):
    from kfkit import cli

    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100, canary_errors=10))

    code = cli.main(["canary", "status", "--endpoint", "penguins", "--local-root", str(root)])

    out = capsys.readouterr().out
    assert code == 0
    assert f"endpoint penguins: canary {v2['id']} (version 2, 20%) against {v1['id']}" in out
    assert "  canary        100 requests     10 errors (10.00%)  p50 4.0 ms  p99 4.0 ms" in out
    assert "fail         error_rate: canary 10/100 failed vs 0/400" in out
    assert "verdict if judged now: rollback" in out
    assert json.loads((root / "endpoints" / "penguins.json").read_text())["revision"] == 2  # nothing moved


def test_a_baseline_split_changed_during_the_window_is_detected_and_nothing_is_acted_on(endpoint_with_canary):
    root, registry, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100, canary_errors=10))
    clock = Clock(v2["deployed_at"] + 2)
    state_path = root / "endpoints" / "penguins.json"

    def someone_splits_the_baseline(seconds):
        # another deploy moved half of v1's share to a v3 meanwhile; the canary's own 20% is unchanged
        state = json.loads(state_path.read_text())
        v3 = {**next(m for m in state["deployed_models"] if m["id"] == v1["id"]), "id": "penguins-v3-x", "traffic": 40}
        for m in state["deployed_models"]:
            if m["id"] == v1["id"]:
                m["traffic"] = 40
        state["deployed_models"].append(v3)
        state_path.write_text(json.dumps(state))
        clock.sleep(seconds)

    with pytest.raises(ConfigError) as changed:
        analyze_canary("penguins", local_root=str(root), window_seconds=60, poll_seconds=60, clock=clock,
                       sleep=someone_splits_the_baseline, thresholds=Thresholds(min_requests=100))

    assert str(changed.value) == (f"endpoint 'penguins' changed while its canary was watched: the split was "
                                  f"{v1['id']} 80%, {v2['id']} 20%, it is now {v1['id']} 40%, {v2['id']} 20%, "
                                  f"penguins-v3-x 40%; nothing done")
    state = json.loads(state_path.read_text())
    assert {m["id"]: m["traffic"] for m in state["deployed_models"]} == {v1["id"]: 40, v2["id"]: 20, "penguins-v3-x": 40}
    assert registry.client.get_model_version("penguins", "2").tags.get("kfkit.canary") is None


def test_a_canary_is_registered_as_challenger_only_and_the_champion_stays_until_promotion(tmp_path, penguin_model):
    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.register.register import register_model

    registry = MlflowRegistry(tmp_path)
    register_model(str(penguin_model), model_name="penguins", registry=registry)

    meta = register_model(str(penguin_model), model_name="penguins", registry=registry, traffic_percent=20)

    assert meta["aliases"] == ["challenger"]
    assert registry.version_by_alias("penguins", "champion").version == "1"
    assert registry.version_by_alias("penguins", "challenger").version == "2"
