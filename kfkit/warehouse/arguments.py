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
    elif isinstance(node, exp.Coalesce):
        kinds = {_literal_kind(_unwrap(v)) for v in [node.this, *node.expressions]} - {None}
        if len(kinds) > 1 and kinds != {"INT64", "FLOAT64"}:
            raise QueryError(f"{where('COALESCE')}: No matching signature: the arguments {', '.join(sorted(kinds))} "
                             "have no common supertype")


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
