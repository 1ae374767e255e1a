"""Loaded by every Python process of a hybrid-mode test run (this directory is on PYTHONPATH).

When KFKIT_FAKE_GCP names a directory, the Google Cloud SDK's clients are replaced, as their modules
are imported, by fakes keeping their state in that directory (tests/hybrid/fake_gcp.py), so the
CLI and every pipeline step, each its own process, talk to the same fake BigQuery, Vertex AI and
Cloud Storage.
"""

import os

if os.environ.get("KFKIT_FAKE_GCP"):
    from tests.hybrid import fake_gcp

    fake_gcp.install(os.environ["KFKIT_FAKE_GCP"])
