"""What a pipeline run decided, in a few lines: read from the run directory's step outputs.

Training: blessed or not and why, the key metrics, the registered version and aliases, the
endpoint and its split. Monitoring: the verdict, the worst features, whether a retrain ran.
Batch prediction: the table written, its rows, the model version. Every path printed exists;
registry versions, endpoints and tables are printed as what they are (models:/name/3, endpoint
penguins, project.dataset.table). HTML reports are copied to <run dir>/reports/*.html with an
index page, so a browser renders them (the artifacts themselves have no extension).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"


def _outputs(run_dir: Path, step: str) -> dict[str, Any]:
    path = run_dir / step / "executor_output.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _artifact(run_dir: Path, step: str, name: str) -> dict[str, Any]:
    items = _outputs(run_dir, step).get("artifacts", {}).get(name, {}).get("artifacts", [])
    return items[0] if items else {}


def _parameter(run_dir: Path, step: str, name: str = "Output"):
    return _outputs(run_dir, step).get("parameterValues", {}).get(name)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def training_lines(run_dir: Path) -> tuple[str, list[str]]:
    metrics = _artifact(run_dir, "evaluate-model", "metrics").get("metadata", {})
    blessed = _parameter(run_dir, "evaluate-model")
    reason_path = run_dir / "evaluate-model" / "reason"
    reason = reason_path.read_text().strip() if reason_path.exists() else ""
    shown = {k: v for k, v in metrics.items() if k not in ("blessed", "examples") and not k.startswith("champion")
             and isinstance(v, (int, float))}  # numbers only: the metadata also holds the thresholds applied
    numbers = ", ".join(f"{k} {_fmt(v)}" for k, v in shown.items())
    lines = []
    snapshot = _parameter(run_dir, "bigquery-query-to-dataset")
    rows = {name: _artifact(run_dir, "bigquery-query-to-dataset", f"{name}_data").get("metadata", {}).get("rows")
            for name in ("train", "eval", "test")}
    if snapshot:
        lines.append(f"Data: snapshot {snapshot}; rows " + ", ".join(f"{k} {v}" for k, v in rows.items() if v is not None))
    tuned = _artifact(run_dir, "tune-hyperparameters", "metrics").get("metadata", {})
    if tuned.get("best"):
        counts = {k.removeprefix("trials_"): int(v) for k, v in tuned.items() if k.startswith("trials_")}
        best_metric = next(((k.removeprefix("best_"), v) for k, v in tuned.items()
                            if k.startswith("best_") and isinstance(v, (int, float))), None)
        figure = f"best {best_metric[0]} {_fmt(best_metric[1])}" if best_metric else "best"
        lines.append(f"Tuned ({tuned.get('library', '?')}, {sum(counts.values())} trials: "
                     + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + f"): {figure} with "
                     + ", ".join(f"{k}={_fmt(v)}" for k, v in tuned["best"].items()))
    if blessed is None:
        return "no decision (evaluate did not run)", lines
    if blessed:
        decision = "BLESSED"
        lines.append(f"Model blessed: {reason}" + (f" ({numbers})" if numbers else ""))
        registered = _artifact(run_dir, "register-model", "registered_model").get("metadata", {})
        if registered:
            lines.append(f"Registered {registered.get('resourceName')} (version {registered.get('version')}; aliases "
                         f"{', '.join(registered.get('aliases', []))})")
        endpoint = _artifact(run_dir, "deploy-model", "endpoint").get("metadata", {})
        if endpoint:
            split = ", ".join(f"{k} {v}%" for k, v in endpoint.get("traffic_split", {}).items())
            # a local endpoint counts revisions; a Vertex AI endpoint is named by its resource
            where = (f"revision {endpoint['revision']}" if "revision" in endpoint
                     else endpoint.get("resourceName", "?"))
            lines.append(f"Deployed to endpoint {endpoint.get('endpoint') or endpoint.get('resourceName')} "
                         f"({where}): {split}")
        # analyze-canary-2: the Vertex AI endpoint's branch (hybrid mode)
        canary = (_artifact(run_dir, "analyze-canary", "metrics").get("metadata", {})
                  or _artifact(run_dir, "analyze-canary-2", "metrics").get("metadata", {}))
        if canary.get("verdict"):
            decision = f"BLESSED, canary {canary['verdict'].upper()}"
            lines.append(f"Canary {canary['verdict']}: {canary.get('action', '')}")
    else:
        decision = "NOT BLESSED"
        lines.append(f"Model not blessed: {reason}" + (f" ({numbers})" if numbers else ""))
        lines.append("Not registered, not deployed: the champion keeps serving.")
    return decision, lines


def monitoring_lines(run_dir: Path) -> tuple[str, list[str]]:
    path = run_dir / "monitor-endpoint" / "anomalies"
    if not path.exists():
        return "no verdict (monitor did not run)", []
    result = json.loads(path.read_text())
    verdict = result.get("verdict", "drift" if result.get("drift_detected") else "no drift")
    lines = [f"Verdict: {verdict} ({result.get('mode')}; {result.get('rows')} requests in the window)"]
    compared = [f for f in result.get("verdicts", []) if f.get("distance") is not None]
    worst = sorted(compared, key=lambda f: -f["distance"])[:3]
    if worst:
        lines.append("Worst features: " + ", ".join(f"{f['feature']} {f['distance']:.3f} ({f['status']})" for f in worst))
    # train-tensorflow-model-2: the training pipeline's tuned branch
    retrained = any((run_dir / step).exists() for step in ("train-tensorflow-model", "train-tensorflow-model-2"))
    if retrained:
        blessed = _parameter(run_dir, "evaluate-model")
        registered = _artifact(run_dir, "register-model", "registered_model").get("metadata", {})
        lines.append("Retrained with the champion's recipe: " + (
            f"blessed, registered {registered.get('resourceName')}" if blessed and registered
            else "not blessed, the champion stays"))
    elif verdict == "drift":
        lines.append("No retrain (retrain=false).")
    else:
        lines.append("No retrain.")
    return verdict.upper(), lines


def batch_lines(run_dir: Path) -> tuple[str, list[str]]:
    table = _artifact(run_dir, "batch-predict", "predictions").get("metadata", {})
    metrics = _artifact(run_dir, "batch-predict", "metrics").get("metadata", {})
    lines = []
    if (run_dir / "monitor-endpoint").exists():
        decision, monitor = monitoring_lines(run_dir)
        lines.append("Input check: " + monitor[0])
    if not table:
        return "no predictions", lines
    name = ".".join(table[k] for k in ("projectId", "datasetId", "tableId") if k in table) or table.get("table", "")
    lines.insert(0, f"Wrote {name}: {int(metrics.get('rows', 0)):,} rows scored with model version "
                    f"{table.get('model_version', '?')}")
    return "SCORED", lines


DECIDERS = {"training": training_lines, "training-customjob": training_lines, "monitoring": monitoring_lines,
            "batch-prediction": batch_lines}
# in a pipeline of one's own, the kfkit step that decides (its task name is the component's name)
DECIDING_STEPS = (("evaluate-model", training_lines), ("monitor-endpoint", monitoring_lines),
                  ("batch-predict", batch_lines))


def decider_for(pipeline: str, run_dir: Path):
    """kfkit's pipelines by name; any other pipeline by the kfkit steps it ran, whatever its shape."""
    if pipeline in DECIDERS:
        return DECIDERS[pipeline]
    for step, decider in DECIDING_STEPS:
        if (run_dir / step).is_dir():
            return decider
    return None


