"""kfkit's pipelines; PIPELINES maps each CLI name to its pipeline function's module attribute."""

PIPELINES = {
    "training": ("kfkit.pipelines.training", "training_pipeline"),
    # the same pipeline with the train step as a multi-worker Vertex AI CustomJob (Vertex only)
    "training-customjob": ("kfkit.pipelines.training", "training_customjob_pipeline"),
    "monitoring": ("kfkit.pipelines.monitoring", "monitoring_pipeline"),
    "batch-prediction": ("kfkit.pipelines.batch_prediction", "batch_prediction_pipeline"),
}

# pipelines whose steps need Google Cloud services to run at all
VERTEX_ONLY = {"training-customjob": "its train step is a Vertex AI CustomJob; run `training` locally"}


def load(name: str):
    """The pipeline `name` names: one of kfkit's (PIPELINES), a pipeline function in a Python file
    (`path/to/file.py:function`) or a compiled pipeline (`pipeline.yaml`), so everything kfkit does
    around a run (its outcome, reports, MLflow run, `kfkit runs`, submission) is also any pipeline's."""
    from kfkit.errors import ConfigError
    from kfkit.lookup import load_named

    if name in PIPELINES:
        return load_named(PIPELINES, name, "pipeline")
    path, _, function = name.rpartition(":") if ".py:" in name else (name, "", "")
    if path.endswith(".py"):
        return _from_file(path, function)
    if name.endswith((".yaml", ".yml", ".json")):
        from pathlib import Path

        from kfp import components

        if not Path(name).is_file():
            raise ConfigError(f"no compiled pipeline at {name!r}")
        loaded = components.load_component_from_file(name)
        if not loaded.pipeline_spec.root.HasField("dag"):
            raise ConfigError(f"{name!r} is a component, not a pipeline: compose it in a @dsl.pipeline first")
        return loaded
    raise ConfigError(f"unknown pipeline {name!r}: give one of {', '.join(sorted(PIPELINES))}, a pipeline "
                      f"function as path/to/file.py:function, or a compiled pipeline.yaml")


def _from_file(path: str, function: str):
    import importlib.util
    import sys
    from pathlib import Path

    from kfkit.errors import ConfigError

    file = Path(path).resolve()
    if not file.is_file():
        raise ConfigError(f"no Python file at {path!r}")
    if not function:
        raise ConfigError(f"name the pipeline function in {path!r}: {path}:FUNCTION")
    # the file's own folder first, as `python file.py` would have it, so its sibling modules import
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(f"kfkit_user_pipeline_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pipeline = getattr(module, function, None)
    if pipeline is None:
        found = sorted(n for n, v in vars(module).items() if _is_pipeline(v))
        raise ConfigError(f"{path} has no {function!r}" + (f"; its pipelines: {', '.join(found)}" if found else ""))
    if not _is_pipeline(pipeline):
        raise ConfigError(f"{path}:{function} is not a KFP pipeline (decorate it with @dsl.pipeline)")
    return pipeline


def _is_pipeline(value) -> bool:
    spec = getattr(value, "pipeline_spec", None)
    return spec is not None and getattr(value, "pipeline_func", None) is not None


def display_name(name: str) -> str:
    """A pipeline's name for run directories, experiments and file names: kfkit's own name, else the
    function's or the file's stem (`examples/fare.py:fare_pipeline` -> fare_pipeline)."""
    from pathlib import Path

    if name in PIPELINES:
        return name
    if ".py:" in name:
        return name.rpartition(":")[2]
    return Path(name).stem
