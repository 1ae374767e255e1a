"""A protocol-level fake of the Kubeflow Pipelines v2beta1 API, with the auth proxy of a multi-user
Kubeflow Platform in front of it, for the real `kfp.Client` over its real transport (urllib3).

What it checks is what the real stack checks, taken from its published definitions:
- request bodies against the API's own models (kfp_server_api's V2beta1Run, V2beta1Experiment,
  V2beta1RuntimeConfig: the OpenAPI schema of backend/api/v2beta1), unknown fields refused;
- the pipeline spec parsed strictly as KFP's IR (pipeline_spec_pb2.PipelineSpec, unknown fields
  refused), as the API server does before it compiles a workflow;
- multi-user mode (KFP's `MULTIUSER=true`): experiments and runs need a namespace, and the user the
  proxy authenticated must be allowed in it, else 403 with the API server's error body
  (grpc-gateway's JSON status: code, message, details);
- the proxy (Istio with oauth2-proxy or Dex's authservice, the community manifests): a request with
  no credential is redirected to the login page (HTML); a bearer token that does not verify is 401
  (Istio's RequestAuthentication, text); a valid one or a session cookie names the user.
Runs move through the states a test scripts for them, one step per GET.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import kfp_server_api
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.http_fake import LocalHttpService

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Log in to Your Account</title></head><body>Dex</body></html>"
API = "/apis/v2beta1"


def _fields(model) -> set[str]:
    return set(model.attribute_map.values())


@dataclass
class KfpApi(LocalHttpService):
    multi_user: bool = False
    tokens: dict[str, str] = field(default_factory=dict)        # bearer token -> user
    cookies: dict[str, str] = field(default_factory=dict)       # "name=value" session cookie -> user
    namespaces: dict[str, set[str]] = field(default_factory=dict)  # user -> the profiles they may use
    dashboard: bool = False       # every path answers the central dashboard's HTML (the wrong host)
    # each run's scripted progression: (run state, {task name: task state}), one step per GET
    script: list[tuple[str, dict[str, str]]] = field(default_factory=lambda: [("SUCCEEDED", {})])
    failure: tuple[int, str] | None = None   # every API call answered with this status and message
    requests: list[dict] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._serve(('GET', 'POST'))

    # --- the proxy -------------------------------------------------------------------------------
    def _user(self, handler) -> tuple[str | None, tuple[int, str, bytes] | None]:
        if not (self.tokens or self.cookies):
            return None, None
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = self.tokens.get(auth[len("Bearer "):])
            return (user, None) if user else (None, (401, "text/plain", b"Jwt verification fails"))
        for cookie in (c.strip() for c in handler.headers.get("Cookie", "").split(";") if c.strip()):
            if cookie in self.cookies:
                return self.cookies[cookie], None
        return None, (302, "text/html", b"")

    # --- the API server --------------------------------------------------------------------------
    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.requests.append({"method": method, "path": parts.path, "query": parse_qs(parts.query),
                              "headers": dict(handler.headers), "body": body})
        if parts.path.startswith("/dex/") or self.dashboard:
            return self._send(handler, 200, "text/html", LOGIN_PAGE)
        user, refusal = self._user(handler)
        if refusal:
            status, ctype, text = refusal
            if status == 302:
                handler.send_response(302)
                handler.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            return self._send(handler, status, ctype, text)
        if self.failure and parts.path != f"{API}/healthz":
            return self._error(handler, self.failure[0], self.failure[1])
        try:
            status, answer = self._route(method, parts.path, parse_qs(parts.query), body, user)
        except _ApiError as exc:
            return self._error(handler, exc.status, exc.message)
        self._send(handler, status, "application/json", json.dumps(answer).encode())

    def _route(self, method, path, query, body, user):
        if method == "GET" and path == f"{API}/healthz":
            return 200, {"commit_sha": "fake", "tag_name": "2.5.0", "multi_user": self.multi_user}
        if method == "GET" and path == f"{API}/experiments":
            namespace = (query.get("namespace") or [""])[0]
            self._authorize(user, namespace, "experiments")
            predicate = json.loads(query["filter"][0])["predicates"][0] if "filter" in query else {}
            wanted = predicate.get("stringValue", predicate.get("string_value"))
            found = [e for e in self.experiments.values() if e["namespace"] == namespace
                     and (wanted is None or e["display_name"] == wanted)]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == f"{API}/experiments":
            self._only(body, _fields(kfp_server_api.V2beta1Experiment), "experiment")
            namespace = body.get("namespace") or ""
            self._authorize(user, namespace, "experiments")
            experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"],
                          "namespace": namespace, "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and path == f"{API}/runs":
            return 200, self._create_run(body, user)
        if path.startswith(f"{API}/runs/"):
            run_id = path[len(f"{API}/runs/"):]
            if method == "POST" and run_id.endswith(":terminate"):
                run_id = run_id[: -len(":terminate")]
                self._run(run_id, user)
                self.terminated.append(run_id)
                return 200, {}
            if method == "GET":
                return 200, self._poll(self._run(run_id, user))
        raise _ApiError(404, f"Not Found: {method} {path}")

    def _create_run(self, body, user) -> dict:
        self._only(body, _fields(kfp_server_api.V2beta1Run), "run")
        self._only(body.get("runtime_config") or {}, _fields(kfp_server_api.V2beta1RuntimeConfig), "runtime_config")
        experiment = self.experiments.get(body.get("experiment_id") or "")
        if experiment is None:
            raise _ApiError(400, f"Invalid input error: experiment {body.get('experiment_id')!r} does not exist")
        self._authorize(user, experiment["namespace"], "runs")
        spec = body.get("pipeline_spec") or {}
        spec = spec.get("pipeline_spec", spec)  # {pipeline_spec, platform_spec} when a platform spec exists
        try:
            json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
        except json_format.ParseError as exc:
            raise _ApiError(400, f"Invalid input error: failed to parse the pipeline spec: {exc}") from exc
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "storage_state": "AVAILABLE",
               "created_at": "2026-12-05T08:00:00Z"}
        self.runs[run["run_id"]] = run
        self.polls[run["run_id"]] = 0
        return run

    def _run(self, run_id: str, user) -> dict:
        run = self.runs.get(run_id)
        if run is None:
            raise _ApiError(404, f"Failed to get run: ResourceNotFoundError: Run {run_id} not found")
        self._authorize(user, self.experiments[run["experiment_id"]]["namespace"], "runs")
        return run

    def _poll(self, run: dict) -> dict:
        step = min(self.polls[run["run_id"]], len(self.script) - 1)
        self.polls[run["run_id"]] += 1
        state, tasks = self.script[step]
        if run["run_id"] in self.terminated:
            state = "CANCELED"
        details = [{"task_id": str(i), "display_name": name, "state": task_state,
                    **({"error": {"code": 2, "message": f"{name} exited with code 1"}} if task_state == "FAILED" else {})}
                   for i, (name, task_state) in enumerate(tasks.items())]
        return {**run, "state": state, "run_details": {"task_details": details}}

    def _authorize(self, user, namespace: str, what: str) -> None:
        if not self.multi_user:
            return
        if not namespace:
            raise _ApiError(400, f"Invalid input error: In multi-user mode, {what} need a namespace")
        if namespace not in self.namespaces.get(user or "", set()):
            raise _ApiError(403, f"Failed to authorize with API: PermissionDenied: User '{user}' is not authorized "
                                 f"with reason: (no access to namespace {namespace})")

    @staticmethod
    def _only(body, allowed: set[str], what: str) -> None:
        unknown = sorted(set(body or {}) - allowed)
        if unknown:
            raise _ApiError(400, f"Invalid input error: unknown fields in {what}: {unknown}")

    @staticmethod
    def _send(handler, status: int, ctype: str, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _error(self, handler, status: int, message: str) -> None:
        code = {400: 3, 401: 16, 403: 7, 404: 5, 500: 13}.get(status, 2)
        self._send(handler, status, "application/json",
                   json.dumps({"error": message, "code": code, "message": message, "details": []}).encode())


class _ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
