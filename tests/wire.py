"""Fixtures of the wire tier: the Vertex AI and Cloud Monitoring fakes served over TLS, and the real SDK
pointed at them (anonymous credentials, the fakes' certificate trusted, nothing leaves the machine)."""

from __future__ import annotations


import pytest

from tests.grpc_tls import TlsServer, anonymous_credentials, session_certificate, trust
from tests.monitoring_api import FakeMonitoring
from tests.vertex_api import FakeVertex

PROJECT, NUMBER, LOCATION = "my-proj", "123456789012", "us-central1"
PARENT = f"projects/{NUMBER}/locations/{LOCATION}"


@pytest.fixture(scope="session")
def certificate():
    return session_certificate()


@pytest.fixture
def vertex_api(certificate, monkeypatch):
    """FakeVertex on 127.0.0.1, reached as a step reaches Vertex: aiplatform.init(project, location,
    credentials) plus $KFKIT_VERTEX_API_ENDPOINT (as a Private Service Connect endpoint would be given)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    cert, key, path = certificate
    fake = FakeVertex(PROJECT, NUMBER, LOCATION)
    server = TlsServer(fake.handlers(), cert, key)
    trust(monkeypatch, cert, path)
    anonymous_credentials(monkeypatch, PROJECT)
    saved = dict(vars(initializer.global_config))  # aiplatform.init is bound to this very object
    aiplatform.init(project=PROJECT, location=LOCATION, credentials=AnonymousCredentials())
    monkeypatch.setenv("KFKIT_VERTEX_API_ENDPOINT", server.endpoint)
    fake.api_endpoint = server.endpoint
    yield fake
    server.stop()
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


@pytest.fixture
def monitoring_api(certificate, monkeypatch):
    cert, key, path = certificate
    fake = FakeMonitoring(PROJECT, NUMBER)
    server = TlsServer(fake.handlers(), cert, key)
    trust(monkeypatch, cert, path)
    anonymous_credentials(monkeypatch, PROJECT)
    monkeypatch.setenv("KFKIT_MONITORING_API_ENDPOINT", server.endpoint)
    yield fake
    server.stop()


def adapter(tmp_path, sleeps=None):
    """kfkit's VertexAdapter as a step builds it, its polling sleeps recorded instead of slept."""
    from kfkit.adapters.vertex import VertexAdapter
    from kfkit.cloud_jobs import CloudJobs

    sleeps = [] if sleeps is None else sleeps
    return VertexAdapter(PROJECT, LOCATION, jobs=CloudJobs(str(tmp_path / "gcp_resources"), sleep=sleeps.append))
