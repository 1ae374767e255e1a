"""Deploying to KServe: the exact InferenceService objects and Kubernetes API calls kfkit sends.

No cluster is reachable here. The Kubernetes client's CustomObjectsApi is faked with
mock.create_autospec (its real signatures), behind a small in-memory API server that keeps
resourceVersion and generation as Kubernetes does and a KServe controller that reconciles; one test
goes through the real client over HTTP to a recording API server. Every object sent is checked
against KServe's published schema (tests/kserve_schema.py, from the KServe SDK's generated models).

KServe's canary semantics, from its documentation (Canary rollout, serverless mode): updating the
predictor with `canaryTrafficPercent: N` routes N% to the new revision and the rest to the last
rolled-out one; removing the field promotes the latest revision to 100%; setting it to 0 rolls all
traffic back to the previous rolled-out revision. The TensorFlow runtime (TF Serving) loads
`<storageUri>/<version>/saved_model.pb`.
"""

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from pyarrow import fs

from kfkit.adapters import kserve
from kfkit.components.deploy import model_storage
from kfkit.components.deploy.deploy import deploy_model, resolve_backend
from kfkit.errors import ConfigError, KfkitError
from tests.kserve_schema import Schema

NAMESPACE = "kubeflow-user-example-com"


@pytest.fixture(scope="module")
def schema():
    return Schema()


class Cluster:
    """InferenceServices as the API server keeps them, with KServe reconciling each generation."""

    def __init__(self, ready_after: int = 0, ready_false: dict | None = None):
        self.objects: dict[str, dict] = {}
        self.sent: list[tuple[str, dict]] = []
        self.version = 0
        self.ready_after, self.ready_false, self.reads = ready_after, ready_false, 0
        self.api = mock.create_autospec(CustomObjectsApi, instance=True)
        self.api.get_namespaced_custom_object.side_effect = self.get
        self.api.create_namespaced_custom_object.side_effect = self.create
        self.api.replace_namespaced_custom_object.side_effect = self.replace

    def _check(self, group, version, namespace, plural):
        assert (group, version, namespace, plural) == ("serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices")

    def get(self, group, version, namespace, plural, name, **_):
        self._check(group, version, namespace, plural)
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        self.reads += 1
        return self._reconciled(copy.deepcopy(self.objects[name]))

    def _reconciled(self, service):
        if self.reads <= self.ready_after:
            service["status"] = {"observedGeneration": service["metadata"]["generation"] - 1}
            return service
        predictor = service["spec"]["predictor"]
        latest = f"{service['metadata']['name']}-predictor-{service['metadata']['generation']:05d}"
        previous = service.get("_rolled_out")
        canary = predictor.get("canaryTrafficPercent")
        split = ([{"revisionName": latest, "percent": canary, "latestRevision": True, "tag": "latest"},
                  {"revisionName": previous, "percent": 100 - canary, "tag": "prev"}]
                 if canary is not None and previous else [{"revisionName": latest, "percent": 100, "latestRevision": True}])
        ready = self.ready_false or {"type": "Ready", "status": "True"}
        service["status"] = {"observedGeneration": service["metadata"]["generation"], "conditions": [ready],
                             "url": f"http://{service['metadata']['name']}.{NAMESPACE}.example.com",
                             "components": {"predictor": {"traffic": split, "latestCreatedRevision": latest,
                                                          **({"previousRolledoutRevision": previous} if previous else {})}}}
        service.pop("_rolled_out", None)
        return service

    def create(self, group, version, namespace, plural, body, **_):
        self._check(group, version, namespace, plural)
        self.sent.append(("create", copy.deepcopy(body)))
        name = body["metadata"]["name"]
        if name in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"] |= {"resourceVersion": str(self.version), "generation": 1}
        self.objects[name] = stored
        return copy.deepcopy(stored)

    def replace(self, group, version, namespace, plural, name, body, **_):
        self._check(group, version, namespace, plural)
        self.sent.append(("replace", copy.deepcopy(body)))
        stored = self.objects[name]
        if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        replaced = copy.deepcopy(body)
        generation = stored["metadata"]["generation"] + 1
        replaced["metadata"] |= {"resourceVersion": str(self.version), "generation": generation}
        replaced["_rolled_out"] = f"{name}-predictor-{stored['metadata']['generation']:05d}"
        self.objects[name] = replaced
        return copy.deepcopy(replaced)


