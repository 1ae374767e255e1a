"""kfkit's model server: Vertex AI's prediction contract, locally or as a Vertex custom container.

    {"instances": [...], "parameters": {...}}  ->  {"predictions": [...], "deployedModelId": ...}

Honours AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI (Vertex sets them
in a custom serving container). Locally it serves a kfkit endpoint: the versions deployed there and
their traffic split, reloaded when a deploy or rollback changes it. In-flight requests keep the
routing table they started with, so a reload drops none.

Every request is checked against the model's signature (400 naming the field), bodies above
1.5 MB get 413 (Vertex's limit), no input ends the server, and sampled request/response records
are appended to JSON Lines files the monitor reads, rotated and pruned to stay bounded.
The HTTP side (uvicorn, guards, metrics) is kfkit.serving.http_app.
"""

from __future__ import annotations

import atexit
import errno
import functools
import gc
import json
import logging
import math
import os
import random
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfkit.errors import KfkitError
from kfkit.serving.fast_json import ENCODER, dumps_bytes, orjson
from kfkit.serving.http_app import MAX_BODY_BYTES  # noqa: F401 (the limit, re-exported for callers)
from kfkit.serving.model_io import LoadedModel, RequestError, serving_threads
from kfkit.serving.request_logs import SETTLE_S

log = logging.getLogger("kfkit.server")

# Request logs stay bounded (defaults, each a `kfkit serve` flag): a file rotates at this size or
# at midnight UTC, and the oldest files go when all of them pass the total or a file the age.
LOG_MAX_FILE_BYTES = 64 * 1024 * 1024
LOG_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
LOG_MAX_AGE_DAYS = 30
# `kfkit serve` writes its records off the request path: a background thread writes what requests
# left in a buffer every LOG_FLUSH_INTERVAL_S, well inside the SETTLE_S that readers of a recent
# window wait (kfkit.serving.request_logs). A buffer over LOG_MAX_BUFFER_BYTES (the disk has fallen
# behind) is written by the request that finds it full, so memory stays bounded and no record is lost.
LOG_FLUSH_INTERVAL_S = 0.1
LOG_MAX_BUFFER_BYTES = 16 * 1024 * 1024
# A log file's disk blocks are reserved this far ahead of what it holds (fallocate, its size kept):
# appending into reserved blocks skips the filesystem's block reservation on each write (ext4's
# delayed allocation). At 64 instances and concurrency 32 the writer thread's kernel time went from
# 8.6-11.2 to 5.9-8.4 us per record (4 alternating runs). Never past max_file_bytes; a file closed
# before it fills (a new day, a restart) keeps at most this much reserved past its end until pruned.
LOG_RESERVE_BYTES = 4 * 1024 * 1024
assert LOG_FLUSH_INTERVAL_S * 3 <= SETTLE_S


def _flush_at_exit(ref: weakref.ref) -> None:
    request_log = ref()
    if request_log is not None:
        request_log.close()


