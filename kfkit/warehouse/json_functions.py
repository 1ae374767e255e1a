"""TO_JSON_STRING as BigQuery writes it, for values DuckDB has turned into JSON.

BigQuery's encoder is ZetaSQL's `JsonFromValue` (zetasql/public/functions/json_format.cc): FLOAT64
as `RoundTripDoubleToString` (printf %.15g, or %.17g when that does not round-trip; NaN and
infinities as the strings "NaN", "Infinity", "-Infinity"), INT64 outside +/-2^53 quoted, NUMERIC
quoted when it has a fraction, TIMESTAMP as `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z` in UTC, DATETIME
likewise without the Z, DATE as `YYYY-MM-DD`, strings escaped by zetasql's JsonEscapeString (control
characters, quote, backslash, U+2028/U+2029; everything else as UTF-8), no spaces. DuckDB's own
to_json differs in each of those, so the local warehouse renders DuckDB's JSON again here, led by
the DuckDB type of the value.
"""

from __future__ import annotations

import decimal
import json
import math
import re
import threading
from functools import lru_cache

import pyarrow as pa

from kfkit.warehouse.result_types import split_fields

MAX_LOSSLESS_INT = 9007199254740992


def double_to_string(value: float) -> str:
    """ZetaSQL's RoundTripDoubleToString (CAST(FLOAT64 AS STRING) in BigQuery)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = "%.15g" % value
    if float(text) != value:
        text = "%.17g" % value
    return text


def _escape(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if code < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, "\\u%04x" % code))
        elif ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code in (0x2028, 0x2029):
            out.append("\\u%04x" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---- DuckDB type strings, e.g. STRUCT(a INTEGER, "b c" DOUBLE[], s STRUCT(x DATE)) -------------
@lru_cache(maxsize=256)
def parse_type(text: str):
    """('struct', [(name, type)...]) | ('list', type) | ('scalar', NAME)."""
    text = text.strip()
    if text.endswith("[]"):
        return ("list", parse_type(text[:-2]))
    if re.match(r"^STRUCT\(", text, re.I):
        fields = []
        for part in split_fields(text[text.index("(") + 1: -1]):
            if part.startswith('"'):
                end = part.index('"', 1)
                while end + 1 < len(part) and part[end + 1] == '"':
                    end = part.index('"', end + 2)
                name, rest = part[1:end].replace('""', '"'), part[end + 1:]
            else:
                name, _, rest = part.partition(" ")
            fields.append((name, parse_type(rest)))
        return ("struct", fields)
    return ("scalar", text.upper())


def _timestamp_text(text: str, zone: bool) -> str:
    # DuckDB writes 'YYYY-MM-DD HH:MM:SS[.ffffff][+00]'; BigQuery narrows the fraction to 0, 3 or 6 digits
    match = re.match(r"^(-?\d+-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"cannot read the timestamp {text!r}")
    day, clock, fraction = match.group(1), match.group(2), (match.group(3) or "").ljust(6, "0")
    if int(fraction or 0) == 0:
        fraction = ""
    elif fraction.endswith("000"):
        fraction = "." + fraction[:3]
    else:
        fraction = "." + fraction
    return f"{day}T{clock}{fraction}{'Z' if zone else ''}"


def render(value, kind) -> str:
    if value is None:
        return "null"
    tag = kind[0]
    if tag == "struct":
        if not kind[1]:
            return "{}"
        return "{" + ",".join(_escape(name) + ":" + render(value.get(name), sub) for name, sub in kind[1]) + "}"
    if tag == "list":
        return "[" + ",".join(render(v, kind[1]) for v in value) + "]"
    name = kind[1]
    if name in ("BOOLEAN",):
        return "true" if value else "false"
    if name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "UBIGINT", "UHUGEINT"):
        number = int(value)
        return f'"{number}"' if abs(number) > MAX_LOSSLESS_INT else str(number)
    if name in ("DOUBLE", "FLOAT"):
        if isinstance(value, str):  # DuckDB writes NaN and infinities as strings
            number = float(value)
        else:
            number = float(value)
        if math.isnan(number):
            return '"NaN"'
        if math.isinf(number):
            return '"Infinity"' if number > 0 else '"-Infinity"'
        return double_to_string(number)
    if name.startswith("DECIMAL"):
        # the digits DuckDB wrote, never through a double (a NUMERIC holds 38 of them)
        text = format(value, "f") if isinstance(value, decimal.Decimal) else str(value)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        quoted = "." in text or abs(int(decimal.Decimal(text))) > MAX_LOSSLESS_INT
        return f'"{text}"' if quoted else text
    if name in ("VARCHAR", "JSON"):
        return _escape(value) if name == "VARCHAR" else _json_value_text(value)
    if name == "DATE":
        return _escape(str(value))
    if name in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return _escape(_timestamp_text(str(value), zone=True))
    if name in ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"):
        return _escape(_timestamp_text(str(value), zone=False))
    raise ValueError(f"TO_JSON_STRING of a {name} value is not supported by the local warehouse")


def to_json_string_udf(json_text: pa.Array, type_text: pa.Array) -> pa.Array:
    """DuckDB UDF: (to_json(x)::VARCHAR, typeof(x)) -> BigQuery's TO_JSON_STRING(x)."""
    out = []
    for text, kind in zip(json_text.to_pylist(), type_text.to_pylist()):
        if text is None:
            out.append("null")
            continue
        out.append(render(json.loads(text, parse_float=decimal.Decimal, object_pairs_hook=_first_wins),
                          parse_type(kind)))
    return pa.array(out, type=pa.string())


