"""Arguments of a type BigQuery rejects, which DuckDB would cast and answer.

BigQuery has no implicit cast from INT64 or BOOL to STRING, from STRING to a number, or between BOOL
and INT64 (conversion_rules#coercion; a STRING literal only coerces to a DATE, DATETIME, TIME or
TIMESTAMP). DuckDB casts a literal freely and an INTEGER to BOOLEAN or VARCHAR, so `LENGTH(123)`,
`CONCAT('a', 1)`, `IF(1, ...)`, `NOT n`, `id = '123'` and `1 + '1'` would each get an answer where
BigQuery reports "No matching signature". A literal of the wrong type is refused at translation, with
the construct and its line; a column is checked by a macro whose typeof() test DuckDB folds away when
the type is right (no cost then), and that raises an error naming the construct when it is not.
"""

from __future__ import annotations

import re

from sqlglot import exp

from kfkit.errors import QueryError

_TEXT = "('VARCHAR', 'BLOB', 'NULL')"
_BOOL = "('BOOLEAN', 'NULL')"
_NUMBER = ("('BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT', 'HUGEINT', 'DOUBLE', 'FLOAT', 'NULL', 'DATE', "
           "'TIMESTAMP', 'TIMESTAMP WITH TIME ZONE', 'INTERVAL', 'TIME')")

MACROS = [
    f"""CREATE OR REPLACE MACRO bq_arg_text(x, what) AS CASE WHEN typeof(x) IN {_TEXT} THEN x
         ELSE error(what || ' takes a STRING or BYTES, not ' || typeof(x) || ' (BigQuery has no implicit cast to '
                    || 'STRING; write CAST(... AS STRING))') END""",
    f"""CREATE OR REPLACE MACRO bq_arg_bool(x, what) AS CASE WHEN typeof(x) IN {_BOOL} THEN x
         ELSE error(what || ' takes a BOOL, not ' || typeof(x) || ' (BigQuery has no implicit cast to BOOL; '
                    || 'write a comparison such as x != 0)') END""",
    f"""CREATE OR REPLACE MACRO bq_arg_number(x, what) AS CASE WHEN typeof(x) IN {_NUMBER} OR typeof(x) LIKE 'DECIMAL%'
         THEN x ELSE error(what || ' takes a number, not ' || typeof(x)) END""",
    # a STRING literal compared with a value: BigQuery coerces it to a DATE, DATETIME, TIME or TIMESTAMP only
    """CREATE OR REPLACE MACRO bq_text_comparable(x, what) AS CASE
         WHEN typeof(x) IN ('VARCHAR', 'NULL', 'DATE', 'TIMESTAMP', 'TIMESTAMP WITH TIME ZONE', 'TIME') THEN x
         ELSE error(what || ': a STRING compared with ' || typeof(x) || ' (BigQuery does not convert a STRING to a '
                    || 'number or BOOL; write the value without quotes or CAST it)') END""",
    """CREATE OR REPLACE MACRO bq_bool_comparable(x, what) AS CASE WHEN typeof(x) IN ('BOOLEAN', 'NULL') THEN x
         ELSE error(what || ': a BOOL compared with ' || typeof(x)) END""",
]

_BOOLEAN_NODES = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.Is, exp.In, exp.Between, exp.Like,
                  exp.ILike, exp.RegexpLike, exp.Boolean, exp.Not, exp.And, exp.Or, exp.Exists, exp.NullSafeEQ,
                  exp.NullSafeNEQ)
_TEXT_NODES = (exp.DPipe, exp.Concat, exp.Upper, exp.Lower, exp.Substring, exp.Trim)
_MATH = tuple(getattr(exp, name) for name in (
    "Sqrt", "Ln", "Log", "Exp", "Pow", "Abs", "Sign", "Round", "Ceil", "Floor", "Trunc", "Cos", "Sin", "Tan",
    "Acos", "Asin", "Atan", "Atan2", "Cosh", "Sinh", "Tanh", "Acosh", "Asinh", "Atanh", "Cot", "Cbrt")
    if hasattr(exp, name))
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Mod)
# what may be checked at run time without copying a large expression: a column, a field, an element
_CHECKABLE = (exp.Column, exp.Dot, exp.Bracket)


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _literal_kind(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Cast):  # the rewrite's CAST(1 AS BIGINT) of a literal; any other CAST is typed
        if not (isinstance(node.this, exp.Literal) and not node.this.is_string and node.to.is_type("bigint", "double")):
            return None
        node = node.this
    if isinstance(node, exp.Neg):
        node = node.this
    if isinstance(node, exp.Literal):
        return "STRING" if node.is_string else ("FLOAT64" if any(c in node.this for c in ".eE") else "INT64")
    if isinstance(node, exp.Boolean):
        return "BOOL"
    return None