class Answer(dict):
    """ModelServer.predict's answer, carrying its predictions already encoded as JSON (None when they
    are not JSON, e.g. NaN) so the HTTP layer and the request log encode them once between them."""

    predictions_json: bytes | None = None
    log = None  # with predict(log_later=True): writes the request's record (the caller calls it once sent)


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
    """Appends one JSON line per sampled request to <dir>/<YYYY-MM-DD>[.<n>].jsonl.

    Strict JSON Lines (no NaN, ASCII-escaped), files 0600 in a 0700 directory, rotated by size and
    by day, pruned to a total size and an age. write() puts the line on disk before it returns (the
    log sink acknowledges only what is written); submit() buffers it when the log is `buffered`,
    for a background thread to write in batches. A crash loses at most the line being written, or
    with a buffer what the last LOG_FLUSH_INTERVAL_S left in it; close() (a clean shutdown) writes all.
    """

    def __init__(self, directory: Path | None, endpoint: str, sample_rate: float = 1.0,
                 max_file_bytes: int = LOG_MAX_FILE_BYTES, max_total_bytes: int = LOG_MAX_TOTAL_BYTES,
                 max_age_days: float = LOG_MAX_AGE_DAYS, *, buffered: bool = False,
                 flush_interval_s: float = LOG_FLUSH_INTERVAL_S, max_buffer_bytes: int = LOG_MAX_BUFFER_BYTES):
        self.directory = directory
        self.endpoint = endpoint
        self.sample_rate = sample_rate
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_age_days = max_age_days
        self.buffered = buffered and directory is not None
        self.flush_interval_s = flush_interval_s
        self.max_buffer_bytes = max_buffer_bytes
        self._lock = threading.Lock()  # the file: one writer at a time
        self._random = random.Random()
        self._path: Path | None = None
        self._size = 0
        self._fd: int | None = None
        self._reserved = 0  # the current file's blocks are reserved up to this offset
        self._reserve = _reserve_blocks is not None  # off for good once the filesystem refuses
        self._pending: list[tuple[float, bytes]] = []
        self._pending_bytes = 0
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        self._writer: threading.Thread | None = None
        self._middles: dict[str, tuple[tuple[str, str], bytes]] = {}  # line()'s fixed text per deployed model
        self.written_at_cap = 0  # records a request wrote itself because the buffer was full
        self.lost = 0            # records a failed write lost, each also logged as an error
        if self.buffered:
            self._writer = threading.Thread(target=self._write_behind, daemon=True, name="kfkit-request-log")
            self._writer.start()
            atexit.register(_flush_at_exit, weakref.ref(self))

    def _current(self, now: float) -> Path:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        if self._path is None or not self._path.name.startswith(day) or self._size >= self.max_file_bytes:
            if not self.directory.exists():
                self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            n = 0
            while True:
                candidate = self.directory / (f"{day}.jsonl" if n == 0 else f"{day}.{n}.jsonl")
                size = candidate.stat().st_size if candidate.exists() else 0
                if size < self.max_file_bytes:
                    break
                n += 1
            # opened before anything is replaced: a failed open leaves the log as it was, to retry
            fd = os.open(candidate, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if self._fd is not None:
                os.close(self._fd)
            self._path, self._size, self._fd = candidate, size, fd
            self._reserved = size
            self.prune(now)
        return self._path

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete log files older than max_age_days, then the oldest until the total fits max_total_bytes."""
        now = now or time.time()
        files = sorted((p for p in self.directory.glob("*.jsonl") if p != self._path),
                       key=lambda p: p.stat().st_mtime)
        removed = []
        for path in list(files):
            if now - path.stat().st_mtime > self.max_age_days * 86400:
                path.unlink(missing_ok=True)
                files.remove(path)
                removed.append(path)
        total = sum(p.stat().st_size for p in files) + self._size
        for path in files:
            if total <= self.max_total_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def line(self, deployed: Deployed, instances: list | None, predictions: list | None, *, now: float,
             latency_ms: float | None = None, status: int = 200, error: str = "",
             instances_json: bytes | str | None = None, predictions_json: bytes | str | None = None) -> bytes | None:
        """One record as its line, or None when it holds a value JSON cannot carry. instances_json
        and predictions_json, when given, are those lists already encoded (strict, ASCII JSON without
        line breaks): spliced in rather than encoded again."""
        instances_json, predictions_json = _ascii(instances_json), _ascii(predictions_json)
        if status == 200 and latency_ms is not None and instances_json is not None and predictions_json is not None:
            parts = self._parts(deployed, latency_ms, instances_json, predictions_json, now)
            if parts is not None:
                return b"".join(parts)
        record = {"timestamp": now, "endpoint": self.endpoint, "deployed_model_id": deployed.id,
                  "model": deployed.model, "model_version": deployed.version, "status": status}
        if latency_ms is not None:
            record["latency_ms"] = round(latency_ms, 3)
        try:
            if status == 200:
                # the same bytes json.dumps(record) makes with instances and predictions as its last keys
                head = ENCODER.encode(record)
                text = (f'{head[:-1]},"instances":'
                        f'{ENCODER.encode(instances) if instances_json is None else instances_json.decode()},'
                        f'"predictions":'
                        f'{ENCODER.encode(predictions) if predictions_json is None else predictions_json.decode()}}}\n')
            else:
                record["error"] = error[:500]
                text = ENCODER.encode(record) + "\n"
            return text.encode("ascii")
        except (ValueError, TypeError):
            log.warning("request not logged: it holds a value JSON cannot carry")
            return None

    def _parts(self, deployed: Deployed, latency_ms: float, instances_json: bytes, predictions_json: bytes,
               now: float) -> tuple[bytes, ...] | None:
        """An answered request's line as its pieces (their join is the line, the same bytes line() makes
        for it), its texts not copied: the writer hands the pieces to the kernel as they are. None where
        the numbers need line()'s general way (not finite, not floats)."""
        if not _plain(now, latency_ms):
            return None
        return (self._head(deployed, float.__repr__(now).encode(), float.__repr__(round(latency_ms, 3)).encode()),
                instances_json, PREDICTIONS_KEY, predictions_json, LINE_END)

    def _head(self, deployed: Deployed, now: bytes, latency_ms: bytes) -> bytes:
        """An answered request's line up to its instances, its two numbers already spelled."""
        # the fields of its deployed model encoded once
        middle = self._middles.get(deployed.id)
        if middle is None or middle[0] != (deployed.model, deployed.version):
            fields = ENCODER.encode({"endpoint": self.endpoint, "deployed_model_id": deployed.id,
                                     "model": deployed.model, "model_version": deployed.version, "status": 200})
            middle = self._middles[deployed.id] = ((deployed.model, deployed.version),
                                                   ("," + fields[1:-1] + ',"latency_ms":').encode("ascii"))
        return b'{"timestamp":%b%b%b,"instances":' % (now, middle[1], latency_ms)

    def _sampled(self) -> bool:
        return self.directory is not None and (self.sample_rate >= 1.0 or self._random.random() < self.sample_rate)

    def write(self, deployed: Deployed, instances: list | None, predictions: list | None, *,
              latency_ms: float | None = None, status: int = 200, error: str = "") -> bool:
        """One request: answered (instances and predictions), or failed (its status and error, no payload:
        the monitor reads only what was answered). The canary analysis reads status and latency.
        Whether a line was written (False: not sampled, or not JSON); a failed write raises."""
        if not self._sampled():
            return False
        now = time.time()
        line = self.line(deployed, instances, predictions, now=now, latency_ms=latency_ms, status=status, error=error)
        if line is None:
            return False
        self._write_lines([(now, line)])
        return True

    def submit(self, deployed: Deployed, instances: list | None, predictions: list | None, *,
               latency_ms: float | None = None, status: int = 200, error: str = "",
               instances_json: bytes | str | None = None, predictions_json: bytes | str | None = None) -> bool:
        """write(), from a request: into the buffer when the log is buffered. At the buffer's cap the
        request writes the buffer and its own record itself (and counts in written_at_cap): slower
        for that request, never a record lost; a failed write raises, as write() does."""
        if not self._sampled():
            return False
        now = time.time()
        if (self.buffered and status == 200 and latency_ms is not None and instances_json is not None
                and predictions_json is not None):
            # an answered request's record, its JSON already encoded: the writer thread makes its line,
            # a batch of them at a time (made one by one between predictions, each took 3x as long,
            # with the model's call between them evicting what the last one had in the CPU's caches)
            instances_json, predictions_json = _ascii(instances_json), _ascii(predictions_json)
            line: bytes | tuple = (deployed, latency_ms, instances_json, predictions_json,
                                   len(instances_json) + len(predictions_json) + RECORD_ROOM)
        else:
            line = self.line(deployed, instances, predictions, now=now, latency_ms=latency_ms, status=status,
                             error=error, instances_json=instances_json, predictions_json=predictions_json)
            if line is None:
                return False
        if not self.buffered:
            self._write_lines([(now, line)])
            return True
        size = _size(line)
        with self._pending_lock:
            if self._closed.is_set():  # a request answered after close(): written at once, as unbuffered
                batch = []
            elif self._pending_bytes + size <= self.max_buffer_bytes:
                self._pending.append((now, line))
                self._pending_bytes += size
                return True
            else:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                self.written_at_cap += 1
        if not batch:
            self._write_lines([(now, line)])
            return True
        if self.written_at_cap == 1 or self.written_at_cap % 1000 == 0:
            log.warning("request log buffer full (%d bytes): requests are writing their own records (%d so far); "
                        "the disk under %s is slower than the traffic", self.max_buffer_bytes, self.written_at_cap,
                        self.directory)
        self._write_lines(batch + [(now, line)])
        return True

    def flush(self) -> None:
        """Write what the buffer holds now: when it returns, every record submitted before it is in the
        file, also those a flush running at the same time (the writer thread's) had taken. A write that
        fails puts the records back (a later flush, or the request that finds the buffer full, tries
        again) unless part of them reached the file: those are counted in `lost` and logged."""
        with self._flush_lock:  # a second flush waits for the first's batch to be written
            self._flush()

    def _flush(self) -> None:
        with self._pending_lock:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
        if not batch:
            return
        try:
            self._write_lines(batch)
        except _PartialWrite as exc:
            self.lost += exc.lost
            log.error("request log: %d records lost in a short write to %s (disk full?)", exc.lost, self._path)
        except OSError as exc:
            with self._pending_lock:
                self._pending[:0] = batch
                self._pending_bytes += sum(_size(line) for _, line in batch)
            if self._closed.is_set():
                raise
            log.error("request log: could not write %d records to %s (%s); kept to retry", len(batch),
                      self.directory, exc)

    def _write_behind(self) -> None:
        name_os_thread(WRITER_THREAD)
        lower_os_thread_priority(WRITER_NICE)
        while not self._closed.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive one bad batch; flush logged it
                log.exception("request log writer")

    def _write_lines(self, entries: list[tuple[float, bytes | tuple]]) -> None:
        """Lines to the files they belong to: a file takes lines while it is under max_file_bytes (so it
        passes the size by at most one line, as line-by-line writing does) and of its own day."""
        with self._lock:
            made = self._made(entries)
            chunk: list[tuple[bytes, ...]] = []
            chunk_bytes, chunk_day, done = 0, None, 0
            for stamp, parts, size in made:
                day = int(stamp // 86400)
                if chunk and (day != chunk_day or self._size + chunk_bytes >= self.max_file_bytes):
                    self._write_chunk(chunk, chunk_bytes, len(made) - done)
                    done += len(chunk)
                    chunk, chunk_bytes = [], 0
                if not chunk:
                    self._current(stamp)
                    chunk_day = day
                chunk.append(parts)
                chunk_bytes += size
            if chunk:
                self._write_chunk(chunk, chunk_bytes, len(made) - done)

    def _made(self, entries: list[tuple[float, bytes | tuple]]) -> list[tuple[float, tuple[bytes, ...], int]]:
        """Each entry's line as its pieces, with its size: submit() left an answered request's record as
        its parts (deployed model, latency, texts), a line made otherwise is one piece. The numbers of
        a batch's records are spelled together (_spelled): one at a time, repr took a third of the
        writer's Python."""
        plain = [type(line) is tuple and _plain(stamp, line[1]) for stamp, line in entries]
        numbers = []
        for (stamp, line), fast in zip(entries, plain):
            if fast:
                numbers += (stamp, round(line[1], 3))
        spelled = iter(_spelled(numbers))
        made = []
        for (stamp, line), fast in zip(entries, plain):
            if fast:
                deployed, _, instances_json, predictions_json, _ = line  # bytes: submit() made them so
                head = self._head(deployed, next(spelled), next(spelled))
                made.append((stamp, (head, instances_json, PREDICTIONS_KEY, predictions_json, LINE_END),
                             len(head) + len(instances_json) + len(predictions_json) + _JOINS_BYTES))
            elif type(line) is tuple:
                deployed, latency_ms, instances_json, predictions_json, _ = line
                made_line = self.line(deployed, None, None, now=stamp, latency_ms=latency_ms,
                                      instances_json=instances_json, predictions_json=predictions_json)
                if made_line is not None:  # None not for JSON texts already encoded; as submit() would drop it
                    made.append((stamp, (made_line,), len(made_line)))
            else:
                made.append((stamp, (line,), len(line)))
        return made

    def _write_chunk(self, chunk: list[tuple[bytes, ...]], size: int, left: int) -> None:
        """A chunk's lines appended to the O_APPEND file by os.writev, whole lines a call, WRITEV_PARTS
        pieces at most: the texts go to the kernel as they are, not copied into one buffer first (at
        64 instances a second a copy of about 17 KB per request). A call that fails before any line
        is written raises as it is (the caller keeps the records to retry); a short call, or one
        failing after lines were written, raises _PartialWrite counting the lines not written whole."""
        if self._reserve and self._size + size > self._reserved:
            self._reserve_ahead(size)
        written_lines, written_bytes = 0, 0
        start = 0
        while start < len(chunk):
            end, pieces = start, 0
            while end < len(chunk) and (end == start or pieces + len(chunk[end]) <= WRITEV_PARTS):
                pieces += len(chunk[end])
                end += 1
            group = [piece for parts in chunk[start:end] for piece in parts]
            expected = sum(map(len, group))
            try:
                written = os.writev(self._fd, group)
            except OSError:
                if written_lines == 0:
                    raise
                raise _PartialWrite(f"wrote {written_bytes} of {size} bytes of request records (disk full?)",
                                    left - written_lines) from None
            self._size += written
            written_bytes += written
            if written != expected:
                raise _PartialWrite(f"wrote {written_bytes} of {size} bytes of request records (disk full?)",
                                    left - written_lines)
            written_lines += end - start
            start = end

    def _reserve_ahead(self, size: int) -> None:
        """Reserve the current file's blocks for the next `size` bytes and up to LOG_RESERVE_BYTES
        beyond (never past max_file_bytes), its size and content unchanged. A filesystem that cannot
        (tmpfs before Linux 3.5, NFS, not Linux) turns reserving off; any other refusal (a full disk)
        only skips it: the write that follows says what is wrong."""
        length = max(size, min(LOG_RESERVE_BYTES, self.max_file_bytes - self._size))
        error = _reserve_blocks(self._fd, self._size, length)
        if error == 0:
            self._reserved = self._size + length
        elif error in _CANNOT_RESERVE:
            self._reserve = False

    def close(self) -> None:
        """Write what is buffered, stop the writer, close the file: every record submitted before is on disk."""
        self._closed.set()
        if self._writer is not None and self._writer is not threading.current_thread():
            self._writer.join()
        self.flush()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._path = None, None  # a record written after this reopens the file


# the writer thread's name where the OS shows threads (top -H, /proc/PID/task/TID/comm): what it costs
# the server is read there (benchmarks/serve.py)
WRITER_THREAD = "kfkit-log"


# The writer thread yields the CPU to the threads answering requests: its nice value is this much
# above the server's (Linux, where a thread has its own). On the 2 busy cores of benchmarks/serve.py
# the request log's cost in CPU per request went from +11.7% to +8.8% on average over 9 runs (30-80
# closely paired rounds each, at 1, 8 or 64 instances and concurrency 8 or 32): lower in 7 of them,
# the difference's 95% interval -5.2 to -0.7 points; what fell was the requests' own thread. A
# thread at nice +10 still gets about a tenth of a CPU that nice-0 threads keep busy (the kernel's
# weights 110 and 1024), far more than the writer needs (under 5%), so records still reach the disk
# within the flush bound; a buffer it fell behind on is written by the requests at its cap, as before.
WRITER_NICE = 10


def lower_os_thread_priority(by: int) -> bool:
    """Raise the calling thread's nice value by `by` (up to 19): Linux only, else nothing. Lowering a
    thread's own priority needs no privilege; whether it was done."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS names processes, not threads
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (OSError, AttributeError):
        return False
    return True


def name_os_thread(name: str) -> bool:
    """Give the calling thread `name` (15 bytes at most) as the OS knows it; Linux only, else nothing."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0) == 0  # PR_SET_NAME
    except (OSError, AttributeError):
        return False


def _libc_fallocate():
    """fallocate(2) with FALLOC_FL_KEEP_SIZE as reserve(fd, offset, length) -> errno (0: reserved),
    or None where the C library has none (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = getattr(libc, "fallocate64", None) or libc.fallocate  # the one taking a 64-bit offset
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate.restype = ctypes.c_int

    def reserve(fd: int, offset: int, length: int) -> int:
        return 0 if fallocate(fd, 1, offset, length) == 0 else ctypes.get_errno()  # 1: FALLOC_FL_KEEP_SIZE

    return reserve


_reserve_blocks = _libc_fallocate()
_CANNOT_RESERVE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV, errno.EPERM})


# pieces per os.writev call: within every system's IOV_MAX (Linux: 1024)
WRITEV_PARTS = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)


# a record's bytes besides its instances and predictions (timestamp, endpoint, ids, latency), to
# count what submit() buffers as parts against max_buffer_bytes
RECORD_ROOM = 512
# an answered record's line, as pieces: head, instances, PREDICTIONS_KEY, predictions, LINE_END
PREDICTIONS_KEY, LINE_END = b',"predictions":', b"}\n"
_JOINS_BYTES = len(PREDICTIONS_KEY) + len(LINE_END)


def _plain(now: Any, latency_ms: Any) -> bool:
    """A record's two numbers are finite floats: its line is made the fast way (_parts, _made), else
    line()'s general way."""
    return type(now) is float and math.isfinite(now) and type(latency_ms) is float and math.isfinite(latency_ms)


def _spelled(numbers: list[float]) -> list[bytes]:
    """Each finite float as json spells it (float.__repr__), all of them in one orjson call where every
    one is at least 1e-4 in size, where orjson spells each as repr does (below, it writes 0.00001
    for repr's 1e-05; tests/test_request_log_buffered.py compares the two)."""
    if orjson is not None and numbers and all(abs(x) >= 1e-4 for x in numbers):
        return orjson.dumps(numbers)[1:-1].split(b",")
    return [float.__repr__(x).encode() for x in numbers]


def _ascii(text: bytes | str | None) -> bytes | None:
    """A record's JSON text as the bytes a line is made of (callers may hand it as str)."""
    return text.encode("ascii") if type(text) is str else text


def _size(line: bytes | tuple) -> int:
    return line[-1] if type(line) is tuple else len(line)


class _PartialWrite(OSError):
    def __init__(self, message: str, lost: int):
        super().__init__(message)
        self.lost = lost


class ModelServer:
    def __init__(self, *, endpoint: str | None = None, local_root: str | None = None, model_dir: str | None = None,
                 log_sample_rate: float = 1.0, reload_interval: float = 0.5, seed: int | None = None,
                 log_limits: dict[str, float] | None = None, log_buffered: bool = False):
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
            from kfkit.serving.endpoints import LocalEndpoints

            root = resolve_root(local_root)
            self.state_path = LocalEndpoints(root).path(self.endpoint)
            if not self.state_path.exists():
                raise KfkitError(f"no local endpoint {self.endpoint!r} under {root}: deploy a model first "
                                 "(the training pipeline's deploy step) or pass --model-dir")
        log_dir = (root / "request_logs" / self.endpoint) if root else None
        self.request_log = RequestLog(log_dir, self.endpoint, log_sample_rate, buffered=log_buffered,
                                      **(log_limits or {}))
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
        """Reload the endpoint whenever its state file changes, until stop()."""
        while not self._stop.wait(self.reload_interval):
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Switch to the endpoint's new state if its file changed; models load before the switch.
        A state that cannot be loaded leaves the old one serving. Returns whether it switched."""
        try:
            if not self.state_path or self.state_path.stat().st_mtime_ns == self._mtime:
                return False
            router = self._build_router()
        except Exception:  # noqa: BLE001 - a bad state file must not stop serving the old one
            log.exception("could not reload endpoint %s; still serving revision %d", self.endpoint,
                          self.router.revision)
            return False
        self.router = router
        log.info("endpoint %s reloaded: revision %d, %s", self.endpoint, router.revision,
                 ", ".join(f"{d.id} {d.traffic}%" for d in router.deployed))
        return True

    def ready(self) -> bool:
        """A model is loaded and takes traffic."""
        return bool(self.router.deployed)

    def predict(self, body: dict[str, Any], instances_json: bytes | str | None = None, *,
                log_later: bool = False) -> Answer:
        """instances_json: body["instances"] as the client's own JSON text, when the HTTP layer has it
        (strict, ASCII, no line breaks), for the request log to keep rather than encode again.
        log_later: the answer's request-log record is left to its caller (Answer.log), to write once
        the answer is sent."""
        deployed = self._route(body, self.router)  # one table for the whole request, even if a reload happens now
        instances = body["instances"]
        started = time.perf_counter()
        try:
            predictions = deployed.loaded.predict_instances(instances)
        except Exception as exc:
            self._failed(deployed, exc, started)
            raise
        return self._answer(deployed, instances, predictions, started, instances_json, log_later)

    def predict_many(self, requests: list[tuple[dict[str, Any], str | None]], *,
                     log_later: bool = False) -> list[Answer | Exception]:
        """predict() of each (body, instances_json), requests routed to the same model predicted in
        one call of it (concurrent requests, batched): each request's Answer, or the error predict()
        would raise for it, with its own record in the request log."""
        results: list[Any] = [None] * len(requests)
        router = self.router
        groups: dict[int, tuple[Deployed, list[int]]] = {}
        for i, (body, _) in enumerate(requests):
            try:
                deployed = self._route(body, router)
            except RequestError as exc:
                results[i] = exc
            else:
                groups.setdefault(id(deployed), (deployed, []))[1].append(i)
        for deployed, members in groups.values():
            started = time.perf_counter()
            outcomes = deployed.loaded.predict_instance_lists([requests[i][0]["instances"] for i in members])
            for i, outcome in zip(members, outcomes):
                if isinstance(outcome, Exception):
                    self._failed(deployed, outcome, started)
                    results[i] = outcome
                else:
                    results[i] = self._answer(deployed, requests[i][0]["instances"], outcome, started, requests[i][1],
                                              log_later)
        return results

    @staticmethod
    def _route(body: Any, router: Router) -> Deployed:
        """The deployed model a request body goes to, or the RequestError it gets."""
        if not isinstance(body, dict) or "instances" not in body:
            raise RequestError("the request body must be a JSON object with an 'instances' list")
        if not router.deployed:
            raise RequestError("no model is deployed on this endpoint")
        return router.pick()

    def _failed(self, deployed: Deployed, exc: Exception, started: float) -> None:
        # a failure counts against the version that failed: the canary analysis compares error rates
        status = 400 if isinstance(exc, RequestError) else 500
        self.request_log.submit(deployed, None, None, latency_ms=(time.perf_counter() - started) * 1000,
                                status=status, error=str(exc))

    def _answer(self, deployed: Deployed, instances: list, predictions: list, started: float,
                instances_json: bytes | str | None, log_later: bool = False) -> Answer:
        latency_ms = (time.perf_counter() - started) * 1000
        answer = Answer(predictions=predictions, deployedModelId=deployed.id, model=deployed.model,
                        modelVersionId=deployed.version)
        try:
            answer.predictions_json = dumps_bytes(predictions)
        except (ValueError, TypeError):
            # not JSON (NaN): the HTTP layer refuses the answer, and there is no record to write
            log.warning("request not logged: it holds a value JSON cannot carry")
        else:
            record = functools.partial(self.request_log.submit, deployed, instances, predictions, latency_ms=latency_ms,
                                       instances_json=instances_json, predictions_json=answer.predictions_json)
            if log_later:
                answer.log = record
            else:
                record()
        return answer

    def explain(self, body: dict[str, Any]) -> dict[str, Any]:
        """Vertex's explain contract (kfkit.serving.explain). Not written to the request log: the monitor and
        the canary analysis read it as traffic, and an explanation is a diagnostic, not a prediction served."""
        from kfkit.serving.explain import explain_instances

        if not isinstance(body, dict) or "instances" not in body:
            raise RequestError("the request body must be a JSON object with an 'instances' list")
        router = self.router
        if not router.deployed:
            raise RequestError("no model is deployed on this endpoint")
        deployed = router.pick()
        return {**explain_instances(deployed.loaded, body), "deployedModelId": deployed.id, "model": deployed.model,
                "modelVersionId": deployed.version}

    def stop(self) -> None:
        self._stop.set()
        self.request_log.close()


def explain_route_for(predict_route: str) -> str:
    """Vertex's `...:predict` route has its `...:explain` sibling; any other predict route gets /explain."""
    return predict_route[:-len(":predict")] + ":explain" if predict_route.endswith(":predict") else "/explain"


def make_http_server(*, endpoint: str | None = None, local_root: str | None = None, model_dir: str | None = None,
                     host: str = "127.0.0.1", port: int | None = None, log_sample_rate: float = 1.0,
                     ready: threading.Event | None = None, max_connections: int = 2048, workers: int = 4,
                     log_limits: dict[str, float] | None = None, token_file: str | None = None,
                     max_connections_per_client: int = 0, model_name: str | None = None, intra_op_threads: int = 1,
                     freeze_heap: bool = False, log_access: bool = True):
    """The uvicorn server of `kfkit serve` (call .run(); set .should_exit to stop and drain).

    max_connections_per_client is off by default: on Vertex AI and KServe every request arrives
    through the platform's proxy, one address for all clients.

    model_name: the name KServe's v1 routes answer for (/v1/models/<name>:predict and :explain; KServe
    sends its InferenceService's name); default: the endpoint's name.

    intra_op_threads: TensorFlow's threads within one operation (model_io.serving_threads); 0 leaves
    TensorFlow's choice.

    log_access: a JSON line per request on the kfkit.access logger (`serve --no-access-log`: none).
    At one instance a request and concurrency 32 the line (Python's logging, written to stderr) added
    29% to the server's CPU per request; off, 29% more requests a second (benchmarks/serve.py,
    closely paired).

    freeze_heap: once the model is loaded, exempt everything alive then (TensorFlow, the model) from
    Python's garbage collector (gc.freeze; `serve` sets it, the process being the server's own). Each
    full collection walked that whole heap while requests waited: at 64 instances and concurrency 32
    p99 was about 160 ms with it and 25 ms without (benchmarks/serve.py)."""
    import uvicorn

    from kfkit.serving.http_app import GuardedProtocol, make_app, read_token

    model_dir = model_dir or os.environ.get("AIP_STORAGE_URI") or None
    port = int(port if port is not None else os.environ.get("AIP_HTTP_PORT", 8080))
    health_route = os.environ.get("AIP_HEALTH_ROUTE", "/health")
    predict_route = os.environ.get("AIP_PREDICT_ROUTE", "/predict")
    explain_route = explain_route_for(predict_route)
    if not serving_threads(intra_op_threads) and intra_op_threads > 0:
        log.debug("TensorFlow already ran in this process: its threads stay as they were")
    server = ModelServer(endpoint=endpoint, local_root=local_root, model_dir=model_dir,
                         log_sample_rate=log_sample_rate, log_limits=log_limits, log_buffered=True)
    app = make_app(server, health_route, predict_route, workers=workers, token=read_token(token_file),
                   explain_route=explain_route, kserve_model=model_name or server.endpoint, log_access=log_access)
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(app, host=host, port=port, http=GuardedProtocol, loop=loop, lifespan="on",
                            limit_concurrency=max_connections, backlog=2048, timeout_keep_alive=5,
                            timeout_graceful_shutdown=25, access_log=False, log_level="warning",
                            server_header=False, date_header=False)
    config.max_connections_per_client = max_connections_per_client
    config.kfkit_app = app  # GuardedProtocol answers a lone prediction itself (app.fast)

    class _Server(uvicorn.Server):
        model_server = server

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.should_exit:
                return
            if freeze_heap:
                gc.collect()
                gc.freeze()
            threading.Thread(target=server.watch, daemon=True, name="kfkit-reload").start()
            bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            self.bound_port = bound
            log.info("serving %s on http://%s:%d%s (health %s)", model_dir or f"endpoint {server.endpoint}", host,
                     bound, predict_route, health_route)
            print(f"kfkit serve: listening on http://{host}:{bound}{predict_route}", flush=True)
            if ready:
                ready.set()

        async def shutdown(self, sockets=None):
            await super().shutdown(sockets)
            server.stop()

    return _Server(config)


def serve(**kwargs) -> None:
    """Run the server until SIGINT/SIGTERM, then drain in-flight requests. Follows Vertex's AIP_* variables."""
    try:
        make_http_server(**kwargs, freeze_heap=True).run()
    except KeyboardInterrupt:
        pass
