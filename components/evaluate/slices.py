"""Sliced evaluation: metrics per slice of the test split, with counts and confidence intervals.

Slicing specs take TFMA's SlicingSpec form (also what GCPC's evaluation components accept), as a
JSON list: `{"feature_keys": ["island"]}` gives one slice per island, `{"feature_keys": ["island",
"sex"]}` one per island and sex, `{"feature_values": {"island": "Dream"}}` the single slice of that
value, both keys together fix some columns and cross the rest, and `{}` is the whole split. As in
TFMA, a row whose slicing column is null belongs to no slice of that spec.

Each slice comes out in the JSON shape of Vertex's ModelEvaluationSlice (`slice` with dimension
`slice`, TFMA's slice key as its value and the SliceSpec configs; `metrics`), so the list can be
imported beside a model evaluation. Intervals are 95%: Wilson for accuracy and the fairness rates
(proportions, exact enough on small slices where the normal interval falls outside [0, 1]),
percentile bootstrap for ROC AUC and RMSE (no closed form worth trusting on small slices).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kfkit.errors import ConfigError

Z95 = 1.959963984540054
BOOTSTRAP = 400  # resamples: the percentile interval's ends move by ~0.005 AUC between seeds at this count
SEED = 0  # fixed so a rerun of the same evaluation gives the same intervals (and the same gate decision)
CROSS = "_X_"  # TFMA's separator in a crossed slice key, e.g. island_X_sex:Dream_X_MALE


@dataclass
class SlicingSpec:
    feature_keys: list[str] = field(default_factory=list)
    feature_values: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.feature_values, *self.feature_keys]


def parse_slicing_specs(text: str | list | None) -> list[SlicingSpec]:
    """The specs of a JSON list (or the list itself); a bad entry is refused by its position."""
    if text in (None, "", []):
        return []
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"slicing_specs is not JSON ({exc}); expected a list such as "
                              '[{"feature_keys": ["island"]}, {"feature_keys": ["island", "sex"]}]') from None
    if not isinstance(text, list):
        raise ConfigError(f"slicing_specs must be a JSON list of slicing specs; got {type(text).__name__}")
    specs = []
    for index, entry in enumerate(text):
        where = f"slicing_specs[{index}] {json.dumps(entry)}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not an object with feature_keys and/or feature_values")
        unknown = sorted(set(entry) - {"feature_keys", "feature_values"})
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; a slicing spec has feature_keys "
                              "and/or feature_values")
        keys, values = entry.get("feature_keys", []), entry.get("feature_values", {})
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"{where}: feature_keys must be a list of column names")
        if not isinstance(values, dict) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                                  for v in values.values()):
            raise ConfigError(f"{where}: feature_values must map column names to one value each")
        if len(set(keys)) != len(keys) or set(keys) & set(values):
            raise ConfigError(f"{where} names a column twice")
        specs.append(SlicingSpec(list(keys), {k: str(v) for k, v in values.items()}))
    return specs


def slicing_columns(specs: list[SlicingSpec]) -> list[str]:
    return list(dict.fromkeys(c for s in specs for c in s.columns))


# ----------------------------------------------------------------------------- intervals

def wilson(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denominator
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half (what sklearn's roc_auc_score gives)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Binary: AUC of the second class; multiclass: the mean one-vs-rest AUC (sklearn's macro ovr).
    None when a class is missing, as the whole-split metric leaves it out."""
    classes = scores.shape[1]
    if len(np.unique(y)) < classes:
        return None
    if classes == 2:
        return _auc(y == 1, scores[:, 1])
    return float(np.mean([_auc(y == k, scores[:, k]) for k in range(classes)]))


