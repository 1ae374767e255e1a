"""Named registries of pipelines and components: import the module only when a name is asked for."""

from __future__ import annotations

import importlib


def load_named(table: dict[str, tuple[str, str]], name: str, kind: str):
    """The attribute `table[name]` names, as (module, attribute); a clear error for unknown names."""
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    module, attr = table[name]
    return getattr(importlib.import_module(module), attr)
