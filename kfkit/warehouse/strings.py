"""String functions DuckDB lacks or answers differently (string_functions): NORMALIZE and
NORMALIZE_AND_CASEFOLD (Unicode normalization forms), TO_CODE_POINTS and CODE_POINTS_TO_STRING, UNICODE
of an empty string (0, where DuckDB gives -1), STRING <-> BYTES casts as UTF-8 (DuckDB reads a
STRING's non-ASCII characters as an error and writes BYTES as \\x escapes), and SPLIT of BYTES (DuckDB's
str_split takes only VARCHAR)."""

from __future__ import annotations

import unicodedata

from sqlglot import exp

from kfkit.errors import QueryError

MACROS = [
    "CREATE OR REPLACE MACRO bq_unicode(s) AS CASE WHEN s = '' THEN 0 ELSE unicode(s) END",
    """CREATE OR REPLACE MACRO bq_to_code_points(x) AS CASE WHEN typeof(x) = 'BLOB'
         THEN bq_byte_values(TRY_CAST(x AS BLOB)) ELSE bq_code_points(TRY_CAST(x AS VARCHAR)) END""",
    """CREATE OR REPLACE MACRO bq_bytes(x) AS CASE WHEN typeof(x) = 'VARCHAR' THEN encode(TRY_CAST(x AS VARCHAR))
         ELSE TRY_CAST(x AS BLOB) END""",
]

_FORMS = ("NFC", "NFKC", "NFD", "NFKD")


# macros that raise: semantics gives each its name_rows twin (semantics.FAIL_MACRO)
RAISING_MACROS = [
    # SPLIT whose value's type the translation could not tell, by its delimiter's: with a STRING one, ARRAY<STRING>
    # for a STRING (one DuckDB expression cannot also answer a BYTES value's ARRAY<BYTES>); with a BYTES one,
    # ARRAY<BYTES> for a BYTES value; any other pairing is an error naming SPLIT
    """CREATE OR REPLACE MACRO bq_split_text(x, d, what) AS CASE
         WHEN typeof(x) = 'BLOB' AND typeof(d) = 'VARCHAR' THEN error(what || ': No matching signature for '
              || 'SPLIT(BYTES, STRING); a BYTES value needs a BYTES delimiter (there is no default for BYTES)')
         WHEN typeof(x) = 'BLOB' THEN error(what || ' of a BYTES value whose type the local warehouse could not tell '
              || 'when translating: CAST the value AS BYTES in the query, or split it on BigQuery')
         WHEN typeof(x) NOT IN ('VARCHAR', 'NULL') OR typeof(d) NOT IN ('VARCHAR', 'NULL')
           THEN error(what || ': No matching signature for SPLIT(' || typeof(x) || ', ' || typeof(d)
                      || '); it takes (STRING, STRING) or (BYTES, BYTES)')
         ELSE str_split(TRY_CAST(x AS VARCHAR), TRY_CAST(d AS VARCHAR)) END""",
    """CREATE OR REPLACE MACRO bq_split_blob(x, d, what) AS CASE
         WHEN typeof(x) NOT IN ('BLOB', 'NULL') THEN error(what || ': No matching signature for SPLIT(' || typeof(x)
              || ', BYTES); it takes (STRING, STRING) or (BYTES, BYTES)')
         ELSE bq_split_bytes(TRY_CAST(x AS BLOB), d) END""",
]


def normalize(text, form, casefold):
    if text is None:
        return None
    text = unicodedata.normalize(form, text)
    return unicodedata.normalize(form, text.casefold()) if casefold else text


def code_points(text):
    return None if text is None else [ord(ch) for ch in text]


def byte_values(data):
    return None if data is None else list(bytes(data))


def code_points_to_string(points):
    """CODE_POINTS_TO_STRING: NULL if the array or any element is NULL; an error for a value that is no
    Unicode scalar value."""
    if points is None or any(p is None for p in points):
        return None
    for point in points:
        if not (0 <= point <= 0x10FFFF) or 0xD800 <= point <= 0xDFFF:
            raise ValueError(f"CODE_POINTS_TO_STRING: invalid code point {point}")
    return "".join(chr(p) for p in points)


def split_bytes(value, delimiter):
    """SPLIT(BYTES, BYTES) (string_functions#split): the pieces between non-overlapping delimiters, left to
    right; an empty delimiter gives each byte; an empty value gives one empty BYTES."""
    if value is None or delimiter is None:
        return None
    value, delimiter = bytes(value), bytes(delimiter)
    if not delimiter:
        return [value[i:i + 1] for i in range(len(value))] or [b""]
    return value.split(delimiter)


def register(con) -> None:
    import duckdb
    from duckdb.sqltypes import DuckDBPyType

    text, flag, blob = DuckDBPyType("VARCHAR"), DuckDBPyType("BOOLEAN"), DuckDBPyType("BLOB")
    points = DuckDBPyType("BIGINT[]")
    for name, function, args, result in (("bq_normalize", normalize, [text, text, flag], text),
                                         ("bq_code_points", code_points, [text], points),
                                         ("bq_byte_values", byte_values, [blob], points),
                                         ("code_points_to_string", code_points_to_string, [points], text),
                                         ("bq_split_bytes", split_bytes, [blob, blob], DuckDBPyType("BLOB[]"))):
        try:
            con.create_function(name, function, args, result, null_handling="special", side_effects=False)
        except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
            pass
    for macro in MACROS:
        con.execute(macro)


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def split(node: exp.Split, value_kind: str | None, what: str) -> exp.Expression:
    """SPLIT(value, delimiter) by the value's type as the translation sees it ('bytes', another, or None)."""
    value, delimiter = node.this, node.expression
    if value_kind == "bytes":
        # sqlglot writes SPLIT(b) with the STRING ',' that only the STRING signature has as its default
        if (isinstance(delimiter, exp.Literal) and delimiter.is_string) or (
                delimiter.type is not None and delimiter.type.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR)):
            raise QueryError(f"{what}: No matching signature for SPLIT(BYTES, STRING): a BYTES value needs a "
                             "BYTES delimiter (there is no default for BYTES)")
        return _call("bq_split_bytes", value, delimiter)
    bytes_delimiter = isinstance(delimiter, exp.ByteString) or (delimiter.type is not None and delimiter.type.this in (
        exp.DataType.Type.BINARY, exp.DataType.Type.VARBINARY))
    if value_kind is None:  # checked where it runs: a BYTES delimiter asks for a BYTES value, any other for a STRING
        return _call("bq_split_blob" if bytes_delimiter else "bq_split_text", value, delimiter, exp.Literal.string(what))
    if bytes_delimiter:
        raise QueryError(f"{what}: No matching signature for SPLIT with a BYTES delimiter: a STRING value needs a "
                         "STRING delimiter, a BYTES value a BYTES one")
    return node


def fix(node: exp.Expression) -> exp.Expression | None:
    kind = type(node).__name__
    if kind == "Normalize":
        form = node.args.get("form")
        name = form.name.upper() if isinstance(form, (exp.Var, exp.Column, exp.Identifier)) else "NFC"
        if name not in _FORMS:
            raise QueryError(f"NORMALIZE: unknown normalization mode {name}; use NFC, NFKC, NFD or NFKD")
        return _call("bq_normalize", node.this, exp.Literal.string(name),
                     exp.Boolean(this=bool(node.args.get("is_casefold"))))
    if kind == "Unicode":
        return _call("bq_unicode", node.this)
    if kind == "ToCodePoints":
        return _call("bq_to_code_points", node.this)
    if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and node.to.is_type("binary", "varbinary"):
        return _call("bq_bytes", node.this)
    return None
