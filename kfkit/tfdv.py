"""Skew and drift distances as TensorFlow Data Validation computes them (Vertex AI Model Monitoring v1).

Numeric features: Jensen-Shannon divergence of the two sides' standard histograms.
- Each side's histogram is its own: 10 equal-width buckets over its own finite [min, max]
  (TFDV `generate_equi_width_histogram`, tensorflow_data_validation/utils/quantiles_util.py), a
  single point bucket when min == max, -inf and +inf values as point buckets at -inf/+inf, NaN as
  `num_nan`; missing values are not in it. TFDV interpolates the bucket counts from a quantiles
  sketch; here they are exact counts (the sketch's own approximation is the only difference).
- The two histograms are aligned as `AlignHistograms` does (tensorflow_data_validation/anomalies/
  metrics.cc): infinite and point buckets are set aside, the finite buckets are re-bucketed onto the
  union of both sides' boundaries assuming values spread uniformly within a bucket, point masses
  are appended per distinct point, infinite masses as mismatching buckets, and NaN counts as
  mismatching buckets (only when no re-bucketing happened: re-bucketing starts a new histogram and
  TFDV's code drops the NaN counts there; kept as TFDV does it).
- JSD = (KL(P||M) + KL(Q||M)) / 2 with log base 2, capped at 1.

Categorical features: L-infinity distance between the two sides' top-k value counts (TFDV's rank
histogram, 1,000 values by default), each normalized by its own listed total (`LInftyDistance`,
NormalizationMode::kSeparateTotal); missing values are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NUM_BUCKETS = 10        # TFDV StatsOptions.num_histogram_buckets
TOP_K = 1000            # TFDV StatsOptions.num_rank_histogram_buckets


@dataclass
class Histogram:
    """TFDV's standard histogram: (low, high, count) buckets in order, and the NaN count."""

    buckets: list[tuple[float, float, float]] = field(default_factory=list)
    num_nan: float = 0.0

    def to_json(self) -> dict:
        return {"buckets": [[_json_float(lo), _json_float(hi), c] for lo, hi, c in self.buckets],
                "num_nan": self.num_nan}

    @classmethod
    def from_json(cls, data: dict) -> "Histogram":
        return cls([(float(lo), float(hi), float(c)) for lo, hi, c in data["buckets"]], float(data.get("num_nan", 0)))

    @property
    def total(self) -> float:
        return sum(c for _, _, c in self.buckets) + self.num_nan


def _json_float(value: float):
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def histogram(values: np.ndarray, num_buckets: int = NUM_BUCKETS) -> Histogram:
    """The standard histogram of float values (missing values already removed; NaN and +/-inf kept)."""
    values = np.asarray(values, dtype=np.float64)
    finite_mask = np.isfinite(values)
    if finite_mask.all():
        nan = neg_inf = pos_inf = 0
        finite = values
    else:
        nan = int(np.count_nonzero(np.isnan(values)))
        neg_inf = int(np.count_nonzero(values == -np.inf))
        pos_inf = int(np.count_nonzero(values == np.inf))
        finite = values[finite_mask]
    result = Histogram(num_nan=float(nan))
    if finite.size == 0:
        if neg_inf or pos_inf:  # no finite values: one bucket spanning what there is
            low = -math.inf if neg_inf else math.inf
            high = math.inf if pos_inf else -math.inf
            result.buckets.append((low, high, float(neg_inf + pos_inf)))
        return result
    lo, hi = float(finite.min()), float(finite.max())
    if neg_inf:
        result.buckets.append((-math.inf, -math.inf, float(neg_inf)))
    if lo == hi:
        result.buckets.append((lo, hi, float(finite.size)))
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # the overflow is checked just below
            edges = np.linspace(lo, hi, num_buckets + 1)
        if not np.isfinite(edges).all():  # overflow of the range: TFDV returns an empty histogram
            return Histogram(num_nan=float(nan))
        # numpy's uniform-bin path: the same counts as on `edges` (it corrects against them), faster
        counts, _ = np.histogram(finite, bins=num_buckets, range=(lo, hi))
        result.buckets.extend((float(edges[i]), float(edges[i + 1]), float(counts[i])) for i in range(num_buckets))
    if pos_inf:
        result.buckets.append((math.inf, math.inf, float(pos_inf)))
    return result


def _strip(h: Histogram) -> tuple[list[tuple[float, float, float]], dict[float, float], float]:
    finite, points, infinite = [], {}, 0.0
    for low, high, count in h.buckets:
        if not math.isfinite(low) or not math.isfinite(high):
            infinite += count
        elif low == high:
            points[low] = points.get(low, 0.0) + count
        else:
            finite.append((low, high, count))
    return finite, points, infinite