def step_lines(run_dir: Path, steps: list[dict[str, Any]]) -> list[str]:
    """Each step of a pipeline of one's own: its status, time and the values it returned."""
    lines = []
    for step in steps:
        values = _outputs(run_dir, step["name"]).get("parameterValues", {})
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items() if isinstance(v, (int, float, str, bool)))
        lines.append(f"Step {step['name']}: {step.get('status', 'succeeded')} in {step['seconds']:.1f}s"
                     + (f" ({shown[:120]})" if shown else ""))
    return lines


def _model_card_page(run_dir: Path, step: Path) -> str:
    """The card from its data (naming the version register made after it) or, from an older run, its Markdown."""
    card = _artifact(run_dir, step.name, "model_card").get("metadata", {}).get("card")
    if not card:
        return markdown_page("Model card", (step / "model_card").read_text())
    from kfkit.components.model_card.model_card import html as card_html

    registered = _artifact(run_dir, "register-model", "registered_model").get("metadata", {})
    return card_html(card, registered.get("resourceName") or "")


def publish_reports(run_dir: Path, decision: str = "", lines: list[str] | tuple = ()) -> list[Path]:
    """HTML reports (and the model card) as .html files under <run dir>/reports, with an index page
    showing the decision, the key metrics and a tile per report."""
    from kfkit.report_index import index_page, key_metrics, step_facts

    out = run_dir / "reports"
    found, tiles = [], []
    for step in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name not in ("reports", "logs")):
        facts = step_facts(_outputs(run_dir, step.name))
        report = step / "report"
        if report.is_file():
            out.mkdir(exist_ok=True)
            target = out / f"{step.name}.html"
            shutil.copyfile(report, target)
            found.append(target)
            tiles.append({"href": target.name, "title": step.name, "facts": facts})
        card = step / "model_card"
        if card.is_file():
            out.mkdir(exist_ok=True)
            target = out / "model-card.html"
            target.write_text(_model_card_page(run_dir, step))
            found.append(target)
            tiles.append({"href": target.name, "title": "model card", "facts": ["model details, intended use, "
                                                                                "metrics, data, limitations"]})
    if found:
        metrics = {step.name: values for step in sorted(p for p in run_dir.iterdir() if p.is_dir())
                   if (values := key_metrics(_outputs(run_dir, step.name)))}
        (out / "index.html").write_text(index_page(run_dir.name, decision, list(lines), tiles, metrics))
    return found


