"""Training on a Kubeflow cluster as a TFJob: the exact objects and Kubernetes API calls kfkit sends.

No cluster is reachable here. The Kubernetes client's CustomObjectsApi and CoreV1Api are faked with
mock.create_autospec (their real signatures) behind a small in-memory API server whose Training
Operator moves the job through the states it reports (conditions Created, Running, Restarting,
Succeeded, Failed; replicaStatuses per replica type). Every TFJob sent is checked against the
operator's published schema (tests/tfjob_schema.py, from the kubeflow-training SDK's models).
"""

import copy
import re
import json
import os
import signal
from types import SimpleNamespace
from unittest import mock

import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kfkit.adapters import tfjob
from kfkit.errors import ConfigError, KfkitError
from tests.tfjob_schema import TFJobSchema

NAMESPACE = "kubeflow-user-example-com"
COMMAND = ["python", "-m", "kfkit.components.train.replica", "/mnt/shared/run-1/train.json"]


@pytest.fixture(scope="module")
def schema():
    return TFJobSchema()


def condition(kind: str, message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": f"TFJob{kind}", "message": message}


class Cluster:
    """TFJobs as the API server keeps them; each read of a job shows the operator's next status."""

    def __init__(self, statuses: list[dict] | None = None, pods: dict[str, tuple[str, str]] | None = None):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.statuses = list(statuses or [])
        self.pods = pods or {}  # pod name -> (phase, log)
        self.on_read = None
        self.api = mock.create_autospec(CustomObjectsApi, instance=True)
        self.api.create_namespaced_custom_object.side_effect = self.create
        self.api.get_namespaced_custom_object.side_effect = self.get
        self.api.delete_namespaced_custom_object.side_effect = self.delete
        self.core = mock.create_autospec(CoreV1Api, instance=True)
        self.core.list_namespaced_pod.side_effect = self.list_pods
        self.core.read_namespaced_pod_log.side_effect = self.read_log

    def _check(self, group, version, namespace, plural):
        assert (group, version, namespace, plural) == ("kubeflow.org", "v1", NAMESPACE, "tfjobs")

    def create(self, group, version, namespace, plural, body, **_):
        self._check(group, version, namespace, plural)
        self.calls.append(("create", copy.deepcopy(body)))
        if body["metadata"]["name"] in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[body["metadata"]["name"]] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def get(self, group, version, namespace, plural, name, **_):
        self._check(group, version, namespace, plural)
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        if self.on_read:
            self.on_read()
        if self.statuses:
            self.objects[name]["status"] = self.statuses.pop(0)
        return copy.deepcopy(self.objects[name])

    def delete(self, group, version, namespace, plural, name, **kwargs):
        self._check(group, version, namespace, plural)
        self.calls.append(("delete", name, kwargs))
        if self.objects.pop(name, None) is None:
            raise ApiException(status=404, reason="Not Found")
        return {}

    def list_pods(self, namespace, label_selector=None, **_):
        assert namespace == NAMESPACE and label_selector == "training.kubeflow.org/job-name=penguins-train"
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=name),
                                                      status=SimpleNamespace(phase=phase))
                                      for name, (phase, _) in self.pods.items()])

    def read_log(self, name, namespace, container=None, tail_lines=None, **_):
        assert container == "tensorflow"
        return "\n".join(self.pods[name][1].splitlines()[-tail_lines:])


def adapter(cluster, sleeps=None):
    return tfjob.TFJobAdapter(NAMESPACE, api=cluster.api, core=cluster.core,
                              sleep=sleeps.append if sleeps is not None else (lambda s: None))


def job(workers=2, **kwargs):
    return tfjob.tf_job("penguins-train", NAMESPACE, "europe-docker.pkg.dev/p/kfkit/trainer:0.9.0", COMMAND,
                        workers=workers, **kwargs)


