import numpy as np
import pytest

from kfkit.components.evaluate.evaluate import (Decision, Evaluation, Thresholds, classification_metrics, decide,
                                          evaluate_with_gate, regression_metrics, render_report)
from kfkit.components.train.train import Hyperparameters, train


def test_classification_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])

    e = classification_metrics(y, scores, ["no", "yes"])

    assert e.metrics["accuracy"] == 0.75
    assert e.confusion == [[1, 1], [0, 2]]
    assert e.metrics["roc_auc"] == 1.0  # every positive scores above every negative
    assert e.metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.7])))
    assert e.per_class["yes"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert e.roc["fpr"][0] == 0.0 and e.roc["tpr"][-1] == 1.0 and max(e.roc["thresholds"]) <= 1.0


def test_regression_metrics_match_hand_computed_values():
    e = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert e.metrics["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert e.metrics["mae"] == pytest.approx(2 / 3)
    assert e.metrics["r2"] == pytest.approx(1 - 4 / 2)


def ev(accuracy):
    return Evaluation("multiclass", {"accuracy": accuracy})


def test_no_champion_means_thresholds_alone_decide():
    assert decide(ev(0.9), Thresholds(min_accuracy=0.8)).blessed
    refused = decide(ev(0.7), Thresholds(min_accuracy=0.8))
    assert not refused.blessed and refused.reason == "below the thresholds: accuracy 0.7000 is not >= 0.8"


def test_challenger_may_be_worse_than_the_champion_only_within_tolerance():
    assert decide(ev(0.895), Thresholds(tolerance=0.01), champion=ev(0.9)).blessed
    worse = decide(ev(0.85), Thresholds(tolerance=0.01), champion=ev(0.9))
    assert not worse.blessed and "worse than the champion: accuracy 0.8500 vs champion 0.9000" in worse.reason


def test_regression_tolerance_is_relative_to_the_champion_rmse():
    challenger = Evaluation("regression", {"rmse": 1.04})
    assert decide(challenger, Thresholds(tolerance=0.05), Evaluation("regression", {"rmse": 1.0})).blessed
    assert not decide(challenger, Thresholds(tolerance=0.01), Evaluation("regression", {"rmse": 1.0})).blessed


def test_champion_evaluated_on_the_same_test_split(penguin_model, penguin_splits):
    challenger, decision = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(min_accuracy=0.5),
                                              champion_dir=penguin_model)
    assert decision.blessed and decision.champion.metrics == challenger.metrics


def test_champion_with_another_signature_is_compared_on_the_same_split(penguin_model, penguin_splits,
                                                                       penguin_validation, tmp_path):
    # the champion was trained without `sex`: its signature differs, but the test split has its columns
    train(penguin_splits["train"], penguin_splits["eval"], penguin_validation.statistics, penguin_validation.schema,
          "species", tmp_path / "champion", Hyperparameters(epochs=2), exclude_columns=["sex"])

    challenger, decision = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(),
                                              champion_dir=tmp_path / "champion")

    assert decision.champion is not None and "champion" in decision.reason


def test_champion_that_needs_columns_the_split_lacks_is_kept_with_a_reason(penguin_model, penguin_splits, tmp_path):
    import json
    import shutil
    champion = tmp_path / "champion"
    shutil.copytree(penguin_model, champion)
    meta = json.loads((champion / "kfkit_model.json").read_text())
    meta["features"].append({"name": "beak_colour", "kind": "categorical", "mean": 0, "variance": 1, "vocabulary": []})
    (champion / "kfkit_model.json").write_text(json.dumps(meta))

    _, decision = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds(), champion_dir=champion)

    assert not decision.blessed
    assert "needs column(s) 'beak_colour' that the test split lacks" in decision.reason


def test_report_shows_decision_confusion_matrix_and_metrics(penguin_model, penguin_splits):
    evaluation, decision = evaluate_with_gate(penguin_model, penguin_splits["test"], Thresholds())
    html = render_report(evaluation, decision)
    assert "Blessed" in html and "Confusion matrix" in html and "accuracy" in html


def test_a_small_regression_report_draws_each_point_and_names_the_outliers_off_its_axes():
    actual = np.linspace(0.0, 10.0, 200)
    predicted = actual + np.where(np.arange(200) == 7, 500.0, 0.5)  # one wild prediction

    html = render_report(regression_metrics(actual, predicted), Decision(True, "meets every threshold"))

    assert html.count("<circle class='mark'") == 2 * 199  # both scatters, the outlier left out of each
    assert "1 outliers beyond the 0.5th-99.5th percentiles are off the axes" in html
