"""kfkit's pipelines; PIPELINES maps each CLI name to its pipeline function's module attribute."""

PIPELINES = {
    "training": ("pipelines.training", "training_pipeline"),
    # the same pipeline with the train step as a multi-worker Vertex AI CustomJob (Vertex only)
    "training-customjob": ("pipelines.training", "training_customjob_pipeline"),
    "monitoring": ("pipelines.monitoring", "monitoring_pipeline"),
    "batch-prediction": ("pipelines.batch_prediction", "batch_prediction_pipeline"),
}


def load(name: str):
    """The pipeline function registered under `name`."""
    import importlib

    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}")
    module, attr = PIPELINES[name]
    return getattr(importlib.import_module(module), attr)
