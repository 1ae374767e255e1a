"""The HTTP side of `kfkit serve`: an ASGI app on uvicorn (the server Vertex AI's Custom Prediction
Routines and KServe run), with the guards a production endpoint needs.

uvicorn (httptools) parses HTTP: chunked bodies, conflicting or malformed Content-Length and other
framing errors are its job, answered 400 or closed, never read as a second request. kfkit adds:
a header timeout and a minimum body rate (slow or stalled clients are cut off; uvicorn itself only
times out idle keep-alive connections), bounds on request headers in bytes and count (431: uvicorn
with httptools sets none), a connection limit per client and in all answering 503, the 1.5 MB body limit
(413, Vertex's), strict JSON (no NaN/Infinity, numbers in range, valid UTF-8, bounded nesting:
400 naming the field), JSON answers for every status (404 unknown route, 405 wrong method), a
Prometheus `/metrics` route and one structured access-log line per request. Predictions run in a
thread pool, so the event loop keeps accepting while TensorFlow works; a prediction while no other
runs is answered on the loop's thread, and one whose body came with its headers by the protocol
itself (GuardedProtocol._answers_here), with the ASGI app's answer and without its round.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from kfkit.errors import ConfigError
from kfkit.serving.fast_json import ENCODER, dumps_bytes, instances_text, loads_fast
from kfkit.serving.model_io import RequestError

log = logging.getLogger("kfkit.server")
access_log = logging.getLogger("kfkit.access")

MAX_BODY_BYTES = int(1.5 * 1024 * 1024)
DRAIN_LIMIT_BYTES = 8 * 1024 * 1024  # an oversized body up to this size is read and dropped before the 413
DRAIN_IDLE_S = 1.0  # ... unless the client pauses this long
MAX_DEPTH = 32              # JSON nesting a request may have (instances are flat objects)
HEADER_TIMEOUT_S = 10.0     # from connection (or the end of the last response) to complete headers
BODY_TIMEOUT_S = 10.0       # between two chunks of a request body
# a body must arrive at MIN_BODY_RATE on average once BODY_GRACE_S have passed (Apache's
# mod_reqtimeout has the same shape: body=20,MinRate=500): a trickle cannot hold a connection
BODY_GRACE_S = 5.0
MIN_BODY_RATE = 1024        # bytes per second
# request headers (nginx: 8 KB per line, 32 KB in all by default; Apache: 100 fields)
MAX_HEADER_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


async def _service_unavailable(scope, receive, send) -> None:
    body = b'{"error":"the server is at its connection limit; retry shortly"}'
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})


# uvicorn answers over limit_concurrency with this app; kfkit's answers are JSON, that one too
httptools_impl.service_unavailable = _service_unavailable


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is answered by send_400_response."""


