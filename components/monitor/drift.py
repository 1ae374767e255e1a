"""Per-feature skew and drift verdicts from TFDV's distances (kfkit/tfdv.py).

A feature's verdict is one of:
- `drift`: its distance (JS divergence for numbers, L-infinity for categories) is over its threshold;
- `ok`: under it;
- `insufficient data`: fewer non-missing values in the window than `min_count`; its distance is
  still shown, but it is not a verdict (default from benchmarks/monitor_guard.py: the smallest
  window where in-distribution samples of the training data cross 0.3 in at most 1% of windows);
- `missing`: the feature is absent from every request of the window;
- `new`: the window has a feature the baseline does not (reported, never compared);
- `error`: this feature could not be compared (the message says why); the others still are.
Values that are not of the feature's kind (a string in a numeric column, a list, a number beyond
float range in a category) are counted as `invalid` on that feature and left out of its distance.
"""

from __future__ import annotations

import decimal
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kfkit import tfdv

DEFAULT_THRESHOLD = 0.3
# benchmarks/monitor_guard.py: in-distribution windows of the sample tables stop crossing 0.3 (at most
# 1% of windows) from 50 values on; the default doubles that for data less regular than theirs
DEFAULT_MIN_COUNT = 100
OK, DRIFT, INSUFFICIENT, MISSING, NEW, ERROR = "ok", "drift", "insufficient data", "missing", "new", "error"
MAX_LABEL = 40


@dataclass
class NumericBaseline:
    histogram: tfdv.Histogram


@dataclass
class CategoricalBaseline:
    counts: dict[str, float]


BASELINE_BINS = 20  # bins of the `baseline_bins` method (validate's histogram)
METHODS = ("tfdv", "baseline_bins")


@dataclass
class Profile:
    """One side of one feature: what the distance needs, and what was set aside."""

    kind: str
    histogram: tfdv.Histogram | None = None
    edges: list[float] | None = None      # baseline_bins method: the baseline's bin edges
    bin_counts: list[float] | None = None  # and its counts on them
    values: np.ndarray | None = None       # a window's numeric values, to count on another side's edges
    counts: dict[str, float] | None = None
    present: int = 0      # non-missing, valid values
    missing: int = 0
    invalid: int = 0


# ---- reading a column whatever it holds ---------------------------------------------------------
def _numeric(value: Any) -> float | None:
    """A logged value as a float; None if it is not a number (bool, string, list, ...)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, (int, decimal.Decimal)):  # INT64 over its whole range, NUMERIC and BIGNUMERIC
        try:
            return float(value)  # a float64, as TFDV reads every number (beyond 2**53 to the nearest one)
        except OverflowError:  # beyond float range: it is +/-inf as a float64
            return math.inf if value > 0 else -math.inf
    return None


def _category(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        return repr(value)
    return None


def _arrow_of(column, *kinds) -> bool:
    """An Arrow column whose type passes one of the pyarrow.types predicates `kinds`."""
    return isinstance(column, (pa.Array, pa.ChunkedArray)) and any(kind(column.type) for kind in kinds)


def numeric_profile(column: pa.Array | pa.ChunkedArray | Iterable[Any]) -> Profile:
    if _arrow_of(column, pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal):
        missing = column.null_count
        # unsafe: an INT64 beyond 2**53 or a NUMERIC becomes the nearest float64, as TFDV reads them
        values = pc.cast(pc.drop_null(column), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return Profile("numeric", histogram=tfdv.histogram(values), present=len(values), missing=missing,
                       values=values)
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = column.to_pylist()
    values, missing, invalid = [], 0, 0
    for value in column:
        if value is None:
            missing += 1
            continue
        number = _numeric(value)
        if number is None:
            invalid += 1
        else:
            values.append(number)
    array = np.asarray(values, dtype=np.float64)
    return Profile("numeric", histogram=tfdv.histogram(array), present=len(values), missing=missing,
                   invalid=invalid, values=array)


def _with_bins(profile: Profile) -> Profile:
    """Equal-width bins over the finite range (the baseline side of the `baseline_bins` method)."""
    finite = profile.values[np.isfinite(profile.values)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        profile.edges = np.linspace(lo, hi if hi > lo else lo + 1.0, BASELINE_BINS + 1).tolist()
        profile.bin_counts = [0.0, *np.histogram(finite, bins=profile.edges)[0].astype(float).tolist(), 0.0]
    return profile


def counts_on_edges(values: np.ndarray, edges: list[float]) -> list[float]:
    """[below] + one count per bin (last closed) + [above] + [NaN]: a window on the baseline's bins."""
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    data = values[~nan]
    lo, hi = edges[0], edges[-1]
    inside = data[(data >= lo) & (data <= hi)]
    bins = np.histogram(inside, bins=edges)[0] if inside.size else np.zeros(len(edges) - 1)
    return [float(np.count_nonzero(data < lo)), *bins.astype(float).tolist(), float(np.count_nonzero(data > hi)),
            float(nan.sum())]


