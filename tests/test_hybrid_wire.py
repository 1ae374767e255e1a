"""Hybrid mode with Vertex AI on the wire: `kfkit run training --local --param backend=bigquery` with every
step's Vertex AI calls made by the real SDK over gRPC to tests/vertex_api.py, served by this test's
process. BigQuery and Cloud Storage stay the file fakes of tests/hybrid (KFKIT_FAKE_GCP); the steps,
each its own process, reach the fake through KFKIT_VERTEX_API_ENDPOINT and trust its certificate
through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (tests/grpc_tls.trust), as a step reaches a Private Service
Connect endpoint.
"""

import pytest

from tests.test_hybrid_mode import run_hybrid
from tests.wire import NUMBER, certificate, vertex_api  # noqa: F401 - the fixtures, by name

# ruff: noqa: F811 - the test names the imported vertex_api fixture as its parameter

pytestmark = pytest.mark.slow


def test_a_hybrid_run_registers_and_deploys_through_the_vertex_ai_api(vertex_api, tmp_path):
    run = run_hybrid(tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Registered projects/{NUMBER}/locations/us-central1/models/1@1" in run.stdout
    (model,) = vertex_api.models.values()
    (version,) = model["versions"].values()
    assert version.artifact_uri.startswith("gs://my-proj-vertex-staging-us-central1/")
    assert sorted(version.version_aliases) == ["challenger", "champion", "default"]
    assert model["version_labels"]["1"]["pipeline-run"].startswith("kfkit-training-")
    (endpoint,) = vertex_api.endpoints.values()
    (deployed,) = endpoint.deployed_models
    assert dict(endpoint.traffic_split) == {deployed.id: 100}
    methods = [name for name, _ in vertex_api.calls]
    assert methods.index("UploadModel") < methods.index("CreateEndpoint") < methods.index("DeployModel")