def _refusal_bytes(status: int, message: str) -> bytes:
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}[status]
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 " + str(status).encode() + b" " + reason + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds in bytes and time on what a client can hold: a
    deadline on each request's headers, their size and count (431), and connections per client (503).

    The per-client bound is `config.max_connections_per_client` (0 or missing: none)."""

    _header_timer = None
    _refusal: tuple[int, str] | None = None
    _in_headers = True
    _header_bytes = 0        # what arrived while a request's headers were incomplete
    _header_count = 0
    # The deadlines on a request's headers and on an idle keep-alive connection move with every
    # request, their timers do not: a timer armed once finds, when it fires, its deadline cleared (the
    # connection moved on), later (it waits again for the rest) or passed. Armed and cancelled per
    # request, the two timers were a tenth of a one-at-a-time request's time beyond its prediction.
    _header_deadline: float | None = None  # the loop's time by which this request's headers are whole
    _idle_deadline: float | None = None    # keep-alive: the loop's time by which the next request begins

    def _arm_header_timer(self) -> None:
        self._header_deadline = self.loop.time() + HEADER_TIMEOUT_S
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        self._header_deadline = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._header_deadline is None:
            return  # the headers came whole; the next request's begin arms it again
        left = self._header_deadline - self.loop.time()
        if left > 0:
            self._header_timer = self.loop.call_later(left, self._header_timeout)
            return
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request headers in %.0f s", HEADER_TIMEOUT_S)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to malformed framing, as JSON like every other answer (or the refusal a
        parser callback raised _Refused for)."""
        if self._refusal is not None:
            return self._refuse(*self._refusal)
        body = json.dumps({"error": f"malformed HTTP request: {msg}"}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        self._cancel_header_timer()
        if self.transport is not None and not self.transport.is_closing():
            log.debug("refused a connection from %s: %s", (self.client or ("?",))[0], message)
            self.transport.write(_refusal_bytes(status, message))
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = getattr(self.config, "max_connections_per_client", 0) or 0
        peer = (self.client or (None,))[0]
        if limit and peer is not None:
            held = sum(1 for other in self.connections if (getattr(other, "client", None) or (None,))[0] == peer)
            if held > limit:
                return self._refuse(503, f"this client holds {limit} connections, the most one client may; "
                                         "reuse them (keep-alive) or retry shortly")
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused and closing: what else arrives is not read
        super().data_received(data)
        if self._fast_body is not None:
            # a predict request whose body is still arriving: the ASGI round reads the rest, with
            # its limits in time (408)
            self._to_cycle()
        if self._in_headers and self._refusal is None:
            # headers still incomplete after this chunk: all of it was header bytes, held by the parser
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, f"request headers are over {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        # uvicorn's, less the ASGI scope: made by _scoped for a request that takes the ASGI way
        self.url, self.expect_100_continue, self.headers, self.scope = b"", False, [], None
        self._in_headers, self._header_bytes, self._header_count = True, 0, 0
        self._arm_header_timer()

    def _scoped(self) -> None:
        """The request's ASGI scope, as uvicorn's on_message_begin makes it, around what was parsed."""
        url, expect, headers = self.url, self.expect_100_continue, self.headers
        HttpToolsProtocol.on_message_begin(self)
        self.url, self.expect_100_continue, self.headers = url, expect, headers
        self.scope["headers"] = headers

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if len(self.url) + len(url) > MAX_HEADER_LINE_BYTES:
            self._refusal = (431, f"the request target is over {MAX_HEADER_LINE_BYTES} bytes")
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if len(name) + len(value) > MAX_HEADER_LINE_BYTES:
            self._refusal = (431, f"header {name[:64].decode('latin-1')!r} is over {MAX_HEADER_LINE_BYTES} bytes")
        elif self._header_count > MAX_HEADERS:
            self._refusal = (431, f"a request may have at most {MAX_HEADERS} headers")
        elif self._header_bytes > MAX_HEADER_BYTES:
            self._refusal = (431, f"request headers are over {MAX_HEADER_BYTES} bytes")
        if self._refusal is not None:
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._in_headers = False
        if self._waiting:
            self.config.kfkit_app.answer_waiting()  # an answer before this request's goes out first
        if self._answers_here():
            self._fast_body, self._fast_keep_alive = [], self.parser.should_keep_alive()
            return
        self._scoped()
        super().on_headers_complete()

    # A POST to the predict route whose body arrives with its headers, while no other prediction runs,
    # is answered by the app's `fast` on the loop's thread without the ASGI round (a task, a scope,
    # two writes): a third of what a one-at-a-time request cost beyond its prediction
    # (benchmarks/serve.py). Such requests read in one turn of the loop wait for its end and are
    # predicted together, in one call of the model. Anything else, or a body still arriving when the
    # bytes read so far are parsed, goes the ASGI way.
    _fast_body: list | None = None
    _fast_keep_alive = True
    _waiting = False  # a request of this connection waits for the end of the loop's turn

    def _answers_here(self) -> bool:
        app = getattr(self.config, "kfkit_app", None)
        if (app is None or self.url != app.predict_target or not app.idle() or self.expect_100_continue
                or self.transport.is_closing()):
            return False
        if self.parser.get_method() != b"POST" or self.parser.get_http_version() != "1.1" or self.parser.should_upgrade():
            return False
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline or self.flow.write_paused:
            return False  # an answer before it is still to be written: answers go out in order
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding" or name.startswith(b"x-forwarded-"):
                return False  # uvicorn's proxy-headers middleware would read these
        return length is not None and length.isdigit() and int(length) <= MAX_BODY_BYTES

    def on_body(self, body: bytes) -> None:
        if self._fast_body is not None:
            self._fast_body.append(body)  # within Content-Length, itself within MAX_BODY_BYTES
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._fast_body is None:
            return super().on_message_complete()
        raw = b"".join(self._fast_body)
        self._fast_body = None
        self._waiting = True
        self.config.kfkit_app.wait_turn(self, self.headers, raw, self._fast_keep_alive)

    def write_answer(self, status: int, body: bytes, extra: list | None, keep_alive: bool) -> None:
        """A waiting request's answer, as uvicorn writes the ASGI app's (one write, not two)."""
        self._waiting = False
        if self.transport.is_closing():
            return
        content = [STATUS_LINE[status]]
        close = not keep_alive
        for name, value in self.server_state.default_headers + [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (extra or []):
            content += [name, b": ", value, b"\r\n"]
            close = close or (name == b"connection" and value == b"close")
        if close and (b"connection", b"close") not in (extra or ()):
            content.append(b"connection: close\r\n")
        content += [b"\r\n", body]
        self.transport.write(b"".join(content))
        self.server_state.total_requests += 1
        if close:
            self.transport.close()
        elif self.cycle is None or self.cycle.response_complete:
            self._idle_from_now()

    def shutdown(self) -> None:
        if self._waiting:
            self.config.kfkit_app.answer_waiting()  # a graceful shutdown answers what was read
        super().shutdown()

    def _to_cycle(self) -> None:
        chunks, self._fast_body = self._fast_body, None
        if self.transport.is_closing():
            return
        self._scoped()
        HttpToolsProtocol.on_headers_complete(self)  # the cycle and its ASGI task, as uvicorn makes them
        if chunks:
            HttpToolsProtocol.on_body(self, b"".join(chunks))

    def _idle_from_now(self) -> None:
        """Keep-alive: the next request begins within timeout_keep_alive seconds, or the connection closes."""
        self._idle_deadline = self.loop.time() + self.timeout_keep_alive
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def _unset_keepalive_if_required(self) -> None:  # uvicorn's, called as a request's bytes arrive
        self._idle_deadline = None

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_deadline is None:
            return  # a request came; the next answer arms it again
        left = self._idle_deadline - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
            return
        super().timeout_keep_alive_handler()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive deadline above."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_from_now()

    def connection_lost(self, exc) -> None:
        self._header_deadline = self._idle_deadline = None
        for timer in (self._header_timer, self.timeout_keep_alive_task):
            if timer is not None:
                timer.cancel()  # a closed connection's protocol is not held until its timers fire
        self._header_timer = self.timeout_keep_alive_task = None
        super().connection_lost(exc)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str):
    raise BadRequest(400, f"{name} is not a JSON number: send finite numbers only")


def parse_body(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, bounded nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the request body is not UTF-8: {exc}") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BadRequest(400, f"the request body nests deeper than {MAX_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"the request body is not valid JSON: {exc}") from exc


_INT64_MIN, _INT64_END = -(2 ** 63), 2 ** 63


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(value: Any, depth: int) -> bool:
    """Whether check_values passes value, decided without building a field name per value (building
    them was most of a 64-instance request's checking time). Only the exact types json.loads makes
    are judged here; anything else, or any doubt, goes to the naming walk that finds the field."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is list:
        items = value
    elif kind is dict:
        for key in value:
            if type(key) is not str or not (key.isascii() or _encodes(key)):
                return False
        items = value.values()
    else:
        items = (value,)
        depth -= 1  # a scalar at the top is judged at its own depth, as the loop below judges a child
    if items and depth >= MAX_DEPTH:
        return False
    for item in items:
        kind = type(item)
        if kind is float:
            if item - item != 0.0:  # inf and nan
                return False
        elif kind is str:
            if not (item.isascii() or _encodes(item)):
                return False
        elif kind is int:
            if not _INT64_MIN <= item < _INT64_END:
                return False
        elif item is None or kind is bool:
            continue
        elif kind is list or kind is dict:
            if not _clean(item, depth + 1):
                return False
        else:
            return False
    return True


def parse_predict_request(raw: bytes, keep_text: bool = True) -> tuple[Any, bytes | None, bool]:
    """parse_body, with the JSON text of the body's "instances" value (ASCII, one line) when the body is
    an object orjson reads as json does (fast_json.loads_fast) and keep_text (the request log may
    record it): the request log splices that text in rather than encoding the instances again. The
    client's own text where the body is {"instances": ...} alone (fast_json.instances_text), else
    the instances encoded. Every other body goes to parse_body, which answers it as before, and the
    log encodes its instances itself. Third, whether orjson read the body: what it reads has every
    number finite (it refuses 1e400), every string valid Unicode (it refuses a lone surrogate) and
    every integer under 19 digits (loads_fast leaves longer runs of digits to json), so within
    int64: check_values has only the nesting left to judge (checked_instances)."""
    body = loads_fast(raw)
    if type(body) is dict:
        instances = body.get("instances")
        if instances is None or not keep_text:
            return body, None, True
        text = instances_text(raw, body)
        return body, dumps_bytes(instances) if text is None else text, True
    return parse_body(raw), None, False


_SCALARS = frozenset({str, int, float, bool, type(None)})


def checked_instances(instances: list, read_by_orjson: bool) -> None:
    """check_values(instances, "instances"), without the walk over every value when orjson read them
    and every instance is an object of scalars (nesting 2, nothing else to judge): the walk was half
    of a 64-instance request's own time beyond its prediction."""
    if read_by_orjson and all(type(instance) is dict for instance in instances) and set(
            map(type, chain.from_iterable(map(dict.values, instances)))) <= _SCALARS:
        return
    check_values(instances, "instances")


def check_values(value: Any, where: str, depth: int = 0) -> None:
    """Every number finite and in range, every string valid Unicode, nesting bounded: else 400 naming it."""
    if _clean(value, depth):
        return
    _check_named(value, where, depth)


def _check_named(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(400, f"{where} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(400, f"{where} is out of the range of a 64-bit float")
    elif isinstance(value, int):
        if not -(2 ** 63) <= value < 2 ** 63:
            raise BadRequest(400, f"{where} is an integer out of the 64-bit range")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(400, f"{where} holds an unpaired UTF-16 surrogate") from exc
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_named(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_named(key, f"{where} key", depth + 1)
            _check_named(item, f"{where}.{key}", depth + 1)


class Metrics:
    """Prometheus text exposition of request counts and latency (no client library needed)."""

    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.turns = 0          # turns of the loop whose waiting requests were predicted together
        self.turn_requests = 0  # the requests those turns answered

    def observe(self, route: str, deployed: str, status: int, seconds: float) -> None:
        key = (route, deployed, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if route == "predict":
            self.latency_sum += seconds
            self.latency_count += 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self) -> str:
        lines = ["# HELP kfkit_requests_total Requests by route, deployed model and status.",
                 "# TYPE kfkit_requests_total counter"]
        for (route, deployed, status), n in sorted(self.requests.items()):
            lines.append(f'kfkit_requests_total{{route="{route}",deployed_model="{deployed}",status="{status}"}} {n}')
        lines += ["# HELP kfkit_predict_latency_seconds Prediction request latency.",
                  "# TYPE kfkit_predict_latency_seconds histogram"]
        for bound, n in zip(LATENCY_BUCKETS, self.buckets):
            lines.append(f'kfkit_predict_latency_seconds_bucket{{le="{bound}"}} {n}')
        lines.append(f'kfkit_predict_latency_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"kfkit_predict_latency_seconds_sum {self.latency_sum}")
        lines.append(f"kfkit_predict_latency_seconds_count {self.latency_count}")
        lines += ["# HELP kfkit_predict_turns_total Turns of the event loop whose prediction requests were "
                  "predicted together, one model call each.",
                  "# TYPE kfkit_predict_turns_total counter", f"kfkit_predict_turns_total {self.turns}",
                  "# HELP kfkit_predict_turn_requests_total Requests answered by those turns.",
                  "# TYPE kfkit_predict_turn_requests_total counter",
                  f"kfkit_predict_turn_requests_total {self.turn_requests}"]
        return "\n".join(lines) + "\n"




# the text after an answer's predictions, by its fields: a deployed model's answers all end alike
_ANSWER_ENDS: dict[tuple, bytes] = {}
ANSWER_ENDS_KEPT = 256  # far more than an endpoint's deployed models; past it, the texts are made anew


def encode_answer(answer: dict, predictions_json: bytes) -> bytes:
    """send_json's body for an answer whose first key is "predictions", with those already encoded.
    The rest (deployedModelId, model, modelVersionId) is the same for every answer of a deployed model:
    where each of its values is a str, its text is made once and kept (made per answer, the encoder's
    round took a fifth of a one-at-a-time request's own time beyond its prediction)."""
    fields = tuple([item for item in answer.items() if item[0] != "predictions"])
    if all([type(value) is str for _, value in fields]):
        end = _ANSWER_ENDS.get(fields)
        if end is None:
            if len(_ANSWER_ENDS) >= ANSWER_ENDS_KEPT:
                _ANSWER_ENDS.clear()
            end = _ANSWER_ENDS[fields] = _answer_end(fields)
    else:
        end = _answer_end(fields)
    return b"".join((b'{"predictions":', predictions_json, end))


def _answer_end(fields: tuple) -> bytes:
    """An answer's text after its predictions' text: its other fields, then the closing brace."""
    rest = ENCODER.encode(dict(fields)).encode()
    return b"," + rest[1:] if len(rest) > 2 else b"}"


async def send_body(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_metrics(request_log) -> str:
    if request_log is None:
        return ""
    return ("# HELP kfkit_request_log_written_at_cap_total Records a request wrote itself: the log's buffer was full.\n"
            "# TYPE kfkit_request_log_written_at_cap_total counter\n"
            f"kfkit_request_log_written_at_cap_total {request_log.written_at_cap}\n"
            "# HELP kfkit_request_log_lost_total Records lost in a failed write (each also logged as an error).\n"
            "# TYPE kfkit_request_log_lost_total counter\n"
            f"kfkit_request_log_lost_total {request_log.lost}\n")


async def send_json(send, status: int, payload: dict, extra: list | None = None) -> None:
    body = ENCODER.encode(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def drain(receive, received: int) -> None:
    """Read and drop the rest of a body that is over the limit (up to DRAIN_LIMIT_BYTES), so a
    client still sending it reads the 413 rather than a connection reset (the kernel resets a
    connection closed with unread data, and the reset can discard the answer in flight)."""
    while received <= DRAIN_LIMIT_BYTES:
        try:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE_S)
        except asyncio.TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def read_body(scope, receive) -> bytes:
    """The whole body, within MAX_BODY_BYTES (413), BODY_TIMEOUT_S between chunks and MIN_BODY_RATE
    on average after BODY_GRACE_S (408)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise BadRequest(400, "Content-Length is not a number") from None
            if length > MAX_BODY_BYTES:
                if length <= DRAIN_LIMIT_BYTES:
                    await drain(receive, 0)
                raise BadRequest(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES} "
                                      "(1.5 MB, as on Vertex AI)")
    chunks, size = [], 0
    started = time.monotonic()
    while True:
        # the body may take BODY_GRACE_S, and then as long as it averages MIN_BODY_RATE
        rate_left = started + max(BODY_GRACE_S, size / MIN_BODY_RATE) - time.monotonic()
        wait = min(BODY_TIMEOUT_S, rate_left)
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), wait)
        except asyncio.TimeoutError:
            if wait < BODY_TIMEOUT_S:
                raise BadRequest(408, f"the request body arrived slower than {MIN_BODY_RATE} bytes/s "
                                      f"({size} bytes in {time.monotonic() - started:.1f} s)") from None
            raise BadRequest(408, f"the request body stalled for {BODY_TIMEOUT_S:.0f} s") from None
        if message["type"] == "http.disconnect":
            raise BadRequest(499, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            if message.get("more_body"):
                await drain(receive, size)
            raise BadRequest(413, f"request body is over {MAX_BODY_BYTES} bytes (1.5 MB, as on Vertex AI)")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def lifespan(receive, send, on_shutdown) -> None:
    """ASGI lifespan: start at once; on shutdown run on_shutdown, then say it is complete."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


def read_token(path: str | None) -> str:
    """A token from a file (a mounted Kubernetes Secret is one), stripped; '' without a path."""
    if not path:
        return ""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"the token in {path} is {len(token)} characters; use at least 16 (e.g. openssl rand -hex 32)")
    return token


def bearer_ok(scope, token: bytes) -> bool:
    """The request's `Authorization: Bearer` is the token (constant-time); always, without a token."""
    if not token:
        return True
    for name, value in scope["headers"]:
        if name == b"authorization" and value.startswith(b"Bearer "):
            return hmac.compare_digest(value[len(b"Bearer "):], token)
    return False


V1_MODELS = "/v1/models"


def kserve_v1_route(path: str, model_name: str) -> tuple[str, str, str] | None:
    """KServe's v1 data plane (kserve/protocol/rest/v1_endpoints.py, KServe 0.21): GET /v1/models,
    GET /v1/models/<name> (ready), POST /v1/models/<name>:predict and :explain. (method, kind, name);
    None for another path."""
    if not model_name:
        return None
    if path == V1_MODELS:
        return "GET", "v1_models", ""
    if not path.startswith(V1_MODELS + "/"):
        return None
    name, _, verb = path[len(V1_MODELS) + 1:].partition(":")
    if name != model_name:
        return "*", "v1_unknown", name
    return {"": ("GET", "v1_ready", name), "predict": ("POST", "predict", name),
            "explain": ("POST", "explain", name)}.get(verb)


def kserve_v1_instances(body: dict) -> dict:
    """A v1 body's rows: "instances", or TensorFlow Serving's "inputs" (rows, or columns of equal length)."""
    if "instances" in body or "inputs" not in body:
        return body
    inputs = body["inputs"]
    if isinstance(inputs, dict) and inputs and all(isinstance(v, list) for v in inputs.values()):
        lengths = {len(v) for v in inputs.values()}
        if len(lengths) != 1:
            raise BadRequest(400, "'inputs' in the columnar format needs lists of one length")
        names = list(inputs)
        inputs = [dict(zip(names, row)) for row in zip(*inputs.values())]
    return {**{k: v for k, v in body.items() if k != "inputs"}, "instances": inputs}


def make_app(server, health_route: str = "/health", predict_route: str = "/predict", workers: int = 4,
             token: str = "", explain_route: str = "/explain", kserve_model: str = "", log_access: bool = True):
    """The ASGI app around a ModelServer; with a token, predictions need it (health and metrics do not).

    kserve_model: the model name KServe's v1 routes answer for (/v1/models/<name>:predict, :explain, ...);
    empty: no v1 routes.

    log_access: a line per request on the kfkit.access logger (at INFO); without it, /metrics and the
    request log still count every request."""
    token_bytes = token.encode()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kfkit-predict")
    metrics = Metrics()
    inflight = [0]
    routes = {health_route: ("GET", "health"), predict_route: ("POST", "predict"), explain_route: ("POST", "explain"),
              "/metrics": ("GET", "metrics")}
    takes_text: dict[Any, tuple[bool, bool]] = {}

    def predict(body, instances_json):
        # looked up per request: a server's predict may be replaced while it serves (tests do)
        method = server.predict
        function = getattr(method, "__func__", method)
        if function not in takes_text:
            parameters = inspect.signature(method).parameters
            takes_text[function] = ("instances_json" in parameters, "log_later" in parameters)
        text, later = takes_text[function]
        if later:  # the request's record is written once its answer is sent (Answer.log)
            return method(body, instances_json, log_later=True)
        return method(body, instances_json) if text else method(body)

    def logged(result) -> None:
        record = getattr(result, "log", None)
        if record is not None:
            record()

    def explain(body, instances_json):
        return server.explain(body)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            # in-flight predictions finish (graceful drain on SIGTERM)
            return await lifespan(receive, send, lambda: pool.shutdown(wait=True))
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route = routes.get(path) or kserve_v1_route(path, kserve_model)
        v1 = route is not None and len(route) == 3
        status, deployed, error = 500, "", ""
        try:
            if route is None:
                status = 404
                await send_json(send, 404, {"error": f"no route {path}; use GET {health_route} or POST {predict_route}"})
            elif route[1] == "v1_unknown":  # KServe's ModelNotFound
                status = 404
                await send_json(send, 404, {"error": f"Model with name {route[2]} does not exist."})
            elif method != route[0] and not (method == "HEAD" and route[0] == "GET"):
                status = 405
                await send_json(send, 405, {"error": f"{method} is not allowed on {path}; use {route[0]}"},
                                [(b"allow", route[0].encode())])
            elif route[1] == "health":
                ready = server.ready()
                status = 200 if ready else 503
                router = server.router
                await send_json(send, status, {
                    "status": "ok" if ready else "not ready: no deployed model", "revision": router.revision,
                    "deployedModels": [{"id": d.id, "traffic": d.traffic} for d in router.deployed]})
            elif route[1] == "v1_models":
                status = 200
                await send_json(send, 200, {"models": [kserve_model]})
            elif route[1] == "v1_ready":  # KServe's model_ready: 200 when ready, else ModelNotReady (503)
                status = 200 if server.ready() else 503
                await send_json(send, status, {"name": kserve_model, "ready": True} if status == 200
                                else {"error": f"Model with name {kserve_model} is not ready."})
            elif route[1] == "metrics":
                body = (metrics.render() + _log_metrics(getattr(server, "request_log", None))).encode()
                status = 200
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain; version=0.0.4"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            else:
                if not bearer_ok(scope, token_bytes):
                    raise BadRequest(401, "this endpoint needs its token: Authorization: Bearer TOKEN")
                body, instances_json = accepted(await read_body(scope, receive), v1)
                handler = explain if route[1] == "explain" else predict
                inflight[0] += 1
                try:
                    if inflight[0] == 1:
                        # alone: predict on the loop's thread (a hop to the pool costs more than it saves)
                        result = handler(body, instances_json)
                    else:
                        result = await asyncio.get_running_loop().run_in_executor(pool, handler, body, instances_json)
                except RequestError as exc:
                    raise BadRequest(400, str(exc)) from exc
                finally:
                    inflight[0] -= 1
                deployed = result.get("deployedModelId", "")
                answer = answer_bytes(result, v1, route[1] == "explain")
                status = 200
                await send_body(send, 200, answer)
                logged(result)
        except BadRequest as exc:
            status, error = exc.status, exc.message
            if exc.status != 499:
                await send_json(send, exc.status, {"error": exc.message}, refusal_headers(exc.status))
        except Exception as exc:  # noqa: BLE001 - the server must outlive any single request
            log.exception("request failed")
            status, error = 500, f"{type(exc).__name__}: {exc}"
            try:
                await send_json(send, 500, {"error": f"prediction failed: {error}"})
            except Exception:  # noqa: BLE001 - the response may have started already
                pass
        finally:
            observe(route[1] if route else "unknown", deployed, status, error, started,
                    scope.get("client"), method, path)

    waiting: list[tuple[Any, list, bytes, bool]] = []  # (protocol, headers, body, keep-alive)

    def wait_turn(protocol, headers: list, raw: bytes, keep_alive: bool) -> None:
        """A request for `fast`, answered at the end of this turn of the loop with the others read in it;
        at once when its connection is the server's only one (no other can be read in this turn)."""
        if not waiting:
            if len(protocol.connections) == 1:
                waiting.append((protocol, headers, raw, keep_alive))
                return answer_waiting()
            asyncio.get_running_loop().call_soon(answer_waiting)
        waiting.append((protocol, headers, raw, keep_alive))

    def answer_waiting() -> None:
        while waiting:
            turn, count = [], 0
            while waiting and (not turn or count + len(waiting[0][2]) <= MAX_BODY_BYTES):
                turn.append(waiting.pop(0))  # a batch of at most one request's worth of bytes
                count += len(turn[-1][2])
            metrics.turns += 1
            metrics.turn_requests += len(turn)
            try:
                answers = app.fast([(headers, raw, protocol.client) for protocol, headers, raw, _ in turn])
            except Exception as exc:  # noqa: BLE001 - a bug here must not leave the turn's clients waiting
                status, _, body, extra = failure(exc)
                answers = [(status, body, extra, lambda: None)] * len(turn)
            for (protocol, _, _, keep_alive), (status, body, extra, _) in zip(turn, answers):
                protocol.write_answer(status, body, extra, keep_alive)
            for *_, done in answers:
                done()  # metrics and the access log, once every answer is written

    def fast(requests: list[tuple[list, bytes, Any]]) -> list[tuple[int, bytes, list | None, Any]]:
        """POSTs to the predict route, each (headers, body, client), their bodies whole, answered
        without the ASGI round, the valid ones predicted together: for each, (status, body, extra
        headers, what to call once the answer is written), the ASGI app's answer to that request."""
        started = time.perf_counter()
        outcomes: list[Any] = [None] * len(requests)
        bodies = []
        for i, (headers, raw, _) in enumerate(requests):
            try:
                if token_bytes and not bearer_ok({"headers": headers}, token_bytes):
                    raise BadRequest(401, "this endpoint needs its token: Authorization: Bearer TOKEN")
                bodies.append((i, *accepted(raw, False)))
            except Exception as exc:  # noqa: BLE001 - answered below, as the ASGI app answers it
                outcomes[i] = exc
        inflight[0] += 1
        try:
            many = getattr(server, "predict_many", None)
            if len(bodies) > 1 and many is not None and getattr(server.predict, "__func__", None) is \
                    getattr(type(server), "predict", None):
                results = many([(body, text) for _, body, text in bodies], log_later=True)
            else:  # one request, or a server whose predict was replaced (tests): each on its own
                results = []
                for _, body, text in bodies:
                    try:
                        results.append(predict(body, text))
                    except Exception as exc:  # noqa: BLE001 - its own answer
                        results.append(exc)
        finally:
            inflight[0] -= 1
        for (i, _, _), result in zip(bodies, results):
            outcomes[i] = result
        answers = []
        for (_, _, client), outcome in zip(requests, outcomes):
            deployed = ""
            if isinstance(outcome, Exception):
                status, error, body, extra = failure(outcome)
            else:
                deployed = outcome.get("deployedModelId", "")
                try:
                    status, error, body, extra = 200, "", answer_bytes(outcome, False, False), None
                except BadRequest as exc:
                    status, error, body, extra = failure(exc)
            answers.append((status, body, extra, functools.partial(
                done, outcome, deployed, status, error, started, client)))
        return answers

    def done(outcome, deployed: str, status: int, error: str, started: float, client) -> None:
        """What follows a fast answer once it is written: its request-log record, metrics, the access log."""
        logged(outcome)
        observe("predict", deployed, status, error, started, client, "POST", predict_route)

    def accepted(raw: bytes, v1: bool) -> tuple[Any, str | None]:
        """A predict or explain body, parsed and checked (BadRequest naming what is wrong), with its
        instances' JSON text when the request log can splice it in."""
        body, instances_json, read_by_orjson = parse_predict_request(raw, logs_text())
        if v1 and isinstance(body, dict) and "instances" not in body and "inputs" in body:
            body, instances_json = kserve_v1_instances(body), None
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            raise BadRequest(400, "the request body must be a JSON object with an 'instances' list")
        checked_instances(body["instances"], read_by_orjson)
        if not server.ready():
            raise BadRequest(503, "no model is deployed on this endpoint yet")
        return body, instances_json

    def logs_text() -> bool:
        """Whether the request log may record a request (its text is then kept for it)."""
        request_log = getattr(server, "request_log", None)
        return request_log is None or (request_log.directory is not None and request_log.sample_rate > 0)

    def answer_bytes(result, v1: bool, explaining: bool) -> bytes:
        try:
            encoded = getattr(result, "predictions_json", None)
            if v1 and explaining:  # KServe's v1 explain: {"predictions": [], "explanations": []}
                return ENCODER.encode({"predictions": result["predictions"],
                                       "explanations": result["explanations"]}).encode()
            if v1 and encoded is not None:  # KServe's v1 predict: {"predictions": []}
                return encode_answer({"predictions": None}, encoded)
            if v1:
                return ENCODER.encode({"predictions": result["predictions"]}).encode()
            if encoded is not None and next(iter(result)) == "predictions":
                return encode_answer(result, encoded)
            return ENCODER.encode(result).encode()
        except ValueError:  # a non-finite model output: never send NaN in JSON
            raise BadRequest(400, "the model's output is not a finite number for these instances "
                                  "(inputs far outside the training data?)") from None

    def observe(route: str, deployed: str, status: int, error: str, started: float, client, method: str,
                path: str) -> None:
        seconds = time.perf_counter() - started
        metrics.observe(route, deployed, status, seconds)
        if log_access and access_log.isEnabledFor(logging.INFO):
            # the record made and handled as Logger.info does, less its search of the stack for the
            # caller's file and line (a seventh of a line's cost), named as logging names it when it
            # does not search: an access line has no caller worth naming
            access_log.handle(access_log.makeRecord(
                access_log.name, logging.INFO, "(unknown file)", 0,
                access_line((client or ("", 0))[0], method, path, status, round(seconds * 1000, 2), deployed, error),
                (), None, "(unknown function)"))

    app.metrics = metrics
    app.fast = fast
    app.wait_turn = wait_turn
    app.answer_waiting = answer_waiting
    app.predict_target = predict_route.encode()
    app.idle = lambda: inflight[0] == 0
    return app


_quoted = json.encoder.encode_basestring_ascii  # a str as json.dumps spells it (ensure_ascii)


def access_line(client, method, path, status, ms, deployed, error) -> str:
    """A request's access-log message: json.dumps of {"client", "method", "path", "status", "ms",
    "deployed_model"[, "error"]}, the same text, spelled here from its known fields (json.dumps of
    the dict was a fifth of a logged line's cost, about 2.6 us). Other types: json.dumps itself."""
    if (type(client) is str and type(method) is str and type(path) is str and type(status) is int
            and type(ms) is float and math.isfinite(ms) and type(deployed) is str and type(error) is str):
        return (f'{{"client": {_quoted(client)}, "method": {_quoted(method)}, "path": {_quoted(path)}, '
                f'"status": {int.__repr__(status)}, "ms": {float.__repr__(ms)}, "deployed_model": {_quoted(deployed)}'
                + (f', "error": {_quoted(error)}}}' if error else "}"))
    return json.dumps({"client": client, "method": method, "path": path, "status": status, "ms": ms,
                       "deployed_model": deployed, **({"error": error} if error else {})})


def failure(exc: Exception) -> tuple[int, str, bytes, list | None]:
    """A lone prediction's failed answer, as the ASGI app answers it: (status, error, body, extra
    headers). A BadRequest or the model's RequestError is the client's (400 naming it), anything
    else a logged 500."""
    if isinstance(exc, RequestError):
        exc = BadRequest(400, str(exc))
    if isinstance(exc, BadRequest):
        return exc.status, exc.message, ENCODER.encode({"error": exc.message}).encode(), refusal_headers(exc.status)
    log.error("request failed", exc_info=exc)
    error = f"{type(exc).__name__}: {exc}"
    return 500, error, ENCODER.encode({"error": f"prediction failed: {error}"}).encode(), None


def refusal_headers(status: int) -> list | None:
    """The headers a refusal adds: 408 and 413 close the connection (the body was not read whole)."""
    if status in (408, 413):
        return [(b"connection", b"close")]
    return [(b"www-authenticate", b"Bearer")] if status == 401 else None