def _unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _bool_operand(node: exp.Expression, what: str, where) -> exp.Expression | None:
    inner = _unwrap(node)
    kind = _literal_kind(inner)
    if kind is not None and kind != "BOOL":
        raise QueryError(f"{where(what)}: No matching signature: a BOOL is required, not the {kind} "
                         f"{inner.sql(dialect='bigquery')}")
    if isinstance(inner, _CHECKABLE):
        return _call("bq_arg_bool", node.copy(), exp.Literal.string(what))
    return None


def _text_operand(node: exp.Expression, what: str, where) -> exp.Expression | None:
    inner = _unwrap(node)
    kind = _literal_kind(inner)
    if kind is not None and kind != "STRING":
        raise QueryError(f"{where(what)}: No matching signature: a STRING or BYTES is required, not the "
                         f"{kind} {inner.sql(dialect='bigquery')}; write CAST(... AS STRING)")
    if isinstance(inner, _CHECKABLE):
        return _call("bq_arg_text", node.copy(), exp.Literal.string(what))
    return None


def _replace(node: exp.Expression, key: str, check) -> None:
    value = node.args.get(key)
    if isinstance(value, list):
        node.set(key, [check(v) or v for v in value])
    elif isinstance(value, exp.Expression):
        new = check(value)
        if new is not None:
            node.set(key, new)


def _boolean_leaves(node: exp.Expression, what: str, where) -> None:
    """Check the operands of AND/OR/NOT down to the first node that is no AND/OR/NOT."""
    for key in ("this", "expression"):
        child = node.args.get(key)
        if not isinstance(child, exp.Expression):
            continue
        inner = _unwrap(child)
        if isinstance(inner, (exp.And, exp.Or, exp.Not)):
            continue  # checked when it was rewritten (bottom-up)
        _replace(node, key, lambda v: _bool_operand(v, what, where))


# Arguments BigQuery's signatures type INT64 (string_functions#substr, #left, #right, #repeat, #lpad, #rpad,
# #instr; mathematical_functions#round, #trunc): a STRING literal coerces only to a date/time type and a FLOAT64
# to nothing narrower (conversion_rules#coercion, #literal_coercion), so '1' or 1.5 there is "No matching
# signature"; DuckDB would cast the STRING and name its own function (SUBSTRING) and types for the FLOAT64.
# GENERATE_ARRAY (array_functions#generate_array) takes INT64, NUMERIC or FLOAT64 bounds, so only a STRING or BOOL.
_INT64 = ("STRING", "BOOL", "FLOAT64")
_ARGUMENTS = {exp.Substring: (("start", "length"), _INT64), exp.Left: (("expression",), _INT64),
              exp.Right: (("expression",), _INT64), exp.Repeat: (("times",), _INT64),
              exp.Pad: (("expression",), _INT64), exp.StrPosition: (("position", "occurrence"), _INT64),
              exp.Round: (("decimals",), _INT64), exp.Trunc: (("decimals",), _INT64),
              exp.GenerateSeries: (("start", "end", "step"), ("STRING", "BOOL"))}


def _bigquery_name(node: exp.Expression, where) -> str:
    if isinstance(node, exp.Substring):
        return "SUBSTRING" if where("SUBSTR") == "SUBSTR" and where("SUBSTRING") != "SUBSTRING" else "SUBSTR"
    if isinstance(node, exp.Pad):
        return "LPAD" if node.args.get("is_left") else "RPAD"
    if isinstance(node, exp.StrPosition):
        return "INSTR"
    if isinstance(node, exp.GenerateSeries):
        return "GENERATE_ARRAY"
    return node.sql_name()


def _shown(node: exp.Expression) -> exp.Expression:
    """The literal as the query wrote it (the rewrite has made 1.5 a CAST(1.5 AS DOUBLE) by now)."""
    node = _unwrap(node)
    return node.this if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) else node


def _argument_types(node: exp.Expression) -> str:
    return ", ".join(_literal_kind(_unwrap(value)) or "..." for value in node.args.values()
                     if isinstance(value, exp.Expression) and not isinstance(value, exp.Var))


