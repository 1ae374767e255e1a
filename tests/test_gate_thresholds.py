"""The evaluate gate at, just above and just below every threshold, with expected decisions taken
from the documented rule (components/evaluate/component.py and docs/components.md): a `min_*`
threshold passes when the metric is >= it, a `max_*` when <= it, 0 means no limit; the tolerance
against the champion is absolute on accuracy and relative on RMSE. Values are binary fractions so
"at the threshold" is exact.
"""

import pytest

from kfkit.components.evaluate.evaluate import Evaluation, Thresholds, decide

TINY = 2 ** -20


def classification(**metrics) -> Evaluation:
    return Evaluation("multiclass", {"accuracy": 0.75, "roc_auc": 0.75, "log_loss": 0.5, **metrics})


def regression(rmse: float) -> Evaluation:
    return Evaluation("regression", {"rmse": rmse, "mae": rmse / 2, "r2": 0.5})


@pytest.mark.parametrize("metric, threshold, kind", [
    ("accuracy", "min_accuracy", "min"),
    ("roc_auc", "min_roc_auc", "min"),
    ("log_loss", "max_log_loss", "max"),
])
@pytest.mark.parametrize("offset", [-TINY, 0.0, TINY], ids=["below", "at", "above"])
def test_classification_thresholds_pass_at_the_bound_and_on_their_side_of_it(metric, threshold, kind, offset):
    bound = 0.625
    evaluation = classification(**{metric: bound + offset})

    decision = decide(evaluation, Thresholds(**{threshold: bound}))

    expected = offset >= 0 if kind == "min" else offset <= 0
    assert decision.blessed is expected
    if not expected:
        op = ">=" if kind == "min" else "<="
        assert decision.reason == f"below the thresholds: {metric} {bound + offset:.4f} is not {op} {bound:g}"


@pytest.mark.parametrize("offset", [-TINY, 0.0, TINY], ids=["below", "at", "above"])
def test_max_rmse_passes_at_the_bound_and_below_it(offset):
    decision = decide(regression(2.5 + offset), Thresholds(max_rmse=2.5))

    assert decision.blessed is (offset <= 0)


@pytest.mark.parametrize("threshold", ["min_accuracy", "min_roc_auc", "max_log_loss", "max_rmse"])
def test_a_zero_threshold_means_no_limit(threshold):
    worst = Evaluation("multiclass", {"accuracy": 0.0, "roc_auc": 0.0, "log_loss": 1e9})
    if threshold == "max_rmse":
        worst = regression(1e9)

    assert decide(worst, Thresholds(**{threshold: 0.0})).blessed


def test_every_failed_threshold_is_named_in_the_reason():
    decision = decide(classification(accuracy=0.5, roc_auc=0.5, log_loss=1.0),
                      Thresholds(min_accuracy=0.75, min_roc_auc=0.75, max_log_loss=0.5))

    assert decision.reason == ("below the thresholds: accuracy 0.5000 is not >= 0.75; roc_auc 0.5000 is not >= 0.75; "
                               "log_loss 1.0000 is not <= 0.5")


@pytest.mark.parametrize("offset", [-TINY, 0.0, TINY], ids=["below", "at", "above"])
def test_accuracy_may_trail_the_champion_by_the_tolerance_in_absolute_terms(offset):
    champion = classification(accuracy=0.75)

    decision = decide(classification(accuracy=0.5 + offset), Thresholds(tolerance=0.25), champion)

    assert decision.blessed is (offset >= 0)
    assert decision.champion is champion


def test_accuracy_tolerance_is_absolute_not_relative():
    # champion 0.5, tolerance 0.25: absolute allows down to 0.25, relative would stop at 0.375
    champion = classification(accuracy=0.5)

    assert decide(classification(accuracy=0.3), Thresholds(tolerance=0.25), champion).blessed
    assert not decide(classification(accuracy=0.25 - TINY), Thresholds(tolerance=0.25), champion).blessed


@pytest.mark.parametrize("offset", [-TINY, 0.0, TINY], ids=["below", "at", "above"])
def test_rmse_may_exceed_the_champions_by_the_tolerance_in_relative_terms(offset):
    # champion 2.0, tolerance 0.5: allowed up to 2.0 * 1.5 = 3.0
    decision = decide(regression(3.0 + offset), Thresholds(tolerance=0.5), regression(2.0))

    assert decision.blessed is (offset <= 0)
    assert decision.reason.endswith("(allowed up to 3.0000)")


def test_rmse_tolerance_is_relative_not_absolute():
    # champion 10, tolerance 0.01: relative allows 10.1, absolute would stop at 10.01
    champion = regression(10.0)

    assert decide(regression(10.05), Thresholds(tolerance=0.01), champion).blessed
    assert not decide(regression(10.11), Thresholds(tolerance=0.01), champion).blessed


def test_a_better_challenger_is_blessed_and_says_so():
    decision = decide(classification(accuracy=0.875), Thresholds(tolerance=0.0), classification(accuracy=0.75))

    assert decision.blessed
    assert decision.reason == ("meets every threshold and is not worse than the champion: "
                               "accuracy 0.8750 vs champion 0.7500 (tolerance 0)")


def test_thresholds_are_checked_before_the_champion():
    decision = decide(classification(accuracy=0.5), Thresholds(min_accuracy=0.75), classification(accuracy=0.25))

    assert not decision.blessed and decision.reason.startswith("below the thresholds")


def test_a_champion_that_cannot_be_compared_keeps_its_place():
    decision = decide(classification(), Thresholds(), None, champion_problem="the champion's classes differ")

    assert not decision.blessed
    assert decision.reason == ("cannot compare with the champion (the champion's classes differ); keeping the "
                               "champion until a person decides")


def test_no_champion_blesses_on_the_thresholds_alone():
    decision = decide(classification(), Thresholds(min_accuracy=0.75))

    assert decision.blessed and decision.reason == "meets every threshold; there is no champion yet"


def test_a_failed_max_rmse_is_named_and_the_champion_is_kept_on_every_refusal():
    champion = regression(1.0)

    refused = decide(regression(3.0), Thresholds(max_rmse=2.0), champion)
    problem = decide(regression(1.0), Thresholds(), champion, champion_problem="other label")

    assert refused.blessed is False and refused.champion is champion
    assert refused.reason == "below the thresholds: rmse 3.0000 is not <= 2"
    assert problem.blessed is False and problem.champion is champion
