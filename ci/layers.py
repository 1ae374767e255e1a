"""kfkit's import graph and its layering contracts (docs/architecture.md), checked by tests/test_layers.py.

Every import counts, a function's lazy one too: a lazy import is still a dependency, only a later
one. The graph is read from the source with `ast`, not by importing anything, and covers
components/ and pipelines/ under the names they have installed (kfkit.components, kfkit.pipelines):
import-linter's graph (grimp) walks one package directory, and these two live beside it.

    python ci/layers.py          the contracts' verdict, and the layers with their modules
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"kfkit": REPO / "kfkit", "kfkit.components": REPO / "components", "kfkit.pipelines": REPO / "pipelines"}

# the core: small helpers every layer may use
CORE = ("kfkit", "kfkit.atomic", "kfkit.cloud_jobs", "kfkit.config", "kfkit.errors", "kfkit.lookup", "kfkit.params",
        "kfkit.quick_exit", "kfkit.report", "kfkit.report_index", "kfkit.report_xy", "kfkit.shapley",
        "kfkit.tabular", "kfkit.tfdv", "kfkit.interfaces")


def module_files() -> dict[str, Path]:
    """Every module of kfkit, by its installed dotted name."""
    found: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The kfkit modules `name` imports (a package's __init__ when only the package is named)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` names the module; `from module import function` the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def missing_names() -> list[str]:
    """`from kfkit... import NAME` where NAME is neither a module of that package nor a name its
    __init__ defines: an import that fails when it runs (a lazy one only when its function does)."""
    files = module_files()
    defined: dict[str, set[str]] = {}
    for name, path in files.items():
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            defined[name] = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                             if isinstance(t, ast.Name)}
            defined[name] |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined[name] |= {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                              for a in n.names}
    found = []
    for name, path in sorted(files.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in defined:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" not in files and alias.name not in defined[node.module]:
                        found.append(f"{name} imports {alias.name!r} from {node.module}, which has no such module or name")
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def layer_of(module: str) -> str:
    """The layer a module belongs to: a subpackage's name, or core, cli, catalog."""
    if module == "kfkit.mlflow_pyfunc":  # the old name of serving.mlflow_pyfunc, kept for pickled models
        return "serving"
    if module in CORE:
        return "core"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("warehouse", "serving", "adapters", "runs", "components", "pipelines"):
        return parts[1]
    return parts[1]  # cli, catalog


# which layers each layer may import, beside itself; everything else is a violation
ALLOWED = {
    "core": set(),
    "warehouse": {"core"},
    "serving": {"core"},
    "adapters": {"core", "serving"},
    "components": {"core", "warehouse", "serving", "adapters"},
    "pipelines": {"core", "components"},
    "runs": {"core", "warehouse", "serving", "adapters", "components", "pipelines"},
    "catalog": {"core", "components"},
    "cli": {"core", "warehouse", "serving", "adapters", "components", "pipelines", "runs", "catalog"},
}


def component_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) >= 3 and parts[1] == "components" else None


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a contract, as a sentence naming both modules."""
    found = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other != layer and other not in ALLOWED[layer]:
                found.append(f"{module} ({layer}) imports {target} ({other})")
            # a component's logic never reaches into another component's KFP wrapper
            mine, theirs = component_of(module), component_of(target)
            if theirs and mine and mine != theirs and target.endswith(".component"):
                found.append(f"{module} imports another component's KFP wrapper {target}")
    return found + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), each closed on its first module.

    A package's __init__ importing its own modules is no cycle anyone can trip on, so the edges
    from a package to the modules inside it are left out."""
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [[*group, group[0]] for group in groups]


def main() -> int:
    graph = import_graph()
    by_layer: dict[str, list[str]] = {}
    for module in graph:
        by_layer.setdefault(layer_of(module), []).append(module)
    for layer in ALLOWED:
        print(f"{layer:<11} may import {', '.join(sorted(ALLOWED[layer])) or 'nothing else'}: "
              f"{len(by_layer.get(layer, []))} modules")
    found = violations(graph) + missing_names()
    arrows = sum(len(t) for t in graph.values())
    print(f"{len(graph)} modules, {arrows} imports between them; {len(found)} broken contracts")
    for line in found:
        print("  " + line)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
