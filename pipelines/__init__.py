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
    """The pipeline registered under `name`."""
    from kfkit.lookup import load_named

    return load_named(PIPELINES, name, "pipeline")
