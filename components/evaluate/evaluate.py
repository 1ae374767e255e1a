"""Evaluation logic: metrics on the test split, and the champion/challenger decision.

The challenger is blessed when it meets every absolute threshold and is not worse than the
champion (evaluated on the same test split) by more than the tolerance. With no champion the
thresholds alone decide. A champion that cannot be evaluated on this test split (its signature
needs columns the split lacks, or it predicts another label) is never replaced automatically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kfkit import report
from kfkit.config import local_path
from kfkit.errors import ConfigError, KfkitError
from kfkit.tabular import ModelSpec, label_to_numpy

log = logging.getLogger("kfkit.evaluate")
EPS = 1e-15


@dataclass
class Evaluation:
    task: str
    metrics: dict[str, float]
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    roc: dict[str, list[float]] = field(default_factory=dict)
    roc_per_class: dict[str, dict] = field(default_factory=dict)  # one-vs-rest curves and AUC, for the report
    residuals: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)  # the labels the residuals are of (regression)
    slices: list[dict] = field(default_factory=list)  # ModelEvaluationSlice-shaped, see slices.py

    @property
    def primary(self) -> tuple[str, float]:
        key = "rmse" if self.task == "regression" else "accuracy"
        return key, self.metrics[key]


def classification_metrics(y: np.ndarray, scores: np.ndarray, classes: list[str]) -> Evaluation:
    from sklearn import metrics as skm

    predicted = scores.argmax(axis=1)
    labels = list(range(len(classes)))
    clipped = np.clip(scores, EPS, 1 - EPS)
    clipped /= clipped.sum(axis=1, keepdims=True)
    out = {"accuracy": float(skm.accuracy_score(y, predicted)),
           "log_loss": float(skm.log_loss(y, clipped, labels=labels)),
           "examples": float(len(y))}
    present = np.unique(y)
    task = "binary" if len(classes) == 2 else "multiclass"
    roc = {}
    if task == "binary":
        if len(present) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y, scores[:, 1]))
            fpr, tpr, thresholds = skm.roc_curve(y, scores[:, 1])
            thresholds = np.clip(thresholds, 0.0, 1.0)  # sklearn's first threshold is inf
            roc = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}
    elif len(present) == len(classes):
        out["roc_auc"] = float(skm.roc_auc_score(y, scores, multi_class="ovr", labels=labels))
    roc_per_class = {}
    for index in (range(len(classes)) if task == "multiclass" else ([1] if len(present) == 2 else [])):
        positive = (y == index).astype(int)
        if 0 < positive.sum() < len(positive):
            fpr, tpr, _ = skm.roc_curve(positive, scores[:, index])
            roc_per_class[classes[index]] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                                             "auc": float(skm.roc_auc_score(positive, scores[:, index]))}
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    per_class = {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                 for c, p, r, f, s in zip(classes, precision, recall, f1, support)}
    out["f1_macro"] = float(np.mean(f1))
    confusion = skm.confusion_matrix(y, predicted, labels=labels).tolist()
    return Evaluation(task, out, list(classes), confusion, per_class, roc, roc_per_class)


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> Evaluation:
    residual = predicted - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out = {"rmse": float(np.sqrt(np.mean(residual ** 2))), "mae": float(np.mean(np.abs(residual))),
           "r2": float(1 - np.sum(residual ** 2) / ss_tot) if ss_tot else 0.0, "examples": float(len(y))}
    return Evaluation("regression", out, residuals=residual.tolist(), actual=y.tolist())


def evaluate_model(model_dir: str | Path, test_data: str | Path, batch_rows: int = 65_536, slicing_specs=()):
    """Predict the test split in batches and compute the task's metrics (and each slice's)."""
    from kfkit.components.evaluate import slices
    from kfkit.serving.model_io import LoadedModel

    import pyarrow.dataset as pads  # here: register and the model card import this module for metric_values

    model = LoadedModel(model_dir)
    spec = model.spec
    dataset = pads.dataset(str(test_data), format="parquet")
    missing = [c for c in [*spec.signature, spec.label] if c not in dataset.schema.names]
    if missing:
        raise ConfigError(f"the test split lacks column(s) {', '.join(map(repr, missing))} that the model needs")
    slices.check_columns(slicing_specs, dataset.schema.names)
    extra = [c for c in slices.slicing_columns(slicing_specs) if c not in (*spec.signature, spec.label)]
    labels, outputs, batches = [], [], []
    for batch in dataset.to_batches(columns=[*spec.signature, spec.label, *extra], batch_size=batch_rows):
        if batch.num_rows == 0:
            continue
        if slicing_specs:
            batches.append(batch.select(slices.slicing_columns(slicing_specs)))
        predictions = model.predict_table(batch)
        if spec.task == "regression":
            labels.append(batch.column(spec.label).to_numpy(zero_copy_only=False).astype(np.float64))
            outputs.append(predictions["value"].astype(np.float64))
        else:
            labels.append(label_to_numpy(batch, spec))
            outputs.append(predictions["scores"].astype(np.float64))
    if not labels:
        raise ConfigError(f"the test split {str(test_data)!r} has no rows")
    y, out = np.concatenate(labels), np.concatenate(outputs)
    evaluation = regression_metrics(y, out) if spec.task == "regression" else classification_metrics(y, out, spec.classes)
    if slicing_specs:
        table = pa.Table.from_batches(batches)
        columns = {name: table.column(name) for name in table.column_names}
        evaluation.slices = slices.compute_slices(slicing_specs, spec.task, spec.classes, y, out, columns)
    return spec, evaluation


def metric_values(metadata: dict[str, Any]) -> dict[str, float]:
    """The numbers of a Metrics artifact's metadata (it also holds flags such as `blessed`)."""
    return {k: float(v) for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class Thresholds:
    min_accuracy: float = 0.0
    min_roc_auc: float = 0.0
    max_log_loss: float = 0.0  # 0 = no limit
    max_rmse: float = 0.0  # 0 = no limit
    tolerance: float = 0.01

    def limits(self) -> dict[str, tuple[str, float]]:
        """The limits in force (0 is none), by metric: (">=" or "<=", bound)."""
        bounds = {"accuracy": (">=", self.min_accuracy), "roc_auc": (">=", self.min_roc_auc),
                  "log_loss": ("<=", self.max_log_loss), "rmse": ("<=", self.max_rmse)}
        return {name: bound for name, bound in bounds.items() if bound[1]}

    def failures(self, evaluation: Evaluation) -> list[str]:
        m = evaluation.metrics
        checks = [("accuracy", m.get("accuracy"), self.min_accuracy, ">="),
                  ("roc_auc", m.get("roc_auc"), self.min_roc_auc, ">="),
                  ("log_loss", m.get("log_loss"), self.max_log_loss, "<="),
                  ("rmse", m.get("rmse"), self.max_rmse, "<=")]
        out = []
        for name, value, bound, op in checks:
            if value is None or bound == 0.0:
                continue
            if (op == ">=" and value < bound) or (op == "<=" and value > bound):
                out.append(f"{name} {value:.4f} is not {op} {bound:g}")
        return out


def compatible(champion: ModelSpec, challenger: ModelSpec, test_columns: list[str]) -> str | None:
    """Why the champion cannot be compared on this test split, or None when it can."""
    if champion.label != challenger.label or champion.task != challenger.task:
        return (f"the champion predicts {champion.label!r} ({champion.task}), the challenger "
                f"{challenger.label!r} ({challenger.task})")
    if champion.task != "regression" and champion.classes != challenger.classes:
        return f"the champion's classes {champion.classes} differ from the challenger's {challenger.classes}"
    missing = [name for name in champion.signature if name not in test_columns]
    if missing:
        return f"the champion's signature needs column(s) {', '.join(map(repr, missing))} that the test split lacks"
    return None


@dataclass
class Decision:
    blessed: bool
    reason: str
    champion: Evaluation | None = None
    champion_note: str = ""


def decide(challenger: Evaluation, thresholds: Thresholds, champion: Evaluation | None = None,
           champion_problem: str | None = None) -> Decision:
    failures = thresholds.failures(challenger)
    if failures:
        return Decision(False, "below the thresholds: " + "; ".join(failures), champion)
    if champion_problem:
        return Decision(False, f"cannot compare with the champion ({champion_problem}); keeping the champion "
                        "until a person decides", champion)
    if champion is None:
        return Decision(True, "meets every threshold; there is no champion yet")
    name, ours = challenger.primary
    theirs = champion.metrics[name]
    if name == "rmse":
        worse = ours > theirs * (1 + thresholds.tolerance)
        comparison = f"rmse {ours:.4f} vs champion {theirs:.4f} (allowed up to {theirs * (1 + thresholds.tolerance):.4f})"
    else:
        worse = ours < theirs - thresholds.tolerance
        comparison = f"{name} {ours:.4f} vs champion {theirs:.4f} (tolerance {thresholds.tolerance:g})"
    if worse:
        return Decision(False, f"worse than the champion: {comparison}", champion)
    return Decision(True, f"meets every threshold and is not worse than the champion: {comparison}", champion)


def evaluate_with_gate(model_dir: str | Path, test_data: str | Path, thresholds: Thresholds,
                       champion_dir: str | Path | None = None, slicing_specs=(),
                       slice_min_examples: int = 0) -> tuple[Evaluation, Decision]:
    """slicing_specs: parsed by slices.parse_slicing_specs; with slice_min_examples > 0, every slice with at
    least that many examples must also pass the gate."""
    spec, challenger = evaluate_model(model_dir, test_data, slicing_specs=slicing_specs)
    champion, problem = None, None
    if champion_dir:
        champion_path = local_path(champion_dir)
        if not champion_path.exists():
            raise ConfigError(f"champion model {str(champion_dir)!r} does not exist")
        champion_spec = ModelSpec.load(champion_path)
        import pyarrow.dataset as pads

        columns = pads.dataset(str(test_data), format="parquet").schema.names
        problem = compatible(champion_spec, spec, columns)
        if problem is None:
            try:
                _, champion = evaluate_model(champion_path, test_data, slicing_specs=slicing_specs)
            except KfkitError as exc:
                problem = f"evaluating it failed: {exc}"
    decision = decide(challenger, thresholds, champion, problem)
    if decision.blessed and slice_min_examples > 0:
        from kfkit.components.evaluate.slices import slice_failures

        def judge(ours, theirs):
            return decide(Evaluation(spec.task, ours), thresholds, Evaluation(spec.task, theirs) if theirs else None)

        failures = slice_failures(challenger.slices, champion.slices if champion else None, slice_min_examples, judge)
        if failures:
            decision = Decision(False, "a slice fails the gate: " + "; ".join(failures), champion)
    log.info("blessed=%s: %s", decision.blessed, decision.reason)
    return challenger, decision


def _heatmap(classes: list[str], matrix: list[list[int]]) -> str:
    """Confusion matrix with every class name in full (rows left, columns written vertically)."""
    n = len(classes)
    cell = max(28, min(60, 360 // max(n, 1)))
    longest = max((len(c) for c in classes), default=1)
    left = int(longest * 6.2) + 12
    top_pad = int(longest * report.CHAR_W) + 12
    top = max((max(row) for row in matrix), default=1) or 1
    caption = "rows: actual class, columns: predicted class"
    width, height = max(left + cell * n + 10, int(len(caption) * 6.2) + 10), top_pad + cell * n + 24
    parts = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' class='chart'>"]
    for j, name in enumerate(classes):
        x, y = left + j * cell + cell / 2, top_pad - 6
        parts.append(f"<text class='label' x='{x}' y='{y}' font-size='9' transform='rotate(-90 {x} {y})' "
                     f"dominant-baseline='middle'>{report.esc(name)}<title>{report.esc(name)}</title></text>")
    for i, row in enumerate(matrix):
        y = top_pad + i * cell
        parts.append(f"<text class='label' x='{left - 5}' y='{y + cell / 2 + 4}' font-size='10' text-anchor='end'>"
                     f"{report.esc(classes[i])}<title>{report.esc(classes[i])}</title></text>")
        for j, value in enumerate(row):
            shade = int(255 - 200 * value / top)
            ink = "#fff" if shade < 140 else "#111"  # readable on dark cells
            parts.append(f"<rect class='mark' x='{left + j * cell}' y='{y}' width='{cell}' height='{cell}' "
                         f"fill='rgb({shade},{shade},255)' stroke='#fff'><title>actual {report.esc(classes[i])}, "
                         f"predicted {report.esc(classes[j])}: {value}</title></rect>"
                         f"<text x='{left + j * cell + cell / 2}' y='{y + cell / 2 + 4}' font-size='11' "
                         f"text-anchor='middle' fill='{ink}'>{value}</text>")
    parts.append(f"<text class='label' x='{width - 4}' y='{height - 6}' font-size='11' text-anchor='end'>"
                 f"{caption}</text></svg>")
    return "".join(parts)


def _roc_svg(evaluation) -> str:
    curves = [(f"{name} (AUC {curve['auc']:.3f})", curve["fpr"], curve["tpr"])
              for name, curve in evaluation.roc_per_class.items()]
    return report.line_chart(curves, "false positive rate", "true positive rate")


def _metrics_table(evaluation: Evaluation, decision: Decision, thresholds: Thresholds | None) -> str:
    limits = thresholds.limits() if thresholds else {}
    champion = decision.champion.metrics if decision.champion else {}
    rows = []
    for name in sorted(evaluation.metrics):
        value = evaluation.metrics[name]
        op, bound = limits.get(name, ("", None))
        met = None if bound is None else (value >= bound if op == ">=" else value <= bound)
        status = ("" if met is None else report.Markup("<span class='ok'>meets</span>") if met
                  else report.Markup("<span class='bad'>FAILS</span>"))
        shown = int(value) if name == "examples" else value  # a count, not a measurement
        rows.append((name, shown, f"{op} {report.nice(bound)}" if bound is not None else "—", status,
                     (int(champion[name]) if name == "examples" else champion[name]) if name in champion else "—"))
    return report.table(["metric", "challenger", "threshold", "", "champion"], rows)


def _regression_charts(evaluation: Evaluation) -> list[str]:
    from kfkit import report_xy

    actual = np.asarray(evaluation.actual)
    residuals = np.asarray(evaluation.residuals)
    predicted = actual + residuals
    cards = [("Predicted against actual", report_xy.scatter(actual, predicted, "actual", "predicted", diagonal=True,
                                                           same_scale=True)),
             ("Residuals against predicted", report_xy.scatter(predicted, residuals, "predicted",
                                                               "residual (predicted - actual)", zero_line=True))]
    edges = np.unique(np.percentile(actual, np.linspace(0, 100, 11)))
    if len(edges) > 1:
        decile = np.clip(np.searchsorted(edges, actual, side="right") - 1, 0, len(edges) - 2)
        groups = [decile == i for i in range(len(edges) - 1)]
        labels = [f"{report.nice(edges[i])} to {report.nice(edges[i + 1])}" for i in range(len(edges) - 1)]
        cards.append(("Error by decile of the label", report.bar_chart(
            labels, [[float(np.abs(residuals[g]).mean()) if g.any() else 0.0 for g in groups],
                     [float(np.sqrt((residuals[g] ** 2).mean())) if g.any() else 0.0 for g in groups]],
            ["MAE", "RMSE"], width=460, height=260)))
    low, high = np.percentile(residuals, [1, 99])
    # rounding alone (1e-15 apart) is no spread: such residuals are drawn whole
    spread = high - low > 1e-9 * max(abs(low), abs(high), 1.0)
    shown = residuals[(residuals >= low) & (residuals <= high)] if spread else residuals
    try:
        counts, bins = np.histogram(shown, bins=24)
    except ValueError:  # every residual the same up to rounding: one bin
        counts, bins = np.histogram(shown, bins=1)
    cards.append(("Residuals (predicted - actual)", report.histogram(
        bins.tolist(), [counts.tolist()], width=460, height=260, integer=True, label_peak=True,
        note=f"the 1st to 99th percentile; {len(residuals) - len(shown)} residuals beyond are not drawn"
        if len(shown) < len(residuals) else "")))
    return [f"<div class='card'><h3>{title}</h3>{chart}</div>" for title, chart in cards]


def render_report(evaluation: Evaluation, decision: Decision, thresholds: Thresholds | None = None) -> str:
    css = "ok" if decision.blessed else "bad"
    body = [f"<p class='{css}'>{'Blessed' if decision.blessed else 'Not blessed'}: {report.esc(decision.reason)}</p>"]
    body.append("<h2>Metrics on the test split</h2>" + _metrics_table(evaluation, decision, thresholds))
    if evaluation.per_class:
        body.append("<h2>Per class</h2>" + report.table(
            ["class", "precision", "recall", "f1", "support"],
            [(c, v["precision"], v["recall"], v["f1"], v["support"]) for c, v in evaluation.per_class.items()]))
    if evaluation.slices:
        from kfkit.components.evaluate.slices import slices_table

        body.append(slices_table(evaluation.slices, evaluation.task))
    if evaluation.confusion:
        body.append("<h2>Confusion matrix</h2>" + _heatmap(evaluation.classes, evaluation.confusion))
    if evaluation.roc_per_class:
        title = "ROC curve" if evaluation.task == "binary" else "ROC curves (each class against the rest)"
        body.append(f"<h2>{title}</h2>" + _roc_svg(evaluation))
    if evaluation.residuals and evaluation.actual:
        body.append("<h2>Errors</h2><div class='grid'>" + "".join(_regression_charts(evaluation)) + "</div>")
    return report.page("kfkit model evaluation", body)
