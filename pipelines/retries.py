"""The retry policy of the pipelines' Google Cloud steps.

A step that calls BigQuery or Vertex AI is retried by the pipeline runner when it fails, for the
errors that pass with time (429 quota, 5xx): up to 3 more attempts, 30 s, 60 s then 120 s apart.
The steps are idempotent under retry: ingest writes to fresh staging tables and replaces its
outputs, register and batch predict find what their task already started (by a task-id label),
deploy does not deploy a version the endpoint already serves.

kfp.local honours retry policies too, but there a failure is never transient (a wrong query, a
missing column), so `kfkit run --local` runs the pipelines without them (kfkit/runs/local.py).
"""

RETRY = {"num_retries": 3, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}


def cloud_step(task):
    """`task` with the retry policy for transient Google Cloud errors."""
    return task.set_retry(**RETRY)