def _typed_arguments(node: exp.Expression, where) -> None:
    keys, rejected = _ARGUMENTS.get(type(node), ((), ()))
    if isinstance(node, exp.Substring) and node.args.get("start") is None:
        # string_functions#substr: the position is not optional; DuckDB's SUBSTRING(x) is not BigQuery's
        name = _bigquery_name(node, where)
        raise QueryError(f"{where(name)}: No matching signature for function {name} for argument types: "
                         f"{_argument_types(node)} (SUBSTR takes a value, a position and an optional length)")
    for key in keys:
        value = node.args.get(key)
        kind = _literal_kind(_unwrap(value)) if isinstance(value, exp.Expression) else None
        if kind in rejected:
            name = _bigquery_name(node, where)
            wanted = "an INT64" if rejected is _INT64 else "a number"
            raise QueryError(f"{where(name)}: No matching signature for function {name} for argument types: "
                             f"{_argument_types(node)} (the {kind} {_shown(value).sql(dialect='bigquery')} is where "
                             f"{wanted} goes, and BigQuery does not convert it: CAST it)")


# A time zone written as an offset ('+05:30', '-08', 'UTC+3': timestamp_functions#timezone_definitions) is
# BigQuery's, but DuckDB's time zones are tz database names only: DuckDB failed on it with its own parse or cast
# error (DATETIME(ts, '+05:30') even read the offset as a TIME of day), so it is refused by the function's name
_ZONED = {exp.Datetime: ("DATETIME", "expression"), exp.Date: ("DATE", "zone"), exp.Time: ("TIME", "zone"),
          exp.Timestamp: ("TIMESTAMP", "zone"), exp.TimestampTrunc: ("TIMESTAMP_TRUNC", "zone"),
          exp.TimeToStr: ("FORMAT_TIMESTAMP", "zone"), exp.StrToTime: ("PARSE_TIMESTAMP", "zone")}
_OFFSET = re.compile(r"^\s*(UTC)?\s*[+-]\d", re.I)


def _offset_zone(node: exp.Expression, where) -> None:
    name, key = _ZONED.get(type(node), (None, None))
    zone = node.args.get(key) if key else None
    if isinstance(zone, exp.Literal) and zone.is_string and _OFFSET.match(zone.this):
        raise QueryError(f"{where(name)}: the time zone {zone.this!r} is an offset, which the local warehouse does "
                         "not support as a time zone argument (it takes tz database names such as "
                         "America/Los_Angeles, and UTC); write the zone by name, or run it on BigQuery")


def check(node: exp.Expression, where) -> None:
    """Refuse, or guard in place, the arguments of `node` whose type BigQuery would reject; `where(name)` is
    the construct's name with its line in the query (semantics)."""
    _typed_arguments(node, where)
    _offset_zone(node, where)
    signatures(node, where)
    if isinstance(node, (exp.And, exp.Or)):
        _boolean_leaves(node, "AND" if isinstance(node, exp.And) else "OR", where)
    elif isinstance(node, exp.Not):
        _boolean_leaves(node, "NOT", where)
    elif isinstance(node, exp.If) and not isinstance(node.parent, exp.Case):
        _replace(node, "this", lambda v: _bool_operand(v, "IF", where))
    elif isinstance(node, exp.Case):
        for branch in node.args.get("ifs") or []:
            if node.this is None:
                _replace(branch, "this", lambda v: _bool_operand(v, "CASE WHEN", where))
    elif isinstance(node, (exp.Where, exp.Having, exp.Qualify)):
        what = type(node).__name__.upper()
        _replace(node, "this", lambda v: _bool_operand(v, what, where))
    elif isinstance(node, exp.Length):
        _replace(node, "this", lambda v: _text_operand(v, "LENGTH", where))
    elif isinstance(node, exp.Concat):
        _replace(node, "expressions", lambda v: _text_operand(v, "CONCAT", where))
    elif isinstance(node, exp.DPipe):
        for key in ("this", "expression"):
            if not isinstance(_unwrap(node.args[key]), exp.DPipe):
                _replace(node, key, lambda v: _text_operand(v, "||", where))
    elif isinstance(node, _ARITHMETIC):
        _arithmetic(node, where)
    elif isinstance(node, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
        _comparison(node, where)
    elif isinstance(node, _MATH):
        for child in (node.args.get(k) for k in ("this", "expression", "decimals")):
            if not isinstance(child, exp.Expression):
                continue
            if _literal_kind(_unwrap(child)) in ("STRING", "BOOL"):
                name = node.sql_name()
                raise QueryError(f"{where(name)}: No matching signature for function {name} with the "
                                 f"{_literal_kind(_unwrap(child))} argument {_unwrap(child).sql(dialect='bigquery')}")


_SYMBOLS = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Neg: "-", exp.Mod: "MOD",
            exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}