def _inline(text: str) -> str:
    """**bold** and `code` as HTML, the rest escaped (a card must not show its Markdown marks)."""
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def markdown_page(title: str, text: str) -> str:
    """A small Markdown subset (headings, lists, tables, paragraphs, bold, code) as an HTML page."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[_inline(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            head, *rest = cells
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            table.clear()

    in_list = False
    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("- ") or line.startswith("* "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            body.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush_table()
    if in_list:
        body.append("</ul>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def outcome(pipeline: str, run_dir: Path, status: str, seconds: float, steps: list[dict[str, Any]],
            failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's outcome, also written to <run dir>/summary.json."""
    decider = decider_for(pipeline, run_dir)
    decision, lines = decider(run_dir) if decider and status == "succeeded" else ("FAILED" if failure else "", [])
    if pipeline not in DECIDERS:
        lines = lines + step_lines(run_dir, steps)
        decision = decision or status.upper()
    reports = publish_reports(run_dir, decision, lines)
    import time

    ended = time.time()
    result = {"pipeline": pipeline, "run_id": run_dir.name, "run_dir": str(run_dir), "status": status,
              "seconds": round(seconds, 2), "started": round(ended - seconds, 3), "ended": round(ended, 3),
              "decision": decision, "lines": lines, "steps": steps,
              "reports": [p.as_uri() for p in reports],
              "index": (run_dir / "reports" / "index.html").as_uri() if reports else None,
              "failure": failure}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(result, indent=1))
    return result


def step_metrics(run_dir: Path) -> dict[str, float]:
    """Every number the steps' Metrics artifacts hold, as <step>.<metric>."""
    found = {}
    for step in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for name, entry in _outputs(run_dir, step.name).get("artifacts", {}).items():
            if name not in ("metrics",):
                continue
            for item in entry.get("artifacts", []):
                for key, value in item.get("metadata", {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        found[f"{step.name}.{key}"] = float(value)
    return found


def track(result: dict[str, Any], params: dict[str, Any], local_root: str | Path | None) -> dict[str, Any] | None:
    """Record the run in MLflow (see MlflowRegistry.track_pipeline_run); updates summary.json."""
    from kfkit.adapters.mlflow_registry import MlflowRegistry, is_server

    run_dir = Path(result["run_dir"])
    registry = MlflowRegistry(local_root)
    registered = _artifact(run_dir, "register-model", "registered_model").get("metadata", {})
    metrics = {**step_metrics(run_dir), **{f"{s['name']}.seconds": s["seconds"] for s in result["steps"]},
               "seconds": result["seconds"]}
    snapshot = _parameter(run_dir, "bigquery-query-to-dataset")
    tags = {"kfkit.status": result["status"], "kfkit.decision": result.get("decision") or "",
            "kfkit.run_dir": str(run_dir), **({"kfkit.data_snapshot": snapshot} if snapshot else {}),
            **({"kfkit.failed_step": result["failure"].get("step") or ""} if result.get("failure") else {})}
    artifacts = [run_dir / "reports", run_dir / SUMMARY_FILE]
    version = (registered.get("model_name"), registered.get("version")) if registered.get("backend") == "local" else None
    experiment, run_id = registry.track_pipeline_run(result["pipeline"], result["run_id"], params=params,
                                                     metrics=metrics, tags=tags, artifacts=artifacts,
                                                     registered=version if version and all(version) else None,
                                                     started=result.get("started"), ended=result.get("ended"),
                                                     failed=result["status"] != "succeeded")
    ui = registry.uri.rstrip("/") if is_server(registry.uri) else "http://127.0.0.1:5000"
    result["mlflow"] = {"experiment_id": experiment, "run_id": run_id, "tracking_uri": registry.uri,
                        "url": f"{ui}/#/experiments/{experiment}/runs/{run_id}"}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(result, indent=1))
    return result["mlflow"]


def render(result: dict[str, Any]) -> str:
    head = (f"Pipeline {result['pipeline']!r} {result['status']} in {result['seconds']:.1f}s"
            + (f": {result['decision']}" if result.get("decision") else ""))
    lines = [head, *("  " + line for line in result.get("lines", []))]
    if result.get("failure"):
        lines += ["", *result["failure"]["lines"]]
    if result.get("reports"):
        lines.append("Reports: " + (result.get("index") or ""))
        lines += [f"  {uri}" for uri in result["reports"]]
    lines.append(f"Run directory: {result['run_dir']} (summary.json, logs/)")
    if result.get("mlflow"):
        tracked = result["mlflow"]
        from kfkit.adapters.mlflow_registry import is_server  # light: MLflow itself is imported lazily

        how = ("on the tracking server" if is_server(tracked["tracking_uri"])
               else f"mlflow ui --backend-store-uri {tracked['tracking_uri']}")
        lines.append(f"MLflow run: {tracked['url']} ({how})")
    return "\n".join(lines)
