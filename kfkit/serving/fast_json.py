"""orjson where it gives what the standard json module gives, json wherever it might not.

A 64-instance request spends more time in json than in anything but TensorFlow: the standard
encoder spells each float through Python's repr (about 0.5 us a value), and the strict parse walks
the body twice. orjson is several times faster, but it differs at the edges, each handled here by
handing the value to json instead:
  - encoding: NaN and infinities become null (json refuses them: the answer is then refused), text
    comes out as UTF-8 (the request log's lines are ASCII), integers past 64 bits raise;
  - decoding: an integer literal past 64 bits becomes a float (json keeps it an int, which the
    server then refuses), and its errors do not say what kfkit's do (those come from json).
Numbers spelled differently (1e-7 for 1e-07) are the same JSON values.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; the json module answers the same, slower
    orjson = None

# the one standard encoder of the server (answers, records): json.dumps with options builds a new one per call
ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# 19 digits in a row: an integer that may not fit 64 bits (or a long fraction, which json reads the
# same); found by mapping every digit to "0" (a regex took longer than orjson's parse of the body)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def dumps_bytes(value: Any) -> bytes:
    """ENCODER.encode(value) as ASCII bytes (compact, ValueError for NaN or an infinity), orjson's own
    where they are the same: the server's answers and the request log's lines are bytes, and a
    64-instance answer's text is about 12 KB to copy twice."""
    if orjson is not None:
        try:
            encoded = orjson.dumps(value)
        except TypeError:  # not a JSON type orjson takes, or an integer past 64 bits: json says which
            pass
        else:
            # null also stands for NaN and the infinities: json decides whether it was one
            if encoded.isascii() and b"null" not in encoded:
                return encoded
    return ENCODER.encode(value).encode("ascii")


# a body that is {"instances": VALUE} and nothing else: where VALUE begins
_INSTANCES_FIRST = re.compile(rb'[ \t]*\{[ \t]*("instances")[ \t]*:[ \t]*')


def instances_text(raw: bytes, body: Any) -> bytes | None:
    """The text of VALUE in a body `{"instances": VALUE}` (raw, read whole as `body`: a dict of that one
    key), as the client wrote it, when the request log can keep it as it is: ASCII, no
    line break (a record is one line), no backslash (so no key is spelled with an escape) and the
    key written once (a repeated key would take the text up to the last one). None otherwise: the
    log encodes the parsed instances instead. Kept, the client's text saves encoding them again."""
    if type(body) is not dict or len(body) != 1 or "instances" not in body:
        return None
    if not raw.isascii() or b"\n" in raw or b"\r" in raw or b"\\" in raw:
        return None
    first = _INSTANCES_FIRST.match(raw)
    # the key written once: its last spelling is the first one (rfind took half of count's time)
    if first is None or raw.rfind(b'"instances"') != first.start(1):
        return None
    closing = len(raw.rstrip(b" \t")) - 1
    if closing < first.end() or raw[closing] != 0x7D:  # "}"
        return None
    end = closing
    while end > first.end() and raw[end - 1] in (0x20, 0x09):  # the blanks before "}"
        end -= 1
    return raw[first.end():end]


def loads_fast(raw: bytes) -> Any:
    """The value json.loads gives for raw, or NotImplemented where only json may answer: anything
    orjson does not read (kfkit's error for it comes from json), or a long run of digits."""
    if orjson is None or _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return NotImplemented
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NotImplemented
