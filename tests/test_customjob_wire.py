"""training-customjob's worker pools on the wire: the pools its worker-pools step computes, put into the
train task's compiled payload as Vertex AI Pipelines resolves its placeholders, then sent by Google's
own CustomJob launcher (google_cloud_pipeline_components.container.v1.custom_job.remote_runner, the
code the task's container runs) through the real JobServiceClient to tests/vertex_api.py, which
decodes the CustomJob and applies the distributed-training rules
(https://cloud.google.com/vertex-ai/docs/training/distributed-training)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.wire import LOCATION, PARENT, PROJECT, certificate, vertex_api  # noqa: F401 - fixtures, by name

# ruff: noqa: F811 - tests name the imported vertex_api fixture as their parameter

pytestmark = pytest.mark.wire
LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"
PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([a-z_]+)'\]\}\}")


@pytest.fixture(scope="module")
def train_task(tmp_path_factory):
    """The compiled pipeline's train executor (its --payload template) and its component's inputs."""
    from kfp import compiler

    from kfkit.pipelines.training import training_customjob_pipeline

    path = tmp_path_factory.mktemp("compiled") / "training-customjob.yaml"
    compiler.Compiler().compile(training_customjob_pipeline, str(path))
    spec = yaml.safe_load(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    name = next(n for n, e in executors.items() if LAUNCHER in e.get("container", {}).get("command", []))
    args = executors[name]["container"]["args"]
    component = next(c for c in spec["components"].values() if c.get("executorLabel") == name)
    return args[args.index("--payload") + 1], component["inputDefinitions"]["parameters"]


def as_backend_writes(value):
    """A parameter as the backend writes it into a placeholder: JSON, numbers held as doubles (the IR's
    protobuf Value) written without a fraction when they are whole, as GCPC's own defaults
    (replica_count 1.0, boot_disk_size_gb 100.0 in the IR) must be for its launcher to parse them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [as_backend_writes(v) for v in value]
    if isinstance(value, dict):
        return {k: as_backend_writes(v) for k, v in value.items()}
    return value


def payload(train_task, pools: list, **values) -> str:
    """The payload as the pipeline's backend resolves it: each input's value where it is set, else
    its default; a string as itself, anything else as JSON (an unset optional list or struct: empty)."""
    template, inputs = train_task
    values = {"worker_pool_specs": pools, "project": PROJECT, "location": LOCATION, "persistent_resource_id": "",
              **values}

    def value(match):
        name = match.group(1)
        found = values.get(name, inputs[name].get("defaultValue"))
        if found is None:
            found = {"LIST": [], "STRUCT": {}}.get(inputs[name]["parameterType"], "")
        return found if isinstance(found, str) else json.dumps(as_backend_writes(found))

    return PLACEHOLDER.sub(value, template)


def pools_from_parameters(train_task, **parameters) -> list:
    """What the worker-pools step returns for these pipeline parameters (the others at their defaults)."""
    from kfkit.pipelines.training import REDUCTION_SERVER_IMAGE, training_customjob_pipeline, worker_pools

    defaults = {name[len("train_"):]: value.default for name, value in
                training_customjob_pipeline.component_spec.inputs.items()
                if name.startswith("train_") and name != "train_fraction"}
    _, inputs = train_task
    return worker_pools(template=json.dumps(inputs["worker_pool_specs"]["defaultValue"]),
                        reduction_server_image=REDUCTION_SERVER_IMAGE, **{**defaults, **parameters})


def launch(vertex_api, monkeypatch, tmp_path, body: str):
    """Google's launcher, as the task's container runs it, against the fake."""
    from google.api_core import client_options
    from google_cloud_pipeline_components.container.v1.custom_job import remote_runner
    from google_cloud_pipeline_components.container.v1.gcp_launcher import job_remote_runner

    # the launcher names the regional endpoint itself; here it is the fake's
    real = client_options.ClientOptions
    monkeypatch.setattr(job_remote_runner.client_options, "ClientOptions",
                        lambda api_endpoint: real(api_endpoint=vertex_api.api_endpoint))
    monkeypatch.setattr(job_remote_runner.time, "sleep", lambda seconds: None)
    gcp_resources = tmp_path / "gcp_resources"
    remote_runner.create_custom_job("CustomJob", PROJECT, LOCATION, body, str(gcp_resources))
    return json.loads(gcp_resources.read_text())


