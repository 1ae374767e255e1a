"""Fakes of the Google Cloud SDK shared by the processes of one hybrid-mode run, through files.

install(state) hooks the imports of google.cloud.bigquery, bigquery_storage, aiplatform,
aiplatform.utils.gcs_utils and storage: once a real module has loaded, its client classes are
replaced by these fakes. BigQuery runs its SQL on a local warehouse under `state`; Vertex AI keeps
models and endpoints in state/vertex.json; Cloud Storage is the directory state/gcs. Every SDK call
is appended to state/calls.jsonl for the test to read. Method signatures are checked against the
real SDK's where kfkit calls them (tests.fakes.bound_to).
"""

from __future__ import annotations

import importlib.abc
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

STATE: Path | None = None


def record(*call) -> None:
    with open(STATE / "calls.jsonl", "a") as handle:
        handle.write(json.dumps(call, default=str) + "\n")


def warehouse():
    from kfkit.warehouse.local import LocalWarehouse

    found = LocalWarehouse(STATE / "bigquery")
    found.ensure_sample_data()
    return found


# ---- BigQuery -------------------------------------------------------------------------------------
def patch_bigquery(module) -> None:
    # the fakes are checked against the real classes: load them (and the real Storage Read API
    # module) unpatched first
    HOOK.active = False
    try:
        from google.cloud import bigquery_storage

        from tests.bigquery_local import LocalBigQuery, LocalReadClient
    finally:
        HOOK.active = True

    class RecordedBigQuery(LocalBigQuery):
        def query(self, query, job_config=None, job_id=None, job_id_prefix=None, location=None, project=None,
                  retry=None, timeout=None, job_retry=None, api_method=None, *, timestamp_precision=None):
            record("bigquery.query", query[:60], bool(job_config and job_config.dry_run),
                   getattr(job_config, "maximum_bytes_billed", None), location)
            return super().query(query, job_config, job_id_prefix=job_id_prefix, location=location)

    module.Client = lambda project=None, location=None, **kwargs: RecordedBigQuery(
        warehouse(), STATE / "gcs", project=project, location=location or "US")
    bigquery_storage.BigQueryReadClient = lambda *args, **kwargs: LocalReadClient(warehouse())


# ---- Vertex AI: models and endpoints in state/vertex.json ------------------------------------------
def load() -> dict:
    path = STATE / "vertex.json"
    return json.loads(path.read_text()) if path.exists() else {"models": [], "endpoints": [], "ops": 0}


def save(data: dict) -> None:
    (STATE / "vertex.json").write_text(json.dumps(data, indent=1))


def _match(item: dict, filter: str | None) -> bool:
    if not filter:
        return True
    key, _, value = filter.partition("=")
    value = value.strip('"')
    if key.startswith("labels."):
        return item["labels"].get(key[len("labels."):]) == value
    return item.get(key) == value


class FakeOperation:
    def __init__(self, response):
        data = load()
        data["ops"] += 1
        save(data)
        self.operation = SimpleNamespace(name=f"projects/p/locations/l/operations/{data['ops']}")
        self.response = response

    def done(self, retry=None):
        return True

    def cancel(self):
        record("operation.cancel", self.operation.name)

    def result(self, timeout=None, retry=None, polling=None):
        return self.response


class Registry:
    def add_version_aliases(self, new_aliases, version):
        record("model.add_version_aliases", new_aliases, version)


class Model:
    """aiplatform.Model: a version of a registered model, found by name[@version|@alias]."""

    def __init__(self, model_name, project=None, location=None, credentials=None, version=None):
        base, _, at = model_name.partition("@")
        versions = [m for m in load()["models"] if m["resource_name"] == base]
        wanted = version or at or "default"
        found = [m for m in versions if m["version_id"] == wanted or wanted in m["aliases"]]
        if not found:
            from google.api_core import exceptions
            raise exceptions.NotFound(f"model {model_name} not found")
        self._data = found[0]
        self.resource_name = base
        self.version_id = self._data["version_id"]
        self.versioned_resource_name = f"{base}@{self.version_id}"
        self.display_name = self._data["display_name"]
        self.uri = self._data["artifact_uri"]
        self.labels = self._data["labels"]
        self.versioning_registry = Registry()

    @staticmethod
    def list(filter=None, order_by=None, project=None, location=None, credentials=None):
        record("Model.list", filter)
        latest = {}
        for m in load()["models"]:
            if _match(m, filter):
                latest[m["resource_name"]] = m
        return [Model(name, version=m["version_id"]) for name, m in latest.items()]


