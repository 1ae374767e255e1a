"""Evaluation metrics against values worked out by hand (the definitions: accuracy, mean negative
log-likelihood, one-vs-rest ROC AUC as the share of positive/negative pairs ranked right with ties
counting half, macro F1), not against the library the code calls."""

import math

import numpy as np
import pytest

from kfkit.components.evaluate.evaluate import classification_metrics, regression_metrics

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
Y = np.array([0, 0, 1, 1, 2, 2])
SCORES = np.array([[0.7, 0.2, 0.1],   # right
                   [0.4, 0.5, 0.1],   # Adelie taken for Chinstrap
                   [0.2, 0.6, 0.2],   # right
                   [0.1, 0.3, 0.6],   # Chinstrap taken for Gentoo
                   [0.1, 0.1, 0.8],   # right
                   [0.3, 0.3, 0.4]])  # right


def test_multiclass_metrics_match_the_hand_computed_values():
    e = classification_metrics(Y, SCORES.copy(), CLASSES)

    assert e.task == "multiclass" and e.classes == CLASSES
    assert e.metrics["accuracy"] == pytest.approx(4 / 6)
    assert e.metrics["log_loss"] == pytest.approx(-sum(map(math.log, [0.7, 0.4, 0.6, 0.3, 0.8, 0.4])) / 6, rel=1e-9)
    # one-vs-rest AUC: Adelie 8/8, Chinstrap 6.5/8 (one tie at 0.3), Gentoo 7/8
    assert e.metrics["roc_auc"] == pytest.approx((1 + 0.8125 + 0.875) / 3)
    assert {c: r["auc"] for c, r in e.roc_per_class.items()} == pytest.approx(
        {"Adelie": 1.0, "Chinstrap": 0.8125, "Gentoo": 0.875})
    assert all(r["fpr"][0] == 0 and r["tpr"][-1] == 1 and len(r["fpr"]) == len(r["tpr"])
               for r in e.roc_per_class.values())
    assert e.confusion == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert e.per_class["Adelie"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert e.per_class["Chinstrap"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert e.per_class["Gentoo"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert e.metrics["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    assert e.metrics["examples"] == 6.0
    assert e.roc == {}  # the single ROC curve is for binary tasks; multiclass has one per class


def test_a_class_missing_from_the_test_split_has_no_auc_but_keeps_its_row():
    y = np.array([0, 0, 1, 1])
    scores = SCORES[:4].copy()

    e = classification_metrics(y, scores, CLASSES)

    assert "roc_auc" not in e.metrics  # AUC over all classes needs every class present
    assert e.metrics["log_loss"] == pytest.approx(-sum(map(math.log, [0.7, 0.4, 0.6, 0.3])) / 4, rel=1e-9)
    assert e.confusion == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert e.per_class["Gentoo"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert set(e.roc_per_class) == {"Adelie", "Chinstrap"}
    assert e.metrics["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)


def test_scores_of_exactly_zero_give_a_finite_log_loss():
    e = classification_metrics(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]), ["no", "yes"])

    assert 0 < e.metrics["log_loss"] < 1e-6


def test_binary_roc_curve_has_thresholds_within_0_and_1_and_one_curve_for_the_positive_class():
    y = np.array([0, 0, 1, 1, 0, 1])
    positive = np.array([0.1, 0.35, 0.8, 0.65, 0.7, 0.9])
    scores = np.stack([1 - positive, positive], axis=1)

    e = classification_metrics(y, scores, ["no", "yes"])

    assert e.task == "binary"
    # 9 positive/negative pairs, 8 ranked right (0.65 < 0.7)
    assert e.metrics["roc_auc"] == pytest.approx(8 / 9)
    assert set(e.roc_per_class) == {"yes"} and e.roc_per_class["yes"]["auc"] == pytest.approx(8 / 9)
    assert e.roc["thresholds"][0] == 1.0  # sklearn starts at +inf; Vertex wants a probability
    assert e.roc["thresholds"][1:] == sorted(e.roc["thresholds"][1:], reverse=True)
    assert all(0.0 <= t <= 1.0 for t in e.roc["thresholds"])
    assert min(e.roc["thresholds"]) == pytest.approx(0.1)
    assert e.roc["fpr"][-1] == 1.0 and e.roc["tpr"][-1] == 1.0


def test_binary_split_with_one_class_only_has_no_auc():
    e = classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]), ["no", "yes"])

    assert "roc_auc" not in e.metrics and e.roc == {} and e.roc_per_class == {}
    assert e.metrics["accuracy"] == 1.0


def test_regression_metrics_with_a_constant_label_and_residuals():
    e = regression_metrics(np.array([2.0, 2.0]), np.array([1.0, 4.0]))

    assert e.task == "regression"
    assert e.metrics == {"rmse": pytest.approx(math.sqrt(2.5)), "mae": 1.5, "r2": 0.0, "examples": 2.0}
    assert e.residuals == [-1.0, 2.0]
