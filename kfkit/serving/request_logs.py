"""Reading the request logs kfkit's server writes (kfkit.serving.server.RequestLog): one JSON object per
request, one per line, in <dir>/<YYYY-MM-DD>[.<n>].jsonl. The monitor and the canary analysis both
read them here.

`kfkit serve` writes its records a batch at a time, off the request path: a record is on disk at
most SETTLE_S after its timestamp (a clean shutdown writes every one). records() waits out that
bound when a window ends less than SETTLE_S ago, so a window read right after it closes is complete.

Never fails on what a log holds: a torn or non-JSON line, a record that is not an object or has no
numeric timestamp is skipped; the fields of a record are for the reader to judge.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Iterator

SETTLE_S = 0.5  # kfkit.serving.server writes a buffered record within this (it flushes every 0.1 s)


def records(log_dir: str | Path, start: float, end: float, *, settle: bool = True) -> Iterator[dict[str, Any]]:
    """Every logged record with start <= timestamp < end (only the files of those days are opened).
    settle=False where nothing can be in flight (a log written a record at a time)."""
    log_dir = Path(log_dir)
    if settle:
        # records of the window's last SETTLE_S may still be in the server's buffer: wait them out
        wait = min(end, time.time()) + SETTLE_S - time.time()
        if wait > 0:
            time.sleep(wait)
    first_day = dt.datetime.fromtimestamp(start, dt.timezone.utc).date()
    last_day = dt.datetime.fromtimestamp(end, dt.timezone.utc).date()
    for path in sorted(log_dir.glob("*.jsonl*")) if log_dir.exists() else []:
        try:
            day = dt.date.fromisoformat(path.name[:10])
        except ValueError:
            continue
        if not first_day <= day <= last_day:
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError, ValueError):
                    continue  # a record cut short by a crash, or not JSON
                stamp = record.get("timestamp") if isinstance(record, dict) else None
                if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and start <= stamp < end:
                    yield record


def prediction_value(prediction: Any) -> Any:
    """A logged prediction's value: the class of a classifier's answer, the value of a regressor's."""
    if isinstance(prediction, dict):
        return prediction.get("classes", prediction.get("value"))
    return prediction


def payload_items(payloads: Any, key: str) -> list[Any]:
    """The `key` list ("instances" or "predictions") of one Vertex request-response log row's payload
    column: a list of JSON strings (or a single one), each a request or response body. A payload that
    is not JSON, or has no such list, contributes nothing."""
    items: list[Any] = []
    for payload in payloads if isinstance(payloads, list) else [payloads]:
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except (json.JSONDecodeError, RecursionError, ValueError):
                continue
        found = payload.get(key, []) if isinstance(payload, dict) else payload
        if isinstance(found, list):
            items.extend(found)
    return items
