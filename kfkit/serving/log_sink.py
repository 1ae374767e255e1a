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
service is answered 400 naming it, and nothing is written. What a client can make the sink hold is
bounded in bytes and time, not only in counts: halves waiting for their other half (PENDING_MAX_BYTES,
the oldest evicted), open log files (MAX_OPEN_LOGS, least recently used closed), distinct services
(MAX_SERVICES without an --inference-service list), and a /records answer (only the files of the
window's days opened, read off the event loop, at most MAX_RECORDS_BYTES). With a token (--token-file) every
POST and GET /records must carry it; without one the sink listens on loopback only.

An event answered `{"logged": true}` was written: the line is in the file (the OS's page cache; no
fsync, so a machine crash, not a process crash, can lose the last seconds). A write that fails is a
500, and KServe's logger retries it.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
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
from kfkit.serving.http_app import BadRequest, check_values, lifespan, parse_body, read_body, read_token, send_json

log = logging.getLogger("kfkit.log_sink")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODEL_ANNOTATION, VERSION_ANNOTATION = "kfkit.io/model", "kfkit.io/model-version"
SERVICE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes (DNS-1035) name
MAX_ID_CHARS = 256
PENDING_MAX = 10_000  # events waiting for their other half; the oldest is dropped beyond this
PENDING_MAX_BYTES = 64 * 1024 * 1024  # ... or beyond this many bytes of bodies waiting
PENDING_TTL_S = 120.0
MAX_OPEN_LOGS = 64          # log files kept open at once; the least recently used is closed
MAX_SERVICES = 256          # distinct services logged without an --inference-service list
MAX_RECORDS_BYTES = 512 * 1024 * 1024  # the most one GET /records sends; past it, a truncation line
RECORDS_BATCH = 500         # records read per hop to the reading thread
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z, the last day a log file can be named


class LogSink:
    """Pairs KServe's request and response events and logs each answered request."""

    def __init__(self, local_root: str | Path | None = None, services: list[str] | None = None,
                 clock: Callable[[], float] = time.time, token: str = ""):
        from kfkit.config import local_root as resolve_root

        self.root = resolve_root(local_root) / "request_logs"
        self.services = set(services or [])
        for name in self.services:
            if not SERVICE_NAME.fullmatch(name):
                raise ConfigError(f"--inference-service {name!r} is not a Kubernetes name")
        self.clock = clock
        self.token = token.encode() if token else b""
        self._pending: collections.OrderedDict[tuple[str, str], tuple[float, str, Any, dict, int]] = \
            collections.OrderedDict()
        self._pending_bytes = 0
        self._logs: collections.OrderedDict[str, Any] = collections.OrderedDict()
        # services already logged here count toward MAX_SERVICES
        self._known = {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()
        self._lock = threading.Lock()
        self.dropped = 0  # halves whose other half never came (evicted or expired)

    def authorized(self, headers: dict[str, str], query: dict[str, list[str]]) -> bool:
        """The token as `Authorization: Bearer` (the canary step) or as the URL's `token` (KServe's
        logger sends no header of its own), compared in constant time; always, without a token."""
        if not self.token:
            return True
        auth = headers.get("authorization", "")
        given = auth[len("Bearer "):] if auth.startswith("Bearer ") else (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token)

    def _service(self, name: str, what: str) -> str:
        if not SERVICE_NAME.fullmatch(name or ""):
            raise BadRequest(400, f"{what} {name!r} is not an InferenceService name")
        if self.services and name not in self.services:
            raise BadRequest(400, f"{what} {name!r} is not one this sink logs ({', '.join(sorted(self.services))})")
        return name

    def _admit(self, service: str) -> None:
        """A service the sink has not logged yet, within MAX_SERVICES (each has its own files and budget)."""
        if not self.services and service not in self._known:
            if len(self._known) >= MAX_SERVICES:
                raise BadRequest(400, f"ce-inferenceservicename {service!r} would be service {len(self._known) + 1}; "
                                      f"this sink logs at most {MAX_SERVICES}: list the ones it should with "
                                      "--inference-service")
            self._known.add(service)

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
            self._admit(service)
            self._expire(now)
            other = self._pending.pop((service, event_id), None)
            if other is not None:
                self._pending_bytes -= other[4]
            if other is None or other[1] == kind:
                if other is not None:
                    self.dropped += 1  # the same half twice: the newer stands
                self._pending[(service, event_id)] = (now, kind, payload.get(field), annotations, len(body))
                self._pending_bytes += len(body)
                while len(self._pending) > PENDING_MAX or self._pending_bytes > PENDING_MAX_BYTES:
                    self._evict_oldest()
                return {"logged": False, "waiting_for": "response" if kind == REQUEST_TYPE else "request"}
            request, response = (other, (now, kind, payload.get(field), annotations)) if kind == RESPONSE_TYPE \
                else ((now, kind, payload.get(field), annotations), other)
            return self._write(service, request, response)

    def _evict_oldest(self) -> None:
        _key, entry = self._pending.popitem(last=False)
        self._pending_bytes -= entry[4]
        self.dropped += 1

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
            self._pending_bytes -= self._pending.pop(key)[4]
            self.dropped += 1

    def _write(self, service: str, request, response) -> dict[str, Any]:
        from kfkit.serving.server import Deployed, RequestLog

        # the response's annotations: the pod that answered (each event carries them; receive checked)
        instances, predictions, annotations = request[2], response[2], response[3]
        if not (isinstance(instances, list) and isinstance(predictions, list)):
            return {"logged": False, "reason": "no instances or predictions list: not an answered prediction"}
        model, version = annotations.get(MODEL_ANNOTATION, service), annotations[VERSION_ANNOTATION]
        request_log = self._logs.pop(service, None) or RequestLog(self.root / service, service)
        self._logs[service] = request_log  # the most recently used last
        while len(self._logs) > MAX_OPEN_LOGS:
            self._logs.popitem(last=False)[1].close()  # reopened (appending) when its service comes back
        # no latency: the two events' arrival times are the logger's, not the model's (Prometheus has it)
        if not request_log.write(Deployed(f"{service}-v{version}", model, version, 0, None), instances, predictions):
            raise KfkitError(f"the record of event for {service} could not be written (not JSON)")
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
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if path in ("/", "/records") and not sink.authorized(headers, query):
                raise BadRequest(401, "this sink needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN in "
                                      "the logger's URL")
            if path == "/" and method == "POST":
                await send_json(send, 200, sink.receive(headers, await read_body(scope, receive)))
            elif path == "/records" and method == "GET":
                await _send_records(send, sink.records(query.get("inferenceservice", [""])[0],
                                                       _number(query, "start"), _number(query, "end")))
            elif path == "/health" and method in ("GET", "HEAD"):
                await send_json(send, 200, {"status": "ok", "waiting": len(sink._pending), "dropped": sink.dropped})
            else:
                raise BadRequest(404, f"no route {method} {path}; use POST / (KServe's logger), GET /records, "
                                      "GET /health")
        except BadRequest as exc:
            if exc.status != 499:
                await send_json(send, exc.status, {"error": exc.message}, [(b"www-authenticate", b"Bearer")]
                                if exc.status == 401 else [(b"connection", b"close")] if exc.status in (408, 413)
                                else None)
        except Exception as exc:  # noqa: BLE001 - the sink must outlive any single event
            log.exception("event failed")
            await send_json(send, 500, {"error": f"{type(exc).__name__}: {exc}"})

    return app


async def _send_records(send, rows: Iterator[dict[str, Any]]) -> None:
    """Stream the records as JSON lines, reading the files in a worker thread a batch at a time, so
    events keep being accepted while a day of logs is read; at most MAX_RECORDS_BYTES, then a last
    line saying where it stopped."""
    loop = asyncio.get_running_loop()

    def batch() -> list[bytes]:
        return [(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()
                for row in itertools.islice(rows, RECORDS_BATCH)]

    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]})
    sent = 0
    while lines := await loop.run_in_executor(None, batch):
        chunk = b"".join(lines)
        if sent + len(chunk) > MAX_RECORDS_BYTES:
            stop = json.loads(lines[0])["timestamp"]
            line = json.dumps({"kfkit_truncated": True, "resume_from": stop, "limit_bytes": MAX_RECORDS_BYTES})
            await send({"type": "http.response.body", "body": line.encode() + b"\n", "more_body": True})
            break
        sent += len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def make_http_server(*, local_root: str | None = None, services: list[str] | None = None, host: str = "127.0.0.1",
                     port: int = 8080, ready: threading.Event | None = None, token_file: str | None = None,
                     max_connections_per_client: int = 64):
    """The uvicorn server of `kfkit log-sink` (call .run(); set .should_exit to stop)."""
    import uvicorn

    from kfkit.serving.http_app import GuardedProtocol

    token = read_token(token_file)
    if not token and host not in LOOPBACK:
        raise ConfigError(f"--host {host} without --token-file: whoever reaches the sink could read every service's "
                          "request payloads and post forged events; pass --token-file (a Kubernetes Secret mounted as "
                          "a file), or listen on 127.0.0.1")
    sink = LogSink(local_root, services, token=token)
    # log_config=None: uvicorn leaves the process's logging as it is (its dictConfig would close the
    # handlers already there)
    config = uvicorn.Config(make_app(sink), host=host, port=port, http=GuardedProtocol, lifespan="on", log_config=None,
                            limit_concurrency=1024, timeout_keep_alive=5, access_log=False, log_level="warning",
                            server_header=False, date_header=False)
    config.max_connections_per_client = max_connections_per_client

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
    # the sink's token travels in its URL's query (KServe's logger can send no header): here it goes
    # as a header instead, so it is in no access log
    parts = urllib.parse.urlsplit(url)
    token = (urllib.parse.parse_qs(parts.query).get("token") or [""])[0]
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    query = urllib.parse.urlencode({"inferenceservice": service, "start": repr(start), "end": repr(end)})
    request = urllib.request.Request(f"{base}/records?{query}", headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            for line in response:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short: the logs are input
                if isinstance(record, dict) and record.get("kfkit_truncated"):
                    raise KfkitError(f"the log sink at {base} holds more than {record.get('limit_bytes')} bytes of "
                                     f"records for {service} in this window (stopped at {record.get('resume_from')}): "
                                     "analyze a shorter window")
                if isinstance(record, dict):
                    yield record
    except urllib.error.HTTPError as exc:
        raise KfkitError(f"the log sink at {base} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") \
            from exc
    except (urllib.error.URLError, OSError) as exc:
        raise KfkitError(f"the log sink at {base} could not be read: {exc}") from exc