# ZetaSQL's RoundTripDoubleToString in DuckDB SQL: printf is C's, fmt's implementation of it, and
# runs vectorized (a third of a second per million values where Python's % takes a second)
DOUBLE_TO_STRING_SQL = """CASE WHEN isnan({x}) THEN 'nan'
     WHEN {x} = 'inf'::DOUBLE THEN 'inf' WHEN {x} = '-inf'::DOUBLE THEN '-inf'
     WHEN printf('%.15g', {x})::DOUBLE = {x} THEN printf('%.15g', {x})
     ELSE printf('%.17g', {x}) END"""
DOUBLE_TO_STRING_MACRO = ("CREATE OR REPLACE MACRO bq_double_to_string(x) AS "
                          + DOUBLE_TO_STRING_SQL.format(x="x"))


def _spelled(values: pa.Array | pa.ChunkedArray, expression: str) -> pa.Array:
    """`expression` (SQL over a column x) of every value, computed by DuckDB (nulls kept)."""
    import duckdb

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    con = getattr(_LOCAL, "con", None)
    if con is None:  # one in-memory database per thread: opening one costs more than spelling 10,000 values
        con = _LOCAL.con = duckdb.connect()
    con.register("_kfkit_values", pa.table({"x": values}))
    try:
        spelled = con.sql(f"SELECT {expression} AS s FROM _kfkit_values").to_arrow_table()
    finally:
        con.unregister("_kfkit_values")
    return spelled.column("s").combine_chunks().cast(pa.string())


def doubles_to_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """double_to_string of every value of a float array (nulls kept), computed by DuckDB."""
    return _spelled(values.cast(pa.float64()), DOUBLE_TO_STRING_SQL.format(x="x"))


# CAST(NUMERIC AS STRING): the digits with no trailing zeros after the point, never an exponent
# (conversion_functions#cast_numeric_as_string: 1.5, 100, -0.000000001)
DECIMAL_TO_STRING_SQL = r"""regexp_replace(regexp_replace(CAST({x} AS VARCHAR), '(\.[0-9]*?)0+$', '\1'), '\.$', '')"""


def decimals_to_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """BigQuery's CAST(NUMERIC AS STRING) of every value of a decimal array (nulls kept), by DuckDB:
    Arrow's own cast keeps the scale's zeros (1.500000000) and writes small values with an exponent (-1E-9)."""
    return _spelled(values, DECIMAL_TO_STRING_SQL.format(x="x"))