def adapter_on_a_clock(cluster):
    """An adapter whose time moves only when it sleeps; and that time, as a one-item list."""
    now = [0.0]
    return kserve.KServeAdapter(NAMESPACE, api=cluster.api, sleep=lambda s: now.__setitem__(0, now[0] + s),
                                clock=lambda: now[0]), now


def adapter(cluster, sleeps=None):
    return kserve.KServeAdapter(NAMESPACE, api=cluster.api, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_first_deploy_creates_a_tensorflow_inference_service_with_all_the_traffic(schema):
    cluster = Cluster()

    result = adapter(cluster).deploy("penguins", "s3://models/kfkit/penguins/1", model_name="penguins",
                                     model_version="1", traffic_percent=20, service_account="kfkit-models")

    [(call, sent)] = cluster.sent
    assert call == "create" and result["created"]
    assert sent == {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "penguins", "namespace": NAMESPACE, "labels": {"kfkit.io/model": "penguins"}},
        "spec": {"predictor": {
            "minReplicas": 1, "maxReplicas": 1, "serviceAccountName": "kfkit-models",
            "labels": {"kfkit.io/model": "penguins", "kfkit.io/model-version": "1"},
            "model": {"modelFormat": {"name": "tensorflow"}, "storageUri": "s3://models/kfkit/penguins/1"}}}}
    assert schema.problems(sent) == []


def test_a_new_version_replaces_the_predictor_as_kserves_canary_keeping_the_resource_version(schema):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    result = kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2",
                            traffic_percent=20)

    call, sent = cluster.sent[-1]
    assert call == "replace" and result["previous_version"] == "1"
    assert sent["metadata"]["resourceVersion"] == "1" and "status" not in sent
    assert sent["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert sent["spec"]["predictor"]["model"]["storageUri"] == "s3://m/penguins/2"
    assert sent["spec"]["predictor"]["labels"]["kfkit.io/model-version"] == "2"
    assert schema.problems(sent) == []


def test_a_full_switch_sends_no_canary_field():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=100)

    assert "canaryTrafficPercent" not in cluster.sent[-1][1]["spec"]["predictor"]


def test_deploying_the_version_already_served_sends_nothing():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    result = kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    assert len(cluster.sent) == 1 and not result["changed"]