def _arithmetic(node: exp.Expression, where) -> None:
    symbol = _SYMBOLS[type(node)]
    for key in ("this", "expression"):
        child = node.args.get(key)
        if not isinstance(child, exp.Expression):
            continue
        inner = _unwrap(child)
        kind = _literal_kind(inner)
        if kind in ("STRING", "BOOL"):
            raise QueryError(f"No matching signature for operator {symbol} with a {kind} operand "
                             f"{inner.sql(dialect='bigquery')} (BigQuery does not convert it to a number)")


def _comparison(node: exp.Expression, where) -> None:
    symbol = _SYMBOLS[type(node)]
    left, right = node.this, node.expression
    kinds = (_literal_kind(_unwrap(left)), _literal_kind(_unwrap(right)))
    if kinds[0] and kinds[1] and kinds[0] != kinds[1] and {"INT64", "FLOAT64"} != set(kinds):
        raise QueryError(f"No matching signature for operator {symbol} for argument types: {kinds[0]}, {kinds[1]}")
    for literal_side, other_key in ((0, "expression"), (1, "this")):
        kind = kinds[literal_side]
        other = node.args[other_key]
        if kind not in ("STRING", "BOOL") or not isinstance(_unwrap(other), _CHECKABLE):
            continue
        macro = "bq_text_comparable" if kind == "STRING" else "bq_bool_comparable"
        node.set(other_key, _call(macro, other.copy(), exp.Literal.string(f"operator {symbol}")))


# ---- signatures ---------------------------------------------------------------------------------------------
# The types BigQuery gives a value the translation can see: a literal, a typed literal (DATE '...', b'...',
# JSON '...'), an array literal, or a column of an UNNEST of an array literal. Unknown (None) is never refused.
_DTYPES = {exp.DataType.Type.BIGINT: "INT64", exp.DataType.Type.INT: "INT64", exp.DataType.Type.DOUBLE: "FLOAT64",
           exp.DataType.Type.FLOAT: "FLOAT64", exp.DataType.Type.DECIMAL: "NUMERIC",
           exp.DataType.Type.BIGDECIMAL: "BIGNUMERIC", exp.DataType.Type.VARCHAR: "STRING",
           exp.DataType.Type.TEXT: "STRING", exp.DataType.Type.VARBINARY: "BYTES", exp.DataType.Type.BINARY: "BYTES",
           exp.DataType.Type.BLOB: "BYTES", exp.DataType.Type.BOOLEAN: "BOOL", exp.DataType.Type.DATE: "DATE",
           exp.DataType.Type.TIME: "TIME", exp.DataType.Type.TIMESTAMP: "DATETIME",
           exp.DataType.Type.DATETIME: "DATETIME", exp.DataType.Type.TIMESTAMPTZ: "TIMESTAMP",
           exp.DataType.Type.JSON: "JSON"}
_NUMBERS = frozenset({"INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC"})
_TIMES = frozenset({"DATE", "DATETIME", "TIME", "TIMESTAMP"})


def value_type(node: exp.Expression) -> tuple[str | None, bool]:
    """(BigQuery type or None, whether the value is a literal) of a value the translation can type."""
    node = _unwrap(node)
    kind = _literal_kind(node)
    if kind is not None:
        return kind, True
    if isinstance(node, exp.Null):
        return "NULL", True
    if isinstance(node, exp.ByteString):
        return "BYTES", True
    if isinstance(node, exp.ParseJSON) and node.args.get("is_literal"):
        return "JSON", True
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        return _DTYPES.get(node.to.this), False  # DATE '...' and the like: typed, no longer coercible
    if isinstance(node, exp.Array) and node.expressions:
        elements = {value_type(e)[0] for e in node.expressions} - {"NULL"}
        if len(elements) == 1 and None not in elements:
            return f"ARRAY<{elements.pop()}>", True
        return None, False
    if isinstance(node, exp.Column) and not node.table:
        return _unnest_type(node), False
    return None, False


def _unnest_type(column: exp.Column) -> str | None:
    """The element type of the array literal that `FROM UNNEST([...]) AS name` names this column by."""
    select = column.find_ancestor(exp.Select)
    if select is None:
        return None
    for unnest in select.find_all(exp.Unnest):
        alias = unnest.args.get("alias")
        if unnest.find_ancestor(exp.Select) is not select or alias is None or unnest.args.get("offset"):
            continue
        names = [c.name for c in alias.args.get("columns") or []] or [alias.name]
        if column.name in names and unnest.expressions:
            array, _ = value_type(unnest.expressions[0])
            if array and array.startswith("ARRAY<"):
                return array[len("ARRAY<"):-1]
    return None


