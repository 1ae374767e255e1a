"""The tuning study as an HTML page: the best trial, every trial in a table, and a parallel-coordinates
plot (inline SVG) with one axis per tuned hyperparameter and one for the objective."""

from __future__ import annotations

import math
from typing import Any

from kfkit import report as r
from kfkit.components.tune.space import Dimension, encode
from kfkit.components.tune.tune import TuneResult


def _log_objective(values: list[float]) -> bool:
    # a loss spans decades between the first and the best trials: on a linear axis the good ones,
    # the ones worth reading, crowd into a line at the bottom
    return min(values) > 0 and max(values) / min(values) >= 3


def _share(low: float, high: float, value: float, log: bool) -> float:
    """Where a value sits on an axis from low to high, 0 (bottom) to 1 (top)."""
    if log:
        low, high, value = math.log(low), math.log(high), math.log(max(value, 1e-300))
    return min(max((value - low) / (high - low), 0.0), 1.0) if high > low else 0.5


def _position(dim: Dimension, value: Any) -> float:
    if dim.kind == "categorical":
        choices = dim.encoded_choices()
        index = choices.index(encode(value)) if encode(value) in choices else 0
        return index / max(len(choices) - 1, 1)
    return _share(float(dim.low), float(dim.high), float(value), dim.log)


def _ticks(low: float, high: float, log: bool) -> list[float]:
    """Decades (and 2x, 5x between them when few) on a log axis; round steps on a linear one."""
    if not log:
        inner = r.ticks_between(low, high, 3)
        return sorted({low, high, *inner})
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0 ** exponent
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                ticks.append(value)
    decades = [t for t in ticks if math.log10(t).is_integer()]
    return sorted({low, high, *(decades if len(decades) >= 3 else ticks)})


def _legend(parts: list[str], x: float, y: float, best: int | None, metric: str, log: bool) -> None:
    parts.append(f"<line x1='{x}' x2='{x + 22}' y1='{y - 4}' y2='{y - 4}' stroke='#d62728' stroke-width='3'/>"
                 f"<text class='legend' x='{x + 27}' y='{y}' font-size='11'>best trial {best}</text>")
    x += 120
    parts.append(f"<text class='legend' x='{x}' y='{y}' font-size='11'>worse</text>")
    for i in range(5):
        quality = i / 4
        parts.append(f"<rect x='{x + 36 + 14 * i}' y='{y - 9}' width='14' height='10' "
                     f"fill='hsl({int(220 - 100 * quality)},60%,50%)'/>")
    text = f"better {metric}" + (" (log axis)" if log else "")
    parts.append(f"<text class='legend' x='{x + 112}' y='{y}' font-size='11'>{r.esc(text)}</text>")


def parallel_coordinates(result: TuneResult, space: list[Dimension], width: int = 760, height: int = 320) -> str:
    finished = [t for t in result.trials if t.value is not None and all(d.name in t.params for d in space)]
    if not finished:
        return "<p>No trial finished with a value to plot.</p>"
    values = [t.value for t in finished]
    lo, hi = min(values), max(values)
    log_objective = _log_objective(values)
    axes = len(space) + 1
    left, right, top, bottom = 60, 70, 14, 62
    xs = [left + i * (width - left - right) / max(axes - 1, 1) for i in range(axes)]

    def y(share: float) -> float:
        return top + (1 - share) * (height - top - bottom)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' class='chart' "
             f"aria-label='parallel coordinates of {len(finished)} trials'>"]
    for x, name, log in zip(xs, [d.name for d in space] + [result.metric],
                            [d.log for d in space] + [log_objective]):
        label = name + (" (log)" if log else "")
        parts.append(f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{height - bottom}' stroke='#888'/>"
                     f"<text class='label' x='{x:.1f}' y='{height - bottom + 16}' font-size='11' "
                     f"text-anchor='middle'>{r.esc(label)}<title>{r.esc(label)}</title></text>")

    def tick(x: float, share: float, text: str, end: bool = False) -> None:
        if not end and (share < 0.05 or share > 0.95):
            return  # the axis' own ends are written: a round tick beside one would overprint it
        parts.append(f"<line x1='{x - 3:.1f}' x2='{x:.1f}' y1='{y(share):.1f}' y2='{y(share):.1f}' stroke='#888'/>"
                     f"<text class='tick' x='{x + 4:.1f}' y='{y(share) + 3:.1f}' font-size='9'>{r.esc(text)}</text>")

    for dim, x in zip(space, xs):
        if dim.kind == "categorical":
            for choice in dim.encoded_choices():
                tick(x, _position(dim, choice), str(choice), True)
        else:
            for v in _ticks(float(dim.low), float(dim.high), dim.log):
                tick(x, _position(dim, v), r.nice(v), v in (dim.low, dim.high))
    for v in _ticks(lo, hi, log_objective) if hi > lo else [lo]:
        tick(xs[-1], _share(lo, hi, v, log_objective), r.nice(v), v in (lo, hi))
    better_high = result.goal == "maximize"
    for trial in sorted(finished, key=lambda t: t.number == result.best_trial):
        share = _share(lo, hi, trial.value, log_objective)
        quality = share if better_high else 1 - share
        shares = [_position(d, trial.params[d.name]) for d in space] + [share]
        points = " ".join(f"{x:.1f},{y(s):.1f}" for x, s in zip(xs, shares))
        best = trial.number == result.best_trial
        colour = "#d62728" if best else f"hsl({int(220 - 100 * quality)},60%,50%)"
        parts.append(f"<polyline class='mark' points='{points}' fill='none' stroke='{colour}' "
                     f"stroke-width='{3 if best else 1.2}' opacity='{1 if best else 0.6}'>"
                     f"<title>trial {trial.number}: {r.fmt(trial.value)}</title></polyline>")
    _legend(parts, left, height - 12, result.best_trial, result.metric, log_objective)
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