def test_promote_removes_the_canary_field_and_rollback_sets_it_to_zero(schema):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20)

    kserve_.rollback("penguins")
    rolled_back = cluster.sent[-1][1]
    kserve_.promote("penguins")
    promoted = cluster.sent[-1][1]

    assert rolled_back["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == "s3://m/penguins/2"
    assert schema.problems(rolled_back) == [] and schema.problems(promoted) == []


def test_promote_without_a_canary_and_rollback_without_a_previous_revision_are_refused():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(ConfigError, match=f"InferenceService {NAMESPACE}/penguins has no canary to promote: its latest "
                                          "revision already takes all traffic"):
        kserve_.promote("penguins")
    with pytest.raises(ConfigError, match="has no previous revision to roll back to"):
        kserve_.rollback("penguins")
    with pytest.raises(ConfigError, match="no InferenceService 'tortoises' in namespace"):
        kserve_.rollback("tortoises")
    assert len(cluster.sent) == 1


def test_a_concurrent_change_fails_the_update_naming_the_service():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    cluster.objects["penguins"]["metadata"]["resourceVersion"] = "99"  # changed by someone else after our read
    cluster.api.get_namespaced_custom_object.side_effect = lambda *a, **k: {
        **copy.deepcopy(cluster.objects["penguins"]), "metadata": {**cluster.objects["penguins"]["metadata"],
                                                                   "resourceVersion": "1"}}

    with pytest.raises(KfkitError, match=f"updating InferenceService {NAMESPACE}/penguins failed: 409 Conflict"):
        kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2")


def test_a_forbidden_read_is_an_error_with_the_api_servers_message():
    cluster = Cluster()
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": 'inferenceservices "penguins" is forbidden: User "system:serviceaccount:x:y" cannot get'})
    cluster.api.get_namespaced_custom_object.side_effect = error

    with pytest.raises(KfkitError, match='is forbidden: User "system:serviceaccount:x:y" cannot get'):
        adapter(cluster).get("penguins")


def test_wait_ready_polls_with_backoff_until_the_generation_is_reconciled_and_ready():
    cluster = Cluster(ready_after=3)
    sleeps = []
    kserve_ = adapter(cluster, sleeps)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    service = kserve_.wait_ready("penguins")

    assert sleeps == [1.0, 2.0, 4.0]
    assert service["status"]["url"] == f"http://penguins.{NAMESPACE}.example.com"


def test_wait_ready_fails_with_kserves_reason_when_the_revision_fails():
    cluster = Cluster(ready_false={"type": "Ready", "status": "False", "reason": "RevisionFailed",
                                   "message": "Revision failed: storage-initializer: no such key"})
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(KfkitError, match="not ready: RevisionFailed: Revision failed: storage-initializer: no such key"):
        kserve_.wait_ready("penguins")


def test_wait_ready_gives_up_after_its_timeout():
    cluster = Cluster(ready_after=10**6)
    kserve_, now = adapter_on_a_clock(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(KfkitError, match="not ready after 60s"):
        kserve_.wait_ready("penguins", timeout_s=60)
    assert now[0] >= 60


def test_the_namespace_defaults_to_the_pods_own_then_default(tmp_path):
    pod_namespace = tmp_path / "namespace"
    pod_namespace.write_text("kubeflow-user-example-com\n")

    assert kserve.default_namespace("team-a", pod_namespace) == "team-a"
    assert kserve.default_namespace("", pod_namespace) == "kubeflow-user-example-com"
    assert kserve.default_namespace("", tmp_path / "missing") == "default"


def saved_model(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "kfkit_model.json").write_text("{}")
    return model


def bucket(tmp_path):
    (tmp_path / "bucket").mkdir()
    return fs.SubTreeFileSystem(str(tmp_path / "bucket"), fs.LocalFileSystem())


def test_a_version_is_staged_in_tf_servings_layout_once(tmp_path):
    model, store = saved_model(tmp_path), bucket(tmp_path)

    uri = model_storage.stage(model, "s3://models/kfkit", "penguins", "3", filesystem=store)

    staged = tmp_path / "bucket" / "models" / "kfkit" / "penguins" / "3"
    assert uri == "s3://models/kfkit/penguins/3"
    assert (staged / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert (staged / "1" / "variables" / "variables.index").read_bytes() == b"index"
    assert json.loads((staged / model_storage.MARKER).read_text())["version"] == "3"


def test_staging_skips_a_whole_copy_and_redoes_a_half_copy(tmp_path):
    model, store = saved_model(tmp_path), bucket(tmp_path)
    staged = tmp_path / "bucket" / "m" / "penguins" / "3"
    (staged / "1").mkdir(parents=True)
    (staged / "1" / "saved_model.pb").write_bytes(b"half")  # an attempt that died before its marker

    model_storage.stage(model, "s3://m", "penguins", "3", filesystem=store)
    (staged / "1" / "saved_model.pb").write_bytes(b"kept")
    model_storage.stage(model, "s3://m", "penguins", "3", filesystem=store)

    assert (staged / "1" / "saved_model.pb").read_bytes() == b"kept"


@pytest.mark.parametrize("uri", ["/mnt/models", "file:///mnt/models", "pvc://models/kfkit", ""])
def test_a_model_storage_kserve_cannot_read_from_is_refused_naming_it(uri):
    with pytest.raises(ConfigError, match=f"model_storage_uri must be an object store .*got {uri!r}"):
        model_storage.storage_uri(uri, "penguins", "1")


def test_a_directory_without_a_saved_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a SavedModel"):
        model_storage.stage(tmp_path, "s3://m", "penguins", "1", filesystem=bucket(tmp_path))


@pytest.mark.parametrize("backend, endpoint_backend, expected", [
    ("local", "", "local"), ("bigquery", "", "vertex"), ("vertex", "", "vertex"), ("kserve", "", "kserve"),
    ("local", "kserve", "kserve"), ("bigquery", "local", "local")])
def test_the_endpoint_backend_overrides_the_data_backends_own(backend, endpoint_backend, expected):
    assert resolve_backend(backend, endpoint_backend) == expected


def test_an_unknown_endpoint_backend_is_refused_naming_the_parameter():
    with pytest.raises(ConfigError, match="endpoint_backend must be one of local, vertex, kserve, got 'seldon'"):
        resolve_backend("local", "seldon")


def test_deploy_to_kserve_stages_the_registered_version_and_reports_kserves_canary(tmp_path, penguin_model, schema):
    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.register.register import register_model

    registry = MlflowRegistry(tmp_path / "root")
    cluster, store = Cluster(), bucket(tmp_path)
    first = register_model(str(penguin_model), model_name="penguins", registry=registry)
    second = register_model(str(penguin_model), model_name="penguins", registry=registry)
    common = dict(endpoint_name="penguins", backend="local", endpoint_backend="kserve", model_storage_uri="s3://models/kfkit",
                  kserve=adapter(cluster), registry=registry, filesystem=store)

    deploy_model(first, **common)
    endpoint = deploy_model(second, traffic_percent=20, **common)

    assert endpoint == {
        "backend": "kserve", "resourceName": f"namespaces/{NAMESPACE}/inferenceservices/penguins",
        "endpoint": "penguins", "namespace": NAMESPACE, "storage_uri": "s3://models/kfkit/penguins/2",
        "traffic_split": {"penguins-v2": 20, "penguins-v1": 80},
        "revisions": {"penguins-predictor-00002": 20, "penguins-predictor-00001": 80},
        "uri": f"http://penguins.{NAMESPACE}.example.com"}
    assert (tmp_path / "bucket" / "models" / "kfkit" / "penguins" / "2" / "1" / "saved_model.pb").is_file()
    assert all(schema.problems(body) == [] for _, body in cluster.sent)


def test_deploy_to_kserve_without_model_storage_is_refused_before_any_call(tmp_path):
    cluster = Cluster()
    registered = {"backend": "local", "model_name": "penguins", "version": "1", "model_dir": str(tmp_path)}

    with pytest.raises(ConfigError, match="model_storage_uri is empty: backend kserve needs an object store"):
        deploy_model(registered, endpoint_name="penguins", backend="kserve", kserve=adapter(cluster))
    assert cluster.sent == []


class Recording(BaseHTTPRequestHandler):
    """A Kubernetes API server that knows one InferenceService in the middle of a canary."""

    requests: list = []
    service = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
               "metadata": {"name": "penguins", "namespace": NAMESPACE, "resourceVersion": "7", "generation": 2},
               "spec": {"predictor": {"canaryTrafficPercent": 20, "model": {"modelFormat": {"name": "tensorflow"},
                                                                            "storageUri": "s3://m/penguins/2"}}},
               "status": {"components": {"predictor": {"previousRolledoutRevision": "penguins-predictor-00001"}}}}

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        self._answer(self.service)

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("PUT", self.path, body))
        self._answer(body)

    def log_message(self, *args):
        pass


def test_cli_rollback_on_kserve_sends_kserves_rollback_through_the_real_client(tmp_path, monkeypatch, capsys, schema):
    from kfkit import cli

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "test", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    Recording.requests = []

    try:
        code = cli.main(["rollback", "--endpoint", "penguins", "--backend", "kserve", "--namespace", NAMESPACE])
    finally:
        server.shutdown()

    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/penguins"
    assert code == 0, capsys.readouterr()
    assert [(method, p) for method, p, _ in Recording.requests] == [("GET", path), ("PUT", path)]
    sent = Recording.requests[-1][2]
    assert sent["spec"]["predictor"]["canaryTrafficPercent"] == 0 and sent["metadata"]["resourceVersion"] == "7"
    assert schema.problems(sent) == []
    assert "rolled back" in capsys.readouterr().out


def test_the_schema_check_catches_a_misspelt_field_a_wrong_type_and_a_missing_predictor(schema):
    good = kserve.inference_service("penguins", NAMESPACE, "s3://m/p/1", model_name="penguins", model_version="1",
                                    canary_traffic_percent=20)
    misspelt = copy.deepcopy(good)
    misspelt["spec"]["predictor"]["canaryTraficPercent"] = misspelt["spec"]["predictor"].pop("canaryTrafficPercent")
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["predictor"]["minReplicas"] = "1"

    assert schema.problems(good) == []
    assert schema.problems(misspelt) == [".spec.predictor.canaryTraficPercent: no such field in V1beta1PredictorSpec"]
    assert schema.problems(wrong_type) == [".spec.predictor.minReplicas: '1' is not int"]
    assert schema.problems({**good, "spec": {}}) == [".spec.predictor: required by V1beta1InferenceServiceSpec"]


def test_kserves_status_is_read_whole_and_missing_parts_read_as_nothing():
    service = {"status": {"conditions": [{"type": "IngressReady", "status": "True"},
                                         {"type": "Ready", "status": "False", "reason": "R"}],
                          "components": {"predictor": {"traffic": [
                              {"revisionName": "p-00002", "percent": 20, "tag": "latest"},
                              {"tag": "prev", "percent": "80"}, {"revisionName": "p-00000"}]}}},
               "spec": {"predictor": {"labels": {"kfkit.io/model-version": "2"}}}}

    assert kserve.traffic(service) == {"p-00002": 20, "prev": 80, "p-00000": 0}
    assert kserve.ready_condition(service) == {"type": "Ready", "status": "False", "reason": "R"}
    assert kserve.served_version(service) == "2"
    for empty in ({}, {"status": {}}, {"status": {"components": {}}}, {"status": {"components": {"predictor": {}}}},
                  {"status": {"conditions": None, "components": {"predictor": {"traffic": None}}}}):
        assert kserve.traffic(empty) == {} and kserve.ready_condition(empty) is None
    for empty in ({}, {"spec": {}}, {"spec": {"predictor": {}}}, {"spec": {"predictor": {"labels": {}}}}):
        assert kserve.served_version(empty) is None


def test_an_empty_pod_namespace_file_means_default(tmp_path):
    (tmp_path / "namespace").write_text("\n")

    assert kserve.default_namespace("", tmp_path / "namespace") == "default"


def test_an_inference_service_has_one_replica_and_no_account_or_canary_unless_asked():
    service = kserve.inference_service("p", "ns", "s3://m/p/1", model_name="p", model_version="1")

    assert service["spec"]["predictor"] == {
        "minReplicas": 1, "maxReplicas": 1, "labels": {"kfkit.io/model": "p", "kfkit.io/model-version": "1"},
        "model": {"modelFormat": {"name": "tensorflow"}, "storageUri": "s3://m/p/1"}}


def test_deploy_says_what_it_did_in_each_case():
    cluster = Cluster()
    kserve_ = adapter(cluster)

    created = kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    replaced = kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2",
                              traffic_percent=0)
    unchanged = kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2")

    def without_service(result):
        return {k: v for k, v in result.items() if k != "service"}
    assert without_service(created) == {"previous_version": None, "created": True, "changed": True}
    assert without_service(replaced) == {"previous_version": "1", "created": False, "changed": True}
    assert without_service(unchanged) == {"previous_version": None, "created": False, "changed": False}
    assert created["service"]["metadata"]["generation"] == 1 and replaced["service"]["metadata"]["generation"] == 2
    assert unchanged["service"]["spec"]["predictor"]["canaryTrafficPercent"] == 0  # a canary at 0% is a canary