class ModelServiceClient:
    def __init__(self, client_options=None, **kwargs):
        pass

    def upload_model(self, request=None, *, parent=None, model=None, retry=None, timeout=None, metadata=()):
        data = load()
        base = request.parent_model or f"{request.parent}/models/{len(data['models']) + 1}"
        versions = [m for m in data["models"] if m["resource_name"] == base]
        version = str(len(versions) + 1)
        aliases = list(request.model.version_aliases)
        for other in versions:  # an alias names one version: it moves to the new one
            other["aliases"] = [a for a in other["aliases"] if a not in aliases]
        data["models"].append({"resource_name": base, "version_id": version, "display_name": request.model.display_name,
                               "artifact_uri": request.model.artifact_uri, "labels": dict(request.model.labels),
                               "aliases": aliases})
        save(data)
        record("upload_model", base, version, request.model.artifact_uri, dict(request.model.labels), aliases)
        return FakeOperation(SimpleNamespace(model=base, model_version_id=version))

    def list_model_versions(self, request=None, *, name=None, retry=None, timeout=None, metadata=()):
        record("list_model_versions", request.name, request.filter)
        return [SimpleNamespace(version_id=m["version_id"]) for m in load()["models"]
                if m["resource_name"] == request.name and _match(m, request.filter)]


class Endpoint:
    def __init__(self, endpoint_name, project=None, location=None, credentials=None):
        self.resource_name = endpoint_name

    def _data(self) -> dict:
        return next(e for e in load()["endpoints"] if e["resource_name"] == self.resource_name)

    @property
    def traffic_split(self):
        return dict(self._data()["traffic_split"])

    @property
    def labels(self):
        return dict(self._data()["labels"])

    def list_models(self):
        return [SimpleNamespace(**d) for d in self._data()["deployed"]]

    def update(self, display_name=None, description=None, labels=None, traffic_split=None, request_metadata=(),
               update_request_timeout=None):
        record("Endpoint.update", labels, traffic_split, description)
        data = load()
        endpoint = next(e for e in data["endpoints"] if e["resource_name"] == self.resource_name)
        if labels is not None:
            endpoint["labels"] = dict(labels)
        if traffic_split is not None:
            endpoint["traffic_split"] = dict(traffic_split)
        save(data)
        return self

    @staticmethod
    def list(filter=None, order_by=None, project=None, location=None, credentials=None):
        return [Endpoint(e["resource_name"]) for e in load()["endpoints"] if _match(e, filter)]

    @staticmethod
    def create(display_name=None, labels=None, project=None, location=None, **kwargs):
        data = load()
        name = f"projects/{project}/locations/{location}/endpoints/{len(data['endpoints']) + 1}"
        data["endpoints"].append({"resource_name": name, "display_name": display_name, "labels": dict(labels or {}),
                                  "traffic_split": {}, "deployed": []})
        save(data)
        record("Endpoint.create", display_name)
        return Endpoint(name)


class EndpointServiceClient:
    def __init__(self, client_options=None, **kwargs):
        pass

    def deploy_model(self, request=None, *, endpoint=None, deployed_model=None, traffic_split=None, retry=None,
                     timeout=None, metadata=()):
        data = load()
        target = next(e for e in data["endpoints"] if e["resource_name"] == endpoint)
        model, _, version = deployed_model.model.partition("@")
        new_id = str(1000 + data["ops"])
        target["deployed"].append({"id": new_id, "model": model, "model_version_id": version,
                                   "create_time": str(data["ops"])})
        target["traffic_split"] = {(new_id if k == "0" else k): v for k, v in dict(traffic_split).items()}
        save(data)
        record("deploy_model", endpoint, deployed_model.model, dict(traffic_split),
               deployed_model.dedicated_resources.machine_spec.machine_type)
        return FakeOperation(SimpleNamespace())

    def undeploy_model(self, request=None, *, endpoint=None, deployed_model_id=None, traffic_split=None, retry=None,
                       timeout=None, metadata=()):
        data = load()
        target = next(e for e in data["endpoints"] if e["resource_name"] == endpoint)
        target["deployed"] = [d for d in target["deployed"] if d["id"] != deployed_model_id]
        target["traffic_split"].pop(deployed_model_id, None)
        save(data)
        record("undeploy_model", endpoint, deployed_model_id)
        return FakeOperation(SimpleNamespace())