def test_a_tf_job_has_a_chief_and_workers_that_the_operators_schema_accepts(schema):
    body = job(2, resources={"limits": {"nvidia.com/gpu": "1"}}, env={"KFKIT_RUN": "r1"}, service_account="trainer")

    assert schema.problems(body) == []
    replicas = body["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Chief": 1, "Worker": 2}
    assert all(r["restartPolicy"] == "OnFailure" for r in replicas.values())  # a preempted pod comes back, resumes
    [container] = replicas["Worker"]["template"]["spec"]["containers"]
    # the operator writes TF_CONFIG into the container it knows by this name
    assert f'TFJOB_CONTAINER = "{container["name"]}"' in schema.constants
    assert body["apiVersion"] == "kubeflow.org/v1" and f'TFJOB_KIND = "{body["kind"]}"' in schema.constants
    assert container["command"] == COMMAND and container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}


def test_a_chief_alone_and_the_schema_check_catching_a_misspelt_field(schema):
    body = job(0)
    broken = copy.deepcopy(body)
    broken["spec"]["tfReplicaSpec"] = broken["spec"].pop("tfReplicaSpecs")
    broken["spec"]["runPolicy"]["backoffLimit"] = "3"

    assert list(body["spec"]["tfReplicaSpecs"]) == ["Chief"] and schema.problems(body) == []
    assert schema.problems(broken) == [".spec.runPolicy.backoffLimit: '3' is not int",
                                       ".spec.tfReplicaSpec: no such field in KubeflowOrgV1TFJobSpec",
                                       ".spec.tfReplicaSpecs: required by KubeflowOrgV1TFJobSpec"]


def test_a_job_is_refused_without_image_or_with_negative_workers():
    with pytest.raises(ConfigError, match="workers must be >= 0, got -1"):
        job(-1)
    with pytest.raises(ConfigError, match="needs the trainer image and the command"):
        tfjob.tf_job("j", NAMESPACE, "", COMMAND)


def test_run_submits_then_waits_with_backoff_logging_each_change_until_it_succeeds(schema, caplog):
    running = {"conditions": [condition("Created"), condition("Running")],
               "replicaStatuses": {"Chief": {"active": 1}, "Worker": {"active": 2}}}
    cluster = Cluster([{}, {"conditions": [condition("Created")]}, running, running, running,
                       {"conditions": [condition("Created"), condition("Running"), condition("Succeeded", "done")],
                        "replicaStatuses": {"Chief": {"succeeded": 1}, "Worker": {"succeeded": 2}}}])
    sleeps = []

    with caplog.at_level("INFO", logger="kfkit.tfjob"):
        finished = adapter(cluster, sleeps).run(job())

    [(verb, sent)] = cluster.calls
    assert verb == "create" and schema.problems(sent) == []
    assert tfjob.job_state(finished) == ("Succeeded", "done")
    assert sleeps == [1.0, 1.0, 1.0, 2.0, 4.0]  # back to 1 s whenever something moved
    assert [r.getMessage() for r in caplog.records if "TFJob kubeflow" in r.getMessage() and "created" not in r.getMessage()] == [
        f"TFJob {NAMESPACE}/penguins-train: Pending (no replicas yet)",
        f"TFJob {NAMESPACE}/penguins-train: Created (no replicas yet)",
        f"TFJob {NAMESPACE}/penguins-train: Running (Chief: 1 active; Worker: 2 active)",
        f"TFJob {NAMESPACE}/penguins-train: Succeeded (Chief: 1 succeeded; Worker: 2 succeeded): done"]