def _coerces(kind: str | None, literal: bool, allowed: frozenset[str]) -> bool:
    """conversion_rules#coercion and #literal_coercion: INT64 to FLOAT64 and NUMERIC, NUMERIC to FLOAT64,
    DATE to DATETIME, a STRING literal to a date/time type; NULL to anything."""
    if kind is None or kind == "NULL" or kind in allowed or "ANY" in allowed:
        return True
    if kind.startswith("ARRAY<") and "ARRAY" in allowed:
        return True
    if kind == "INT64" and allowed & {"FLOAT64", "NUMERIC", "BIGNUMERIC"}:
        return True
    if kind in ("NUMERIC", "FLOAT64") and allowed & {"FLOAT64", "BIGNUMERIC"}:
        return kind == "NUMERIC" or literal and "NUMERIC" in allowed or "FLOAT64" in allowed
    if kind == "DATE" and "DATETIME" in allowed:
        return True
    return kind == "STRING" and literal and bool(allowed & _TIMES)


_TEXTUAL = frozenset({"STRING", "BYTES"})
_S, _B, _I, _J = frozenset({"STRING"}), frozenset({"BYTES"}), frozenset({"INT64"}), frozenset({"JSON"})
_BOOLS, _TS = frozenset({"BOOL"}), frozenset({"TIMESTAMP"})
# function -> (BigQuery names as queries write it, aggregate?, ((argument key, types it takes), ...)), from each
# function's signature list in the GoogleSQL reference (string_functions, timestamp_functions, json_functions,
# array_functions, aggregate_functions, conversion_functions, mathematical_functions)
_SIGNATURES = {
    exp.ToBase64: (("TO_BASE64",), False, (("this", _B),)),
    exp.ToBase32: (("TO_BASE32",), False, (("this", _B),)),
    exp.LowerHex: (("TO_HEX",), False, (("this", _B),)),
    exp.Hex: (("TO_HEX",), False, (("this", _B),)),
    exp.FromBase64: (("FROM_BASE64",), False, (("this", _S),)),
    exp.Unhex: (("FROM_HEX",), False, (("this", _S),)),
    exp.ByteLength: (("BYTE_LENGTH",), False, (("this", _TEXTUAL),)),
    exp.Length: (("LENGTH",), False, (("this", _TEXTUAL),)),
    exp.MD5: (("MD5",), False, (("this", _TEXTUAL),)),
    exp.SHA: (("SHA1",), False, (("this", _TEXTUAL),)),
    exp.SHA2: (("SHA256", "SHA512"), False, (("this", _TEXTUAL),)),
    exp.StartsWith: (("STARTS_WITH",), False, (("this", _TEXTUAL), ("expression", _TEXTUAL))),
    exp.EndsWith: (("ENDS_WITH",), False, (("this", _TEXTUAL), ("expression", _TEXTUAL))),
    exp.UnixToTime: (("TIMESTAMP_SECONDS", "TIMESTAMP_MILLIS", "TIMESTAMP_MICROS"), False, (("this", _I),)),
    exp.DateFromUnixDate: (("DATE_FROM_UNIX_DATE",), False, (("this", _I),)),
    exp.UnixSeconds: (("UNIX_SECONDS",), False, (("this", _TS),)),
    exp.UnixMillis: (("UNIX_MILLIS",), False, (("this", _TS),)),
    exp.UnixMicros: (("UNIX_MICROS",), False, (("this", _TS),)),
    exp.UnixDate: (("UNIX_DATE",), False, (("this", frozenset({"DATE"})),)),
    exp.JSONExtractScalar: (("JSON_VALUE", "JSON_EXTRACT_SCALAR"), False, (("this", _S | _J),)),
    exp.JSONExtract: (("JSON_QUERY", "JSON_EXTRACT"), False, (("this", _S | _J),)),
    exp.ArrayToString: (("ARRAY_TO_STRING",), False, (("this", frozenset({"ARRAY<STRING>", "ARRAY<BYTES>"})),
                                                      ("expression", _TEXTUAL))),
    exp.ArraySize: (("ARRAY_LENGTH",), False, (("this", frozenset({"ARRAY"})),)),
    exp.Int64: (("INT64",), False, (("this", _J),)),
    exp.Float64: (("FLOAT64",), False, (("this", _J),)),
    exp.String: (("STRING",), False, (("this", _TS | _J),)),
    exp.JSONBool: (("BOOL",), False, (("this", _J),)),
    exp.LogicalAnd: (("LOGICAL_AND",), True, (("this", _BOOLS),)),
    exp.LogicalOr: (("LOGICAL_OR",), True, (("this", _BOOLS),)),
    exp.CountIf: (("COUNTIF",), True, (("this", _BOOLS),)),
    exp.BitwiseAndAgg: (("BIT_AND",), True, (("this", _I),)),
    exp.BitwiseOrAgg: (("BIT_OR",), True, (("this", _I),)),
    exp.BitwiseXorAgg: (("BIT_XOR",), True, (("this", _I),)),
    exp.Sum: (("SUM",), True, (("this", _NUMBERS | {"INTERVAL"}),)),
    exp.GroupConcat: (("STRING_AGG",), True, (("this", _TEXTUAL), ("separator", _TEXTUAL))),
    "IEEE_DIVIDE": (("IEEE_DIVIDE",), False, ((0, _NUMBERS), (1, _NUMBERS))),
    "LAX_INT64": (("LAX_INT64",), False, ((0, _J),)),
    "LAX_FLOAT64": (("LAX_FLOAT64",), False, ((0, _J),)),
    "LAX_BOOL": (("LAX_BOOL",), False, ((0, _J),)),
    "LAX_STRING": (("LAX_STRING",), False, ((0, _J),)),
    "CODE_POINTS_TO_STRING": (("CODE_POINTS_TO_STRING",), False, ((0, frozenset({"ARRAY<INT64>"})),)),
    "CODE_POINTS_TO_BYTES": (("CODE_POINTS_TO_BYTES",), False, ((0, frozenset({"ARRAY<INT64>"})),)),
}