def patch_aiplatform(module) -> None:
    if os.environ.get("KFKIT_VERTEX_API_ENDPOINT"):
        return  # the real SDK, over gRPC, to the wire tier's fake Vertex AI (tests/vertex_api.py)
    from google.cloud.aiplatform import gapic

    from tests.fakes import bound_to

    module.Model = Model
    module.Endpoint = Endpoint
    gapic.ModelServiceClient = bound_to(gapic.ModelServiceClient)(ModelServiceClient)
    gapic.EndpointServiceClient = bound_to(gapic.EndpointServiceClient)(EndpointServiceClient)


# ---- Cloud Storage: the directory state/gcs ---------------------------------------------------------
PROJECT_NUMBER = "123456789012"


def stage_local_data_in_gcs(data_path, staging_gcs_dir=None, project=None, location=None, credentials=None):
    bucket, _, base = (staging_gcs_dir or f"gs://{project}-vertex-staging-{location}")[len("gs://"):].partition("/")
    assert (STATE / "gcs" / bucket).is_dir(), f"staging into gs://{bucket}, a bucket nobody made"
    prefix = "/".join(filter(None, [base, f"vertex_ai_auto_staging/{uuid.uuid4().hex[:8]}"]))
    shutil.copytree(data_path, STATE / "gcs" / bucket / prefix)
    record("stage_local_data_in_gcs", data_path, staging_gcs_dir)
    return f"gs://{bucket}/{prefix}"


def patch_gcs_utils(module) -> None:
    module.stage_local_data_in_gcs = stage_local_data_in_gcs


def patch_resource_manager_utils(module) -> None:
    module.get_project_number = lambda project_id, credentials=None: PROJECT_NUMBER


class Storage:
    def __init__(self, *args, **kwargs):
        pass

    def list_blobs(self, bucket_or_name, max_results=None, page_token=None, prefix=None, **kwargs):
        record("storage.list_blobs", bucket_or_name, prefix)
        base = STATE / "gcs" / bucket_or_name
        return [SimpleNamespace(name=str(p.relative_to(base)),
                                download_to_filename=lambda filename, p=p: shutil.copy(p, filename))
                for p in sorted(base.rglob("*")) if p.is_file() and str(p.relative_to(base)).startswith(prefix)]

    def lookup_bucket(self, bucket_name, **kwargs):
        record("storage.lookup_bucket", bucket_name)
        found = (STATE / "gcs" / bucket_name).is_dir()
        return SimpleNamespace(name=bucket_name, project_number=PROJECT_NUMBER) if found else None

    def create_bucket(self, bucket_or_name, project=None, location=None, **kwargs):
        record("storage.create_bucket", bucket_or_name, project, location)
        (STATE / "gcs" / bucket_or_name).mkdir(parents=True)
        return SimpleNamespace(name=bucket_or_name, project_number=PROJECT_NUMBER)


def patch_storage(module) -> None:
    module.Client = Storage


PATCHES = {"google.cloud.bigquery": patch_bigquery,
           "google.cloud.aiplatform": patch_aiplatform, "google.cloud.aiplatform.utils.gcs_utils": patch_gcs_utils,
           "google.cloud.storage": patch_storage,
           "google.cloud.aiplatform.utils.resource_manager_utils": patch_resource_manager_utils}


class PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs PATCHES[name] on a module right after its real code has run."""

    active = True

    def find_spec(self, name, path, target=None):
        if not self.active or name not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        spec.loader = PatchingLoader(spec.loader, name)
        return spec


class PatchingLoader(importlib.abc.Loader):
    def __init__(self, real, name):
        self.real, self.name = real, name

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        self.real.exec_module(module)
        PATCHES[self.name](module)

    def __getattr__(self, attr):  # get_data, get_resource_reader, ... of the real loader
        return getattr(self.real, attr)


HOOK = PatchAfterImport()


def install(state: str) -> None:
    global STATE
    STATE = Path(state)
    STATE.mkdir(parents=True, exist_ok=True)
    sys.meta_path.insert(0, HOOK)
    if os.environ.get("KFKIT_VERTEX_API_ENDPOINT"):
        # a step's application default credentials; the wire fake checks no token
        import google.auth
        from google.auth.credentials import AnonymousCredentials

        google.auth.default = lambda *args, **kwargs: (AnonymousCredentials(), None)
