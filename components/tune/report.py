"""The tuning study as an HTML page: the best trial, every trial in a table, and a parallel-coordinates
plot (inline SVG) with one axis per tuned hyperparameter and one for the objective."""

from __future__ import annotations

import math
from typing import Any

from kfkit import report as r
from kfkit.components.tune.space import Dimension, encode
from kfkit.components.tune.tune import TuneResult


def _position(dim: Dimension, value: Any) -> float:
    """Where a value sits on its axis, 0 (bottom) to 1 (top)."""
    if dim.kind == "categorical":
        choices = dim.encoded_choices()
        index = choices.index(encode(value)) if encode(value) in choices else 0
        return index / max(len(choices) - 1, 1)
    low, high, v = float(dim.low), float(dim.high), float(value)
    if dim.log:
        low, high, v = math.log(low), math.log(high), math.log(max(v, 1e-300))
    return min(max((v - low) / (high - low), 0.0), 1.0)


def parallel_coordinates(result: TuneResult, space: list[Dimension], width: int = 760, height: int = 300) -> str:
    finished = [t for t in result.trials if t.value is not None and all(d.name in t.params for d in space)]
    if not finished:
        return "<p>No trial finished with a value to plot.</p>"
    values = [t.value for t in finished]
    lo, hi = min(values), max(values)
    axes = len(space) + 1
    left, right, top, bottom = 60, 60, 30, 40
    xs = [left + i * (width - left - right) / max(axes - 1, 1) for i in range(axes)]

    def y(share: float) -> float:
        return top + (1 - share) * (height - top - bottom)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
             f"aria-label='parallel coordinates of {len(finished)} trials'>"]
    for x, name in zip(xs, [d.name for d in space] + [result.metric]):
        parts.append(f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{height - bottom}' stroke='#888'/>"
                     f"<text x='{x:.1f}' y='{height - bottom + 16}' font-size='11' text-anchor='middle'>{r.esc(name)}</text>")
    for dim, x in zip(space, xs):
        if dim.kind == "categorical":
            for choice in dim.encoded_choices():
                parts.append(f"<text x='{x + 4:.1f}' y='{y(_position(dim, choice)) + 4:.1f}' font-size='9'>"
                             f"{r.esc(choice)}</text>")
        else:
            for share, v in ((0.0, dim.low), (1.0, dim.high)):
                parts.append(f"<text x='{x + 4:.1f}' y='{y(share) + 4:.1f}' font-size='9'>{r.fmt(v)}</text>")
    for share, v in ((0.0, lo), (1.0, hi)):
        parts.append(f"<text x='{xs[-1] + 4:.1f}' y='{y(share) + 4:.1f}' font-size='9'>{r.fmt(v)}</text>")
    better_high = result.goal == "maximize"
    for trial in sorted(finished, key=lambda t: t.number == result.best_trial):
        share = (trial.value - lo) / (hi - lo) if hi > lo else 0.5
        quality = share if better_high else 1 - share
        shares = [_position(d, trial.params[d.name]) for d in space] + [share]
        points = " ".join(f"{x:.1f},{y(s):.1f}" for x, s in zip(xs, shares))
        best = trial.number == result.best_trial
        colour = "#d62728" if best else f"hsl({int(220 - 100 * quality)},60%,50%)"
        parts.append(f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='{3 if best else 1.2}' "
                     f"opacity='{1 if best else 0.6}'><title>trial {trial.number}: {r.fmt(trial.value)}"
                     f"</title></polyline>")
    parts.append("</svg>")
    return "".join(parts)


def render(result: TuneResult, space: list[Dimension]) -> str:
    tuned = [d.name for d in space]
    counts = {s: sum(t.state == s for t in result.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    body = [f"<p class='ok'>Best {r.esc(result.metric)} {r.fmt(result.best_value)} ({r.esc(result.goal)}) "
            f"in trial {result.best_trial}: "
            f"{r.esc(', '.join(f'{k}={r.fmt(result.best[k])}' for k in tuned))}.</p>",
            f"<p>{len(result.trials)} trials ({counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed) with {r.esc(result.library)} in {result.seconds:.1f} s; "
            f"history in {r.esc(result.storage)}.</p>",
            "<h2>Trials</h2>", parallel_coordinates(result, space),
            r.table(["trial", "state", *tuned, result.metric, "epochs", "seconds"],
                    [[t.number, t.state, *[t.params.get(k) for k in tuned], t.value, t.epochs, t.seconds]
                     for t in sorted(result.trials, key=lambda t: t.number)]),
            "<h2>Chosen hyperparameters (handed to train)</h2>",
            r.table(["hyperparameter", "value", "tuned"], [[k, v, "yes" if k in tuned else ""]
                                                           for k, v in result.best.items()])]
    return r.page(f"Hyperparameter tuning: {result.study_name}", body)
