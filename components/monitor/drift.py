"""Distribution distances, as Vertex AI Model Monitoring and TensorFlow Data Validation compute them.

- Numeric features: Jensen-Shannon divergence of the two histograms on the baseline's bins, with
  log base 2, so it lies in [0, 1] (0: identical, 1: disjoint). It equals
  `scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2` (scipy returns the JS *distance*, the
  square root). Values below or above the baseline's range fall in two open-ended bins.
- Categorical features: L-infinity distance, the largest absolute difference between the two
  frequency distributions over the union of categories, in [0, 1].

Following TFDV's convention (which Vertex AI Model Monitoring uses for its skew and drift
thresholds: default 0.3 per feature); see the TFDV "Data Validation" guide, "Drift and skew
detection", and Vertex AI's "Model Monitoring overview". Missing values are a bucket of their own,
and categories the baseline never saw are counted, never dropped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kfkit.errors import ConfigError

NULL = "__null__"
OTHER = "__other__"
DEFAULT_THRESHOLD = 0.3


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2, of two count (or probability) vectors."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        raise ConfigError("cannot compare an empty distribution")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, min(1.0, 0.5 * kl(p) + 0.5 * kl(q)))


def linf_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """L-infinity distance of two frequency tables (normalized here) over the union of their keys."""
    tp, tq = sum(p.values()), sum(q.values())
    if tp == 0 or tq == 0:
        raise ConfigError("cannot compare an empty distribution")
    return float(max(abs(p.get(k, 0) / tp - q.get(k, 0) / tq) for k in set(p) | set(q)))


@dataclass
class NumericProfile:
    edges: list[float]
    counts: list[int]  # [below range] + one per bin + [above range] + [null]

    @property
    def labels(self) -> list[str]:
        inner = [f"{self.edges[i]:.3g}..{self.edges[i + 1]:.3g}" for i in range(len(self.edges) - 1)]
        return [f"<{self.edges[0]:.3g}", *inner, f">{self.edges[-1]:.3g}", "null"]


def numeric_counts(values: pa.Array | pa.ChunkedArray | np.ndarray, edges: list[float]) -> list[int]:
    """Counts on fixed edges: [below] + bins (last bin closed) + [above] + [null]."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        nulls = values.null_count
        data = pc.cast(pc.drop_null(values), pa.float64()).to_numpy(zero_copy_only=False)
    else:
        data = np.asarray(values, dtype=np.float64)
        nulls = int(np.isnan(data).sum())
        data = data[~np.isnan(data)]
    edges_arr = np.asarray(edges, dtype=np.float64)
    n_bins = len(edges_arr) - 1
    lo, hi = edges_arr[0], edges_arr[-1]
    widths = np.diff(edges_arr)
    if hi > lo and np.allclose(widths, widths[0], rtol=1e-9, atol=0):
        # equal-width bins (validate's and drift mode's): arithmetic instead of a binary search
        position = np.floor((data - lo) * (n_bins / (hi - lo)))
        below = int(np.count_nonzero(data < lo))
        above = int(np.count_nonzero(data > hi))
        index = np.clip(position[(data >= lo) & (data <= hi)], 0, n_bins - 1).astype(np.int64)
    else:
        below = int(np.count_nonzero(data < lo))
        above = int(np.count_nonzero(data > hi))
        inside = data[(data >= lo) & (data <= hi)]
        index = np.clip(np.searchsorted(edges_arr, inside, side="right") - 1, 0, n_bins - 1)
    bins = np.bincount(index, minlength=n_bins)
    return [below, *bins.tolist(), above, nulls]


def categorical_counts(values: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    values = pc.cast(values, pa.string())
    out: dict[str, int] = {}
    for item in pc.value_counts(values).to_pylist():
        key = NULL if item["values"] is None else item["values"]
        out[key] = out.get(key, 0) + item["counts"]
    return out


def baseline_from_statistics(statistics: dict[str, Any]) -> dict[str, Any]:
    """Profiles of each feature from validate's training statistics (its histograms and frequencies)."""
    profiles: dict[str, Any] = {}
    for name, entry in statistics["columns"].items():
        if entry["kind"] == "numeric" and entry.get("histogram"):
            hist = entry["histogram"]
            profiles[name] = NumericProfile(list(hist["edges"]), [0, *hist["counts"], 0, entry.get("nulls", 0)])
        elif entry["kind"] == "categorical":
            freq = dict(entry.get("frequencies", {}))
            rest = entry.get("count", 0) - sum(freq.values())
            if rest > 0:
                freq[OTHER] = rest
            if entry.get("nulls"):
                freq[NULL] = entry["nulls"]
            profiles[name] = freq
    return profiles


def baseline_from_table(table: pa.Table, bins: int = 20) -> dict[str, Any]:
    """Profiles of an earlier serving window (drift mode): equal-width bins over its own range."""
    def profile(name: str):
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            bounds = pc.min_max(column)
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if lo is None:
                return None
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1).tolist()
            return NumericProfile(edges, numeric_counts(column, edges))
        return categorical_counts(column)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        profiles = dict(zip(table.column_names, pool.map(profile, table.column_names)))
    return {name: p for name, p in profiles.items() if p is not None}


@dataclass
class FeatureDrift:
    feature: str
    kind: str
    distance: float
    threshold: float
    baseline: list[float] = field(default_factory=list)  # normalized, for plots
    target: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    unseen: int = 0
    nulls: int = 0

    @property
    def anomalous(self) -> bool:
        return self.distance > self.threshold


def compare(baseline: dict[str, Any], target: pa.Table, thresholds: dict[str, float] | None = None,
            default_threshold: float = DEFAULT_THRESHOLD, features: list[str] | None = None) -> list[FeatureDrift]:
    """Distance per feature between the baseline profiles and the target rows, worst first."""
    if target.num_rows == 0:
        raise ConfigError("the target window has no rows: nothing to compare (check the time window "
                          "and that the endpoint logs requests)")
    thresholds = thresholds or {}
    names = features or [n for n in baseline if n in target.column_names]
    for name in names:
        if name not in target.column_names:
            raise ConfigError(f"feature {name!r} is not in the target data; it has: {', '.join(target.column_names)}")
    # numpy and Arrow release the GIL in the counting, so features are profiled on every core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda n: _compare_one(n, baseline[n], target.column(n),
                                                       float(thresholds.get(n, default_threshold))), names))
    return sorted(results, key=lambda r: r.distance, reverse=True)


def _compare_one(name: str, profile: Any, column, threshold: float) -> FeatureDrift:
    if isinstance(profile, NumericProfile):
        counts = numeric_counts(column, profile.edges)
        distance = js_divergence(profile.counts, counts)
        return FeatureDrift(name, "numeric", distance, threshold, _normalize(profile.counts), _normalize(counts),
                            profile.labels, unseen=counts[0] + counts[-2], nulls=counts[-1])
    counts = categorical_counts(column)
    distance = linf_distance(profile, counts)
    keys = sorted(set(profile) | set(counts), key=lambda k: -(profile.get(k, 0) + counts.get(k, 0)))[:30]
    tp, tq = sum(profile.values()), sum(counts.values())
    return FeatureDrift(name, "categorical", distance, threshold,
                        [profile.get(k, 0) / tp for k in keys], [counts.get(k, 0) / tq for k in keys],
                        keys, unseen=sum(v for k, v in counts.items() if k not in profile and k != NULL),
                        nulls=counts.get(NULL, 0))


def _normalize(counts: list[int]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]
