"""Kubeflow Pipelines backend adapter (kfp.Client) and the Artifact Registry template registry
(kfp.registry.RegistryClient): the only modules' worth of code that talk to either."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kfkit.errors import ConfigError, KfkitError

AR_URL = re.compile(r"^https://(?P<host>[a-z0-9-]+-kfp\.pkg\.dev)/(?P<project>[^/]+)/(?P<repo>[^/]+)/(?P<package>[^/:]+)(?::(?P<tag>[^/]+))?/?$")


SA_TOKEN_PATH = "/var/run/secrets/kfp/token"  # KFP's documented projected token (KF_PIPELINES_SA_TOKEN_PATH)
RUN_DONE = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
RUN_FAILED = {"FAILED", "CANCELED", "SKIPPED"}


@dataclass(frozen=True)
class KfpTarget:
    """Where and as whom a run goes: the API's address, the profile namespace of a multi-user
    Kubeflow, and at most one credential."""
    host: str
    namespace: str = ""
    token_file: str = ""        # a bearer token (an OIDC id token, a service account token) in a file
    cookie_file: str = ""       # a dashboard session cookie, NAME=VALUE, in a file
    in_cluster: bool = False    # the pod's projected service account token (KFP's documented route)
    timeout_s: float = 5.0      # the reachability check's bound

    def __post_init__(self):
        given = [flag for flag, value in (("--kfp-token-file", self.token_file), ("--kfp-cookie-file", self.cookie_file),
                                          ("--kfp-in-cluster-token", self.in_cluster)) if value]
        if len(given) > 1:
            raise ConfigError(f"Kubeflow Pipelines takes one credential, got {' and '.join(given)}")

    def token(self) -> str:
        path = self.token_file or (os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH) if self.in_cluster else "")
        return _secret(path, "token") if path else ""

    def cookie(self) -> str:
        return _secret(self.cookie_file, "cookie") if self.cookie_file else ""


def _secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the Kubeflow Pipelines {what} from {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"the Kubeflow Pipelines {what} file {path} is empty")
    return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer to report (a login page), not a place to go


def server_message(body: bytes | str | None) -> str:
    """The API server's own words from an error body (grpc-gateway's JSON status, or the v1 shape)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    if _looks_html(text):
        return "an HTML page, not the Kubeflow Pipelines API (a login page or the dashboard?)"
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300] or "no message"
    if isinstance(data, dict):
        for key in ("message", "error", "error_message"):
            if data.get(key):
                return str(data[key])[:500]
    return text[:300]


def _looks_html(text: str) -> bool:
    return text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))


def check_reachable(target: KfpTarget) -> dict[str, Any]:
    """The API's healthz, asked once within timeout_s with the target's credential: the answer, or a
    one-line error saying what answered instead (nothing, a login page, the dashboard, a refusal)."""
    url = target.host.rstrip("/") + "/apis/v2beta1/healthz"
    headers = {"Accept": "application/json"}
    if target.token():
        headers["Authorization"] = f"Bearer {target.token()}"
    if target.cookie():
        headers["Cookie"] = target.cookie()
    opener = urllib.request.build_opener(_NoRedirect)
    where = f"Kubeflow Pipelines at {target.host}"
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=target.timeout_s) as answer:
            body, ctype = answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise ConfigError(f"{where} redirected to {exc.headers.get('Location') or 'another page'} (a login): a "
                              "multi-user Kubeflow needs a credential: --kfp-token-file, --kfp-cookie-file or "
                              "--kfp-in-cluster-token") from None
        raise ConfigError(f"{where} answered {exc.code} {exc.reason}: {server_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)) or isinstance(exc, (TimeoutError, socket.timeout)):
            raise ConfigError(f"{where} did not answer within {target.timeout_s:g} s") from None
        raise ConfigError(f"cannot reach {where}: {getattr(reason, 'strerror', None) or reason}") from None
    text = body.decode("utf-8", "replace")
    if "html" in ctype.lower() or _looks_html(text):
        raise ConfigError(f"{where} answered with an HTML page, not the Kubeflow Pipelines API (is this the "
                          "dashboard's address? the API is usually under /pipeline)")
    try:
        health = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where} answered something that is not the Kubeflow Pipelines API: {text[:200]!r}") from None
    if health.get("multi_user") and not target.namespace:
        raise ConfigError(f"{where} is a multi-user Kubeflow: --namespace (your profile's namespace) is required")
    return health


