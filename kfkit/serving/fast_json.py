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


def dumps(value: Any) -> str:
    """ENCODER.encode(value): compact, ASCII, ValueError for NaN or an infinity."""
    if orjson is not None:
        try:
            encoded = orjson.dumps(value)
        except TypeError:  # not a JSON type orjson takes, or an integer past 64 bits: json says which
            pass
        else:
            # null also stands for NaN and the infinities: json decides whether it was one
            if encoded.isascii() and b"null" not in encoded:
                return encoded.decode("ascii")
    return ENCODER.encode(value)


def loads_fast(raw: bytes) -> Any:
    """The value json.loads gives for raw, or NotImplemented where only json may answer: anything
    orjson does not read (kfkit's error for it comes from json), or a long run of digits."""
    if orjson is None or _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return NotImplemented
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NotImplemented