def categorical_profile(column: pa.Array | pa.ChunkedArray | Iterable[Any], k: int = tfdv.TOP_K) -> Profile:
    if _arrow_of(column, pa.types.is_string, pa.types.is_large_string):
        missing = column.null_count
        counted = pc.value_counts(pc.drop_null(column))
        values, numbers = counted.field("values"), counted.field("counts")
        if len(counted) > k:
            # tfdv.top_k's order (most frequent first, ties by value) chosen in Arrow: sorting every
            # distinct value in Python took most of a high-cardinality column's time
            table = pa.table({"values": values, "counts": numbers})
            chosen = pc.select_k_unstable(table, k, sort_keys=[("counts", "descending"), ("values", "ascending")])
            values, numbers = values.take(chosen), numbers.take(chosen)
        counts = dict(zip(values.to_pylist(), numbers.cast(pa.float64()).to_pylist()))
        return Profile("categorical", counts=counts, present=len(column) - missing, missing=missing)
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = column.to_pylist()
    counts: dict[str, float] = {}
    missing = invalid = 0
    for value in column:
        if value is None:
            missing += 1
            continue
        key = _category(value)
        if key is None:
            invalid += 1
        else:
            counts[key] = counts.get(key, 0.0) + 1.0
    present = int(sum(counts.values()))
    return Profile("categorical", counts=tfdv.top_k(counts, k), present=present, missing=missing, invalid=invalid)


# ---- baselines ----------------------------------------------------------------------------------
def baseline_from_statistics(statistics: dict[str, Any]) -> dict[str, Profile]:
    """Each feature's baseline from validate's training statistics (TFDV histogram, top values)."""
    profiles: dict[str, Profile] = {}
    for name, entry in statistics["columns"].items():
        present = int(entry.get("count", 0))
        if entry.get("kind") == "numeric" and entry.get("tfdv_histogram"):
            profiles[name] = Profile("numeric", histogram=tfdv.Histogram.from_json(entry["tfdv_histogram"]),
                                     present=present, missing=int(entry.get("nulls", 0)))
        elif entry.get("kind") == "numeric" and entry.get("histogram"):
            # statistics written before kfkit 0.4: validate's 20 equal-width buckets
            hist = entry["histogram"]
            edges, counts = hist["edges"], hist["counts"]
            buckets = [(float(edges[i]), float(edges[i + 1]), float(counts[i])) for i in range(len(counts))]
            profiles[name] = Profile("numeric", histogram=tfdv.Histogram(buckets), present=present)
        if name in profiles and profiles[name].kind == "numeric" and entry.get("histogram"):
            hist = entry["histogram"]
            profiles[name].edges = [float(e) for e in hist["edges"]]
            profiles[name].bin_counts = [0.0, *[float(c) for c in hist["counts"]], 0.0]
        elif entry.get("kind") == "categorical":
            counts = {str(k): float(v) for k, v in entry.get("frequencies", {}).items()}
            profiles[name] = Profile("categorical", counts=tfdv.top_k(counts), present=present,
                                     missing=int(entry.get("nulls", 0)))
    return profiles


def _kind_of(column) -> str:
    if _arrow_of(column, pa.types.is_integer, pa.types.is_floating):
        return "numeric"
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return "categorical"
    numbers = sum(1 for v in column if _numeric(v) is not None)
    others = sum(1 for v in column if v is not None and _numeric(v) is None)
    return "numeric" if numbers > others else "categorical"


