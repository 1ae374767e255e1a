import json

import numpy as np
import pyarrow.dataset as pads
import pytest

from kfkit.components.evaluate.evaluate import Evaluation, Thresholds, decide, evaluate_with_gate, render_report
from kfkit.components.evaluate.slices import (classification_slice_metrics, macro_auc, parse_slicing_specs,
                                              regression_slice_metrics, slice_failures, wilson)
from kfkit.errors import ConfigError

SPECS = '[{"feature_keys": ["island"]}, {"feature_keys": ["island", "sex"]}, {"feature_values": {"island": "Dream"}}]'


def test_slicing_specs_refuse_a_bad_entry_naming_it():
    with pytest.raises(ConfigError, match=r'slicing_specs\[1\] \{"feature_key": \["sex"\]\} has unknown key\(s\) feature_key'):
        parse_slicing_specs('[{"feature_keys": ["island"]}, {"feature_key": ["sex"]}]')
    with pytest.raises(ConfigError, match=r"slicing_specs\[0\].*feature_keys must be a list"):
        parse_slicing_specs('[{"feature_keys": "island"}]')
    with pytest.raises(ConfigError, match="not JSON"):
        parse_slicing_specs("island")


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    expected = binomtest(7, 9).proportion_ci(0.95, method="wilson")

    assert wilson(7, 9) == pytest.approx((expected.low, expected.high))


def test_macro_auc_matches_sklearn_one_vs_rest():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    scores = rng.dirichlet([1, 1, 1], 200) + np.eye(3)[y] * 0.3
    scores /= scores.sum(axis=1, keepdims=True)

    assert macro_auc(y, scores) == pytest.approx(roc_auc_score(y, scores, multi_class="ovr"))


def test_binary_slice_gives_fairness_rates_with_intervals():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    scores = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.4, 0.6], [0.7, 0.3]])

    m = classification_slice_metrics(y, scores, ["no", "yes"], np.random.default_rng(0))

    assert m["examples"] == 8 and m["accuracy"] == 6 / 8
    assert m["false_positive_rate"] == 1 / 4 and m["false_negative_rate"] == 1 / 4 and m["positive_rate"] == 4 / 8
    assert (m["false_positive_rate_lower"], m["false_positive_rate_upper"]) == pytest.approx(wilson(1, 4))
    assert m["roc_auc_lower"] <= m["roc_auc"] <= m["roc_auc_upper"]


def test_regression_slice_gives_error_and_a_bootstrap_interval_around_rmse():
    rng = np.random.default_rng(3)
    y = rng.normal(size=300)
    predicted = y + rng.normal(0.5, 1.0, size=300)

    m = regression_slice_metrics(y, predicted, np.random.default_rng(0))

    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - y) ** 2)))
    assert m["mean_error"] == pytest.approx(np.mean(predicted - y))
    assert m["rmse_lower"] < m["rmse"] < m["rmse_upper"] and m["rmse_upper"] - m["rmse_lower"] < 0.3


def judge_with(thresholds):
    return lambda ours, theirs: decide(Evaluation("multiclass", ours), thresholds,
                                       Evaluation("multiclass", theirs) if theirs else None)


def slice_entry(key, examples, **metrics):
    return {"slice": {"dimension": "slice", "value": key}, "metrics": {"examples": examples, **metrics}}


def test_slice_gate_names_the_failing_slice_and_ignores_small_ones():
    challenger = [slice_entry("island:Biscoe", 40, accuracy=0.95), slice_entry("island:Dream", 30, accuracy=0.7),
                  slice_entry("island:Torgersen", 5, accuracy=0.2)]

    failures = slice_failures(challenger, None, 10, judge_with(Thresholds(min_accuracy=0.8)))

    assert failures == ["slice island:Dream (30 examples) below the thresholds: accuracy 0.7000 is not >= 0.8"]


def test_slice_gate_compares_with_the_champions_same_slice():
    challenger = [slice_entry("island:Biscoe", 40, accuracy=0.95), slice_entry("island:Dream", 30, accuracy=0.85)]
    champion = [slice_entry("island:Biscoe", 40, accuracy=0.9), slice_entry("island:Dream", 30, accuracy=0.95)]

    failures = slice_failures(challenger, champion, 10, judge_with(Thresholds(tolerance=0.05)))

    assert len(failures) == 1 and failures[0].startswith("slice island:Dream (30 examples) worse than the champion")


@pytest.fixture(scope="module")
def sliced(penguin_model, penguin_splits):
    return evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(), slicing_specs=parse_slicing_specs(SPECS))


