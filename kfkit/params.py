"""Pipeline parameters from the command line and YAML files, checked against the pipeline's inputs
before anything runs or is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kfkit.errors import ConfigError

_PY_TYPES = {
    "STRING": (str,), "String": (str,),
    "NUMBER_INTEGER": (int,), "Integer": (int,),
    "NUMBER_DOUBLE": (float, int), "Float": (float, int),
    "BOOLEAN": (bool,), "Boolean": (bool,),
    "STRUCT": (dict,), "Dict": (dict,), "JsonObject": (dict,),
    "LIST": (list,), "List": (list,), "JsonArray": (list,),
}


class _Loader(yaml.SafeLoader):
    """YAML without timestamp typing: 2026-11-22T10:00:00Z stays the string it was typed as (RFC 3339
    window bounds are string parameters; a datetime would fail the type check)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def split_assignment(item: str, flag: str = "--param") -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"{flag} {item!r} must look like name=value")
    name, raw = item.split("=", 1)
    return name.strip(), raw


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """`k=v` strings -> dict; values are read as YAML, so 3, 0.5, true and {a: 1} keep their types."""
    out = {}
    for item in assignments or []:
        name, raw = split_assignment(item)
        try:
            value = _yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out[name] = value
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = _yaml(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"parameter file {str(path)!r} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameter file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"parameter file {str(path)!r} must hold a mapping of name: value")
    return data


def pipeline_inputs(pipeline) -> dict[str, tuple[str, bool]]:
    """name -> (KFP type name, optional) for a pipeline function or component."""
    spec = pipeline.component_spec
    return {name: (str(inp.type), inp.optional) for name, inp in (spec.inputs or {}).items()}


def check(pipeline, values: dict[str, Any], pipeline_name: str = "") -> dict[str, Any]:
    """Refuse unknown names, wrong types and missing required parameters, naming each."""
    inputs = pipeline_inputs(pipeline)
    label = pipeline_name or pipeline.name
    for name, value in values.items():
        if name not in inputs:
            raise ConfigError(f"pipeline {label!r} has no parameter {name!r}; "
                              f"its parameters are: {', '.join(sorted(inputs))}")
        kfp_type = inputs[name][0]
        allowed = _PY_TYPES.get(kfp_type)
        if allowed is None:
            continue
        if str in allowed and isinstance(value, (dict, list)):
            # a string parameter that holds YAML or JSON (a tuning search space): given as a mapping in a
            # parameter file or as JSON on the command line, it is passed on as JSON text
            import json

            value = values[name] = json.dumps(value)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise ConfigError(f"parameter {name!r} of pipeline {label!r} expects {kfp_type.lower()}, "
                              f"got {value!r} ({type(value).__name__})")
        if kfp_type in ("NUMBER_DOUBLE", "Float") and isinstance(value, int):
            values[name] = float(value)
    missing = [n for n, (_, optional) in inputs.items() if not optional and n not in values]
    if missing:
        raise ConfigError(f"pipeline {label!r} needs parameter(s) {', '.join(missing)}")
    return values