@pytest.mark.parametrize("percent", [-1, 101])
def test_a_traffic_share_outside_0_to_100_is_refused_before_any_call(percent):
    cluster = Cluster()

    with pytest.raises(ConfigError, match=f"traffic_percent must be between 0 and 100, got {percent}"):
        adapter(cluster).deploy("penguins", "s3://m/p/1", model_name="p", model_version="1", traffic_percent=percent)
    assert cluster.sent == [] and not cluster.api.get_namespaced_custom_object.called


def test_replicas_reach_the_predictor_and_no_account_is_named_unless_given():
    cluster = Cluster()

    adapter(cluster).deploy("penguins", "s3://m/p/1", model_name="p", model_version="1", min_replicas=2, max_replicas=5)

    predictor = cluster.sent[0][1]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5) and "serviceAccountName" not in predictor


def test_a_refused_create_is_an_error_naming_the_service_and_the_reason():
    cluster = Cluster()
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": "admission webhook denied the request"})
    cluster.api.create_namespaced_custom_object.side_effect = error

    with pytest.raises(KfkitError, match=f"creating InferenceService {NAMESPACE}/penguins failed: "
                                         "admission webhook denied the request"):
        adapter(cluster).deploy("penguins", "s3://m/p/1", model_name="p", model_version="1")