def _named(where, names: tuple[str, ...]) -> str:
    """The name among `names` the query writes (JSON_VALUE or JSON_EXTRACT_SCALAR parse alike)."""
    for name in names:
        if where(name) != name:
            return name
    return names[0]


def _argument(node: exp.Expression, key) -> exp.Expression | None:
    if isinstance(key, int):
        values = node.expressions
        return values[key] if key < len(values) else None
    value = node.args.get(key)
    if isinstance(node, exp.GroupConcat) and key == "this" and isinstance(value, exp.Expression):
        while isinstance(value, (exp.Limit, exp.Order, exp.Distinct)):
            value = value.expressions[0] if isinstance(value, exp.Distinct) else value.this
    return value if isinstance(value, exp.Expression) else None


def _signature(node: exp.Expression, where) -> None:
    key = node.name.upper() if isinstance(node, exp.Anonymous) else type(node)
    entry = _SIGNATURES.get(key)
    if entry is None:
        return
    names, aggregate, positions = entry
    for position, allowed in positions:
        value = _argument(node, position)
        if value is None:
            continue
        kind, literal = value_type(value)
        if _coerces(kind, literal, allowed):
            continue
        name = _named(where, names)
        shown = [value_type(v)[0] or "..." for _, v in ((p, _argument(node, p)) for p, _ in positions)
                 if v is not None]
        raise QueryError(f"{where(name)}: No matching signature for {'aggregate ' if aggregate else ''}function "
                         f"{name} for argument types: {', '.join(shown)} (the {kind} "
                         f"{_shown(value).sql(dialect='bigquery')} is where {name} takes "
                         f"{' or '.join(sorted(allowed))})")


# conversion_rules#casting: what CAST (and SAFE_CAST, which only turns a failing value into NULL) converts each
# type to; any other pair is an analysis error, "Invalid cast from X to Y"
_CASTS = {"INT64": {"BOOL", "INT64", "NUMERIC", "BIGNUMERIC", "FLOAT64", "STRING"},
          "FLOAT64": {"INT64", "NUMERIC", "BIGNUMERIC", "FLOAT64", "STRING"},
          "NUMERIC": {"INT64", "NUMERIC", "BIGNUMERIC", "FLOAT64", "STRING"},
          "BOOL": {"BOOL", "INT64", "STRING"},
          "BYTES": {"BYTES", "STRING"},
          "DATE": {"STRING", "DATE", "DATETIME", "TIMESTAMP"},
          "DATETIME": {"STRING", "DATE", "DATETIME", "TIME", "TIMESTAMP"},
          "TIME": {"STRING", "TIME"},
          "TIMESTAMP": {"STRING", "DATE", "DATETIME", "TIME", "TIMESTAMP"}}


def _cast(node: exp.Cast, where) -> None:
    source, _ = value_type(node.this)
    target = _DTYPES.get(node.to.this)
    if source in _CASTS and target is not None and target not in _CASTS[source]:
        name = "SAFE_CAST" if isinstance(node, exp.TryCast) else "CAST"
        raise QueryError(f"{where(name)}: Invalid cast from {source} to {target}")


