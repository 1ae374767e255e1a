"""Register: a model version in Vertex AI Model Registry or the local MLflow registry."""