def profile(column, kind: str) -> Profile:
    return numeric_profile(column) if kind == "numeric" else categorical_profile(column)


def baseline_from_columns(columns: dict[str, Any]) -> dict[str, Profile]:
    """Profiles of an earlier window (drift mode), each feature's kind read from its values."""
    def one(name):
        return name, profile(columns[name], _kind_of(columns[name]))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(pool.map(one, list(columns)))


# ---- comparing ----------------------------------------------------------------------------------
@dataclass
class FeatureDrift:
    feature: str
    kind: str
    status: str
    distance: float | None
    threshold: float
    baseline: list[float] = field(default_factory=list)   # normalized, for plots
    target: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    present: int = 0
    missing: int = 0
    invalid: int = 0
    unseen: int = 0
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # what the distance came from (attribution verdicts)

    @property
    def anomalous(self) -> bool:
        return self.status == DRIFT

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "status": self.status, "distance": self.distance,
                "threshold": self.threshold, "present": self.present, "missing": self.missing,
                "invalid": self.invalid, "unseen": self.unseen, "message": self.message,
                **({"evidence": self.evidence} if self.evidence else {})}


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _bucket_label(low: float, high: float) -> str:
    if low == high:
        return f"{low:.4g}"
    return f"{low:.4g} to {high:.4g}"


def _baseline_bins_js(base: Profile, target: Profile) -> tuple[float, list[float], list[float], list[str]]:
    """The `baseline_bins` method: both sides counted on the baseline's bins (with open-ended bins
    below and above, NaN apart), JS divergence base 2. Stable on heavy tails, where TFDV's per-side
    ranges make in-distribution windows look drifted (benchmarks/monitor_guard.py)."""
    if (base.edges is None or base.bin_counts is None) and base.values is not None:
        _with_bins(base)  # a window baseline (drift mode): its bins are made when first needed
    if base.edges is None or base.bin_counts is None:
        raise ValueError("the baseline has no bins for the baseline_bins method")
    b = [*base.bin_counts, 0.0]
    t = counts_on_edges(target.values if target.values is not None else np.zeros(0), base.edges)
    distance = tfdv.divergence(b, t)
    e = base.edges
    labels = [f"< {e[0]:.4g}", *[_bucket_label(e[i], e[i + 1]) for i in range(len(e) - 1)], f"> {e[-1]:.4g}", "NaN"]
    return distance, _normalize(b), _normalize(t), labels


def compare_feature(name: str, base: Profile, target: Profile, threshold: float,
                    min_count: int, method: str = "tfdv") -> FeatureDrift:
    """One feature's verdict; never raises (a problem becomes the `error` verdict on this feature)."""
    result = FeatureDrift(name, base.kind, OK, None, threshold, present=target.present, missing=target.missing,
                          invalid=target.invalid)
    try:
        if target.present == 0:
            result.status = MISSING if target.invalid == 0 else ERROR
            result.message = ("no value in the window" if target.invalid == 0
                              else f"all {target.invalid} values are not {base.kind}")
            return result
        if base.kind == "numeric" and method == "baseline_bins":
            result.distance, result.baseline, result.target, result.labels = _baseline_bins_js(base, target)
        elif base.kind == "numeric":
            b, t, buckets = tfdv.align(base.histogram, target.histogram)
            result.distance = tfdv.divergence(b, t)
            finite = [c for lo, hi, c in base.histogram.buckets if math.isfinite(lo) and math.isfinite(hi)]
            if finite and len(finite) > 1 and max(finite) > 0.9 * sum(finite):
                result.message = ("heavy tail: 90% of the baseline is in one of TFDV's buckets, where its distance "
                                  "flags in-distribution windows too; consider distance_method=baseline_bins")
            result.baseline, result.target = _normalize(b), _normalize(t)
            result.labels = [_aligned_label(bucket) for bucket in buckets]
        else:
            key, result.distance = tfdv.linf(base.counts, target.counts)
            keys = sorted(set(base.counts) | set(target.counts),
                          key=lambda k: -(base.counts.get(k, 0) + target.counts.get(k, 0)))[:30]
            tb, tt = sum(base.counts.values()) or 1, sum(target.counts.values()) or 1
            result.baseline = [base.counts.get(k, 0) / tb for k in keys]
            result.target = [target.counts.get(k, 0) / tt for k in keys]
            result.labels = [_label(k) for k in keys]
            result.unseen = int(sum(v for k, v in target.counts.items() if k not in base.counts))
        if target.present < min_count:
            result.status = INSUFFICIENT
            result.message = f"{target.present} values, fewer than min_count={min_count}: no verdict"
        else:
            result.status = DRIFT if result.distance > threshold else OK
    except Exception as exc:  # one feature's problem must not stop the others
        result.status, result.message = ERROR, f"{type(exc).__name__}: {exc}"
        if base.kind == "numeric" and not target.histogram.buckets and target.histogram.num_nan:
            result.message = (f"all {int(target.histogram.num_nan)} values are NaN; TFDV's distance cannot compare "
                              "a histogram of NaN alone")
    if target.invalid and result.status in (OK, DRIFT, INSUFFICIENT):
        result.message = (result.message + "; " if result.message else "") + \
            f"{target.invalid} values not {base.kind} were left out"
    return result


