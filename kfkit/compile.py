"""Compile every pipeline and every component to YAML (what `kfp dsl compile` writes)."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from kfkit import components
from kfkit import pipelines


def compile_pipeline(name: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipelines.load(name), str(path))
    return path


def compile_all(output: Path) -> list[Path]:
    written = []
    for name in sorted(pipelines.PIPELINES):
        written.append(compile_pipeline(name, output / "pipelines" / f"{name}.yaml"))
    for name in sorted(components.COMPONENTS):
        path = output / "components" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(components.load(name), str(path))
        written.append(path)
    return written