@contextmanager
def api_errors(host: str):
    """Every failure of a call through kfp.Client as one line naming the host, the status and the
    server's own message, never a traceback."""
    import kfp_server_api
    import urllib3

    where = f"Kubeflow Pipelines at {host}"
    try:
        yield
    except kfp_server_api.ApiException as exc:
        if exc.status in (None, 0):
            raise KfkitError(f"cannot reach {where}: {exc.reason}") from None
        raise KfkitError(f"{where} answered {exc.status} {exc.reason or ''}".rstrip() + f": {server_message(exc.body)}") \
            from None
    except urllib3.exceptions.HTTPError as exc:
        raise KfkitError(f"cannot reach {where}: {getattr(exc, 'reason', None) or exc}") from None
    except TimeoutError as exc:  # the client's own health check, after its retries
        raise KfkitError(f"{where} did not answer: {exc}") from None


def client_for(target: KfpTarget):
    """kfp.Client for the target, its namespace and credential set as the client documents them."""
    import kfp

    kwargs: dict[str, Any] = {"host": target.host}
    if target.namespace:
        kwargs["namespace"] = target.namespace
    if target.in_cluster:
        from kfp.client import ServiceAccountTokenVolumeCredentials
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=os.environ.get("KF_PIPELINES_SA_TOKEN_PATH",
                                                                                         SA_TOKEN_PATH))
    elif target.token_file:
        kwargs["existing_token"] = target.token()
    elif target.cookie_file:
        kwargs["cookies"] = target.cookie()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later": v2beta1 is
        with api_errors(target.host):
            return kfp.Client(**kwargs)


def submit_to_kfp(template_path: str, values: dict[str, Any], target: KfpTarget, experiment: str = "",
                  run_name: str = "", enable_caching: bool | None = None, pipeline_root: str = "",
                  service_account: str = "", client=None) -> str:
    """Create the run; its id. The reachability check first, so a wrong host fails in seconds."""
    if client is None:
        check_reachable(target)
        client = client_for(target)
    with api_errors(target.host):
        result = client.create_run_from_pipeline_package(
            template_path, arguments=values, run_name=run_name or None, experiment_name=experiment or None,
            namespace=target.namespace or None, pipeline_root=pipeline_root or None, enable_caching=enable_caching,
            service_account=service_account or None)
    run_id = getattr(result, "run_id", None)
    if not run_id:
        raise KfkitError(f"Kubeflow Pipelines at {target.host} answered without a run id: not the Kubeflow Pipelines "
                         "API (a login page or the dashboard?)")
    return run_id


def poll_intervals(first: float = 5.0, most: float = 30.0):
    """5, 10, 20, 30, 30, ... seconds: quick at first, then at most twice a minute."""
    wait = first
    while True:
        yield wait
        wait = min(most, wait * 2)


def _name(value) -> str:
    return str(getattr(value, "name", value) or "")


def wait_for_run(client, run_id: str, host: str, *, echo: Callable[[str], None] = print, sleep=time.sleep,
                 ask: Callable[[str], str] | None = None) -> list[str]:
    """Print each task's state as it changes until the run ends; the outcome's lines when it
    succeeded, a KfkitError naming the failed tasks when it failed, was canceled or skipped.
    Ctrl-C asks whether to terminate the run (left running when nobody can answer)."""
    from kfkit.adapters.vertex_pipelines import task_outcome_lines

    seen: dict[str, str] = {}
    intervals = poll_intervals()
    try:
        while True:
            with api_errors(host):
                run = client.get_run(run_id)
            tasks = list(getattr(getattr(run, "run_details", None), "task_details", None) or [])
            for task in tasks:
                name, state = task.display_name or task.task_id, _name(task.state)
                if seen.get(name) != state:
                    seen[name] = state
                    echo(f"{time.strftime('%H:%M:%S')}  {name:<32} {state}")
            state = _name(run.state)
            if state in RUN_DONE:
                break
            sleep(next(intervals))
    except KeyboardInterrupt:
        answer = (ask or _ask)(f"terminate run {run_id} on {host}? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            with api_errors(host):
                client.terminate_run(run_id)
            raise KfkitError(f"interrupted: run {run_id} asked to terminate") from None
        raise KfkitError(f"interrupted: run {run_id} left running on {host}") from None
    if state in RUN_FAILED:
        failed = [t for t in tasks if _name(t.state) == "FAILED"]
        detail = "; ".join(f"task {t.display_name}: {getattr(t.error, 'message', '') or 'no message'}" for t in failed)
        raise KfkitError(f"run {run_id} ended {state}" + (f" ({detail})" if detail else ""))
    lines = [f"run {run_id} succeeded"] + task_outcome_lines({t.display_name: _name(t.state) for t in tasks})
    for line in lines:
        echo(line)
    return lines


def _ask(prompt: str) -> str:
    if not sys.stdin or not sys.stdin.isatty():
        return "n"
    try:
        return input(prompt)
    except (EOFError, KeyboardInterrupt):
        return "n"


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
