"""A line-by-line transliteration of TensorFlow Data Validation's drift/skew metrics, kept apart from
kfkit's implementation so tests compare the two.

Sources (github.com/tensorflow/data-validation, Apache-2.0):
- tensorflow_data_validation/utils/quantiles_util.py, `generate_equi_width_histogram`: each side's
  standard histogram (num_buckets equal-width buckets over the finite min..max; a point bucket when
  min == max; -inf and +inf values as point buckets at -inf/+inf; NaN counted in num_nan).
  Bucket counts here are exact (TFDV interpolates them from a quantiles sketch).
- tensorflow_data_validation/anomalies/metrics.cc: `StripPointAndInfiniteBuckets`,
  `GetHistogramBoundaries`, `RebucketHistogram`, `AddBucketsToHistogram`, `AddPointMasses`,
  `AlignHistograms`, `NormalizeHistogram`, `KullbackLeiblerDivergence`, `JensenShannonDivergence`,
  `GetLInftyNorm`, `MaxNormalizedDifference` (kSeparateTotal), `LInftyDistance`.
"""

import math


class Hist:
    def __init__(self, buckets=None, num_nan=0.0):
        self.buckets = [list(b) for b in (buckets or [])]   # [low, high, count]
        self.num_nan = num_nan


def equi_width_histogram(values, num_buckets=10):
    nan = sum(1 for v in values if v != v)
    values = [v for v in values if v == v]
    neg_inf = sum(1 for v in values if v == -math.inf)
    pos_inf = sum(1 for v in values if v == math.inf)
    finite = [v for v in values if math.isfinite(v)]
    result = Hist(num_nan=float(nan))
    if not finite:
        if neg_inf or pos_inf:
            result.buckets.append([-math.inf if neg_inf else math.inf, math.inf if pos_inf else -math.inf,
                                   float(neg_inf + pos_inf)])
        return result
    lo, hi = min(finite), max(finite)
    if neg_inf:
        result.buckets.append([-math.inf, -math.inf, float(neg_inf)])
    if lo == hi:
        result.buckets.append([lo, hi, float(len(finite))])
    else:
        # numpy.linspace's boundaries, as TFDV computes them
        import numpy
        edges = [float(e) for e in numpy.linspace(lo, hi, num_buckets + 1)]
        counts = [0] * num_buckets
        for v in finite:
            placed = False
            for i in range(num_buckets):
                last = i == num_buckets - 1
                if edges[i] <= v < edges[i + 1] or (last and edges[i] <= v <= edges[i + 1]):
                    counts[i] += 1
                    placed = True
                    break
            assert placed
        for i in range(num_buckets):
            result.buckets.append([edges[i], edges[i + 1], float(counts[i])])
    if pos_inf:
        result.buckets.append([math.inf, math.inf, float(pos_inf)])
    return result


def strip_point_and_infinite_buckets(h):
    result = Hist(num_nan=h.num_nan)
    points = {}
    infinite_mass = 0.0
    for low, high, count in h.buckets:
        if not math.isfinite(low) or not math.isfinite(high):
            infinite_mass += count
        elif low == high:
            points[low] = points.get(low, 0.0) + count
        else:
            result.buckets.append([low, high, count])
    return result, points, infinite_mass


def histogram_boundaries(h):
    out = set()
    for low, high, _ in h.buckets:
        out.add(low)
        out.add(high)
    return out


def add_buckets_to_histogram(bucket_boundaries, total_sample_count, total_range_covered, h):
    for i in range(len(bucket_boundaries) - 1):
        count = ((bucket_boundaries[i + 1] - bucket_boundaries[i]) / total_range_covered) * total_sample_count
        h.buckets.append([bucket_boundaries[i], bucket_boundaries[i + 1], count])


def rebucket_histogram(boundaries, h):
    rebucketed = Hist()  # a new histogram: num_nan is not carried over
    max_index = len(boundaries) - 1
    index = 0
    for low, high, count in h.buckets:
        while low > boundaries[index]:
            assert index + 1 <= max_index
            rebucketed.buckets.append([boundaries[index], boundaries[index + 1], 0.0])
            index += 1
        if low == high and low == boundaries[index]:
            rebucketed.buckets.append([boundaries[index], boundaries[index + 1], count])
            index += 1
            continue
        covered = []
        while high > boundaries[index]:
            covered.append(boundaries[index])
            index += 1
        covered.append(boundaries[index])
        if len(covered) > 1:
            add_buckets_to_histogram(covered, count, high - low, rebucketed)
    for i in range(index, max_index):
        rebucketed.buckets.append([boundaries[i], boundaries[i + 1], 0.0])
    return rebucketed


def add_point_masses(points_1, points_2, h1, h2):
    for boundary in sorted(set(points_1) | set(points_2)):
        h1.buckets.append([0.0, 0.0, points_1.get(boundary, 0.0)])
        h2.buckets.append([0.0, 0.0, points_2.get(boundary, 0.0)])


def align_histograms(h1, h2):
    h1, points_1, inf_1 = strip_point_and_infinite_buckets(h1)
    h2, points_2, inf_2 = strip_point_and_infinite_buckets(h2)
    b1, b2 = histogram_boundaries(h1), histogram_boundaries(h2)
    if b1 != b2:
        boundaries = sorted(b1 | b2)
        h1 = rebucket_histogram(boundaries, h1)
        h2 = rebucket_histogram(boundaries, h2)
    add_point_masses(points_1, points_2, h1, h2)
    if inf_1 != 0:
        h1.buckets.append([0.0, 0.0, inf_1])
        h2.buckets.append([0.0, 0.0, 0.0])
    if inf_2 != 0:
        h1.buckets.append([0.0, 0.0, 0.0])
        h2.buckets.append([0.0, 0.0, inf_2])
    if h1.num_nan > 0 or h2.num_nan > 0:
        h1.buckets.append([0.0, 0.0, 0.0])
        h1.buckets.append([0.0, 0.0, h1.num_nan])
        h2.buckets.append([0.0, 0.0, h2.num_nan])
        h2.buckets.append([0.0, 0.0, 0.0])
    return h1, h2


def normalize_histogram(h):
    total = sum(b[2] for b in h.buckets)
    if total == 0:
        raise ValueError("Unable to normalize an empty histogram")
    return Hist([[b[0], b[1], b[2] / total] for b in h.buckets])


def kullback_leibler(h1, h2):
    assert len(h1.buckets) == len(h2.buckets)
    result = 0.0
    for a, b in zip(h1.buckets, h2.buckets):
        p, q = a[2], b[2]
        if p > 0 and q > 0:
            result += p * math.log2(p / q)
    return result


def jensen_shannon_divergence(h1, h2):
    h1, h2 = align_histograms(h1, h2)
    h1, h2 = normalize_histogram(h1), normalize_histogram(h2)
    average = Hist([[a[0], a[1], (a[2] + b[2]) / 2] for a, b in zip(h1.buckets, h2.buckets)])
    result = (kullback_leibler(h1, average) + kullback_leibler(h2, average)) / 2
    return min(result, 1.0)


def linf_distance(counts_a, counts_b):
    def normalize(counts):
        total = sum(counts.values())
        return {k: v / total for k, v in counts.items()}

    a, b = normalize(counts_a), normalize(counts_b)
    difference = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in set(a) | set(b)}
    best = ("", 0.0)
    for key in sorted(difference):  # std::map order
        value = abs(difference[key])
        if value >= best[1]:
            best = (key, value)
    return best