def _aligned_label(bucket: tuple) -> str:
    """A chart label for one of tfdv.align's buckets (side 1 is the baseline, 2 the window)."""
    kind = bucket[0]
    if kind == "range":
        return _bucket_label(bucket[1], bucket[2])
    if kind == "point":
        return f"{bucket[1]:.4g}"
    side = "baseline" if bucket[1] == 1 else "window"
    return f"±inf ({side})" if kind == "inf" else f"NaN ({side})"


def compare(baseline: dict[str, Profile], columns: dict[str, Any], thresholds: dict[str, float] | None = None,
            default_threshold: float = DEFAULT_THRESHOLD, min_count: int = DEFAULT_MIN_COUNT,
            features: list[str] | None = None, method: str = "tfdv") -> list[FeatureDrift]:
    """Every feature's verdict, worst first: baseline features, then the window's new ones.

    `method`: `tfdv` (TFDV's / Vertex AI Model Monitoring's distances) or `baseline_bins`.
    """
    if method not in METHODS:
        raise ValueError(f"distance method must be one of {', '.join(METHODS)}, got {method!r}")
    thresholds = thresholds or {}
    names = features if features is not None else list(baseline)

    def one(name: str) -> FeatureDrift:
        threshold = float(thresholds.get(name, default_threshold))
        base = baseline[name]
        column = columns.get(name)
        if column is None:
            return FeatureDrift(name, base.kind, MISSING, None, threshold, message="not in any request of the window")
        try:
            return compare_feature(name, base, profile(column, base.kind), threshold, min_count, method)
        except Exception as exc:  # noqa: BLE001 - one feature's problem never stops the others' verdicts
            return FeatureDrift(name, base.kind, ERROR, None, threshold,
                                message=f"could not be compared: {type(exc).__name__}: {exc}"[:300])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(one, names))
    if features is None:
        for name in columns:
            if name not in baseline:
                results.append(FeatureDrift(name, "unknown", NEW, None, default_threshold,
                                            message="in the window, not in the baseline: not compared"))
    return worst_first(results)


def worst_first(results: list[FeatureDrift]) -> list[FeatureDrift]:
    """Drift first, then errors, then the rest; larger distances first within a status."""
    order = {DRIFT: 0, ERROR: 1, OK: 2, INSUFFICIENT: 3, MISSING: 4, NEW: 5}
    return sorted(results, key=lambda r: (order[r.status], -(r.distance or 0.0)))


def _normalize(counts: list[float]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def columns_of(table_or_rows: pa.Table | list[dict] | dict) -> dict[str, Any]:
    """Feature columns from an Arrow table, or from logged instances of any shape (never fails)."""
    if isinstance(table_or_rows, pa.Table):
        return {name: table_or_rows.column(name) for name in table_or_rows.column_names}
    if isinstance(table_or_rows, dict):
        return table_or_rows
    names: dict[str, None] = {}
    for row in table_or_rows:
        if isinstance(row, dict):
            names.update(dict.fromkeys(k for k in row if isinstance(k, str)))
    columns = {name: [] for name in names}
    for row in table_or_rows:
        row = row if isinstance(row, dict) else {}
        for name in names:
            columns[name].append(row.get(name))
    return columns