def created(vertex_api):
    (request,) = vertex_api.called("CreateCustomJob")
    return request.custom_job


def test_the_default_pools_make_a_custom_job_with_a_chief_and_one_worker(vertex_api, train_task, monkeypatch, tmp_path):
    pools = pools_from_parameters(train_task)

    resources = launch(vertex_api, monkeypatch, tmp_path, payload(train_task, pools))

    job = created(vertex_api)
    assert [p.replica_count for p in job.job_spec.worker_pool_specs] == [1, 1]
    chief, worker = job.job_spec.worker_pool_specs
    assert chief.container_spec.image_uri == worker.container_spec.image_uri
    assert chief.container_spec.image_uri.startswith("ghcr.io/kfkit/kfkit-trainer:")
    assert (chief.machine_spec.machine_type, chief.machine_spec.accelerator_count) == ("n1-standard-8", 1)
    assert chief.disk_spec.boot_disk_type == "pd-ssd" and chief.disk_spec.boot_disk_size_gb == 100
    (name,) = [n for n in vertex_api.jobs if n.startswith(f"{PARENT}/customJobs/")]
    assert resources == {"resources": [{"resourceType": "CustomJob",
                                        "resourceUri": f"https://{vertex_api.api_endpoint}/v1/{name}"}]}
    assert [r.name for r in vertex_api.called("GetCustomJob")] == [name], "the launcher polls the job it made"


def test_gpu_workers_and_a_reduction_server_pass_vertexs_pool_rules(vertex_api, train_task, monkeypatch, tmp_path):
    from kfkit.pipelines.training import REDUCTION_SERVER_IMAGE

    pools = pools_from_parameters(train_task, chief_machine_type="a2-highgpu-1g",
                                  chief_accelerator_type="NVIDIA_TESLA_A100", chief_accelerator_count=1,
                                  worker_count=3, worker_machine_type="g2-standard-8",
                                  worker_accelerator_type="NVIDIA_L4", worker_accelerator_count=1,
                                  reduction_server_count=2)

    launch(vertex_api, monkeypatch, tmp_path, payload(train_task, pools))

    chief, workers, reducers = created(vertex_api).job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count, reducers.replica_count) == (1, 3, 2)
    assert workers.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert reducers.container_spec.image_uri == REDUCTION_SERVER_IMAGE
    assert reducers.machine_spec.machine_type == "n1-highcpu-16"


def test_a_chief_without_an_accelerator_sends_no_accelerator_count(vertex_api, train_task, monkeypatch, tmp_path):
    pools = pools_from_parameters(train_task, chief_machine_type="n1-standard-4", chief_accelerator_type="",
                                  chief_accelerator_count=1, worker_count=0)

    launch(vertex_api, monkeypatch, tmp_path, payload(train_task, pools))

    (chief,) = created(vertex_api).job_spec.worker_pool_specs
    assert chief.machine_spec.accelerator_count == 0 and chief.machine_spec.machine_type == "n1-standard-4"


def test_the_fake_refuses_pools_vertex_refuses(vertex_api, train_task, monkeypatch, tmp_path):
    # the rules the passing tests above rely on, each refused here as Vertex AI documents
    pools = pools_from_parameters(train_task)
    two_chiefs = [{**pools[0], "replica_count": 2}]
    half_accelerator = [{**pools[0], "machine_spec": {"machine_type": "n1-standard-8", "accelerator_count": 1}}]
    no_machine = [{**pools[0], "machine_spec": {}}]

    from google.api_core.exceptions import InvalidArgument

    for bad, message in ((two_chiefs, "primary replica's pool must have replica_count 1"),
                         (half_accelerator, "accelerator_type and accelerator_count go together"),
                         (no_machine, "machine_type is required")):
        with pytest.raises(InvalidArgument, match=message):
            launch(vertex_api, monkeypatch, tmp_path, payload(train_task, bad))