def test_slices_match_sklearn_on_the_same_rows(sliced, penguin_model, penguin_splits):
    from sklearn.metrics import accuracy_score

    from kfkit.serving.model_io import LoadedModel
    evaluation, _ = sliced
    table = pads.dataset(str(penguin_splits["test"]), format="parquet").to_table()
    model = LoadedModel(penguin_model)
    predicted = np.array(model.spec.classes)[model.predict_table(table)["scores"].argmax(axis=1)]
    actual = np.array(table.column("species").to_pylist())
    islands = np.array(table.column("island").to_pylist())
    by_key = {s["slice"]["value"]: s["metrics"] for s in evaluation.slices}

    for island in set(islands):
        rows = islands == island
        assert by_key[f"island:{island}"]["examples"] == rows.sum()
        assert by_key[f"island:{island}"]["accuracy"] == pytest.approx(accuracy_score(actual[rows], predicted[rows]))
    assert sum(by_key[f"island:{i}"]["examples"] for i in set(islands)) == len(actual)
    assert any(key.startswith("island_X_sex:") for key in by_key)


def test_slices_parse_as_vertex_model_evaluation_slices(sliced):
    from google.cloud.aiplatform_v1.types import ModelEvaluationSlice
    evaluation, _ = sliced

    parsed = [ModelEvaluationSlice.from_json(json.dumps(s)) for s in evaluation.slices]

    dream = next(p for p in parsed if p.slice_.value == "island:Dream")
    assert dream.slice_.slice_spec.configs["island"].value.string_value == "Dream"
    assert dream.metrics["accuracy"] > 0
    assert "<h2>Slices</h2>" in render_report(*sliced) and "island_X_sex:" in render_report(*sliced)


def test_gate_refuses_a_model_that_passes_overall_but_fails_a_slice(sliced, penguin_model, penguin_splits):
    evaluation, _ = sliced
    islands = [s for s in evaluation.slices if s["slice"]["value"].startswith("island:")]
    worst = max(islands, key=lambda s: s["metrics"]["log_loss"])
    # the overall log loss is the slices' weighted mean, so a bound between it and the worst slice's
    # passes the whole split and fails that slice
    bound = (evaluation.metrics["log_loss"] + worst["metrics"]["log_loss"]) / 2
    specs = parse_slicing_specs('[{"feature_keys": ["island"]}]')

    _, gated = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(max_log_loss=bound),
                                  slicing_specs=specs, slice_min_examples=1)
    _, reported = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(max_log_loss=bound),
                                     slicing_specs=specs)

    assert not gated.blessed and f"slice {worst['slice']['value']} (" in gated.reason
    assert reported.blessed  # slice_min_examples=0: slices are reported, not gated


def test_a_fixed_number_slices_by_value_and_keeps_its_type(penguin_model, penguin_splits):
    table = pads.dataset(str(penguin_splits["test"]), format="parquet").to_table()
    flipper = table.column("flipper_length_mm").to_pylist()
    wanted = max(set(flipper), key=flipper.count)
    specs = parse_slicing_specs(json.dumps([{"feature_values": {"flipper_length_mm": str(int(wanted))},
                                             "feature_keys": ["sex"]}]))

    evaluation, _ = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(), slicing_specs=specs)

    assert sum(s["metrics"]["examples"] for s in evaluation.slices) == sum(
        1 for f, sex in zip(flipper, table.column("sex").to_pylist()) if f == wanted and sex is not None)
    config = evaluation.slices[0]["slice"]["sliceSpec"]["configs"]["flipper_length_mm"]
    assert config == {"value": {"floatValue": float(wanted)}}
    assert evaluation.slices[0]["slice"]["value"].startswith(f"flipper_length_mm_X_sex:{int(wanted)}_X_")


def test_slicing_on_a_column_the_split_lacks_is_refused(penguin_model, penguin_splits):
    with pytest.raises(ConfigError, match=r"slicing_specs\[0\] slices on column\(s\) 'colour'"):
        evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(),
                           slicing_specs=parse_slicing_specs('[{"feature_keys": ["colour"]}]'))


def test_evaluation_without_slices_is_unchanged():
    assert Evaluation("binary", {"accuracy": 1.0}).slices == []


def test_evaluate_component_writes_slices_to_its_output_and_report(tmp_path, penguin_model, penguin_splits):
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

    from kfkit.components.evaluate.component import evaluate_model

    def output(kind, name):
        return kind(uri=str(tmp_path / name))

    slices = output(Artifact, "slices.json")
    blessed = evaluate_model.python_func(
        model=Model(uri=str(penguin_model)), test_data=Dataset(uri=str(penguin_splits["test"])),
        metrics=output(Metrics, "metrics"), classification_metrics=output(ClassificationMetrics, "cm"),
        report=output(HTML, "report.html"), reason=str(tmp_path / "reason"), slices=slices,
        slicing_specs='[{"feature_keys": ["island"]}]', slice_min_examples=1)

    written = json.loads((tmp_path / "slices.json").read_text())
    assert blessed is True and slices.metadata["slices"] == len(written) >= 2
    assert {s["slice"]["value"].split(":")[0] for s in written} == {"island"}
    assert "<h2>Slices</h2>" in (tmp_path / "report.html").read_text()
