"""Canary analysis: does the canary serve at least as well as the version it would replace?

Plain logic over what each version served in the window (kfkit.components.canary.traffic reads it).
Each criterion is a one-sided test of "the canary is worse than the baseline by more than the allowed
effect", in the manner of Kayenta (Spinnaker's canary judge: a statistical test per metric, an
allowed effect size, then an aggregate): it `fail`s only on evidence, `pass`es otherwise, and is
`insufficient` when the data for it is missing. Each test runs at `false_rollback_rate` divided by the
number of criteria (Bonferroni), so an A/A canary is rolled back at most that often in all.
- error rate (non-2xx answers): fails when the canary's rate is significantly above
  `max_error_rate_ratio` x the baseline's + `max_error_rate_increase` (Agresti-Caffo's adjusted Wald
  test of that linear combination of two proportions);
- latency, from each side's requests after its first `warmup_requests` (the cold start): fails when the
  canary's latencies divided by `max_latency_ratio` are still significantly slower than the baseline's
  (one-sided Mann-Whitney U on log latencies, normal approximation with ties), or when its share of
  requests slower than `max_latency_ratio` x the baseline's p99 is significantly above the
  baseline's share (the tail: a p99 that grew with an unchanged median). Where the service hands
  out percentiles only (Vertex AI, Prometheus), the p99 ratio is judged against `max_latency_ratio`
  as a threshold, and the criterion says it had no samples to test;
- predictions: the monitor's distance between the two prediction distributions (TFDV's L-infinity for
  classes, Jensen-Shannon for numbers) fails when above `max_prediction_distance` + the distance's
  own sampling noise at these counts (its (1 - alpha) quantile over random relabellings of the pooled
  predictions: a permutation test);
- with ground truth: accuracy (classes) fails when its drop is significantly over
  `max_accuracy_drop`, RMSE (numbers) when its ratio is significantly over `max_rmse_ratio`
  (percentile bootstrap of the difference and the ratio).
A failed criterion rolls back; otherwise an insufficient one (latencies or predictions missing on a
side, too few labelled answers) makes the verdict inconclusive, never a silently skipped criterion.
Too few requests on either side (`min_requests`) is inconclusive before any test.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kfkit.errors import ConfigError

PROMOTE, ROLLBACK, INCONCLUSIVE = "promote", "rollback", "inconclusive"
CANARY_TAG = "kfkit.canary"  # the registry tag (label on Vertex AI) each verdict writes on the canary version


@dataclass
class Thresholds:
    min_requests: int = 100
    max_error_rate_increase: float = 0.0       # absolute slack on the canary's error rate
    max_latency_ratio: float = 1.2             # allowed slowdown: latencies and the tail, as a factor
    max_prediction_distance: float = 0.05      # allowed distance beyond the sampling noise
    max_accuracy_drop: float = 0.02
    max_rmse_ratio: float = 1.1
    max_error_rate_ratio: float = 1.1          # allowed error rate: ratio x baseline's + increase
    false_rollback_rate: float = 0.01          # of an A/A canary, all criteria together
    warmup_requests: int = 20                  # each side's first requests left out of latency

    def check(self) -> "Thresholds":
        if self.min_requests < 1:
            raise ConfigError(f"min_requests must be >= 1, got {self.min_requests}")
        if self.warmup_requests < 0:
            raise ConfigError(f"warmup_requests must be >= 0, got {self.warmup_requests}")
        for name in ("max_error_rate_increase", "max_latency_ratio", "max_prediction_distance", "max_accuracy_drop",
                     "max_rmse_ratio", "max_error_rate_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.false_rollback_rate, (int, float)) and 0 < self.false_rollback_rate < 0.5):
            raise ConfigError(f"false_rollback_rate must be between 0 and 0.5, got {self.false_rollback_rate!r}")
        return self


@dataclass
class Served:
    """What one side served in the window: every request, and the answered ones' predictions."""
    name: str
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    # (prediction, truth) for the answered requests whose key has a label
    labelled: list[tuple[Any, Any]] = field(default_factory=list)
    # {q: ms} computed by the service that served (Vertex: Cloud Monitoring's own percentiles over
    # every request), used instead of latencies_ms, which such a service does not hand out
    latency_percentiles: dict[int, float] = field(default_factory=dict)
    # each latency's request time (epoch s), where known: latencies are compared time slice by slice
    latency_times: list[float] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency(self, q: int) -> float | None:
        if q in self.latency_percentiles:
            return float(self.latency_percentiles[q])
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def figures(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
                "latency_p50_ms": self.latency(50), "latency_p99_ms": self.latency(99),
                "labelled": len(self.labelled)}


PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"


@dataclass
class Criterion:
    name: str
    canary: float | None
    baseline: float | None
    limit: float
    passed: bool
    detail: str
    status: str = ""                # pass, fail or insufficient
    p_value: float | None = None    # of "the canary is worse than allowed"; None without a test
    interval: list[float] | None = None   # the effect's interval, where the test gives one

    def __post_init__(self):
        self.status = self.status or (PASS if self.passed else FAIL)


@dataclass
class Analysis:
    verdict: str
    reason: str
    criteria: list[Criterion]
    canary: dict[str, Any]
    baseline: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "criteria": [asdict(c) for c in self.criteria],
                "canary": self.canary, "baseline": self.baseline}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def prediction_distance(canary: list[Any], baseline: list[Any]) -> tuple[float, str]:
    """The monitor's distance between two prediction samples: (distance, metric name)."""
    from kfkit.components.monitor import drift

    numeric = sum(_is_number(v) for v in baseline) > len(baseline) / 2
    kind = "numeric" if numeric else "categorical"
    result = drift.compare_feature("prediction", drift.profile(baseline, kind), drift.profile(canary, kind),
                                   threshold=math.inf, min_count=1)
    return float(result.distance or 0.0), ("Jensen-Shannon divergence" if numeric else "L-infinity distance")


# ---- the tests -------------------------------------------------------------------------------------
def _upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def _two_proportions(xc: int, nc: int, xb: int, nb: int, ratio: float, slack: float) -> float:
    """One-sided p-value of "p_c > ratio * p_b + slack", Agresti-Caffo's adjusted Wald test (one success
    and one failure added to each side, so zero counts give sensible intervals)."""
    pc, pb = (xc + 1) / (nc + 2), (xb + 1) / (nb + 2)
    se = math.sqrt(pc * (1 - pc) / (nc + 2) + ratio ** 2 * pb * (1 - pb) / (nb + 2))
    return _upper_tail((pc - ratio * pb - slack) / se) if se > 0 else (0.0 if pc > ratio * pb + slack else 1.0)


def _error_rate(c: Served, b: Served, t: Thresholds, alpha: float) -> Criterion:
    allowed = t.max_error_rate_ratio * b.error_rate + t.max_error_rate_increase
    p = _two_proportions(c.errors, c.requests, b.errors, b.requests, t.max_error_rate_ratio, t.max_error_rate_increase)
    failed = p < alpha
    return Criterion("error_rate", c.error_rate, b.error_rate, allowed, not failed,
                     f"canary {c.errors}/{c.requests} failed vs {b.errors}/{b.requests}; allowed "
                     f"x{t.max_error_rate_ratio:g} + {t.max_error_rate_increase:g} = {allowed:.4%}; "
                     f"p = {p:.2g} for more than that (fails below {alpha:.2g})", p_value=p)


def _rank_sum_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(U - E[U], Var[U]) of Mann-Whitney's U for x against y, average ranks for ties and the
    tie-corrected variance."""
    n1, n2 = len(x), len(y)
    pooled = np.concatenate([x, y])
    order = np.argsort(pooled, kind="mergesort")
    ranks = np.empty(len(pooled))
    sorted_values = pooled[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie = float((counts ** 3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    return u - n1 * n2 / 2.0, n1 * n2 / 12.0 * ((n + 1) - tie)


def _mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided p-value of "x is stochastically greater than y" (Mann-Whitney U, normal
    approximation with the tie correction; continuity-corrected)."""
    centred, variance = _rank_sum_parts(x, y)
    if variance <= 0:
        return 1.0
    return _upper_tail((centred - 0.5) / math.sqrt(variance))


