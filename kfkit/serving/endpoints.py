"""Local endpoints: which model versions an endpoint serves and with what share of the traffic.

State lives in <local root>/endpoints/<name>.json, replaced atomically on every change, so the
model server (which watches the file) never reads a half-written state. Every change pushes the
previous split onto a history, which `kfkit rollback` pops; a rollback pushes the split it
replaced onto a redo stack, which `kfkit rollback --undo` pops (a new deploy or promote clears it).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from kfkit.atomic import atomic_file
from kfkit.config import local_root
from kfkit.errors import ConfigError

HISTORY_LIMIT = 20


def split_traffic(current: dict[str, int], new_id: str, percent: int) -> dict[str, int]:
    """Give `percent` to new_id and scale the others' shares into the rest (integers summing to 100)."""
    if not 0 <= percent <= 100:
        raise ConfigError(f"traffic percentage must be between 0 and 100, got {percent}")
    rest = 100 - percent
    total = sum(current.values())
    if not current or rest == 0:
        shares = {k: 0 for k in current}
    elif total == 0:
        last = list(current)[-1]
        shares = {k: (rest if k == last else 0) for k in current}
    else:
        exact = {k: v * rest / total for k, v in current.items()}
        shares = {k: int(v) for k, v in exact.items()}
        leftover = rest - sum(shares.values())
        for k in sorted(exact, key=lambda k: exact[k] - shares[k], reverse=True)[:leftover]:
            shares[k] += 1
    shares[new_id] = percent if current else 100
    return shares


def _push(stack: list, state: dict[str, Any]) -> list:
    """`stack` with the state's current split on top (at most HISTORY_LIMIT kept)."""
    return (stack + [{"revision": state["revision"], "deployed_models": state["deployed_models"]}])[-HISTORY_LIMIT:]


class LocalEndpoints:
    def __init__(self, root: str | Path | None = None):
        self.dir = local_root(root) / "endpoints"

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"endpoint name {name!r} must be a plain name like 'penguins'")
        return self.dir / f"{name}.json"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.exists() else []

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def _save(self, state: dict[str, Any]) -> None:
        state["updated_at"] = time.time()
        with atomic_file(self.path(state["endpoint"])) as handle:
            json.dump(state, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())

    def deploy(self, name: str, model: str, version: str, model_dir: str, traffic_percent: int = 100,
               keep_previous: int = 1) -> dict[str, Any]:
        """Deploy a model version with a share of the traffic; undeploy idle versions beyond keep_previous."""
        if keep_previous < 0:
            raise ConfigError(f"keep_previous must be >= 0, got {keep_previous}")
        if not (Path(model_dir) / "saved_model.pb").exists():
            raise ConfigError(f"model directory {model_dir!r} holds no SavedModel (saved_model.pb)")
        state = self.load(name) or {"endpoint": name, "revision": 0, "deployed_models": [], "history": []}
        history = _push(state["history"], state)
        deployed = [dict(m) for m in state["deployed_models"]]
        new_id = f"{model}-v{version}-{uuid.uuid4().hex[:6]}"
        traffic = split_traffic({m["id"]: m["traffic"] for m in deployed}, new_id, traffic_percent)
        for m in deployed:
            m["traffic"] = traffic[m["id"]]
        idle = [m for m in deployed if m["traffic"] == 0]
        drop = {m["id"] for m in idle[:max(len(idle) - keep_previous, 0)]}
        deployed = [m for m in deployed if m["id"] not in drop]
        deployed.append({"id": new_id, "model": model, "version": str(version), "model_dir": str(model_dir),
                         "traffic": traffic[new_id], "deployed_at": time.time()})
        state.update(revision=state["revision"] + 1, deployed_models=deployed, history=history, redo=[])
        self._save(state)
        return state

    def _existing(self, name: str) -> dict[str, Any]:
        state = self.load(name)
        if state is None:
            raise ConfigError(f"no local endpoint named {name!r}; endpoints: {', '.join(self.names()) or 'none'}")
        state.setdefault("redo", [])
        return state

    def rollback(self, name: str) -> dict[str, Any]:
        """Restore the traffic split (and deployed versions) from before the last change; undoable."""
        state = self._existing(name)
        if not state["history"]:
            raise ConfigError(f"endpoint {name!r} has no earlier traffic split to roll back to")
        previous = state["history"][-1]
        if not any(m["traffic"] > 0 for m in previous["deployed_models"]):
            raise ConfigError(f"rolling back endpoint {name!r} would leave it with no deployed model taking "
                              "traffic (that split was before its first deploy); nothing was changed")
        state["history"].pop()
        state["redo"] = _push(state["redo"], state)
        state["deployed_models"] = previous["deployed_models"]
        state["revision"] += 1
        self._save(state)
        return state

    def undo_rollback(self, name: str) -> dict[str, Any]:
        """Put back the split the last rollback replaced."""
        state = self._existing(name)
        if not state["redo"]:
            raise ConfigError(f"endpoint {name!r} has no rollback to undo")
        undone = state["redo"].pop()
        state["history"] = _push(state["history"], state)
        state["deployed_models"] = undone["deployed_models"]
        state["revision"] += 1
        self._save(state)
        return state

    def promote(self, name: str, deployed_model_id: str = "") -> dict[str, Any]:
        """Give one deployed model (default: the newest, the canary) 100% of the traffic; undoable by rollback."""
        state = self._existing(name)
        deployed = [dict(m) for m in state["deployed_models"]]
        if not deployed:
            raise ConfigError(f"endpoint {name!r} has no deployed model to promote")
        target = deployed_model_id or max(deployed, key=lambda m: m.get("deployed_at", 0))["id"]
        if target not in {m["id"] for m in deployed}:
            raise ConfigError(f"endpoint {name!r} has no deployed model {target!r}; it has: "
                              f"{', '.join(m['id'] for m in deployed)}")
        history = _push(state["history"], state)
        for m in deployed:
            m["traffic"] = 100 if m["id"] == target else 0
        state.update(revision=state["revision"] + 1, deployed_models=deployed, history=history, redo=[])
        self._save(state)
        return state


def describe(state: dict[str, Any]) -> str:
    lines = [f"endpoint {state['endpoint']} (revision {state['revision']})"]
    for m in state["deployed_models"]:
        lines.append(f"  {m['traffic']:>3}%  {m['id']}  ({m['model']} version {m['version']})")
    return "\n".join(lines)
