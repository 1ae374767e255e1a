"""Cloud Storage adapter: the only module that calls google-cloud-storage.

On Vertex AI a step sees Cloud Storage mounted at /gcs/; on a laptop (hybrid mode: `kfkit run
--local` with backend=bigquery) there is no mount, so a model kept in Cloud Storage is copied here
before it is read.
"""

from __future__ import annotations

from pathlib import Path

from kfkit.atomic import atomic_dir
from kfkit.errors import ConfigError


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://"):
        raise ConfigError(f"{uri!r} is not a gs:// URI")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    return bucket, prefix.rstrip("/")


def download_dir(uri: str, destination: str | Path, client=None) -> Path:
    """Copy every object under gs://bucket/prefix/ into destination (replaced whole, never half-written)."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage

    client = client or storage.Client()
    bucket, prefix = split_uri(uri)
    start = prefix + "/" if prefix else ""  # gs://bucket alone: the whole bucket, not the objects under "/"
    with atomic_dir(destination) as staging:
        found = 0
        try:
            for blob in client.list_blobs(bucket, prefix=start):
                relative = blob.name[len(start):]
                if not relative or relative.endswith("/"):
                    continue  # a "folder" placeholder
                parts = relative.split("/")
                # "a/../b" and "a//b" are valid object names, but as paths they land outside the copy
                if any(part in ("", ".", "..") for part in parts):
                    raise ConfigError(f"gs://{bucket}/{blob.name} would be copied outside {destination}: "
                                      "kfkit copies no object whose name has an empty, '.' or '..' part")
                target = staging.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(target))
                found += 1
        except gexc.NotFound as exc:
            raise ConfigError(f"cannot copy {uri}: Cloud Storage answered not found ({exc.message})") from exc
        if not found:
            raise ConfigError(f"nothing in Cloud Storage under {uri}")
    return Path(destination)


def readable_dir(uri: str, cache_root: str | Path) -> Path:
    """A local directory holding gs:// `uri`: the /gcs/ mount where it exists, else a copy under cache_root."""
    from kfkit.config import local_path

    mounted = local_path(uri)
    if not uri.startswith("gs://") or mounted.exists():
        return mounted
    bucket, prefix = split_uri(uri)
    cached = Path(cache_root) / "gcs" / bucket / prefix
    if not cached.exists():
        download_dir(uri, cached)
    return cached


def ensure_bucket(name: str, project: str, location: str, project_number: str, client=None) -> str:
    """gs://name, a regional bucket of `project`: made in `location` when missing; one that exists must
    belong to the project (its name is predictable, so another project could have made it first to
    read what is staged there: the Vertex SDK checks the same before it stages into such a bucket)."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage

    client = client or storage.Client(project=project)
    found = client.lookup_bucket(name)
    if found is None:
        try:
            found = client.create_bucket(name, project=project, location=location)
        except gexc.Conflict:  # another step made it between the lookup and here
            found = client.lookup_bucket(name)
        except gexc.GoogleAPICallError as exc:
            raise ConfigError(f"cannot create the staging bucket gs://{name} in project {project} "
                              f"({location}): {exc.message}") from exc
    if found is None or str(found.project_number) != str(project_number):
        raise ConfigError(f"the staging bucket gs://{name} exists but does not belong to project {project} "
                          f"(project number {project_number}); name a bucket of yours with "
                          "aiplatform.init(staging_bucket='gs://...') or $KFKIT_STAGING_BUCKET")
    return f"gs://{name}"