def test_a_failed_job_is_an_error_with_the_failed_pods_last_log_lines_and_is_kept():
    log = "\n".join(f"line {i}" for i in range(100)) + "\nValueError: batch_size 2 is smaller than the 3 workers"
    cluster = Cluster([{"conditions": [condition("Created"), condition("Failed", "TFJob penguins-train has failed "
                                                                                 "because 1 Worker replica(s) failed.")],
                        "replicaStatuses": {"Chief": {"active": 1}, "Worker": {"active": 1, "failed": 1}}}],
                      pods={"penguins-train-worker-1": ("Failed", log), "penguins-train-chief-0": ("Running", "fine")})

    with pytest.raises(tfjob.TFJobFailed) as failed:
        adapter(cluster).run(job())

    message = str(failed.value)
    assert message.startswith(f"TFJob {NAMESPACE}/penguins-train failed: TFJob penguins-train has failed because "
                              "1 Worker replica(s) failed. (Chief: 1 active; Worker: 1 active, 1 failed)")
    assert "--- penguins-train-worker-1 ---" in message and message.endswith("the 3 workers")
    assert "line 60" not in message and "chief" not in message  # the last 40 lines, of the failed pod only
    assert [c[0] for c in cluster.calls] == ["create"]  # kept for its logs, not deleted


def test_sigterm_while_waiting_deletes_the_job_and_fails_the_step():
    cluster = Cluster([{"conditions": [condition("Created"), condition("Running")]}] * 5)
    reads = []

    def terminate_on_second_read():
        reads.append(1)
        if len(reads) == 2:  # the pipeline run is cancelled: its driver terminates the step's pod
            os.kill(os.getpid(), signal.SIGTERM)

    cluster.on_read = terminate_on_second_read
    before = signal.getsignal(signal.SIGTERM)

    with pytest.raises(KfkitError, match=f"terminated \\(signal 15\\) while TFJob {NAMESPACE}/penguins-train ran"):
        adapter(cluster).run(job())

    assert cluster.calls[-1] == ("delete", "penguins-train", {"propagation_policy": "Foreground"})
    assert "penguins-train" not in cluster.objects
    assert signal.getsignal(signal.SIGTERM) is before  # the step's own handler is back


def test_a_job_that_outlives_its_timeout_is_deleted():
    cluster = Cluster([{"conditions": [condition("Created")]}] * 50)
    now = [0.0]
    adapter_ = tfjob.TFJobAdapter(NAMESPACE, api=cluster.api, core=cluster.core,
                                  sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])

    with pytest.raises(KfkitError, match="still Created after 60s"):
        adapter_.run(job(), timeout_s=60)

    assert cluster.calls[-1][0] == "delete"


def test_a_retried_step_follows_the_job_it_already_created():
    cluster = Cluster([{"conditions": [condition("Succeeded")]}])
    cluster.objects["penguins-train"] = job()

    finished = adapter(cluster).run(job())

    assert tfjob.job_state(finished)[0] == "Succeeded"
    assert [c[0] for c in cluster.calls] == ["create"]  # refused with 409, then followed


def test_an_api_error_names_the_job_and_the_servers_message():
    cluster = Cluster()
    cluster.api.create_namespaced_custom_object.side_effect = ApiException(status=403, reason="Forbidden")
    cluster.api.create_namespaced_custom_object.side_effect.body = json.dumps(
        {"message": 'tfjobs.kubeflow.org is forbidden: User "system:serviceaccount:x:default-editor" cannot create'})

    with pytest.raises(KfkitError, match=f"creating TFJob {NAMESPACE}/penguins-train failed: tfjobs.kubeflow.org is "
                                         "forbidden"):
        adapter(cluster).run(job())