_LOCAL = threading.local()


# ---- a JSON value's text -------------------------------------------------------------------------
# BigQuery writes a JSON value (a JSON result column, TO_JSON_STRING of one) as ZetaSQL's JSONValue holds
# it (data-types#json_type; zetasql/public/json_value.cc): nlohmann::json's dump() of what its parser
# kept. Objects are std::maps, so members come out sorted by name, and a duplicate name keeps the first
# value; no whitespace; an integer in [-2^63, 2^64 - 1] is written as it is; any other number is a
# double, which must give back the number as written (CheckNumberRoundtrip: '1.5e0' is fine, 1e400 or
# 0.1234567890123456789 are errors) and is written in nlohmann's shortest form (1.0, 2.5, 1e-05,
# 9.007199254740992e+15); strings escape '"', '\\' and the control characters (\u001f), nothing else.
_INT_RANGE = (-(2 ** 63), 2 ** 64 - 1)


def _nlohmann_escape(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, "\\u%04x" % code))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _nlohmann_double(value: float) -> str:
    """nlohmann::json's dump of a double: the shortest digits that read back, in format_buffer's layout."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    shortest = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    k, n = len(digits), len(digits) + shortest.exponent
    if k <= n <= 15:
        return sign + digits + "0" * (n - k) + ".0"
    if 0 < n <= 15:
        return sign + digits[:n] + "." + digits[n:]
    if -4 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    e = n - 1
    return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _json_number(text: str) -> str:
    if re.fullmatch(r"-?\d+", text) and _INT_RANGE[0] <= int(text) <= _INT_RANGE[1]:
        return str(int(text))
    number = float(text)
    written = _nlohmann_double(number) if math.isfinite(number) else None
    if written is None or decimal.Decimal(written) != decimal.Decimal(text):
        raise ValueError(f"JSON number {text} cannot round-trip through a FLOAT64, as a BigQuery JSON value "
                         "must (data-types#json_type); make it a JSON string, or PARSE_JSON(..., "
                         "wide_number_mode => 'round') in BigQuery")
    if written.endswith(".0") and "e" not in written:
        # 1.0: nlohmann writes "1.0", the encodings table (json_functions#json_encodings) shows 1; refused
        raise ValueError(f"JSON number {text}: a whole FLOAT64 in a JSON value, whose text BigQuery's reference "
                         "leaves open (1 or 1.0); the local warehouse does not guess it: write it as an integer")
    return written


def _first_wins(pairs: list) -> dict:
    kept: dict = {}
    for name, value in pairs:
        kept.setdefault(name, value)
    return kept


def _json_value_text(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (_Number, decimal.Decimal)):
        return _json_number(str(value))
    if isinstance(value, int):
        return _json_number(str(value))
    if isinstance(value, float):
        return _json_number(repr(value))
    if isinstance(value, str):
        return _nlohmann_escape(value)
    if isinstance(value, list):
        return "[" + ",".join(_json_value_text(v) for v in value) + "]"
    return "{" + ",".join(_nlohmann_escape(k) + ":" + _json_value_text(value[k]) for k in sorted(value)) + "}"


def json_text(text: str | None) -> str | None:
    """BigQuery's text of the JSON value DuckDB wrote as `text` (see above); ValueError where BigQuery
    would not have made the value."""
    if text is None:
        return None
    value = json.loads(text, parse_float=_Number, parse_int=_Number, object_pairs_hook=_first_wins)
    return _json_value_text(value)


def json_text_udf(texts: pa.Array) -> pa.Array:
    """DuckDB UDF bq_json_text: a JSON result column's text as BigQuery writes it."""
    return pa.array([json_text(t) for t in texts.to_pylist()], type=pa.string())


