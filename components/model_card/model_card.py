"""A Markdown model card (Vertex renders Markdown artifacts in the console)."""

from __future__ import annotations

from typing import Any


def render(model_meta: dict[str, Any], metrics: dict[str, float], reason: str,
           statistics: dict[str, Any] | None = None, model_uri: str = "") -> str:
    lines = ["# Model card", "", f"- **Model**: `{model_uri}`" if model_uri else "",
             f"- **Task**: {model_meta.get('task', '?')} on label `{model_meta.get('label', '?')}`",
             f"- **Framework**: {model_meta.get('framework', '?')} {model_meta.get('framework_version', '')}",
             f"- **Decision**: blessed: {reason}", "", "## Evaluation on the test split", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
    signature = model_meta.get("signature") or {}
    lines += ["", "## Inputs (raw values, one per column)", "", "| feature | type |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in signature.items()]
    if model_meta.get("classes"):
        lines += ["", "## Classes", "", ", ".join(f"`{c}`" for c in model_meta["classes"])]
    if statistics:
        lines += ["", "## Training data", "", f"{statistics.get('rows', '?')} rows in the training split."]
    return "\n".join(line for line in lines if line is not None) + "\n"