class LocalOperator(Cluster):
    """The Training Operator's part played on this machine: each replica a process with its TF_CONFIG."""

    def __init__(self, repo):
        super().__init__()
        self.repo, self.processes = repo, {}

    def create(self, group, version, namespace, plural, body, **_):
        import socket
        import subprocess
        import sys

        created = super().create(group, version, namespace, plural, body)
        replicas = [(kind.lower(), i, spec) for kind, spec in body["spec"]["tfReplicaSpecs"].items()
                    for i in range(spec["replicas"])]
        sockets = [socket.socket() for _ in replicas]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        cluster: dict[str, list[str]] = {}
        for (kind, _, _), s in zip(replicas, sockets):
            cluster.setdefault(kind, []).append(f"127.0.0.1:{s.getsockname()[1]}")
        for s in sockets:
            s.close()
        for kind, index, spec in replicas:
            [container] = spec["template"]["spec"]["containers"]
            command = [sys.executable if c == "python" else c for c in container["command"]]
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}),
                       TF_CPP_MIN_LOG_LEVEL="2")
            self.processes[f"{body['metadata']['name']}-{kind}-{index}"] = subprocess.Popen(
                command, env=env, cwd=self.repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return created

    def get(self, group, version, namespace, plural, name, **_):
        job = super().get(group, version, namespace, plural, name)
        codes = [p.poll() for p in self.processes.values()]
        if None in codes:
            job["status"] = {"conditions": [condition("Created"), condition("Running")]}
        elif any(codes):
            job["status"] = {"conditions": [condition("Created"), condition("Failed", "a replica failed")]}
        else:
            job["status"] = {"conditions": [condition("Created"), condition("Running"), condition("Succeeded")]}
        return job

    def wait_for_replicas(self, _seconds):
        for process in self.processes.values():
            process.wait(timeout=300)


@pytest.mark.slow
def test_the_train_step_as_a_tfjob_trains_in_its_replicas_from_inputs_staged_on_shared_storage(
        schema, penguin_splits, penguin_validation, tmp_path):
    from pathlib import Path

    import numpy as np
    import pyarrow.dataset as ds

    from kfkit.components.train.tfjob import train_as_tfjob
    from kfkit.components.train.train import Hyperparameters
    from kfkit.serving.model_io import LoadedModel

    repo = Path(__file__).resolve().parent.parent
    operator = LocalOperator(repo)
    (tmp_path / "statistics").write_text(json.dumps(penguin_validation.statistics))
    (tmp_path / "schema").write_text(json.dumps(penguin_validation.schema))
    inputs = {"train_data": str(penguin_splits["train"]), "eval_data": str(penguin_splits["eval"]),
              "statistics": str(tmp_path / "statistics"), "schema": str(tmp_path / "schema")}
    adapter_ = tfjob.TFJobAdapter(NAMESPACE, api=operator.api, core=operator.core, sleep=operator.wait_for_replicas)

    result = train_as_tfjob(inputs=inputs, label="species", hp=Hyperparameters(epochs=2, seed=7), task="auto",
                            exclude_columns=[], categorical_columns=[], model_dir=str(tmp_path / "step" / "model"),
                            tensorboard_dir=str(tmp_path / "step" / "tensorboard"), shared_dir=str(tmp_path / "shared"),
                            volume_claim="training-shared", workers=1, image="trainer:test", adapter=adapter_)

    outputs = {name: p.stdout.read() for name, p in operator.processes.items()}
    [(verb, sent)] = operator.calls
    assert verb == "create" and schema.problems(sent) == []
    assert sorted(outputs) == [f"{sent['metadata']['name']}-chief-0", f"{sent['metadata']['name']}-worker-0"]
    assert all(re.search(r"worker \d of 2", out) for out in outputs.values()), list(outputs.values())[0][-2000:]
    assert result["task"] == "multiclass" and result["epochs_run"] == 2 and "eval_accuracy" in result["metrics"]
    test = ds.dataset(penguin_splits["test"]).to_table()
    scores = LoadedModel(tmp_path / "step" / "model").predict_table(test)["scores"]
    assert scores.shape == (test.num_rows, 3) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_the_step_trains_in_its_own_pod_unless_its_environment_asks_for_a_tfjob():
    from kfkit.components.train.tfjob import tfjob_settings

    asked = tfjob_settings({"KFKIT_TRAIN_BACKEND": "tfjob", "KFKIT_TFJOB_WORKERS": "3", "KFKIT_TFJOB_GPUS": "1",
                            "KFKIT_SHARED_DIR": "/mnt/shared", "KFKIT_SHARED_VOLUME_CLAIM": "training",
                            "KFKIT_TFJOB_IMAGE": "trainer:1"})

    assert tfjob_settings({}) is None and tfjob_settings({"KFKIT_TRAIN_BACKEND": "step"}) is None
    assert asked == {"shared_dir": "/mnt/shared", "volume_claim": "training", "workers": 3, "image": "trainer:1",
                     "namespace": "", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    with pytest.raises(ConfigError, match="KFKIT_TRAIN_BACKEND must be step or tfjob, got 'pods'"):
        tfjob_settings({"KFKIT_TRAIN_BACKEND": "pods"})


def test_a_tfjob_without_shared_storage_is_refused_before_anything_is_sent(tmp_path):
    from kfkit.components.train.tfjob import train_as_tfjob
    from kfkit.components.train.train import Hyperparameters

    cluster = Cluster()
    with pytest.raises(ConfigError, match="needs shared_dir"):
        train_as_tfjob(inputs={}, label="species", hp=Hyperparameters(), task="auto", exclude_columns=[],
                       categorical_columns=[], model_dir=str(tmp_path / "m"), tensorboard_dir=str(tmp_path / "t"),
                       shared_dir="", volume_claim="", workers=1, image="trainer:1", adapter=adapter(cluster))
    assert cluster.calls == []


def _submitted_with(step_env):
    """The run `kfkit submit --kfp-host` creates with this step environment (through kfp.Client)."""
    from tests.kfp_api import KfpApi
    from tests.test_kfp_wire import _created_run, _submit

    with KfpApi() as api:
        _submit(api, step_env=step_env)
        return _created_run(api)


def test_submitting_with_the_tfjob_backend_mounts_the_shared_claim_in_the_train_steps_pod():
    from google.protobuf import json_format

    from tests.tfjob_schema import kubernetes_executor_config

    body = _submitted_with({"KFKIT_TRAIN_BACKEND": "tfjob", "KFKIT_SHARED_DIR": "/mnt/shared",
                            "KFKIT_SHARED_VOLUME_CLAIM": "training-shared"})

    spec, platform = body["pipeline_spec"]["pipeline_spec"], body["pipeline_spec"]["platform_spec"]
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    trains = sorted(n for n, e in spec["deploymentSpec"]["executors"].items()
                    if "train_tensorflow_model" in e["container"].get("args", []))
    assert sorted(configs) == trains and trains
    for config in configs.values():
        # strictly as kfp-kubernetes' own message: an unknown or misspelt field fails here
        parsed = json_format.ParseDict(config, kubernetes_executor_config()())
        (mount,) = parsed.pvc_mount
        assert mount.mount_path == "/mnt/shared"
        assert mount.pvc_name_parameter.runtime_value.constant.string_value == "training-shared"


def test_without_the_tfjob_backend_no_claim_is_mounted():
    body = _submitted_with({"KFKIT_SHARED_DIR": "/mnt/shared", "KFKIT_SHARED_VOLUME_CLAIM": "training-shared"})

    assert "platform_spec" not in body["pipeline_spec"]


@pytest.mark.parametrize("claim, shared_dir, named", [("Training_Shared", "/mnt/shared", "KFKIT_SHARED_VOLUME_CLAIM"),
                                                      ("training-shared", "mnt/shared", "KFKIT_SHARED_DIR")])
def test_a_claim_that_cannot_be_mounted_is_refused_before_anything_is_sent(claim, shared_dir, named):
    from kfkit.adapters.kfp_backend import KfpTarget
    from kfkit.runs import submit
    from tests.kfp_api import KfpApi

    with KfpApi() as api:
        with pytest.raises(ConfigError, match=named):
            submit.submit_kfp("training", {}, KfpTarget(api.url), echo=lambda line: None,
                              step_env={"KFKIT_TRAIN_BACKEND": "tfjob", "KFKIT_SHARED_DIR": shared_dir,
                                        "KFKIT_SHARED_VOLUME_CLAIM": claim})
        assert api.requests == []
