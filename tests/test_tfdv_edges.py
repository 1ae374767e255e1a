"""kfkit.tfdv on the edges TFDV's code handles explicitly, against the transliteration of TFDV's
code in tests/tfdv_reference.py (infinities, NaN only, ties, empty inputs, JSON round trips)."""

import json
import math

import numpy as np
import pytest

from kfkit import tfdv
from tests import tfdv_reference as ref

INF = math.inf


@pytest.mark.parametrize("values", [
    [1.0, 2.0, 3.0, 10.0],
    [-INF, 1.0, 2.0],
    [1.0, 2.0, INF, INF],
    [-INF, -INF, 0.5, 0.5, INF],          # one finite value, infinities either side
    [INF, INF],                            # no finite value
    [-INF],
    [-INF, INF, math.nan],
    [math.nan, math.nan],
    [],
    [4.0, 4.0, 4.0],
    list(np.linspace(-1e3, 1e3, 97)) + [1e3],  # values on the top edge land in the last bucket
], ids=lambda v: f"{len(v)}values")
def test_histograms_have_tfdvs_buckets_counts_and_nan(values):
    ours = tfdv.histogram(np.array(values, dtype=np.float64))
    theirs = ref.equi_width_histogram(values)

    # the same numpy.linspace edges: equal to the last bit, infinities included
    assert [list(b) for b in ours.buckets] == theirs.buckets
    assert ours.num_nan == theirs.num_nan and isinstance(ours.num_nan, float)


def test_the_histogram_of_a_range_that_overflows_is_empty_as_in_tfdv():
    h = tfdv.histogram(np.array([-1.7e308, 1.7e308, math.nan]))

    assert h.buckets == [] and h.num_nan == 1.0


def test_histograms_round_trip_through_json_with_infinities():
    h = tfdv.histogram(np.array([-INF, 1.0, 2.0, INF, math.nan]))

    data = json.loads(json.dumps(h.to_json()))  # strict JSON: no Infinity literals

    assert data["buckets"][0][:2] == ["-inf", "-inf"] and data["buckets"][-1][:2] == ["inf", "inf"]
    assert data["num_nan"] == 1.0
    assert tfdv.Histogram.from_json(data) == h
    assert tfdv.Histogram.from_json({"buckets": [[0, 1, 2]]}) == tfdv.Histogram([(0.0, 1.0, 2.0)], 0.0)
    assert h.total == 5.0


@pytest.mark.parametrize("a, b", [
    ({"x": 1.0, "y": 1.0}, {"x": 1.0, "y": 1.0}),        # all differences 0: the last key in order
    ({"a": 3.0, "b": 1.0}, {"a": 1.0, "b": 3.0}),        # a tie between a and b: the later one
    ({"a": 2.0}, {"b": 2.0}),                            # keys on one side only
    ({"k": 5.0, "m": 0.0}, {"m": 1.0}),
])
def test_linf_picks_tfdvs_value_on_ties_and_missing_keys(a, b):
    assert tfdv.linf(a, b) == pytest.approx(ref.linf_distance(a, b))
    assert tfdv.linf(a, b)[0] == ref.linf_distance(a, b)[0]


@pytest.mark.parametrize("a, b", [({}, {"x": 1.0}), ({"x": 1.0}, {}), ({"x": 0.0}, {"x": 1.0})])
def test_linf_of_an_empty_distribution_is_refused_as_in_tfdv(a, b):
    with pytest.raises(ValueError, match="^Unable to normalize an empty distribution$"):
        tfdv.linf(a, b)


