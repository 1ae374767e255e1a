"""Every value a BigQuery column can hold goes through validate and monitor: INT64 over its whole
range, NUMERIC and BIGNUMERIC, +/-inf, NaN, and ranges wider than the largest double. A feature's
problem is that feature's verdict, never the run's crash.

BigQuery's types (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types): INT64
is -2**63 to 2**63-1; NUMERIC is DECIMAL(38, 9), BIGNUMERIC DECIMAL(76.76, 38); FLOAT64 holds
+/-inf and NaN. TFDV reads every number as a float64 (tfdv's basic stats generator), so values past
2**53 count as their nearest float64 and a range whose width overflows has no standard histogram.
"""

import decimal
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfkit.components.monitor import drift
from kfkit.components.validate.validate import compute_statistics

N = 200
# NUMERIC's largest values (29 digits before the point, 9 after), written exactly
NUMERIC = [decimal.Decimal(f"{10**29 - 1 - i}.999999999") for i in range(N)]


def _columns():
    return {
        "int64_top": pa.array([2**63 - 1 - i for i in range(N)], pa.int64()),
        "int64_bottom": pa.array([-(2**63) + i * 2**54 for i in range(N)], pa.int64()),
        "wide": pa.array([-1.7e308 if i % 2 else 1.7e308 for i in range(N)], pa.float64()),
        "special": pa.array([math.inf, -math.inf, math.nan] + [float(i) for i in range(N - 3)], pa.float64()),
        "numeric": pa.array(NUMERIC, pa.decimal128(38, 9)),
        "bignumeric": pa.array([decimal.Decimal(str(10**35 * (i + 1))) for i in range(N)], pa.decimal256(76, 38)),
        "label": pa.array(["a", "b"] * (N // 2)),
    }


@pytest.fixture
def extremes(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table(_columns()), tmp_path / "d" / "part-0.parquet")
    return tmp_path / "d"


def test_validate_computes_statistics_for_every_value_a_column_can_hold(extremes):
    stats = compute_statistics(extremes, "label")

    for name in ("int64_top", "int64_bottom", "wide", "numeric", "bignumeric"):
        entry = stats["columns"][name]
        assert entry["kind"] == "numeric" and entry["count"] == N
        assert math.isfinite(entry["mean"]), name
        assert all(math.isfinite(e) for e in entry["histogram"]["edges"]), name
        assert sum(entry["histogram"]["counts"]) == N, name
    assert stats["columns"]["int64_top"]["max"] == float(2**63 - 1)


def test_a_range_wider_than_the_largest_double_splits_into_its_two_ends(extremes):
    histogram = compute_statistics(extremes, "label")["columns"]["wide"]["histogram"]

    assert histogram["edges"][0] == -1.7e308 and histogram["edges"][-1] == 1.7e308
    assert histogram["counts"][0] == N // 2 and histogram["counts"][-1] == N // 2


def test_monitor_judges_int64_beyond_2_53_and_numeric_columns_instead_of_erroring(extremes):
    stats = compute_statistics(extremes, "label")
    baseline = drift.baseline_from_statistics(stats)
    window = {k: v for k, v in _columns().items() if k in ("int64_top", "int64_bottom", "numeric", "bignumeric")}

    results = {r.feature: r for r in drift.compare(baseline, window, min_count=100,
                                                   features=list(window))}

    assert {name: r.status for name, r in results.items()} == {name: drift.OK for name in window}


def test_numeric_values_logged_as_decimals_are_numbers_not_invalid(extremes):
    baseline = drift.baseline_from_statistics(compute_statistics(extremes, "label"))
    logged = list(NUMERIC)

    result = drift.compare(baseline, {"numeric": logged}, min_count=100, features=["numeric"])[0]

    assert result.invalid == 0 and result.status == drift.OK


def test_one_features_failure_is_its_own_error_verdict_and_the_others_are_judged(extremes, monkeypatch):
    baseline = drift.baseline_from_statistics(compute_statistics(extremes, "label"))
    real = drift.compare_feature

    def failing(name, *args, **kwargs):
        if name == "numeric":
            raise ArithmeticError("a planted failure")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(drift, "compare_feature", failing)
    window = {k: v for k, v in _columns().items() if k in ("numeric", "int64_top")}

    results = {r.feature: r for r in drift.compare(baseline, window, min_count=100, features=list(window))}

    assert results["numeric"].status == drift.ERROR and "a planted failure" in results["numeric"].message
    assert results["int64_top"].status == drift.OK


def test_a_range_too_wide_for_tfdvs_histogram_is_an_error_verdict_naming_the_feature_alone(extremes):
    baseline = drift.baseline_from_statistics(compute_statistics(extremes, "label"))
    window = {k: v for k, v in _columns().items() if k in ("wide", "numeric")}

    results = {r.feature: r for r in drift.compare(baseline, window, min_count=100, features=list(window))}

    assert results["wide"].status == drift.ERROR and results["wide"].message
    assert results["numeric"].status == drift.OK