def _rebucket(boundaries: list[float], buckets: list[tuple[float, float, float]]) -> list[float]:
    """Counts of `buckets` spread uniformly onto consecutive `boundaries` (TFDV RebucketHistogram)."""
    out: list[float] = []
    last = len(boundaries) - 1
    index = 0
    for low, high, count in buckets:
        while low > boundaries[index]:
            out.append(0.0)
            index += 1
        covered = []
        while high > boundaries[index]:
            covered.append(boundaries[index])
            index += 1
        covered.append(boundaries[index])
        for i in range(len(covered) - 1):
            out.append((covered[i + 1] - covered[i]) / (high - low) * count)
    out.extend(0.0 for _ in range(index, last))
    return out


def align(h1: Histogram, h2: Histogram) -> tuple[list[float], list[float], list[tuple]]:
    """The two histograms' counts on common buckets (TFDV AlignHistograms), and what each bucket is:
    ("range", low, high), ("point", value), ("inf", side) or ("nan", side), side 1 or 2."""
    f1, p1, inf1 = _strip(h1)
    f2, p2, inf2 = _strip(h2)
    nan1, nan2 = h1.num_nan, h2.num_nan
    b1 = sorted({v for lo, hi, _ in f1 for v in (lo, hi)})
    b2 = sorted({v for lo, hi, _ in f2 for v in (lo, hi)})
    if b1 != b2:
        boundaries = sorted(set(b1) | set(b2))
        c1, c2 = _rebucket(boundaries, f1), _rebucket(boundaries, f2)
        nan1 = nan2 = 0.0  # the re-bucketed histogram is a new one, without num_nan (as in TFDV)
    else:
        boundaries = b1
        c1, c2 = [c for _, _, c in f1], [c for _, _, c in f2]
    buckets = [("range", boundaries[i], boundaries[i + 1]) for i in range(len(boundaries) - 1)]
    for point in sorted(set(p1) | set(p2)):
        c1.append(p1.get(point, 0.0))
        c2.append(p2.get(point, 0.0))
        buckets.append(("point", point))
    if inf1:
        c1.append(inf1)
        c2.append(0.0)
        buckets.append(("inf", 1))
    if inf2:
        c1.append(0.0)
        c2.append(inf2)
        buckets.append(("inf", 2))
    if nan1 > 0 or nan2 > 0:
        c1 += [0.0, nan1]
        c2 += [nan2, 0.0]
        buckets += [("nan", 2), ("nan", 1)]
    return c1, c2, buckets


def aligned_counts(h1: Histogram, h2: Histogram) -> tuple[list[float], list[float]]:
    """The two histograms' counts on common buckets (TFDV AlignHistograms)."""
    c1, c2, _ = align(h1, h2)
    return c1, c2


def divergence(counts_1, counts_2) -> float:
    """Jensen-Shannon divergence, log base 2, of two count vectors on the same buckets, capped at 1
    (TFDV's NormalizeHistogram, KullbackLeiblerDivergence and JensenShannonDivergence)."""
    p, q = np.asarray(counts_1, dtype=np.float64), np.asarray(counts_2, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("Unable to normalize an empty histogram")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        mask = (a > 0) & (b > 0)
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return min((kl(p, m) + kl(q, m)) / 2, 1.0)


def jensen_shannon(h1: Histogram, h2: Histogram) -> float:
    """TFDV's JensenShannonDivergence of two standard histograms, in [0, 1]."""
    return divergence(*aligned_counts(h1, h2))


def top_k(counts: dict[str, float], k: int = TOP_K) -> dict[str, float]:
    """The k most frequent values (ties by value), as TFDV's rank histogram keeps them."""
    if len(counts) <= k:
        return dict(counts)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k])


def linf(a: dict[str, float], b: dict[str, float]) -> tuple[str, float]:
    """TFDV's LInftyDistance: (value with the largest difference, that difference) of normalized counts."""
    ta, tb = sum(a.values()), sum(b.values())
    if ta == 0 or tb == 0:
        raise ValueError("Unable to normalize an empty distribution")
    best_key, best = "", 0.0
    for key in sorted(set(a) | set(b)):
        diff = abs(a.get(key, 0.0) / ta - b.get(key, 0.0) / tb)
        if diff >= best:
            best_key, best = key, diff
    return best_key, best
