"""Where kfkit keeps local state, and which container images components are compiled with."""

from __future__ import annotations

import os
from pathlib import Path

from kfkit import __version__
from kfkit.errors import ConfigError

LOCAL_ROOT_ENV = "KFKIT_LOCAL_ROOT"
DEFAULT_LOCAL_ROOT = ".kfkit"
IMAGE_REGISTRY_ENV = "KFKIT_IMAGE_REGISTRY"
IMAGE_TAG_ENV = "KFKIT_IMAGE_TAG"
IMAGE_DIGESTS_ENV = "KFKIT_IMAGE_DIGESTS"
DEFAULT_IMAGE_REGISTRY = "ghcr.io/kfkit"
BACKENDS = ("local", "bigquery")


def local_root(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """Resolve the local root: the argument, else $KFKIT_LOCAL_ROOT, else ./.kfkit.

    Raises ConfigError naming the path when it cannot be created, read or written.
    """
    raw = path if path not in (None, "") else os.environ.get(LOCAL_ROOT_ENV, DEFAULT_LOCAL_ROOT)
    root = Path(raw).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"local root {str(root)!r} exists but is not a directory")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create local root {str(root)!r}: {exc.strerror}") from exc
    if root.exists() and not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(
            f"local root {str(root)!r} is not readable and writable by this user; "
            f"fix its permissions or choose another with --local-root or ${LOCAL_ROOT_ENV}"
        )
    return root


GCS_MOUNT = "/gcs"  # where a Vertex AI step sees Cloud Storage: gs://bucket/x is /gcs/bucket/x


def local_path(uri: str | os.PathLike) -> Path:
    """A gs:// URI as the path Vertex AI mounts it at (Cloud Storage FUSE under /gcs/); paths unchanged."""
    text = str(uri)
    return Path(f"{GCS_MOUNT}/" + text[len("gs://"):] if text.startswith("gs://") else text)


def gcs_uri(path: str | os.PathLike, mount: str = GCS_MOUNT) -> str | None:
    """The gs:// URI of a path under the Cloud Storage mount (local_path's inverse); a gs:// URI as it
    is; None for any other path."""
    text, root = str(path), mount.rstrip("/") + "/"
    if text.startswith("gs://"):
        return text
    return "gs://" + text[len(root):] if text.startswith(root) else None


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def image_uri(name: str) -> str:
    """The one place that decides image URIs: <registry>/<name>:<tag>.

    `kfkit compile --image-registry ... --image-tag ...` sets the environment variables read here
    before any component module is imported, so a compiled template names the images of one build.
    """
    registry = os.environ.get(IMAGE_REGISTRY_ENV, DEFAULT_IMAGE_REGISTRY).rstrip("/")
    tag = os.environ.get(IMAGE_TAG_ENV, __version__)
    digests = image_digests(os.environ.get(IMAGE_DIGESTS_ENV, ""))
    if digests:  # a release: the exact bytes tested and scanned, whatever the tag points to later
        if name not in digests:
            raise ConfigError(f"{os.environ[IMAGE_DIGESTS_ENV]} has no digest for {name} "
                              f"(it names {', '.join(sorted(digests))})")
        return f"{registry}/{name}@{digests[name]}"
    return f"{registry}/{name}:{tag}"


def image_digests(path: str) -> dict[str, str]:
    """{image name: sha256 digest} from a JSON file (`kfkit compile --image-digests`); {} for no path."""
    import json
    import re

    if not path:
        return {}
    try:
        digests = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read image digests from {path}: {exc}") from exc
    if not isinstance(digests, dict):
        raise ConfigError(f"{path} must hold a JSON object of image name to digest, e.g. "
                          '{"kfkit-runtime": "sha256:<64 hex digits>"}')
    for name, digest in digests.items():
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(digest)):
            raise ConfigError(f"{path}: the digest of {name} must be sha256:<64 hex digits>, got {digest!r}")
    return digests


def runtime_image() -> str:
    return image_uri("kfkit-runtime")


def trainer_image() -> str:
    return image_uri("kfkit-trainer")


def serving_image() -> str:
    return image_uri("kfkit-serving")