def _stratified_mann_whitney_greater(strata: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The same one-sided test within strata (van Elteren's weighting: each stratum's U over its size
    + 1), so each side is compared only with what the other served at the same time."""
    total, variance = 0.0, 0.0
    for x, y in strata:
        centred, var = _rank_sum_parts(x, y)
        weight = 1.0 / (len(x) + len(y) + 1)
        total += weight * centred
        variance += weight * weight * var
    if variance <= 0:
        return 1.0
    return _upper_tail(total / math.sqrt(variance))


def _mantel_haenszel_greater(tables: list[tuple[int, int, int, int]]) -> float:
    """One-sided p-value of "the first group's share is higher" over strata of (x1, n1, x2, n2)
    (Cochran-Mantel-Haenszel: each stratum's excess over its expectation under one shared share)."""
    excess, variance = 0.0, 0.0
    for x1, n1, x2, n2 in tables:
        n, m = n1 + n2, x1 + x2
        if n < 2:
            continue
        excess += x1 - n1 * m / n
        variance += n1 * n2 * m * (n - m) / (n * n * (n - 1))
    if variance <= 0:
        return 1.0
    return _upper_tail((excess - 0.5) / math.sqrt(variance))


TIME_SLICES = 10


def _time_strata(cl: np.ndarray, ct: np.ndarray, bl: np.ndarray, bt: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both sides' latencies cut into TIME_SLICES equal slices of the window they share; a slice where
    either side served nothing compares nothing."""
    lo, hi = max(ct.min(), bt.min()), min(ct.max(), bt.max())
    if hi <= lo:
        return []
    edges = np.linspace(lo, hi, TIME_SLICES + 1)
    ci = np.clip(np.searchsorted(edges, ct, side="right") - 1, 0, TIME_SLICES - 1)
    bi = np.clip(np.searchsorted(edges, bt, side="right") - 1, 0, TIME_SLICES - 1)
    cin, bin_ = (ct >= lo) & (ct <= hi), (bt >= lo) & (bt <= hi)
    strata = []
    for k in range(TIME_SLICES):
        x, y = cl[cin & (ci == k)], bl[bin_ & (bi == k)]
        if len(x) and len(y):
            strata.append((x, y))
    return strata


def _latency(c: Served, b: Served, t: Thresholds, alpha: float) -> Criterion:
    cl = np.asarray(c.latencies_ms[t.warmup_requests:], dtype=float)
    bl = np.asarray(b.latencies_ms[t.warmup_requests:], dtype=float)
    r = t.max_latency_ratio
    if len(cl) >= t.min_requests // 2 and len(bl) >= t.min_requests // 2 and len(cl) and len(bl):
        cl, bl = np.maximum(cl, 1e-6), np.maximum(bl, 1e-6)
        # location: is canary/r still slower than the baseline? Within the same time slices where
        # each latency has its time, so a slow spell of the machine weighs on both sides alike
        x, y = np.log(cl) - math.log(max(r, 1e-12)), np.log(bl)
        ct = np.asarray(c.latency_times[t.warmup_requests:], dtype=float)
        bt = np.asarray(b.latency_times[t.warmup_requests:], dtype=float)
        strata = _time_strata(x, ct, y, bt) if len(ct) == len(cl) and len(bt) == len(bl) else []
        p_shift = _stratified_mann_whitney_greater(strata) if strata else _mann_whitney_greater(x, y)
        compared = f"in {len(strata)} time slices" if strata else "over the window"
        # tail: share slower than r x the baseline's p99, canary against baseline
        b99 = float(np.percentile(bl, 99))
        edge = r * b99
        xc, xb = int((cl > edge).sum()), int((bl > edge).sum())
        if strata:
            p_tail = _mantel_haenszel_greater([(int((np.exp(sx + math.log(max(r, 1e-12))) > edge).sum()), len(sx),
                                                int((np.exp(sy) > edge).sum()), len(sy)) for sx, sy in strata])
        else:
            p_tail = _two_proportions(xc, len(cl), xb, len(bl), 1.0, 0.0)
        p = min(p_shift, p_tail)
        failed = p < alpha / 2  # two tests share this criterion's alpha
        c99, c50, b50 = float(np.percentile(cl, 99)), float(np.median(cl)), float(np.median(bl))
        return Criterion("latency_p99_ms", c99, b99, r * b99, not failed,
                         f"p50 {c50:.1f} vs {b50:.1f} ms, p99 {c99:.1f} vs {b99:.1f} ms after {t.warmup_requests} "
                         f"warm-up requests; slower than x{r:g}: Mann-Whitney {compared} p = {p_shift:.2g}; over x{r:g} the "
                         f"baseline's p99: {xc}/{len(cl)} vs {xb}/{len(bl)}, p = {p_tail:.2g} (fails below "
                         f"{alpha / 2:.2g})", p_value=p)
    c99, b99 = c.latency(99), b.latency(99)
    if c.latency_percentiles and b.latency_percentiles and c99 is not None and b99 is not None:
        limit = b99 * r
        return Criterion("latency_p99_ms", c99, b99, limit, c99 <= limit,
                         f"p99 {c99:.1f} ms vs {b99:.1f} ms (at most x{r:g}); p50 {c.latency(50):.1f} vs "
                         f"{b.latency(50):.1f} ms: percentiles from the service, no samples to test")
    missing = [s.name for s, values in ((c, cl), (b, bl)) if len(values) < max(1, t.min_requests // 2)
               and not s.latency_percentiles]
    return Criterion("latency_p99_ms", None, None, r, False, f"no latencies to judge for {', '.join(missing) or 'a side'} "
                     f"(after {t.warmup_requests} warm-up requests)", status=INSUFFICIENT)


PERMUTATIONS = 400


def _permuted_distances(canary: list[Any], baseline: list[Any], numeric: bool, rng) -> tuple[float, np.ndarray]:
    """The observed distance and its values over random relabellings of the pooled predictions."""
    observed, _ = prediction_distance(canary, baseline)
    pooled = list(canary) + list(baseline)
    n = len(canary)
    if not numeric:
        # L-infinity between class frequencies, computed on integer codes (the monitor's definition)
        codes = {v: i for i, v in enumerate(dict.fromkeys(str(v) for v in pooled))}
        labels = np.array([codes[str(v)] for v in pooled])
        k = len(codes)
        null = np.empty(PERMUTATIONS)
        for i in range(PERMUTATIONS):
            shuffled = labels[rng.permutation(len(labels))]
            fc = np.bincount(shuffled[:n], minlength=k) / n
            fb = np.bincount(shuffled[n:], minlength=k) / (len(labels) - n)
            null[i] = np.abs(fc - fb).max()
        return observed, null
    null = np.empty(PERMUTATIONS // 4)
    array = np.array(pooled, dtype=object)
    for i in range(len(null)):
        shuffled = array[rng.permutation(len(array))]
        null[i] = prediction_distance(list(shuffled[:n]), list(shuffled[n:]))[0]
    return observed, null


def _predictions(c: Served, b: Served, t: Thresholds, alpha: float, rng) -> Criterion:
    if not (c.predictions and b.predictions):
        missing = [s.name for s in (c, b) if not s.predictions]
        return Criterion("prediction_distance", None, None, t.max_prediction_distance, False,
                         f"no predictions to compare from {', '.join(missing)}", status=INSUFFICIENT)
    numeric = sum(_is_number(v) for v in b.predictions) > len(b.predictions) / 2
    observed, null = _permuted_distances(c.predictions, b.predictions, numeric, rng)
    noise = float(np.quantile(null, 1 - alpha)) if len(null) else 0.0
    limit = t.max_prediction_distance + noise
    p = float((1 + (null >= observed - t.max_prediction_distance).sum()) / (1 + len(null)))
    metric = "Jensen-Shannon divergence" if numeric else "L-infinity distance"
    return Criterion("prediction_distance", observed, 0.0, limit, observed <= limit,
                     f"{metric} between the versions' predictions {observed:.4f}; allowed "
                     f"{t.max_prediction_distance:g} + its sampling noise at {len(c.predictions)} and "
                     f"{len(b.predictions)} predictions ({noise:.4f}, the {1 - alpha:.4g} quantile of "
                     f"{len(null)} relabellings) = {limit:.4f}", p_value=p)


BOOTSTRAP = 1000


def _ground_truth(c: Served, b: Served, t: Thresholds, alpha: float, rng) -> Criterion | None:
    if not (c.labelled or b.labelled):
        return None  # no ground truth asked for, or none joined yet on either side
    numeric = all(_is_number(p) and _is_number(y) for p, y in b.labelled + c.labelled)
    name = "rmse" if numeric else "accuracy"
    if min(len(c.labelled), len(b.labelled)) < t.min_requests:
        return Criterion(name, None, None, math.nan, False,
                         f"{len(c.labelled)} and {len(b.labelled)} labelled answers, fewer than min_requests="
                         f"{t.min_requests} on a side", status=INSUFFICIENT)
    if numeric:
        ce = np.array([(float(p) - float(y)) ** 2 for p, y in c.labelled])
        be = np.array([(float(p) - float(y)) ** 2 for p, y in b.labelled])
        cr, br = math.sqrt(ce.mean()), math.sqrt(be.mean())
        ratios = np.sqrt(ce[rng.integers(0, len(ce), (BOOTSTRAP, len(ce)))].mean(axis=1)
                         / np.maximum(be[rng.integers(0, len(be), (BOOTSTRAP, len(be)))].mean(axis=1), 1e-300))
        low = float(np.quantile(ratios, alpha))
        failed = low > t.max_rmse_ratio
        return Criterion("rmse", cr, br, br * t.max_rmse_ratio, not failed,
                         f"canary RMSE {cr:.4g} vs {br:.4g}: ratio {cr / br if br else math.inf:.3f}, its lower "
                         f"bound {low:.3f} (bootstrap, {1 - alpha:.4g}); fails above x{t.max_rmse_ratio:g}",
                         interval=[low, float(np.quantile(ratios, 1 - alpha))])
    ch = np.array([str(p) == str(y) for p, y in c.labelled], dtype=float)
    bh = np.array([str(p) == str(y) for p, y in b.labelled], dtype=float)
    ca, ba = float(ch.mean()), float(bh.mean())
    diffs = (ch[rng.integers(0, len(ch), (BOOTSTRAP, len(ch)))].mean(axis=1)
             - bh[rng.integers(0, len(bh), (BOOTSTRAP, len(bh)))].mean(axis=1))
    high = float(np.quantile(diffs, 1 - alpha))
    failed = high < -t.max_accuracy_drop
    return Criterion("accuracy", ca, ba, ba - t.max_accuracy_drop, not failed,
                     f"canary accuracy {ca:.4f} vs {ba:.4f}: the drop's upper bound {-high:.4f} (bootstrap, "
                     f"{1 - alpha:.4g}); fails above {t.max_accuracy_drop:g}",
                     interval=[float(np.quantile(diffs, alpha)), high])


def analyze(canary: Served, baseline: Served, thresholds: Thresholds | None = None, seed: int = 0) -> Analysis:
    """The verdict on a canary from what both sides served (random draws seeded: the same data, the
    same verdict)."""
    t = (thresholds or Thresholds()).check()
    figures = (canary.figures(), baseline.figures())
    short = [s for s in (canary, baseline) if s.requests < t.min_requests]
    if short:
        names = ", ".join(f"{s.name} {s.requests}" for s in short)
        return Analysis(INCONCLUSIVE, f"too little traffic to judge: {names} requests (min_requests={t.min_requests})",
                        [], *figures)
    rng = np.random.default_rng(seed)
    tests = 3 + (1 if (canary.labelled or baseline.labelled) else 0)
    alpha = t.false_rollback_rate / tests
    criteria = [_error_rate(canary, baseline, t, alpha), _latency(canary, baseline, t, alpha),
                _predictions(canary, baseline, t, alpha, rng)]
    truth = _ground_truth(canary, baseline, t, alpha, rng)
    if truth is not None:
        criteria.append(truth)
    failed = [c for c in criteria if c.status == FAIL]
    if failed:
        return Analysis(ROLLBACK, "; ".join(f"{c.name}: {c.detail}" for c in failed), criteria, *figures)
    insufficient = [c for c in criteria if c.status == INSUFFICIENT]
    if insufficient:
        return Analysis(INCONCLUSIVE, "; ".join(f"{c.name}: {c.detail}" for c in insufficient), criteria, *figures)
    return Analysis(PROMOTE, f"no criterion shows the canary worse than allowed on {canary.requests} canary and "
                             f"{baseline.requests} baseline requests", criteria, *figures)