def _percentile(values: list[float]) -> tuple[float, float] | None:
    if len(values) < BOOTSTRAP // 2:  # most resamples lacked a class: no interval worth quoting
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_auc(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> tuple[float, float] | None:
    values = []
    for _ in range(BOOTSTRAP):
        index = rng.integers(0, len(y), len(y))
        value = macro_auc(y[index], scores[index])
        if value is not None:
            values.append(value)
    return _percentile(values)


def bootstrap_rmse(residual: np.ndarray, rng: np.random.Generator, chunk: int = 50) -> tuple[float, float]:
    squared, values = residual ** 2, []
    # in chunks: BOOTSTRAP x n indices at once would not fit for a large slice
    for start in range(0, BOOTSTRAP, chunk):
        index = rng.integers(0, len(residual), (min(chunk, BOOTSTRAP - start), len(residual)))
        values.extend(np.sqrt(squared[index].mean(axis=1)).tolist())
    return _percentile(values)


# ----------------------------------------------------------------------------- metrics

def _with_interval(out: dict[str, float], name: str, value: float, interval: tuple[float, float] | None) -> None:
    out[name] = value
    if interval is not None:
        out[f"{name}_lower"], out[f"{name}_upper"] = interval


def _rates(actual: np.ndarray, predicted: np.ndarray) -> dict[str, tuple[float, tuple[float, float]]]:
    """Fairness Indicators' rates for one positive class (at the argmax decision, threshold 0.5 when binary)."""
    negatives, positives = int((~actual).sum()), int(actual.sum())
    false_pos, false_neg = int((predicted & ~actual).sum()), int((~predicted & actual).sum())
    out = {"positive_rate": (float(predicted.mean()), wilson(int(predicted.sum()), len(actual)))}
    if negatives:
        out["false_positive_rate"] = (false_pos / negatives, wilson(false_pos, negatives))
    if positives:
        out["false_negative_rate"] = (false_neg / positives, wilson(false_neg, positives))
    return out


def classification_slice_metrics(y: np.ndarray, scores: np.ndarray, classes: list[str],
                                 rng: np.random.Generator) -> dict[str, float]:
    n = len(y)
    predicted = scores.argmax(axis=1)
    correct = int((predicted == y).sum())
    out: dict[str, float] = {"examples": float(n)}
    _with_interval(out, "accuracy", correct / n, wilson(correct, n))
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    clipped /= clipped.sum(axis=1, keepdims=True)
    out["log_loss"] = float(-np.mean(np.log(clipped[np.arange(n), y])))
    auc = macro_auc(y, scores)
    if auc is not None:
        _with_interval(out, "roc_auc", auc, bootstrap_auc(y, scores, rng))
    positives = [1] if len(classes) == 2 else range(len(classes))
    for k in positives:
        suffix = "" if len(classes) == 2 else f"/{classes[k]}"
        for name, (value, interval) in _rates(y == k, predicted == k).items():
            _with_interval(out, name + suffix, value, interval)
    return out


def regression_slice_metrics(y: np.ndarray, predicted: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    residual = predicted - y
    out: dict[str, float] = {"examples": float(len(y))}
    _with_interval(out, "rmse", float(np.sqrt(np.mean(residual ** 2))), bootstrap_rmse(residual, rng))
    out["mae"] = float(np.mean(np.abs(residual)))
    out["mean_error"] = float(np.mean(residual))  # signed: a slice the model over- or under-predicts
    return out


# ----------------------------------------------------------------------------- slicing

def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _numeric(column: pa.ChunkedArray) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


def _fixed_mask(columns: dict[str, pa.ChunkedArray], values: dict[str, str], rows: int) -> np.ndarray:
    mask = np.ones(rows, dtype=bool)
    for name, wanted in values.items():
        column = columns[name]
        if _numeric(column):
            try:
                target = pa.scalar(float(wanted))
            except ValueError:
                return np.zeros(rows, dtype=bool)  # a word never equals a number
            hits = pc.equal(pc.cast(column, pa.float64()), target)
        else:
            hits = pc.equal(pc.cast(column, pa.string()), pa.scalar(wanted))
        mask &= pc.fill_null(hits, False).to_numpy(zero_copy_only=False)
    return mask


def slice_rows(spec: SlicingSpec, columns: dict[str, pa.ChunkedArray], rows: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(column -> value, row indices) of each slice the spec defines, in a stable order."""
    base = np.flatnonzero(_fixed_mask(columns, spec.feature_values, rows))
    # a number keeps its type, so its SliceConfig is a floatValue as Vertex writes it
    fixed = {k: float(v) if _numeric(columns[k]) else v for k, v in spec.feature_values.items()}
    if not spec.feature_keys:
        return [(fixed, base)] if len(base) else []
    table = pa.table({**{k: pc.take(columns[k], pa.array(base)) for k in spec.feature_keys},
                      "__row": pa.array(base)})
    groups = table.group_by(spec.feature_keys).aggregate([("__row", "list")]).to_pylist()
    out = []
    for group in groups:
        if any(group[k] is None for k in spec.feature_keys):
            continue
        out.append(({**fixed, **{k: group[k] for k in spec.feature_keys}}, np.asarray(group["__row_list"])))
    return sorted(out, key=lambda item: [_text(item[0][k]) for k in spec.columns])


def slice_key(values: dict[str, Any]) -> str:
    """TFMA's stringified slice key: `island:Dream`, `island_X_sex:Dream_X_MALE`, `Overall` for the whole split."""
    if not values:
        return "Overall"
    return CROSS.join(values) + ":" + CROSS.join(_text(v) for v in values.values())


def _config(value: Any) -> dict:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"value": {"floatValue": float(value)}}
    return {"value": {"stringValue": str(value)}}


def compute_slices(specs: list[SlicingSpec], task: str, classes: list[str], y: np.ndarray, outputs: np.ndarray,
                   columns: dict[str, pa.ChunkedArray]) -> list[dict]:
    """Every slice's ModelEvaluationSlice-shaped dict (metrics as plain numbers)."""
    rng = np.random.default_rng(SEED)
    out, seen = [], set()
    for spec in specs:
        for values, rows in slice_rows(spec, columns, len(y)):
            key = slice_key(values)
            if key in seen:  # two specs may define the same slice; report it once
                continue
            seen.add(key)
            if task == "regression":
                metrics = regression_slice_metrics(y[rows], outputs[rows], rng)
            else:
                metrics = classification_slice_metrics(y[rows], outputs[rows], classes, rng)
            out.append({"slice": {"dimension": "slice", "value": key,
                                  "sliceSpec": {"configs": {k: _config(v) for k, v in values.items()}}},
                        "metrics": metrics})
    return out


def check_columns(specs: list[SlicingSpec], available: list[str]) -> None:
    for index, spec in enumerate(specs):
        missing = [c for c in spec.columns if c not in available]
        if missing:
            raise ConfigError(f"slicing_specs[{index}] slices on column(s) {', '.join(map(repr, missing))} that the "
                              f"test split lacks; it has: {', '.join(available)}")


# ----------------------------------------------------------------------------- gate

def slice_failures(challenger: list[dict], champion: list[dict] | None, min_examples: int, judge) -> list[str]:
    """Why slices with at least min_examples examples fail. judge(metrics, champion's metrics or None) ->
    a Decision, so each slice is judged exactly as the whole split is (evaluate.decide)."""
    theirs = {s["slice"]["value"]: s["metrics"] for s in champion or []}
    failures = []
    for entry in challenger:
        key, metrics = entry["slice"]["value"], entry["metrics"]
        if metrics["examples"] < min_examples:
            continue
        decision = judge(metrics, theirs.get(key))
        if not decision.blessed:
            failures.append(f"slice {key} ({int(metrics['examples'])} examples) {decision.reason}")
    return failures


# ----------------------------------------------------------------------------- report

def slices_table(slices: list[dict], task: str) -> str:
    """The report's section: each slice's count and primary metric with its interval, and the error or
    fairness rates beside it."""
    from kfkit import report

    if task == "regression":
        columns = ["rmse", "mae", "mean_error"]
    else:
        columns = ["accuracy", "roc_auc", "false_positive_rate", "false_negative_rate", "positive_rate"]

    def interval(metrics: dict, name: str) -> str:
        if f"{name}_lower" not in metrics:
            return ""
        return f"{metrics[f'{name}_lower']:.3f} – {metrics[f'{name}_upper']:.3f}"

    primary = columns[0]
    rows = [(s["slice"]["value"], int(s["metrics"]["examples"]), s["metrics"][primary],
             interval(s["metrics"], primary), *(s["metrics"].get(c, "") for c in columns[1:])) for s in slices]
    note = "" if task != "multiclass" else "<p>Rates per class are in the slices output.</p>"
    headers = ["slice", "examples", primary, "95% interval", *columns[1:]]
    if task == "multiclass":
        rows, headers = [r[:5] for r in rows], headers[:5]
    return "<h2>Slices</h2>" + report.table(headers, rows) + note