# ---- JSON_QUERY, JSON_VALUE and their arrays over JSON text ---------------------------------------
# json_functions: a JSONPath is `$` then `.name`, `."quoted name"`, `['name']` (and `[name]`) or `[index]`;
# any other path is an error. Over a STRING, malformed JSON text gives NULL, and so does a JSON null
# (SQL NULL: "null" is only kept for the JSON type). JSON_VALUE of an object or array is NULL.
_PATH_STEP = re.compile(r"""\.(?P<name>[^.\[\]"'\s]+)|\."(?P<dq>[^"]*)"|\[\s*'(?P<sq>[^']*)'\s*\]"""
                        r"""|\[\s*"(?P<bdq>[^"]*)"\s*\]|\[\s*(?P<index>\d+)\s*\]|\[(?P<bare>[A-Za-z_][\w]*)\]""")


class _Number(str):
    """A JSON number kept as its text (BigQuery hands numbers on as they are written)."""


@lru_cache(maxsize=1024)
def json_path(path: str) -> tuple:
    if not path.startswith("$"):
        raise ValueError(f"invalid JSONPath {path!r}: a JSONPath starts with $")
    steps, position = [], 1
    while position < len(path):
        match = _PATH_STEP.match(path, position)
        if not match:
            raise ValueError(f"invalid JSONPath {path!r} at character {position + 1}")
        if match["index"] is not None:
            steps.append(int(match["index"]))
        else:
            steps.append(next(g for g in (match["name"], match["dq"], match["sq"], match["bdq"], match["bare"])
                              if g is not None))
        position = match.end()
    return tuple(steps)


def _dump(value) -> str:
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return _escape(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return "{" + ",".join(_escape(k) + ":" + _dump(v) for k, v in value.items()) + "}"


_MISSING = object()


def _select(text: str | None, path: str, is_json: bool):
    """The value at `path` in the JSON text, or _MISSING (no such value, malformed text, or a NULL input)."""
    steps = json_path(path)
    if text is None:
        return _MISSING
    try:
        value = json.loads(text, parse_float=_Number, parse_int=_Number,
                           object_pairs_hook=_first_wins if is_json else None)
    except ValueError:
        if is_json:
            raise
        return _MISSING
    for step in steps:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(step, str) and isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def _scalar_text(value) -> str | None:
    if isinstance(value, (dict, list)) or value is None or value is _MISSING:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_scalar(text, path, mode, is_json):
    """JSON_QUERY / JSON_EXTRACT (mode 'query'): the JSON text there; JSON_VALUE / JSON_EXTRACT_SCALAR
    (mode 'value'): the scalar there as a STRING."""
    if path is None:
        return None
    value = _select(text, path, bool(is_json))
    if value is _MISSING:
        return None
    if mode == "value":
        return _scalar_text(value)
    if value is None and not is_json:
        return None
    return _json_value_text(value) if is_json else _dump(value)  # a JSON value's text, as BigQuery writes it


def json_array(text, path, mode, is_json):
    """JSON_QUERY_ARRAY / JSON_EXTRACT_ARRAY (mode 'query'): the elements' JSON texts; JSON_VALUE_ARRAY /
    JSON_EXTRACT_STRING_ARRAY (mode 'value'): the scalar elements as STRINGs, NULL if any is not a scalar."""
    if path is None:
        return None
    value = _select(text, path, bool(is_json))
    if not isinstance(value, list):
        return None
    if mode == "query":
        return [_json_value_text(v) if is_json else _dump(v) for v in value]
    texts = [_scalar_text(v) for v in value]
    if any(t is None and v is not None for t, v in zip(texts, value)):
        return None
    return texts


def register(con) -> None:
    import duckdb
    from duckdb.sqltypes import DuckDBPyType

    text, flag = DuckDBPyType("VARCHAR"), DuckDBPyType("BOOLEAN")
    for name, function, result in (("bq_json_scalar", json_scalar, text),
                                   ("bq_json_array", json_array, DuckDBPyType("VARCHAR[]"))):
        try:
            con.create_function(name, function, [text, text, text, flag], result, null_handling="special",
                                side_effects=False)
        except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
            pass