def test_divergence_refuses_an_empty_side_reads_counts_as_floats_and_caps_at_one():
    with pytest.raises(ValueError, match="^Unable to normalize an empty histogram$"):
        tfdv.divergence([0, 0], [1, 2])
    with pytest.raises(ValueError, match="^Unable to normalize an empty histogram$"):
        tfdv.divergence([1, 2], [0, 0])
    assert tfdv.divergence([1, 3], [2, 6]) == 0.0
    assert tfdv.divergence([1, 0], [0, 1]) == 1.0  # disjoint: the cap
    # integer counts are read as floats: no integer division
    assert tfdv.divergence([1, 2], [2, 1]) == pytest.approx(
        ref.jensen_shannon_divergence(ref.Hist([[0, 1, 1], [1, 2, 2]]), ref.Hist([[0, 1, 2], [1, 2, 1]])))
    assert tfdv.divergence([1, 2], [3, 4]) == pytest.approx(
        ref.jensen_shannon_divergence(ref.Hist([[0, 1, 1], [1, 2, 2]]), ref.Hist([[0, 1, 3], [1, 2, 4]])))
    assert tfdv.divergence([5, 0, 0], [0, 0, 7]) == 1.0


def test_top_k_keeps_the_most_frequent_and_breaks_ties_by_value():
    counts = {"b": 2.0, "a": 2.0, "c": 5.0, "d": 1.0}

    assert tfdv.top_k(counts, 2) == {"c": 5.0, "a": 2.0}
    assert list(tfdv.top_k(counts, 3)) == ["c", "a", "b"]
    assert tfdv.top_k(counts, 4) == counts and tfdv.top_k(counts, 9) == counts


def test_align_says_what_each_common_bucket_is():
    # same finite boundaries, so NaN stays: points, infinities on each side and NaN on each side
    h1 = tfdv.Histogram([(0.0, 1.0, 4.0), (1.0, 2.0, 2.0), (3.0, 3.0, 1.0), (-INF, -INF, 2.0)], num_nan=1.0)
    h2 = tfdv.Histogram([(0.0, 1.0, 1.0), (1.0, 2.0, 1.0), (3.0, 3.0, 2.0), (5.0, 5.0, 1.0), (INF, INF, 3.0)],
                        num_nan=2.0)

    c1, c2, buckets = tfdv.align(h1, h2)

    assert buckets == [("range", 0.0, 1.0), ("range", 1.0, 2.0), ("point", 3.0), ("point", 5.0),
                       ("inf", 1), ("inf", 2), ("nan", 2), ("nan", 1)]
    assert c1 == [4.0, 2.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0]
    assert c2 == [1.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 0.0]


def test_align_adds_up_repeated_points_and_rebuckets_onto_the_union_of_boundaries():
    h1 = tfdv.Histogram([(0.0, 2.0, 4.0), (7.0, 7.0, 1.0), (7.0, 7.0, 2.0)], num_nan=5.0)
    h2 = tfdv.Histogram([(1.0, 3.0, 4.0)], num_nan=1.0)

    c1, c2, buckets = tfdv.align(h1, h2)

    # new boundaries drop num_nan on both sides, as TFDV's re-bucketed histograms do
    assert buckets == [("range", 0.0, 1.0), ("range", 1.0, 2.0), ("range", 2.0, 3.0), ("point", 7.0)]
    assert c1 == [2.0, 2.0, 0.0, 3.0]
    assert c2 == [0.0, 2.0, 2.0, 0.0]


def test_a_nan_only_on_one_side_still_gets_both_nan_buckets():
    c1, c2, buckets = tfdv.align(tfdv.Histogram([(0.0, 1.0, 1.0)], num_nan=1.0), tfdv.Histogram([(0.0, 1.0, 1.0)]))

    assert buckets[-2:] == [("nan", 2), ("nan", 1)] and c1[-2:] == [0.0, 1.0] and c2[-2:] == [0.0, 0.0]
    c1, c2, buckets = tfdv.align(tfdv.Histogram([(0.0, 1.0, 1.0)]), tfdv.Histogram([(0.0, 1.0, 1.0)], num_nan=1.0))
    assert c2[-2:] == [1.0, 0.0]


def test_json_writes_infinities_by_their_sign():
    assert tfdv.Histogram([(-INF, 0.5, 1.0), (0.5, INF, 1.0)]).to_json()["buckets"] == [["-inf", 0.5, 1.0],
                                                                                       [0.5, "inf", 1.0]]
