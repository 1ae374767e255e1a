"""kfkit's model server and what it serves from: Vertex AI's prediction contract on any machine.

- `http_app`: the hardened HTTP layer both servers share (framing, limits, strict JSON);
- `server`: `kfkit serve`, one endpoint's deployed models and traffic split;
- `endpoints`: the local endpoint registry (deployed models, splits);
- `model_io`: loading a kfkit SavedModel and checking requests against its signature;
- `request_logs`: the request-response records (Vertex's logging shape);
- `log_sink`: `kfkit log-sink`, KServe's inference logger's CloudEvents as those records;
- `mlflow_pyfunc`: the MLflow pyfunc wrapper, so `mlflow models serve` serves the same model.

May import: the core. Never the warehouse, runs, components or pipelines (tests/test_layers.py).
"""
