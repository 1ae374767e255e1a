"""KServe's published InferenceService schema, read from the KServe SDK wheel (not installed).

The SDK's models (kserve/models/v1beta1_*.py) are generated from KServe's OpenAPI definitions: each
class lists its fields' JSON names (attribute_map), their types (openapi_types) and, in its setters,
the fields that must not be None. Kubernetes types they refer to (V1ObjectMeta, V1Container...)
come from the Kubernetes client's own generated models. The wheel is downloaded once into the
virtual environment (installing it would downgrade pandas under kfp).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

KSERVE = "kserve==0.21.0"
CACHE_ROOT = Path(os.environ.get("KFKIT_TEST_CACHE") or Path(sys.prefix) / "kfkit-test-cache")
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def cached_wheel(requirement: str, directory: str, pattern: str) -> Path:
    """A package's wheel from PyPI (its published schema), downloaded once into the test cache."""
    cache = CACHE_ROOT / directory
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps", "-q", "-d", str(cache)],
                       check=True, timeout=300)
        found = sorted(cache.glob(pattern))
    return found[-1]


def wheel() -> Path:
    return cached_wheel(KSERVE, "kserve", "kserve-*.whl")


class Schema:
    def __init__(self, path: Path | None = None):
        self.models: dict[str, tuple[dict, dict, set]] = {}
        with zipfile.ZipFile(path or wheel()) as archive:
            for name in archive.namelist():
                if re.fullmatch(r"kserve/models/v1(alpha|beta)1_\w+\.py", name):
                    self._parse(archive.read(name).decode())

    def _parse(self, source: str) -> None:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                fields = {}
                for item in node.body:
                    if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                        if item.targets[0].id in ("openapi_types", "attribute_map"):
                            fields[item.targets[0].id] = ast.literal_eval(item.value)
                if "openapi_types" in fields:
                    required = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source))
                    self.models[node.name] = (fields["openapi_types"], fields["attribute_map"], required)

    def _model(self, type_name: str):
        if type_name in self.models:
            return self.models[type_name]
        import kubernetes.client

        cls = getattr(kubernetes.client, type_name, None)
        if cls is None:
            return None
        return cls.openapi_types, cls.attribute_map, set()

    def problems(self, value, type_name: str = "V1beta1InferenceService", path: str = "") -> list[str]:
        """Every way `value` (JSON as sent to the API) breaks the schema of type_name."""
        where = path or "<root>"
        if type_name in SCALARS:
            ok = isinstance(value, SCALARS[type_name]) and not (type_name == "int" and isinstance(value, bool))
            return [] if ok else [f"{where}: {value!r} is not {type_name}"]
        if match := re.fullmatch(r"list\[(.+)\]", type_name):
            if not isinstance(value, list):
                return [f"{where}: not a list"]
            return [p for i, v in enumerate(value) for p in self.problems(v, match[1], f"{path}[{i}]")]
        if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
            if not isinstance(value, dict):
                return [f"{where}: not a map"]
            return [p for k, v in value.items() for p in self.problems(v, match[1], f"{path}.{k}")]
        model = self._model(type_name)
        if model is None:  # a quantity or an opaque Kubernetes type: any scalar KServe accepts
            return []
        types, names, required = model
        if not isinstance(value, dict):
            return [f"{where}: not an object ({type_name})"]
        by_json = {json_name: attr for attr, json_name in names.items()}
        found = []
        for key, item in value.items():
            if key not in by_json:
                found.append(f"{path}.{key}: no such field in {type_name}")
            else:
                found += self.problems(item, types[by_json[key]], f"{path}.{key}")
        found += [f"{path}.{names[attr]}: required by {type_name}" for attr in required if names[attr] not in value]
        return found
