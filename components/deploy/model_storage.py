"""A registered SavedModel copied where KServe's TensorFlow runtime can load it.

TF Serving loads `<model base path>/<numeric version>/saved_model.pb`; kfkit's model artifact is the
SavedModel itself (the layout Vertex AI's prebuilt containers load). Each registered version is
copied once to `<model_storage_uri>/<model>/<version>/1/`, and that version's directory is the
InferenceService's storageUri: each revision of the service has its own, so a canary and the
revision it is compared with never share files.
"""

from __future__ import annotations

import json
from pathlib import Path

from kfkit.errors import ConfigError

SCHEMES = ("s3://", "gs://")
MARKER = "kfkit-staged.json"  # written last: its presence means the copy is whole


def storage_uri(model_storage_uri: str, model_name: str, version: str) -> str:
    if not model_storage_uri.startswith(SCHEMES):
        raise ConfigError(f"model_storage_uri must be an object store KServe's storage initializer reads "
                          f"({', '.join(s + 'BUCKET/PATH' for s in SCHEMES)}), got {model_storage_uri!r}")
    return f"{model_storage_uri.rstrip('/')}/{model_name}/{version}"


def stage(model_dir: str | Path, model_storage_uri: str, model_name: str, version: str, filesystem=None) -> str:
    """Copy model_dir under `<storage uri>/1/` unless a whole copy is there; returns the storage URI.

    filesystem: a pyarrow FileSystem to write through instead of the URI's own (S3 credentials and
    endpoint come from the AWS_* variables, e.g. AWS_ENDPOINT_URL for Kubeflow's MinIO).
    """
    from pyarrow import fs

    source = Path(model_dir)
    if not (source / "saved_model.pb").is_file():
        raise ConfigError(f"{source} is not a SavedModel (no saved_model.pb): nothing KServe's TensorFlow runtime can load")
    uri = storage_uri(model_storage_uri, model_name, version)
    if filesystem is None:
        filesystem, base = fs.FileSystem.from_uri(uri)
    else:
        base = uri.split("://", 1)[1]
    marker = f"{base}/{MARKER}"
    if filesystem.get_file_info(marker).type == fs.FileType.File:
        return uri  # staged by an earlier attempt
    filesystem.create_dir(f"{base}/1", recursive=True)
    fs.copy_files(str(source), f"{base}/1", source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)
    with filesystem.open_output_stream(marker) as out:
        out.write(json.dumps({"model": model_name, "version": version, "source": str(source)}).encode())
    return uri
