"""A run's index page: its verdict, the key metrics, and a tile per report (what each step found,
one click from the page that shows it)."""

from __future__ import annotations

from typing import Any, Sequence

from kfkit import report as r

_STYLE = """
.verdict{font-size:20px;font-weight:600;padding:10px 14px;border-radius:6px;display:inline-block;margin:4px 0 10px}
.verdict.ok{background:#e6f4ea}.verdict.bad{background:#fce8e6}.verdict.warn{background:#fef7e0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:14px}
a.tile{display:block;border:1px solid #ddd;border-radius:8px;padding:12px;color:inherit;text-decoration:none}
a.tile:hover{border-color:#4C78A8;box-shadow:0 1px 4px rgba(0,0,0,.12)}.tile h3{margin:0 0 6px;font-size:15px}
.tile .fact{font-size:13px;margin:2px 0}ul.lines{font-size:14px;padding-left:18px}
"""

# words of a decision that say it went well or not (training, canary, monitoring)
_BAD = ("NOT BLESSED", "FAILED", "ROLLBACK", "DRIFT", "SKEW")
_GOOD = ("BLESSED", "PROMOTE", "NO DRIFT", "SCORED")


def verdict_class(decision: str) -> str:
    upper = decision.upper()
    if "NO DRIFT" in upper:
        return "ok"
    if any(word in upper for word in _BAD):
        return "bad"
    return "ok" if any(word in upper for word in _GOOD) else "warn"


def step_facts(outputs: dict[str, Any], limit: int = 4) -> list[str]:
    """A few lines a tile can say about a step: its decision and its first numbers."""
    facts = []
    returned = outputs.get("parameterValues", {}).get("Output")
    if isinstance(returned, bool):
        facts.append("blessed" if returned else "not blessed")
    for entry in outputs.get("artifacts", {}).values():
        for item in entry.get("artifacts", []):
            meta = item.get("metadata", {})
            if isinstance(meta.get("verdict"), str):
                facts.append(f"verdict: {meta['verdict']}")
    numbers = key_metrics(outputs)
    facts += [f"{k} {v}" for k, v in list(numbers.items())[:limit]]
    return facts


def key_metrics(outputs: dict[str, Any]) -> dict[str, str]:
    """The numbers of a step's Metrics artifact, written as read (examples 39, rmse 1.234)."""
    found = {}
    for item in outputs.get("artifacts", {}).get("metrics", {}).get("artifacts", []):
        for key, value in item.get("metadata", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith("champion_"):
                found[key] = r.number(key, float(value))
    return found


def index_page(title: str, decision: str, lines: Sequence[str], tiles: Sequence[dict[str, Any]],
               metrics: dict[str, dict[str, str]]) -> str:
    """`tiles`: {"href", "title", "facts"}; `metrics`: step -> {metric: shown value}."""
    body = [f"<style>{_STYLE}</style>"]
    if decision:
        body.append(f"<div class='verdict {verdict_class(decision)}'>{r.esc(decision)}</div>")
    if lines:
        body.append("<ul class='lines'>" + "".join(f"<li>{r.esc(line)}</li>" for line in lines) + "</ul>")
    rows = [(step, name, value) for step, values in metrics.items() for name, value in values.items()]
    if rows:
        body.append("<h2>Key metrics</h2>" + r.table(["step", "metric", "value"], rows, left=2))
    body.append("<h2>Reports</h2><div class='tiles'>" + "".join(
        f"<a class='tile' href='{r.esc(tile['href'])}'><h3>{r.esc(tile['title'])}</h3>"
        + "".join(f"<div class='fact'>{r.esc(fact)}</div>" for fact in tile["facts"]) + "</a>" for tile in tiles)
        + "</div>")
    return r.page(title, body)
