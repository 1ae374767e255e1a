"""kfkit's Cloud Storage paths through the real google-cloud-storage client over HTTP, against the
protocol fake in tests/gcs_api.py (STORAGE_EMULATOR_HOST, anonymous credentials): what goes over the
wire, not only which methods are called."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.cloud import storage

from kfkit.adapters.gcs import download_dir, readable_dir
from kfkit.errors import ConfigError
from tests.gcs_api import ApiError, GcsApi

pytestmark = pytest.mark.wire

MODEL_FILES = {
    "saved_model.pb": b"\x08\x01" * 300,
    "fingerprint.pb": b"fp",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": bytes(range(256)) * 40,
    "assets/vocabulary.txt": "Adélie\nChinstrap\nGentoo\n".encode(),
    "kfkit_statistics.json": b'{"features": []}',
}


@pytest.fixture
def gcs(monkeypatch):
    with GcsApi(page_size=2) as api:  # two per page, so every listing here spans several pages
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", api.url)
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        yield api


def put_model(api: GcsApi, bucket: str, prefix: str, files: dict[str, bytes] = MODEL_FILES) -> None:
    if bucket not in api.buckets:
        api.create_bucket(bucket)
    for name, data in files.items():
        api.put(bucket, f"{prefix}/{name}" if prefix else name, data)


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_download_dir_copies_every_object_under_the_prefix_across_pages(gcs, tmp_path):
    put_model(gcs, "models-bucket", "penguins/3")
    gcs.put("models-bucket", "penguins/3/", b"")            # a console "folder" placeholder
    gcs.put("models-bucket", "penguins/30/saved_model.pb", b"another version")  # shares the text prefix

    copied = download_dir("gs://models-bucket/penguins/3/", tmp_path / "model")

    assert tree(copied) == MODEL_FILES
    lists = [path for method, path in gcs.requests if "/o?" in path and "alt=media" not in path]
    assert len(lists) >= 3 and all("prefix=penguins%2F3%2F" in p for p in lists)
    assert sum("pageToken=" in p for p in lists) == len(lists) - 1


def test_download_dir_of_a_whole_bucket_copies_every_object(gcs, tmp_path):
    put_model(gcs, "models-bucket", "")

    copied = download_dir("gs://models-bucket", tmp_path / "model")

    assert tree(copied) == MODEL_FILES


def test_download_dir_with_nothing_under_the_prefix_names_the_uri_and_leaves_nothing(gcs, tmp_path):
    put_model(gcs, "models-bucket", "penguins/3")

    with pytest.raises(ConfigError, match="nothing in Cloud Storage under gs://models-bucket/penguins/4"):
        download_dir("gs://models-bucket/penguins/4", tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_download_dir_from_a_missing_bucket_is_a_config_error_naming_it(gcs, tmp_path):
    with pytest.raises(ConfigError, match="models-bucket"):
        download_dir("gs://models-bucket/penguins/3", tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("name", ["penguins/3/../../escaped.txt", "penguins/3/{tmp_path}/escaped.txt"])
def test_download_dir_refuses_an_object_name_that_would_land_outside_the_destination(gcs, tmp_path, name):
    # both are valid object names (https://cloud.google.com/storage/docs/objects#naming forbids only
    # "." and ".." as whole names), so whoever can write to the bucket can choose them; before the fix
    # they were written to tmp_path/escaped.txt and (the second, an absolute path) anywhere at all
    put_model(gcs, "models-bucket", "penguins/3")
    gcs.put("models-bucket", name.format(tmp_path=tmp_path), b"planted")
    destination = tmp_path / "cache" / "model"

    with pytest.raises(ConfigError, match="outside"):
        download_dir("gs://models-bucket/penguins/3", destination)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not destination.exists()


def test_readable_dir_copies_a_model_once_and_reads_the_cache_after(gcs, tmp_path):
    put_model(gcs, "models-bucket", "penguins/3")

    first = readable_dir("gs://models-bucket/penguins/3", tmp_path)
    downloads = [p for _, p in gcs.requests if "alt=media" in p]
    second = readable_dir("gs://models-bucket/penguins/3/", tmp_path)

    assert first == second == tmp_path / "gcs" / "models-bucket" / "penguins/3"
    assert tree(first) == MODEL_FILES
    assert len(downloads) == len(MODEL_FILES)
    assert [p for _, p in gcs.requests if "alt=media" in p] == downloads


def test_champion_model_dir_in_hybrid_mode_is_a_local_copy_of_the_models_artifacts(gcs, tmp_path):
    from kfkit.components.register.register import champion_model_dir

    put_model(gcs, "models-bucket", "vertex/penguins")
    vertex = SimpleNamespace(model_by_alias=lambda name, alias: SimpleNamespace(uri="gs://models-bucket/vertex/penguins"))

    model_dir = champion_model_dir("penguins", backend="vertex", local_root=str(tmp_path), project="p",
                                   location="us-central1", vertex=vertex)

    assert tree(Path(model_dir)) == MODEL_FILES


def test_vertex_stage_uploads_every_file_of_a_model_dir_into_the_staging_bucket(gcs, tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils, resource_manager_utils

    from kfkit.adapters.vertex import VertexAdapter

    # the SDK checks an existing staging bucket's owner with the Resource Manager API (not faked here)
    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda project, **kw: "123456789012")
    # what a laptop's application default credentials would be
    monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
    files = {**MODEL_FILES, "variables/variables.data-00000-of-00001": os.urandom(9 * 1024 * 1024)}  # > 8 MiB: resumable
    model = tmp_path / "model"
    for name, data in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)
    adapter = VertexAdapter("my-project", "us-central1", aiplatform=SimpleNamespace(), gcs_utils=gcs_utils)

    staged = adapter.stage(str(model))
    again = adapter.stage(str(model))

    bucket, _, prefix = staged[len("gs://"):].partition("/")
    assert list(gcs.buckets) == [bucket] and bucket.startswith("my-project-vertex-staging-us-central1")
    assert gcs.buckets[bucket]["location"] == "US-CENTRAL1"
    assert {n[len(prefix) + 1:]: gcs.data(bucket, n) for n in gcs.names(bucket) if n.startswith(prefix + "/")} == files
    assert again != staged and again.startswith(f"gs://{bucket}/")
    assert any("uploadType=resumable" in p for _, p in gcs.requests)
    assert any("uploadType=multipart" in p for _, p in gcs.requests)


def test_vertex_stage_from_two_processes_reuses_one_staging_bucket(gcs, tmp_path, monkeypatch):
    import uuid

    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils, resource_manager_utils

    from kfkit.adapters.vertex import VertexAdapter

    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda project, **kw: "123456789012")
    monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"pb")
    adapter = VertexAdapter("my-project", "us-central1", aiplatform=SimpleNamespace(), gcs_utils=gcs_utils)

    adapter.stage(str(tmp_path / "model"))
    # what the next process (the next run's register step) draws at import
    monkeypatch.setattr(gcs_utils, "_DEFAULT_STAGING_BUCKET_SALT", str(uuid.uuid4()))
    adapter.stage(str(tmp_path / "model"))

    assert len(gcs.buckets) == 1, sorted(gcs.buckets)


def test_vertex_stage_refuses_a_staging_bucket_of_another_project(gcs, tmp_path, monkeypatch):
    from google.cloud.aiplatform.utils import gcs_utils, resource_manager_utils

    from kfkit.adapters.vertex import VertexAdapter

    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda project, **kw: "123456789012")
    # the name is predictable: someone else's project made it first (bucket squatting)
    gcs.create_bucket("my-project-vertex-staging-us-central1", project_number="999999999999")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"pb")
    adapter = VertexAdapter("my-project", "us-central1", aiplatform=SimpleNamespace(), gcs_utils=gcs_utils)

    with pytest.raises(ConfigError, match="gs://my-project-vertex-staging-us-central1 exists but does not belong "
                                          "to project my-project.*KFKIT_STAGING_BUCKET"):
        adapter.stage(str(tmp_path / "model"))
    assert gcs.names("my-project-vertex-staging-us-central1") == []


def test_vertex_stage_uses_the_staging_bucket_named_by_the_environment(gcs, tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    from kfkit.adapters.vertex import VertexAdapter

    monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
    gcs.create_bucket("team-models")
    monkeypatch.setenv("KFKIT_STAGING_BUCKET", "gs://team-models/staging")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"pb")
    adapter = VertexAdapter("my-project", "us-central1", aiplatform=SimpleNamespace(), gcs_utils=gcs_utils)

    staged = adapter.stage(str(tmp_path / "model"))

    assert staged.startswith("gs://team-models/staging/vertex_ai_auto_staging/")
    assert list(gcs.buckets) == ["team-models"]
    assert gcs.data("team-models", staged[len("gs://team-models/"):] + "/saved_model.pb") == b"pb"


def test_the_fake_refuses_names_cloud_storage_refuses(gcs):
    # the fake's own rules, so a test that passes against it could pass against Cloud Storage
    client = storage.Client()
    for bad in ("My_Bucket", "ab", "goog-models", "-models", "a" * 64):
        with pytest.raises(ApiError, match="Invalid bucket name"):
            gcs.create_bucket(bad)
    gcs.create_bucket("models-bucket")
    for bad in ("", ".", "..", "a\nb", ".well-known/acme-challenge/x", "é" * 513):
        with pytest.raises(ApiError, match="invalid"):
            gcs.put("models-bucket", bad, b"x")
    from google.api_core import exceptions as gexc
    with pytest.raises(gexc.NotFound, match="No such object"):
        client.bucket("models-bucket").blob("missing").download_as_bytes()
    with pytest.raises(gexc.BadRequest, match="page token"):
        list(client.list_blobs("models-bucket", page_token="forged"))
    for name in ("0", "a/1", "a/2", "a/3", "b", "c/1", "d"):
        gcs.put("models-bucket", name, b"x")
    listing = client.list_blobs("models-bucket", delimiter="/")
    names = [blob.name for page in listing.pages for blob in page]
    # pages of two entries, one ending inside "a/": every name outside a prefix still comes, once
    assert (names, sorted(listing.prefixes)) == (["0", "b", "d"], ["a/", "c/"])


def test_deploy_stages_a_model_for_kserve_through_arrows_gcs_filesystem_marker_last(gcs, tmp_path):
    # the other Cloud Storage client in kfkit: pyarrow's GcsFileSystem (google-cloud-cpp), which
    # KServe's deploy step writes through; its directories are marker objects ending in "/"
    import datetime as dt

    from pyarrow import fs

    from kfkit.components.deploy.model_storage import MARKER, stage

    gcs.create_bucket("models-bucket")
    model = tmp_path / "model"
    for name, data in MODEL_FILES.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)
    filesystem = fs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=gcs.url[len("http://"):],
                                  retry_time_limit=dt.timedelta(seconds=1))

    uri = stage(model, "gs://models-bucket/kserve", "penguins", "3", filesystem=filesystem)
    uploads = [p for m, p, in gcs.requests if m == "POST" and p.startswith("/upload/")]
    again = stage(model, "gs://models-bucket/kserve", "penguins", "3", filesystem=filesystem)

    assert uri == again == "gs://models-bucket/kserve/penguins/3"
    staged = {n[len("kserve/penguins/3/1/"):]: gcs.data("models-bucket", n) for n in gcs.names("models-bucket")
              if n.startswith("kserve/penguins/3/1/") and not n.endswith("/")}
    assert staged == MODEL_FILES
    assert f"name=kserve%2Fpenguins%2F3%2F{MARKER}" in uploads[-1]
    assert [p for m, p in gcs.requests if m == "POST" and p.startswith("/upload/")] == uploads