def _supertype(values: list[exp.Expression]) -> list[str] | None:
    """The values' types if they have no common supertype (conversion_rules#supertypes), else None."""
    typed = [value_type(v) for v in values]
    known = [(kind, literal) for kind, literal in typed if kind not in (None, "NULL")]
    for candidate, _ in known:
        if all(_coerces(kind, literal, frozenset({candidate})) for kind, literal in known):
            return None
    return [kind or "..." for kind, _ in typed] if known else None


# interval arguments (date_functions#date_add, datetime_functions, time_functions, timestamp_functions): the
# value of INTERVAL n part is an INT64; INTERVAL '1' DAY there is "Interval value must be coercible to INT64 type"
_INTERVAL_ADDS = {exp.DateAdd: "DATE_ADD", exp.DateSub: "DATE_SUB", exp.DatetimeAdd: "DATETIME_ADD",
                  exp.DatetimeSub: "DATETIME_SUB", exp.TimestampAdd: "TIMESTAMP_ADD", exp.TimestampSub: "TIMESTAMP_SUB",
                  exp.TimeAdd: "TIME_ADD", exp.TimeSub: "TIME_SUB"}


def _interval_value(node: exp.Expression, where) -> None:
    name = _INTERVAL_ADDS.get(type(node))
    value = node.args.get("expression")
    if name is None or not isinstance(value, exp.Expression):
        return
    if isinstance(_unwrap(value), exp.Literal):
        return  # sqlglot reads INTERVAL 1 DAY as INTERVAL '1' DAY: the query's text decides (calls)
    kind, literal = value_type(value)
    if not _coerces(kind, literal, _I):
        raise QueryError(f"{where(name)}: Interval value must be coercible to INT64 type (INTERVAL "
                         f"{_shown(value).sql(dialect='bigquery')} is a {kind}; {name} takes INTERVAL int64 part)")


def signatures(node: exp.Expression, where) -> None:
    """Refuse what BigQuery's analyzer rejects by type: a function argument outside its signatures, a CAST
    between types with no conversion, IF/CASE/NULLIF/GREATEST/LEAST/IN/array/UNION values of no common
    supertype, an interval value that is no INT64."""
    _signature(node, where)
    _interval_value(node, where)
    if isinstance(node, exp.Cast):
        _cast(node, where)
    if isinstance(node, exp.GenerateSeries) and any(
            _literal_kind(_unwrap(v)) == "FLOAT64" for v in (node.args.get(k) for k in ("start", "end", "step"))
            if isinstance(v, exp.Expression)):
        raise QueryError(f"{where('GENERATE_ARRAY')}: GENERATE_ARRAY over FLOAT64 is not supported by the local "
                         "warehouse (its elements' rounding may differ); generate integers and divide them")
    groups: list[tuple[str, list[exp.Expression]]] = []
    if isinstance(node, exp.If) and not isinstance(node.parent, exp.Case):
        groups.append(("function IF", [node.args.get("true"), node.args.get("false")]))
    elif isinstance(node, exp.Case):
        values = [branch.args.get("true") for branch in node.args.get("ifs") or []] + [node.args.get("default")]
        groups.append(("operator CASE", values))
        if node.this is not None:
            groups.append(("operator CASE", [node.this] + [b.this for b in node.args.get("ifs") or []]))
    elif isinstance(node, exp.Coalesce):
        groups.append((f"function {_named(where, ('COALESCE', 'IFNULL'))}", [node.this, *node.expressions]))
    elif isinstance(node, exp.Nullif):
        groups.append(("function NULLIF", [node.this, node.expression]))
    elif isinstance(node, (exp.Greatest, exp.Least)):
        groups.append((f"function {node.sql_name()}", [node.this, *node.expressions]))
    elif isinstance(node, exp.In) and node.expressions:
        groups.append(("operator IN", [node.this, *node.expressions]))
    elif isinstance(node, exp.Array) and node.expressions:
        groups.append(("array", node.expressions))
    for what, values in groups:
        kinds = _supertype([v for v in values if isinstance(v, exp.Expression)])
        if kinds is None:
            continue
        name = what.split()[-1]
        if what == "array":
            raise QueryError(f"{where('ARRAY')}: Array elements of types {{{', '.join(sorted(set(kinds)))}}} do not "
                             "have a common supertype")
        raise QueryError(f"{where(name)}: No matching signature for {what} for argument types: {', '.join(kinds)} "
                         "(they have no common supertype)")
    if isinstance(node, exp.Union):
        _set_operation(node, where)


