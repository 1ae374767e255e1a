"""The SDK fakes are honest: a call the real SDK would refuse fails here too."""

import pytest
from google.cloud import aiplatform, bigquery

from tests.fakes import bound_to
from tests.test_bigquery_adapter import FakeClient, FakeReadClient
from tests.test_vertex_adapter import FakeEndpoint, FakeModel, Recorder, fake_aiplatform


def test_a_bigquery_fake_refuses_a_keyword_the_client_does_not_take():
    client = FakeClient([])

    with pytest.raises(TypeError, match="job_id_prefx"):
        client.query("SELECT 1", job_id_prefx="kfkit")
    with pytest.raises(TypeError, match="exist_ok"):
        client.create_dataset("p.d", exist_ok=True)


def test_a_storage_read_fake_refuses_a_keyword_the_client_does_not_take():
    import pyarrow as pa

    reader = FakeReadClient(pa.table({"a": [1]}))

    with pytest.raises(TypeError, match="max_streams"):
        reader.create_read_session(parent="projects/p", read_session=None, max_streams=2)


def test_a_fake_method_the_sdk_does_not_have_is_refused_when_the_fake_is_defined():
    with pytest.raises(TypeError, match="Client has no method 'run_query'"):
        @bound_to(bigquery.Client)
        class Wrong:
            def run_query(self, sql):
                pass


def test_vertex_fakes_refuse_wrong_keywords_and_attributes():
    rec = Recorder()
    ai = fake_aiplatform(rec)

    with pytest.raises(TypeError, match="is_default"):
        ai.Model.upload(display_name="m", is_default=True)
    with pytest.raises(TypeError, match="traffic"):
        ai.gapic.EndpointServiceClient().deploy_model(endpoint="e", traffic={"0": 100})
    with pytest.raises(TypeError, match="filters"):
        ai.Model.list(filters='display_name="m"')
    with pytest.raises(TypeError, match="display_nam"):
        ai.Endpoint.create(display_nam="penguins")
    with pytest.raises(TypeError, match="traffic_percent"):
        FakeEndpoint(rec).deploy(model=FakeModel(rec), traffic_percent=10)
    with pytest.raises(AttributeError):
        FakeEndpoint(rec).deployed = []  # not an attribute of aiplatform.Endpoint
    with pytest.raises(AttributeError):
        FakeModel(rec).aliases = ["champion"]  # not an attribute of aiplatform.Model
    with pytest.raises(AttributeError, match="description"):
        FakeEndpoint(rec).description  # not an attribute of aiplatform.Endpoint  # noqa: B018


def test_the_fakes_are_built_from_the_real_classes():
    assert isinstance(FakeModel(Recorder()), aiplatform.Model)
    assert isinstance(FakeEndpoint(Recorder()), aiplatform.Endpoint)
