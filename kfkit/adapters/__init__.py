"""One adapter module per external service (BigQuery, Vertex AI, Cloud Monitoring, Cloud Storage,
Pub/Sub, Kubeflow Pipelines, KServe, Prometheus, MLflow): the only places that call those SDKs.

May import: the core, and serving for what a local endpoint and a cloud one share (the traffic
split, the MLflow pyfunc wrapper). Never components, pipelines or runs (tests/test_layers.py).
"""