def _set_operation(node: exp.Union, where) -> None:
    left, right = node.this, node.expression
    if not isinstance(left, exp.Select) or not isinstance(right, exp.Select):
        return
    if len(left.expressions) != len(right.expressions):
        return
    word = "UNION ALL" if not node.args.get("distinct") else "UNION DISTINCT"
    for index, (a, b) in enumerate(zip(left.expressions, right.expressions), start=1):
        a, b = (v.this if isinstance(v, exp.Alias) else v for v in (a, b))
        kinds = _supertype([a, b])
        if kinds is not None:
            raise QueryError(f"{where('UNION')}: Column {index} in {word} has incompatible types: {', '.join(kinds)}")


# Calls whose shape the parse loses: ARRAY_AGG(1, 2) parses as ARRAY_AGG(1), INTERVAL 1 DAY as INTERVAL '1' DAY
_ONE_VALUE = ("ARRAY_AGG", "MAX", "MIN", "ANY_VALUE", "LOGICAL_AND", "LOGICAL_OR", "COUNTIF", "ARRAY_CONCAT_AGG",
              "BIT_AND", "BIT_OR", "BIT_XOR", "AVG", "SUM", "COUNT")
# aggregate_functions: each takes one value (STRING_AGG a value and a delimiter) ahead of its ORDER BY, LIMIT,
# HAVING MAX/MIN and NULLS modifiers
_ARITY = {**{name: (1, 1) for name in _ONE_VALUE}, "STRING_AGG": (1, 2)}
_MODIFIERS = {"ORDER", "LIMIT", "HAVING", "IGNORE", "RESPECT"}


def _token_type(tokens) -> str:
    from sqlglot.tokens import TokenType

    if len(tokens) != 1:
        return "..."
    token = tokens[0]
    if token.token_type == TokenType.STRING:
        return "STRING"
    if token.token_type == TokenType.NUMBER:
        return "FLOAT64" if any(c in token.text for c in ".eE") else "INT64"
    if token.token_type in (TokenType.TRUE, TokenType.FALSE):
        return "BOOL"
    return "..."


def calls(sql: str) -> None:
    """Refuse an aggregate given more values than its signature takes, and a DATE_ADD-like INTERVAL whose value
    is a STRING or FLOAT64 literal, from the query's tokens (with the line each is on)."""
    import sqlglot
    from sqlglot.tokens import TokenType

    try:
        tokens = sqlglot.tokenize(sql, read="bigquery")
    except Exception:  # noqa: BLE001 - the parse reports what cannot be tokenized
        return
    for index, token in enumerate(tokens[:-1]):
        name = token.text.upper()
        if tokens[index + 1].token_type != TokenType.L_PAREN or (index and tokens[index - 1].token_type == TokenType.DOT):
            continue
        if name not in _ARITY and name not in _INTERVAL_ADDS.values():
            continue
        depth, arguments, current, modified = 0, [], [], False
        for inner in tokens[index + 2:]:
            if inner.token_type == TokenType.L_PAREN:
                depth += 1
            elif inner.token_type == TokenType.R_PAREN:
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and inner.text.upper().split(" ")[0] in _MODIFIERS:
                modified = True
            elif depth == 0 and inner.token_type == TokenType.COMMA and not modified:
                arguments.append(current)
                current = []
                continue
            if not modified:
                current.append(inner)
        arguments.append(current)
        where = f"line {token.line}: {name}"
        if name in _ARITY:
            low, high = _ARITY[name]
            if arguments and arguments[0] and arguments[0][0].text.upper() == "DISTINCT":
                arguments[0] = arguments[0][1:]
            if not low <= len(arguments) <= high and not (name == "COUNT" and len(arguments) == 1):
                types = ", ".join(_token_type(a) for a in arguments)
                takes = "a value and a delimiter" if high == 2 else "one value"
                raise QueryError(f"{where}: No matching signature for aggregate function {name} for argument types: "
                                 f"{types} ({name} takes {takes})")
        elif len(arguments) == 2 and len(arguments[1]) >= 3 and arguments[1][0].token_type == TokenType.INTERVAL:
            value = arguments[1][1:-1]
            if value and value[0].token_type == TokenType.DASH:
                value = value[1:]
            kind = _token_type(value)
            if kind in ("STRING", "FLOAT64", "BOOL"):
                raise QueryError(f"{where}: Interval value must be coercible to INT64 type (INTERVAL "
                                 f"{' '.join(t.text if t.token_type != TokenType.STRING else repr(t.text) for t in value)}"
                                 f" is a {kind}; {name} takes INTERVAL int64_expression date_part)")
