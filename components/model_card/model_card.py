"""The model card, in the sections of Google's Model Card Toolkit (model details, intended use,
metrics, data, limitations): built once as plain data, written as Markdown (Vertex renders Markdown
artifacts in its console) and as an HTML page (the run's reports)."""

from __future__ import annotations

from typing import Any

from kfkit import report as r
from kfkit.report import number

SECTIONS = ("Model details", "Intended use", "Metrics", "Data", "Limitations")




def plain(value: Any) -> str:
    """A hyperparameter as it was set: KFP's metadata turns 64 into 64.0 and [64, 32] into [64.0, 32.0]."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _metric_rows(metrics: dict[str, float], thresholds: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(k for k in metrics if not k.startswith("champion_")):
        rows.append({"name": name, "value": metrics[name], "threshold": thresholds.get(name, ""),
                     "met": _met(metrics[name], thresholds.get(name, "")),
                     "champion": metrics.get(f"champion_{name}")})
    return rows


def _met(value: float, threshold: str) -> bool | None:
    op, _, bound = threshold.partition(" ")
    if op not in (">=", "<=") or not bound:
        return None
    return value >= float(bound) if op == ">=" else value <= float(bound)


def _features(model_meta: dict[str, Any], statistics: dict[str, Any]) -> list[dict[str, str]]:
    columns = statistics.get("columns", {})
    out = []
    for name, kind in (model_meta.get("signature") or {}).items():
        entry = columns.get(name, {})
        if entry.get("frequencies") and (entry.get("kind") == "categorical" or "min" not in entry):
            top = list(entry["frequencies"].items())[:4]
            seen = f"{entry.get('distinct', len(entry['frequencies']))} values: " + ", ".join(
                f"{k} ({v:,})" for k, v in top) + (", ..." if len(entry["frequencies"]) > 4 else "")
        elif "min" in entry and entry["min"] is not None:
            seen = f"{r.nice(entry['min'])} to {r.nice(entry['max'])} (median {r.nice(entry['quantiles']['0.5'])})" \
                if entry.get("quantiles", {}).get("0.5") is not None else f"{r.nice(entry['min'])} to {r.nice(entry['max'])}"
        else:
            seen = ""
        out.append({"name": name, "type": str(kind), "seen": seen,
                    "nulls": f"{entry['nulls']:,}" if "nulls" in entry else ""})
    return out


def _limitations(model_meta: dict[str, Any], metrics: dict[str, float], statistics: dict[str, Any]) -> list[str]:
    rows = statistics.get("rows")
    out = [f"Trained on {rows:,} rows of one data snapshot: rows from another population or period, or values "
           "outside the ranges and categories listed under Data, were not seen in training."
           if isinstance(rows, int) else "The training data's statistics were not given: its coverage is unknown."]
    label = statistics.get("columns", {}).get(model_meta.get("label", ""), {})
    counts = label.get("frequencies") or {}
    total = sum(counts.values())
    if model_meta.get("task") != "regression" and total:
        rare, n = min(counts.items(), key=lambda kv: kv[1])
        if n / total < 0.1:
            out.append(f"Class {rare} is {n / total:.0%} of the training rows: its predictions rest on few examples.")
    examples = metrics.get("examples")
    if examples is not None and examples < 1000:
        out.append(f"The metrics come from {number('examples', examples)} test examples: a few more or fewer "
                   "errors move them noticeably.")
    if not any(k.startswith("champion_") for k in metrics):
        out.append("No champion was compared on the same test split (none was registered, or it could not be).")
    out.append("The metrics are over the whole test split: no slice (subgroup) of the data was evaluated on its own.")
    return out


def build(model_meta: dict[str, Any], metrics: dict[str, float], reason: str,
          statistics: dict[str, Any] | None = None, model_uri: str = "",
          thresholds: dict[str, str] | None = None) -> dict[str, Any]:
    """The card as JSON-ready data (it travels in the Markdown artifact's metadata)."""
    statistics = statistics or {}
    task, label = model_meta.get("task", "?"), model_meta.get("label", "?")
    return {
        "model": {"uri": model_uri, "task": task, "label": label,
                  "framework": f"{model_meta.get('framework', '?')} {model_meta.get('framework_version', '')}".strip(),
                  "classes": list(model_meta.get("classes") or []),
                  "hyperparameters": {k: plain(v) for k, v in (model_meta.get("hyperparameters") or {}).items()},
                  "epochs_run": plain(model_meta["epochs_run"]) if model_meta.get("epochs_run") is not None else None},
        "intended_use": f"Predicts {label} ({task}) from the raw values of the input columns listed under Data, "
                        "for rows drawn like the training data.",
        "decision": reason,
        "metrics": _metric_rows(metrics, thresholds or {}),
        "data": {"rows": statistics.get("rows"), "features": _features(model_meta, statistics)},
        "limitations": _limitations(model_meta, metrics, statistics),
    }


def render(model_meta: dict[str, Any], metrics: dict[str, float], reason: str,
           statistics: dict[str, Any] | None = None, model_uri: str = "",
           thresholds: dict[str, str] | None = None) -> str:
    return markdown(build(model_meta, metrics, reason, statistics, model_uri, thresholds))


def _status(met: bool | None) -> str:
    return "" if met is None else ("meets" if met else "FAILS")


def markdown(card: dict[str, Any]) -> str:
    m = card["model"]
    lines = ["# Model card", "", "## Model details", "",
             f"- **Model**: `{m['uri']}`" if m["uri"] else None,
             f"- **Task**: {m['task']} on label `{m['label']}`", f"- **Framework**: {m['framework']}"]
    if m["classes"]:
        lines.append("- **Classes**: " + ", ".join(f"`{c}`" for c in m["classes"]))
    if m["hyperparameters"]:
        lines.append("- **Hyperparameters**: " + "; ".join(f"{k}={v}" for k, v in m["hyperparameters"].items()))
    lines += ["", "## Intended use", "", card["intended_use"], "", f"Blessed: {card['decision']}", "",
              "## Metrics", "", "On the test split.", "", "| metric | value | threshold | status | champion |",
              "|---|---|---|---|---|"]
    lines += [f"| {row['name']} | {number(row['name'], row['value'])} | {row['threshold'] or '—'} | "
              f"{_status(row['met'])} | {number(row['name'], row['champion']) if row['champion'] is not None else '—'} |"
              for row in card["metrics"]]
    data = card["data"]
    lines += ["", "## Data", ""]
    if data["rows"] is not None:
        lines += [f"{number('rows', data['rows'])} rows in the training split.", ""]
    if data["features"]:
        lines += ["| feature | type | in training | nulls |", "|---|---|---|---|"]
        lines += [f"| {f['name']} | {f['type']} | {f['seen']} | {f['nulls']} |" for f in data["features"]]
    else:
        lines.append("The model's metadata names no input columns.")
    lines += ["", "## Limitations", ""] + [f"- {text}" for text in card["limitations"]]
    return "\n".join(line for line in lines if line is not None) + "\n"


def html(card: dict[str, Any], registered_uri: str = "") -> str:
    """The card as a page; `registered_uri` (models:/name/3, a Vertex version) names the model when known."""
    m = card["model"]
    where = ([("registered model", r.Markup(f"<code>{r.esc(registered_uri)}</code>")),
              ("artifact", m["uri"])] if registered_uri else [("model", r.Markup(f"<code>{r.esc(m['uri'])}</code>"))])
    details = [*where, ("task", f"{m['task']} on label {m['label']}"), ("framework", m["framework"])]
    if m["classes"]:
        details.append(("classes", ", ".join(map(str, m["classes"]))))
    details += [(f"hyperparameter {k}", v) for k, v in m["hyperparameters"].items()]
    if m.get("epochs_run") is not None:
        details.append(("epochs run", m["epochs_run"]))
    metric_rows = [(row["name"], number(row["name"], row["value"]), row["threshold"] or "—",
                    r.Markup({True: "<span class='ok'>meets</span>", False: "<span class='bad'>FAILS</span>"}
                             .get(row["met"], "")),
                    number(row["name"], row["champion"]) if row["champion"] is not None else "—")
                   for row in card["metrics"]]
    data = card["data"]
    rows_line = (f"<p>{number('rows', data['rows'])} rows in the training split.</p>"
                 if data["rows"] is not None else "")
    sections = {
        "Model details": "<table>" + "".join(
            f"<tr><th class='l'>{r.esc(k)}</th><td class='l'>{v if isinstance(v, r.Markup) else r.fmt(v)}</td></tr>"
            for k, v in details) + "</table>",
        "Intended use": f"<p>{r.esc(card['intended_use'])}</p><p class='ok'>Blessed: {r.esc(card['decision'])}</p>",
        "Metrics": "<p>On the test split, against the thresholds and the champion.</p>"
                   + r.table(["metric", "value", "threshold", "status", "champion"], metric_rows),
        "Data": rows_line + (r.table(["feature", "type", "in training", "nulls"],
                                     [(f["name"], f["type"], f["seen"], f["nulls"]) for f in data["features"]], left=3)
                             if data["features"] else "<p>The model's metadata names no input columns.</p>"),
        "Limitations": "<ul>" + "".join(f"<li>{r.esc(text)}</li>" for text in card["limitations"]) + "</ul>",
    }
    body = [f"<section id='{title.lower().replace(' ', '-')}'><h2>{title}</h2>{sections[title]}</section>"
            for title in SECTIONS]
    return r.page(f"Model card: {registered_uri or m['label']}", body)