def test_rollback_after_a_promotion_goes_to_kserves_previous_rolled_out_revision(schema):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=100)

    kserve_.rollback("penguins")  # no canary field: KServe's status names the previous revision

    assert cluster.sent[-1][1]["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_wait_ready_backs_off_to_fifteen_seconds_at_most():
    cluster = Cluster(ready_after=7)
    sleeps = []
    kserve_ = adapter(cluster, sleeps)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    kserve_.wait_ready("penguins")

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_wait_ready_reports_a_failure_without_a_message_by_its_reason_alone():
    cluster = Cluster(ready_false={"type": "Ready", "status": "False", "reason": "RevisionMissing"})
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(KfkitError) as raised:
        kserve_.wait_ready("penguins")

    assert str(raised.value) == f"InferenceService {NAMESPACE}/penguins is not ready: RevisionMissing"


def test_a_not_ready_condition_without_a_reason_is_waited_on_and_the_timeout_says_its_state():
    cluster = Cluster(ready_false={"type": "Ready", "status": "Unknown", "message": "IngressNotConfigured"})
    kserve_, now = adapter_on_a_clock(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(KfkitError) as raised:
        kserve_.wait_ready("penguins", timeout_s=7)

    assert str(raised.value) == (f"InferenceService {NAMESPACE}/penguins not ready after 7s "
                                 "(Ready: Unknown IngressNotConfigured)")
    assert now[0] == 7.0  # gave up at the deadline itself: 1 + 2 + 4


def test_an_object_without_a_generation_counts_as_reconciled():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    del cluster.objects["penguins"]["metadata"]["generation"]
    cluster.api.get_namespaced_custom_object.side_effect = lambda *a, **k: {
        **copy.deepcopy(cluster.objects["penguins"]), "status": {"conditions": [{"type": "Ready", "status": "True"}]}}

    assert kserve_.wait_ready("penguins")["metadata"]["name"] == "penguins"


def test_deploying_again_what_is_served_says_so_in_the_log(caplog):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with caplog.at_level("INFO", logger="kfkit.kserve"):
        kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    assert f"InferenceService {NAMESPACE}/penguins already serves s3://m/penguins/1; nothing to change" in caplog.text


def test_a_service_whose_predictor_names_no_model_is_moved_to_the_tensorflow_one():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    del cluster.objects["penguins"]["spec"]["predictor"]["model"]  # e.g. a custom container put there by hand

    result = kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2")

    assert result["changed"] and cluster.sent[-1][1]["spec"]["predictor"]["model"]["storageUri"] == "s3://m/penguins/2"


@pytest.mark.parametrize("status", [None, {}, {"components": {}}, {"components": {"predictor": {}}}])
def test_a_canary_can_be_rolled_back_before_kserve_reports_any_status(status):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20)
    stored = copy.deepcopy(cluster.objects["penguins"])
    stored.pop("_rolled_out", None)
    if status is not None:
        stored["status"] = status
    cluster.api.get_namespaced_custom_object.side_effect = lambda *a, **k: copy.deepcopy(stored)

    kserve_.rollback("penguins")

    assert cluster.sent[-1][1]["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_a_second_rollback_names_the_canary_field_at_zero():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20)
    kserve_.rollback("penguins")

    with pytest.raises(ConfigError) as raised:
        kserve_.rollback("penguins")

    assert str(raised.value) == (f"InferenceService {NAMESPACE}/penguins is already rolled back "
                                 "(canaryTrafficPercent is 0)")


def test_wait_ready_waits_while_kserve_has_written_no_status_or_no_observed_generation():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    stored = cluster.objects["penguins"]
    answers = iter([{**stored}, {**stored, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                    {**stored, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}])
    cluster.api.get_namespaced_custom_object.side_effect = lambda *a, **k: copy.deepcopy(next(answers))

    service = kserve_.wait_ready("penguins")

    assert service["status"]["observedGeneration"] == 1  # the third answer: the first two were not reconciled


def test_a_timeout_before_any_condition_says_ready_is_unknown():
    cluster = Cluster(ready_after=10**6)
    kserve_, now = adapter_on_a_clock(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    with pytest.raises(KfkitError) as raised:
        kserve_.wait_ready("penguins", timeout_s=1)

    assert str(raised.value) == f"InferenceService {NAMESPACE}/penguins not ready after 1s (Ready: unknown)"


def test_an_api_error_without_a_json_body_is_named_by_its_status_and_reason():
    cluster = Cluster()
    cluster.api.get_namespaced_custom_object.side_effect = ApiException(status=503, reason="Service Unavailable")
    error_with_empty_message = ApiException(status=500, reason="Internal Server Error")
    error_with_empty_message.body = json.dumps({"kind": "Status"})

    with pytest.raises(KfkitError, match=f"reading InferenceService {NAMESPACE}/penguins failed: 503 Service Unavailable"):
        adapter(cluster).get("penguins")
    cluster.api.get_namespaced_custom_object.side_effect = error_with_empty_message
    with pytest.raises(KfkitError, match="failed: Internal Server Error$"):
        adapter(cluster).get("penguins")


def test_without_a_cluster_or_kubeconfig_the_error_says_what_is_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    with pytest.raises(ConfigError) as raised:
        kserve.KServeAdapter("team-a")

    assert str(raised.value).startswith("backend kserve needs a Kubernetes cluster: run inside one (a Kubeflow "
                                        "pipeline step) or set a kubeconfig context (KUBECONFIG): ")


def test_the_adapter_works_in_the_pods_namespace_unless_given_one(monkeypatch, tmp_path):
    monkeypatch.setattr(kserve, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")

    assert kserve.KServeAdapter(api=Cluster().api).namespace == kserve.default_namespace("", tmp_path / "absent")
    assert kserve.KServeAdapter(api=Cluster().api).namespace == "default"


def test_a_stale_failure_of_an_earlier_generation_is_waited_past_not_reported():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    stored = {**cluster.objects["penguins"], "metadata": {**cluster.objects["penguins"]["metadata"], "generation": 2}}
    stale = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed"}]}
    fresh = {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
    answers = iter([{**stored, "status": stale}, {**stored, "status": fresh}])
    cluster.api.get_namespaced_custom_object.side_effect = lambda *a, **k: copy.deepcopy(next(answers))

    assert kserve_.wait_ready("penguins")["status"] == fresh


def test_a_traffic_entry_without_a_revision_or_tag_is_still_counted():
    assert kserve.traffic({"status": {"components": {"predictor": {"traffic": [{"percent": 5}]}}}}) == {"?": 5}


# ---- kfkit serve as KServe's explainer ------------------------------------------------------------
# KServe's custom explainer (pkg/apis/serving/v1beta1/explainer_custom.go): spec.explainer.containers[0];
# a STORAGE_URI variable on it is the storage initializer's source, copied to /mnt/models; KServe appends
# `--model_name <service> --predictor_host <predictor>.<namespace> --http_port 8080` to its args.
IMAGE = "ghcr.io/kfkit/kfkit-serving:test"


def test_an_explainer_runs_kfkit_serve_on_the_same_staged_version(schema):
    cluster = Cluster()

    adapter(cluster).deploy("penguins", "s3://models/kfkit/penguins/1", model_name="penguins", model_version="1",
                            service_account="kfkit-models", explainer_image=IMAGE)

    [(_, sent)] = cluster.sent
    assert sent["spec"]["explainer"] == {
        "minReplicas": 1, "maxReplicas": 1, "serviceAccountName": "kfkit-models",
        "labels": {"kfkit.io/model": "penguins", "kfkit.io/model-version": "1"},
        "containers": [{"name": "kserve-container", "image": IMAGE, "command": ["kfkit"],
                        "args": ["serve", "--model-dir", "/mnt/models/1", "--host", "0.0.0.0"],
                        "env": [{"name": "STORAGE_URI", "value": "s3://models/kfkit/penguins/1"}]}]}
    assert sent["spec"]["predictor"]["model"]["storageUri"] == "s3://models/kfkit/penguins/1"
    assert schema.problems(sent) == []


def test_the_explainer_follows_the_predictors_canary_promotion_and_rollback(schema):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1", explainer_image=IMAGE)

    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20,
                   explainer_image=IMAGE)
    canary = cluster.sent[-1][1]
    kserve_.rollback("penguins")
    rolled_back = cluster.sent[-1][1]
    kserve_.promote("penguins")
    promoted = cluster.sent[-1][1]

    assert canary["spec"]["explainer"]["canaryTrafficPercent"] == 20
    assert canary["spec"]["explainer"]["containers"][0]["env"] == [{"name": "STORAGE_URI", "value": "s3://m/penguins/2"}]
    assert rolled_back["spec"]["explainer"]["canaryTrafficPercent"] == 0
    assert "canaryTrafficPercent" not in promoted["spec"]["explainer"]
    assert all(schema.problems(body) == [] for body in (canary, rolled_back, promoted))


def test_asking_for_an_explainer_on_a_served_version_adds_it_and_not_asking_removes_kfkits():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")

    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1", explainer_image=IMAGE)
    added = cluster.sent[-1][1]
    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2")
    removed = cluster.sent[-1][1]

    assert len(cluster.sent) == 3 and added["spec"]["explainer"]["containers"][0]["image"] == IMAGE
    assert "explainer" not in removed["spec"]


def test_an_explainer_kfkit_did_not_write_is_left_as_it_is():
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1")
    cluster.objects["penguins"]["spec"]["explainer"] = {"containers": [{"image": "their/explainer"}]}

    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20)
    kserve_.rollback("penguins")

    assert all(body["spec"]["explainer"] == {"containers": [{"image": "their/explainer"}]}
               for _, body in cluster.sent[1:])


def test_kfkit_serve_takes_the_arguments_kserve_appends_to_an_explainer():
    from kfkit.cli import build_parser

    args = build_parser().parse_args(["serve", "--model-dir", "/mnt/models/1", "--host", "0.0.0.0", "--model_name",
                                      "penguins", "--predictor_host", f"penguins-predictor.{NAMESPACE}",
                                      "--http_port", "8080", "--workers", "2"])

    assert (args.model_dir, args.host, args.model_name, args.port, args.workers) == (
        "/mnt/models/1", "0.0.0.0", "penguins", 8080, 2)


def test_deploy_with_kserve_explainer_names_the_explain_route_and_is_refused_elsewhere(tmp_path, penguin_model, schema):
    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.register.register import register_model

    registry = MlflowRegistry(tmp_path / "root")
    cluster, store = Cluster(), bucket(tmp_path)
    version = register_model(str(penguin_model), model_name="penguins", registry=registry)

    endpoint = deploy_model(version, endpoint_name="penguins", backend="local", endpoint_backend="kserve",
                            model_storage_uri="s3://models/kfkit", kserve=adapter(cluster), registry=registry,
                            filesystem=store, kserve_explainer=True)

    assert endpoint["explain_uri"] == f"http://penguins.{NAMESPACE}.example.com/v1/models/penguins:explain"
    assert cluster.sent[0][1]["spec"]["explainer"]["containers"][0]["image"].split("/")[-1].startswith("kfkit-serving:")
    assert schema.problems(cluster.sent[0][1]) == []
    with pytest.raises(ConfigError, match="kserve_explainer adds an explainer to a KServe InferenceService"):
        deploy_model(version, endpoint_name="penguins", backend="local", local_root=str(tmp_path / "root"),
                     kserve_explainer=True)
