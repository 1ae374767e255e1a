"""Kubeflow Pipelines backend adapter (kfp.Client) and the Artifact Registry template registry
(kfp.registry.RegistryClient): the only modules' worth of code that talk to either."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kfkit.errors import ConfigError

AR_URL = re.compile(r"^https://(?P<host>[a-z0-9-]+-kfp\.pkg\.dev)/(?P<project>[^/]+)/(?P<repo>[^/]+)/(?P<package>[^/:]+)(?::(?P<tag>[^/]+))?/?$")


def submit_to_kfp(template_path: str, values: dict[str, Any], host: str, experiment: str = "", run_name: str = "",
                  enable_caching: bool | None = None, client=None):
    if client is None:
        import kfp
        client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(template_path, arguments=values, run_name=run_name or None,
                                                   experiment_name=experiment or None, enable_caching=enable_caching)


def parse_registry_url(url: str) -> dict[str, str]:
    """https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE:TAG -> its parts (tag defaults to latest)."""
    match = AR_URL.match(url)
    if not match:
        raise ConfigError(f"{url!r} is not an Artifact Registry Kubeflow Pipelines URL "
                          "(https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE:TAG)")
    parts = match.groupdict()
    parts["tag"] = parts["tag"] or "latest"
    return parts


def download_template(url: str, directory: Path, client=None) -> Path:
    parts = parse_registry_url(url)
    if client is None:
        from kfp.registry import RegistryClient
        client = RegistryClient(host=f"https://{parts['host']}/{parts['project']}/{parts['repo']}")
    path = directory / f"{parts['package']}.yaml"
    client.download_pipeline(package_name=parts["package"], tag=parts["tag"], file_name=str(path))
    return path


def upload_template(path: Path, host: str, tags: list[str], description: str = "", client=None):
    if client is None:
        from kfp.registry import RegistryClient
        client = RegistryClient(host=host)
    return client.upload_pipeline(file_name=str(path), tags=list(tags), extra_headers={"description": description})
