"""`kfkit log-sink`: where KServe's inference logger posts what an InferenceService served.

KServe's logger (the agent beside each predictor pod, `spec.predictor.logger`) posts every request
and every response as a binary-mode CloudEvent 1.0: the payload as the body, and headers ce-id (the
same for a request and its response), ce-type (org.kubeflow.serving.inference.request or
.response), ce-inferenceservicename, ce-namespace, and ce-annotations (a JSON object of the
InferenceService annotations listed in logger.metadataAnnotations; deploy lists kfkit's model and
version there, so each event says which registered version answered it).

The sink pairs a request with its response (in either order) and appends one record per answered
request in kfkit's request-log format (kfkit.serving.server.RequestLog: <local_root>/request_logs/<service>/),
the same records the monitor and the canary analysis read. `GET /records` hands a window of them
back as JSON lines, so a pipeline step reads them without sharing a volume with the sink.

Every event is input: a missing or wrong header, a body that is not strict JSON, an unknown
service is answered 400 naming it, and nothing is written.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from kfkit.errors import ConfigError, KfkitError
from kfkit.serving.http_app import BadRequest, check_values, lifespan, parse_body, read_body, send_json

log = logging.getLogger("kfkit.log_sink")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODEL_ANNOTATION, VERSION_ANNOTATION = "kfkit.io/model", "kfkit.io/model-version"
SERVICE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes (DNS-1035) name
MAX_ID_CHARS = 256
PENDING_MAX = 10_000  # events waiting for their other half; the oldest is dropped beyond this
PENDING_TTL_S = 120.0
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z, the last day a log file can be named


class LogSink:
    """Pairs KServe's request and response events and logs each answered request."""

    def __init__(self, local_root: str | Path | None = None, services: list[str] | None = None,
                 clock: Callable[[], float] = time.time):
        from kfkit.config import local_root as resolve_root

        self.root = resolve_root(local_root) / "request_logs"
        self.services = set(services or [])
        for name in self.services:
            if not SERVICE_NAME.fullmatch(name):
                raise ConfigError(f"--inference-service {name!r} is not a Kubernetes name")
        self.clock = clock
        self._pending: collections.OrderedDict[tuple[str, str], tuple[float, str, Any, dict]] = \
            collections.OrderedDict()
        self._logs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # halves whose other half never came (evicted or expired)

    def _service(self, name: str, what: str) -> str:
        if not SERVICE_NAME.fullmatch(name or ""):
            raise BadRequest(400, f"{what} {name!r} is not an InferenceService name")
        if self.services and name not in self.services:
            raise BadRequest(400, f"{what} {name!r} is not one this sink logs ({', '.join(sorted(self.services))})")
        return name

    def receive(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """One CloudEvent (binary mode: attributes in ce-* headers). Returns what was done."""
        if headers.get("ce-specversion") != "1.0":
            raise BadRequest(400, f"ce-specversion must be 1.0 (a binary-mode CloudEvent, as KServe's logger "
                                  f"sends), got {headers.get('ce-specversion')!r}")
        kind = headers.get("ce-type", "")
        if kind not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise BadRequest(400, f"ce-type {kind!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}")
        event_id = headers.get("ce-id", "")
        if not event_id or len(event_id) > MAX_ID_CHARS:
            raise BadRequest(400, f"ce-id must be 1 to {MAX_ID_CHARS} characters, got {len(event_id)}")
        service = self._service(headers.get("ce-inferenceservicename", ""), "ce-inferenceservicename")
        annotations = self._annotations(headers.get("ce-annotations", ""))
        payload = parse_body(body)
        field = "instances" if kind == REQUEST_TYPE else "predictions"
        if not isinstance(payload, dict):
            raise BadRequest(400, f"the {kind.rsplit('.', 1)[1]} body must be a JSON object")
        check_values(payload, "body")
        now = self.clock()
        with self._lock:
            self._expire(now)
            other = self._pending.pop((service, event_id), None)
            if other is None or other[1] == kind:
                if other is not None:
                    self.dropped += 1  # the same half twice: the newer stands
                self._pending[(service, event_id)] = (now, kind, payload.get(field), annotations)
                while len(self._pending) > PENDING_MAX:
                    self._pending.popitem(last=False)
                    self.dropped += 1
                return {"logged": False, "waiting_for": "response" if kind == REQUEST_TYPE else "request"}
            request, response = (other, (now, kind, payload.get(field), annotations)) if kind == RESPONSE_TYPE \
                else ((now, kind, payload.get(field), annotations), other)
            return self._write(service, request, response)

    @staticmethod
    def _annotations(raw: str) -> dict[str, str]:
        try:
            annotations = json.loads(raw) if raw else {}
        except ValueError:
            raise BadRequest(400, f"ce-annotations is not a JSON object: {raw[:80]!r}") from None
        if not isinstance(annotations, dict) or not isinstance(annotations.get(VERSION_ANNOTATION), str):
            raise BadRequest(400, f"ce-annotations has no {VERSION_ANNOTATION}: deploy the InferenceService with "
                                  "request_logger_url, which lists kfkit's annotations in logger.metadataAnnotations")
        return annotations

    def _expire(self, now: float) -> None:
        while self._pending:
            key, (stamp, *_rest) = next(iter(self._pending.items()))
            if now - stamp <= PENDING_TTL_S:
                return
            del self._pending[key]
            self.dropped += 1

    def _write(self, service: str, request, response) -> dict[str, Any]:
        from kfkit.serving.server import Deployed, RequestLog

        # the response's annotations: the pod that answered (each event carries them; receive checked)
        instances, predictions, annotations = request[2], response[2], response[3]
        if not (isinstance(instances, list) and isinstance(predictions, list)):
            return {"logged": False, "reason": "no instances or predictions list: not an answered prediction"}
        model, version = annotations.get(MODEL_ANNOTATION, service), annotations[VERSION_ANNOTATION]
        if service not in self._logs:
            self._logs[service] = RequestLog(self.root / service, service)
        # no latency: the two events' arrival times are the logger's, not the model's (Prometheus has it)
        self._logs[service].write(Deployed(f"{service}-v{version}", model, version, 0, None), instances, predictions)
        return {"logged": True, "model_version": version}

    def records(self, service: str, start: float, end: float) -> Iterator[dict[str, Any]]:
        from kfkit.serving.request_logs import records

        return records(self.root / self._service(service, "inferenceservice"), start, end)

    def close(self) -> None:
        for request_log in self._logs.values():
            request_log.close()


def _number(query: dict[str, list[str]], name: str) -> float:
    try:
        value = float(query.get(name, [""])[0])
    except ValueError:
        raise BadRequest(400, f"query parameter {name} must be a number (epoch seconds)") from None
    if not (math.isfinite(value) and 0 <= value <= LAST_SECOND):
        raise BadRequest(400, f"query parameter {name} must be epoch seconds from 0 to {LAST_SECOND} (year 9999)")
    return value


def make_app(sink: LogSink):
    """The sink's ASGI app: POST / (CloudEvents), GET /records, GET /health."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan(receive, send, sink.close)
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/" and method == "POST":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                await send_json(send, 200, sink.receive(headers, await read_body(scope, receive)))
            elif path == "/records" and method == "GET":
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                rows = sink.records(query.get("inferenceservice", [""])[0], _number(query, "start"),
                                    _number(query, "end"))
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/x-ndjson")]})
                for row in rows:
                    line = json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n"
                    await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            elif path == "/health" and method in ("GET", "HEAD"):
                await send_json(send, 200, {"status": "ok", "waiting": len(sink._pending), "dropped": sink.dropped})
            else:
                raise BadRequest(404, f"no route {method} {path}; use POST / (KServe's logger), GET /records, "
                                      "GET /health")
        except BadRequest as exc:
            if exc.status != 499:
                await send_json(send, exc.status, {"error": exc.message})
        except Exception as exc:  # noqa: BLE001 - the sink must outlive any single event
            log.exception("event failed")
            await send_json(send, 500, {"error": f"{type(exc).__name__}: {exc}"})

    return app


def make_http_server(*, local_root: str | None = None, services: list[str] | None = None, host: str = "127.0.0.1",
                     port: int = 8080, ready: threading.Event | None = None):
    """The uvicorn server of `kfkit log-sink` (call .run(); set .should_exit to stop)."""
    import uvicorn

    from kfkit.serving.http_app import GuardedProtocol

    sink = LogSink(local_root, services)
    # log_config=None: uvicorn leaves the process's logging as it is (its dictConfig would close the
    # handlers already there)
    config = uvicorn.Config(make_app(sink), host=host, port=port, http=GuardedProtocol, lifespan="on", log_config=None,
                            limit_concurrency=1024, timeout_keep_alive=5, access_log=False, log_level="warning",
                            server_header=False, date_header=False)

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.should_exit:
                return
            self.bound_port = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            print(f"kfkit log-sink: listening on http://{host}:{self.bound_port}/ (logs under {sink.root})",
                  flush=True)
            if ready:
                ready.set()

    server = _Server(config)
    server.sink = sink
    return server


def read_records(url: str, service: str, start: float, end: float, timeout_s: float = 60.0) -> Iterator[dict]:
    """The records a sink at `url` logged for `service` in [start, end) (what the canary analysis reads)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"request_logger_url must be the http(s):// address of a kfkit log-sink, got {url!r}")
    query = urllib.parse.urlencode({"inferenceservice": service, "start": repr(start), "end": repr(end)})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/records?{query}", timeout=timeout_s) as response:
            for line in response:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short: the logs are input
                if isinstance(record, dict):
                    yield record
    except urllib.error.HTTPError as exc:
        raise KfkitError(f"the log sink at {url} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") \
            from exc
    except (urllib.error.URLError, OSError) as exc:
        raise KfkitError(f"the log sink at {url} could not be read: {exc}") from exc
