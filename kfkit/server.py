"""kfkit's model server: Vertex AI's prediction contract, locally or as a Vertex custom container.

    {"instances": [...], "parameters": {...}}  ->  {"predictions": [...], "deployedModelId": ...}

Honours AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI (Vertex sets them
in a custom serving container). Locally it serves a kfkit endpoint: the versions deployed there and
their traffic split, reloaded when a deploy or rollback changes it. In-flight requests keep the
routing table they started with, so a reload drops none.

Every request is checked against the model's signature (400 naming the field), bodies above
1.5 MB get 413 (Vertex's limit), no input ends the server, and sampled request/response records
are appended to JSON Lines files the monitor reads.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kfkit.errors import KfkitError
from kfkit.model_io import LoadedModel, RequestError

log = logging.getLogger("kfkit.server")
MAX_BODY_BYTES = int(1.5 * 1024 * 1024)


@dataclass
class Deployed:
    id: str
    model: str
    version: str
    traffic: int
    loaded: LoadedModel


class Router:
    """Picks a deployed model per request by traffic share; swapped whole on reload."""

    def __init__(self, deployed: list[Deployed], revision: int = 0, seed: int | None = None):
        self.deployed = [d for d in deployed if d.traffic > 0] or deployed
        self.weights = [d.traffic for d in self.deployed]
        self.revision = revision
        self._random = random.Random(seed)

    def pick(self) -> Deployed:
        if len(self.deployed) == 1 or not any(self.weights):
            return self.deployed[0]
        return self._random.choices(self.deployed, weights=self.weights)[0]


class RequestLog:
    """Appends one JSON line per sampled request; a crash loses at most the line being written."""

    def __init__(self, directory: Path | None, endpoint: str, sample_rate: float = 1.0):
        self.directory = directory
        self.endpoint = endpoint
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._random = random.Random()

    def write(self, deployed: Deployed, instances: list, predictions: list) -> None:
        if self.directory is None or self._random.random() >= self.sample_rate:
            return
        now = time.time()
        record = {"timestamp": now, "endpoint": self.endpoint, "deployed_model_id": deployed.id,
                  "model": deployed.model, "model_version": deployed.version,
                  "instances": instances, "predictions": predictions}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self.directory / (time.strftime("%Y-%m-%d", time.gmtime(now)) + ".jsonl")
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)


class ModelServer:
    def __init__(self, *, endpoint: str | None = None, local_root: str | None = None, model_dir: str | None = None,
                 log_sample_rate: float = 1.0, reload_interval: float = 0.5, seed: int | None = None):
        from kfkit.config import local_root as resolve_root

        self.endpoint = endpoint or "default"
        self.model_dir = model_dir
        self.seed = seed
        self.reload_interval = reload_interval
        self._models: dict[str, LoadedModel] = {}
        self._stop = threading.Event()
        self._mtime = None
        if model_dir:
            self.state_path = None
            root = Path(local_root) if local_root else None
        else:
            from kfkit.endpoints import LocalEndpoints

            root = resolve_root(local_root)
            self.state_path = LocalEndpoints(root).path(self.endpoint)
            if not self.state_path.exists():
                raise KfkitError(f"no local endpoint {self.endpoint!r} under {root}: deploy a model first "
                                 "(the training pipeline's deploy step) or pass --model-dir")
        log_dir = (root / "request_logs" / self.endpoint) if root else None
        self.request_log = RequestLog(log_dir, self.endpoint, log_sample_rate)
        self.router = self._build_router()

    def _load(self, model_dir: str) -> LoadedModel:
        if model_dir not in self._models:
            self._models[model_dir] = LoadedModel(model_dir)
        return self._models[model_dir]

    def _build_router(self) -> Router:
        if self.model_dir:
            loaded = self._load(self.model_dir)
            return Router([Deployed("0", loaded.spec.label, "1", 100, loaded)], seed=self.seed)
        self._mtime = self.state_path.stat().st_mtime_ns
        state = json.loads(self.state_path.read_text())
        deployed = [Deployed(m["id"], m["model"], m["version"], m["traffic"], self._load(m["model_dir"]))
                    for m in state["deployed_models"]]
        live = {m["model_dir"] for m in state["deployed_models"]}
        self._models = {k: v for k, v in self._models.items() if k in live}
        return Router(deployed, state["revision"], seed=self.seed)

    def watch(self) -> None:
        """Reload the endpoint when its state file changes; models load before the switch."""
        while not self._stop.wait(self.reload_interval):
            try:
                if self.state_path and self.state_path.stat().st_mtime_ns != self._mtime:
                    router = self._build_router()
                    self.router = router
                    log.info("endpoint %s reloaded: revision %d, %s", self.endpoint, router.revision,
                             ", ".join(f"{d.id} {d.traffic}%" for d in router.deployed))
            except Exception:  # noqa: BLE001 - a bad state file must not stop serving the old one
                log.exception("could not reload endpoint %s; still serving revision %d", self.endpoint,
                              self.router.revision)

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict) or "instances" not in body:
            raise RequestError("the request body must be a JSON object with an 'instances' list")
        router = self.router  # one table for the whole request, even if a reload happens now
        deployed = router.pick()
        instances = body["instances"]
        predictions = deployed.loaded.predict_instances(instances)
        self.request_log.write(deployed, instances, predictions)
        return {"predictions": predictions, "deployedModelId": deployed.id, "model": deployed.model,
                "modelVersionId": deployed.version}

    def stop(self) -> None:
        self._stop.set()


def make_handler(server: ModelServer, health_route: str, predict_route: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body are separate writes: with Nagle on, keep-alive clients wait ~40 ms
        # for a delayed ACK before the body arrives
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # access logs at DEBUG, not on stderr per request
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.split("?")[0] == health_route:
                self._send(200, {"status": "ok", "revision": server.router.revision,
                                 "deployedModels": [{"id": d.id, "traffic": d.traffic} for d in server.router.deployed]})
            else:
                self._send(404, {"error": f"no route {self.path}; use GET {health_route} or POST {predict_route}"})

        def do_POST(self):
            if self.path.split("?")[0] != predict_route:
                self._send(404, {"error": f"no route {self.path}; use POST {predict_route}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(400, {"error": "Content-Length is not a number"})
                return
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           {"error": f"request body is {length} bytes; the limit is {MAX_BODY_BYTES} (1.5 MB, as on Vertex AI)"})
                return
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._send(400, {"error": f"the request body is not valid JSON: {exc}"})
                return
            try:
                self._send(200, server.predict(body))
            except RequestError as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the server must outlive any single request
                log.exception("prediction failed")
                self._send(500, {"error": f"prediction failed: {type(exc).__name__}: {exc}"})

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # the default listen backlog (5) drops connections when many clients connect at once
    request_queue_size = 256


def serve(*, endpoint: str | None = None, local_root: str | None = None, model_dir: str | None = None,
          host: str = "127.0.0.1", port: int | None = None, log_sample_rate: float = 1.0,
          ready: threading.Event | None = None) -> None:
    """Run the server until interrupted. Environment variables follow Vertex's custom containers."""
    model_dir = model_dir or os.environ.get("AIP_STORAGE_URI") or None
    port = int(port or os.environ.get("AIP_HTTP_PORT", 8080))
    health_route = os.environ.get("AIP_HEALTH_ROUTE", "/health")
    predict_route = os.environ.get("AIP_PREDICT_ROUTE", "/predict")
    server = ModelServer(endpoint=endpoint, local_root=local_root, model_dir=model_dir,
                         log_sample_rate=log_sample_rate)
    httpd = _HTTPServer((host, port), make_handler(server, health_route, predict_route))
    watcher = threading.Thread(target=server.watch, daemon=True)
    watcher.start()
    log.info("serving %s on http://%s:%d%s (health %s)", model_dir or f"endpoint {server.endpoint}", host,
             httpd.server_address[1], predict_route, health_route)
    print(f"kfkit serve: listening on http://{host}:{httpd.server_address[1]}{predict_route}", flush=True)
    if ready:
        ready.set()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        httpd.server_close()
