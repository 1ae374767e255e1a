"""kfkit: reusable KFP v2 components and pipelines, on Vertex AI or on one machine."""

__version__ = "0.5.0"
