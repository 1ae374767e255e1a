"""NUMERIC and FLOAT64 functions as BigQuery computes them, where DuckDB's would answer differently.

mathematical_functions: ROUND, TRUNC, CEIL and FLOOR of an INT64 are FLOAT64 and of a NUMERIC are
NUMERIC; SIGN keeps its input's type and is NaN for NaN; SQRT, LN, LOG, LOG10, ACOS, ASIN, ACOSH,
ATANH, POW and COT raise an error outside their domain where DuckDB returns NaN or an infinity.
operators#arithmetic_operators and aggregate_functions#avg: NUMERIC / NUMERIC and AVG of a NUMERIC are
NUMERIC (exact, rounded to 9 decimal places, halfway away from zero), where DuckDB answers a DOUBLE.

DuckDB picks one result type for a CASE over all its branches, so a macro cannot answer DOUBLE for one
input type and DECIMAL for another; the macros here add a "typed zero" instead (0 of the type BigQuery
returns: x - x for a NUMERIC, ceil(x) - ceil(x) for an INT64, whose ceil is a DOUBLE). Division and AVG
need the operands' types at translation time (sqlglot's annotate_types, and the element type of an
UNNEST); where no type is known, a NUMERIC operand is refused at run time rather than answered as FLOAT64.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from sqlglot import exp

# 0 of BigQuery's result type for ROUND/TRUNC/CEIL/FLOOR of x: DOUBLE for INT64 and FLOAT64, DECIMAL(38, 9)
# for NUMERIC. NaN and infinities are not "x - x = 0", so they give the untyped 0 (DuckDB unifies it).
_TYPED_ZERO = ("((CASE WHEN x - x = 0 THEN x - x ELSE 0 END) "
               "+ (CASE WHEN ceil(x) - ceil(x) = 0 THEN ceil(x) - ceil(x) ELSE 0 END))")


def _domain(name: str, args: str, bad: str, value: str, what: str) -> str:
    return (f"CREATE OR REPLACE MACRO bq_{name}({args}) AS CASE WHEN {bad} THEN error('{name.upper()}: ' || "
            f"{what}) ELSE {value} END")


def _text(x: str) -> str:
    return f"CAST({x} AS VARCHAR)"


MACROS = [
    f"CREATE OR REPLACE MACRO bq_round(x) AS round(x) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_round_to(x, n) AS round(x, n) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_round_even(x, n) AS round_even(x, n) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_trunc(x) AS trunc(x) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_trunc_to(x, n) AS trunc(x, n) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_ceil(x) AS ceil(x) - {_TYPED_ZERO}",
    f"CREATE OR REPLACE MACRO bq_floor(x) AS floor(x) - {_TYPED_ZERO}",
    # SIGN(NaN) is NaN; SIGN keeps the input's type (INT64, NUMERIC or FLOAT64)
    """CREATE OR REPLACE MACRO bq_sign(x) AS sign(x)
         + (CASE WHEN isnan(x) THEN x WHEN x - x = 0 THEN x - x ELSE 0 END)""",
    # the domains: an error where DuckDB answers NaN or an infinity for a finite input
    _domain("sqrt", "x", "x < 0", "sqrt(x)", f"'argument must be >= 0, got ' || {_text('x')}"),
    _domain("ln", "x", "x <= 0 AND isfinite(x)", "ln(x)", f"'argument must be > 0, got ' || {_text('x')}"),
    _domain("log10", "x", "x <= 0 AND isfinite(x)", "log10(x)", f"'argument must be > 0, got ' || {_text('x')}"),
    _domain("log", "x, b", "(x <= 0 AND isfinite(x)) OR (b <= 0 AND isfinite(b)) OR b = 1",
            "CASE WHEN isinf(b) AND b > 0 THEN CAST('NaN' AS DOUBLE) ELSE ln(x) / ln(b) END",
            f"'invalid arguments ' || {_text('x')} || ', base ' || {_text('b')}"),
    _domain("acos", "x", "isfinite(x) AND abs(x) > 1", "acos(x)", f"'argument must be in [-1, 1], got ' || {_text('x')}"),
    _domain("asin", "x", "isfinite(x) AND abs(x) > 1", "asin(x)", f"'argument must be in [-1, 1], got ' || {_text('x')}"),
    _domain("atanh", "x", "isfinite(x) AND abs(x) > 1", "atanh(x)",
            f"'argument must be in [-1, 1], got ' || {_text('x')}"),
    _domain("acosh", "x", "isfinite(x) AND x < 1", "acosh(x)", f"'argument must be >= 1, got ' || {_text('x')}"),
    _domain("cot", "x", "x = 0", "cot(x)", "'argument cannot be 0'"),
    _domain("csc", "x", "x = 0", "1 / sin(x)", "'argument cannot be 0'"),
    _domain("csch", "x", "x = 0", "1 / sinh(x)", "'argument cannot be 0'"),
    _domain("coth", "x", "x = 0", "1 / tanh(x)", "'argument cannot be 0'"),
    "CREATE OR REPLACE MACRO bq_sec(x) AS 1 / cos(x)",
    "CREATE OR REPLACE MACRO bq_sech(x) AS 1 / cosh(x)",
    # POW: a negative finite base with a finite non-integer exponent, and 0 to a negative power, are
    # errors; so is an infinite result of finite inputs (overflow)
    _domain("pow", "x, y", "(isfinite(x) AND x < 0 AND isfinite(y) AND y <> floor(y)) OR (x = 0 AND isfinite(y) AND y < 0)"
            " OR (isfinite(x) AND isfinite(y) AND isinf(power(x, y)))",
            "power(x, y)", f"'invalid arguments or overflow: ' || {_text('x')} || ', ' || {_text('y')}"),
    _domain("exp", "x", "isfinite(x) AND isinf(exp(x))", "exp(x)", f"'overflow: ' || {_text('x')}"),
    # data-types#floating_point_semantics: "an overflow error if the input is finite but the output would be
    # non-finite"; DuckDB answers +/-inf
    """CREATE OR REPLACE MACRO bq_overflow_checked(r, finite_inputs) AS CASE
         WHEN typeof(r) IN ('DOUBLE', 'FLOAT') AND isinf(TRY_CAST(r AS DOUBLE)) AND finite_inputs
           THEN error('floating point overflow: finite FLOAT64 operands gave ' || CAST(r AS VARCHAR)) ELSE r END""",
    """CREATE OR REPLACE MACRO bq_finite_input(x) AS CASE WHEN typeof(x) IN ('DOUBLE', 'FLOAT')
         THEN isfinite(TRY_CAST(x AS DOUBLE)) ELSE TRUE END""",
    # CAST(x AS NUMERIC) / SAFE_CAST: a FLOAT64 through numeric_from_double (exact), any other type as DuckDB casts
    """CREATE OR REPLACE MACRO bq_numeric(x) AS CASE WHEN typeof(x) IN ('DOUBLE', 'FLOAT')
         THEN bq_numeric_from_double(TRY_CAST(x AS DOUBLE)) ELSE CAST(x AS DECIMAL(38, 9)) END""",
    """CREATE OR REPLACE MACRO bq_safe_numeric(x) AS CASE WHEN typeof(x) IN ('DOUBLE', 'FLOAT')
         THEN bq_safe_numeric_from_double(TRY_CAST(x AS DOUBLE)) ELSE TRY_CAST(x AS DECIMAL(38, 9)) END""",
    # CAST(x AS NUMERIC(P, S)): the NUMERIC of x rounded half away from zero to S digits, then checked against
    # P (ZetaSQL's type_parameter_constraints: ApplyPrecisionScale); `bound` is the largest value NUMERIC(P, S) holds
    """CREATE OR REPLACE MACRO bq_numeric_fit(v, s, bound, what) AS CASE
         WHEN abs(round(v, s)) > CAST(bound AS DECIMAL(38, 9)) THEN error(what || ' cannot hold ' || CAST(v AS VARCHAR)
              || ': rounded to its scale, the value is not in range of [-' || bound || ', ' || bound || ']')
         ELSE CAST(round(v, s) AS DECIMAL(38, 9)) END""",
    # SAFE_CAST(x AS NUMERIC(P, S)) beyond P: safe_casting promises NULL, ZetaSQL's reference implementation raises
    # the range error of the type parameters; the local warehouse refuses rather than pick one
    """CREATE OR REPLACE MACRO bq_safe_numeric_fit(v, s, bound, what) AS CASE
         WHEN abs(round(v, s)) > CAST(bound AS DECIMAL(38, 9)) THEN error('SAFE_CAST to ' || what || ' of '
              || CAST(v AS VARCHAR) || ', outside its range, is not supported by the local warehouse (NULL or the '
              || 'range error: the reference documentation and implementation disagree); check the range in the '
              || 'query, or run it on BigQuery')
         ELSE CAST(round(v, s) AS DECIMAL(38, 9)) END""",
    "CREATE OR REPLACE MACRO pi_numeric() AS CAST('3.141592654' AS DECIMAL(38, 9))",
    # a NUMERIC operand whose type the translation could not see: refused, not answered as FLOAT64
    """CREATE OR REPLACE MACRO bq_not_numeric(x, what) AS CASE WHEN typeof(x) LIKE 'DECIMAL%'
         THEN error(what || ' of a NUMERIC whose type the local warehouse could not tell when translating: '
                    || 'BigQuery answers NUMERIC; CAST the operand AS NUMERIC (or AS FLOAT64) in the query')
         ELSE x END""",
]

_NUMERIC_MAX = Decimal("99999999999999999999999999999.999999999")
_CONTEXT = Context(prec=80)
_NINE = Decimal("0.000000001")


def numeric_divide(x, y):
    """NUMERIC / NUMERIC: exact, rounded to 9 decimal places halfway away from zero; an error for a zero
    divisor or a quotient beyond NUMERIC's range."""
    if x is None or y is None:
        return None
    if y == 0:
        raise ValueError(f"division by zero: {x} / {y}")
    try:
        quotient = _CONTEXT.divide(Decimal(x), Decimal(y)).quantize(_NINE, rounding=ROUND_HALF_UP, context=_CONTEXT)
    except InvalidOperation as exc:
        raise ValueError(f"numeric overflow: {x} / {y}") from exc
    if abs(quotient) > _NUMERIC_MAX:
        raise ValueError(f"numeric overflow: {x} / {y}")
    return quotient


def numeric_from_double(x, safe: bool = False):
    """CAST(FLOAT64 AS NUMERIC) (conversion_functions#cast_numeric): the double's exact binary value rounded half
    away from zero to nine digits after the point; NaN, infinities and values beyond NUMERIC's range are errors
    (NULL for SAFE_CAST). DuckDB scales the double by 1e9 in floating point first, so 0.1234567895 (exactly
    0.12345678949999999707...) became 0.123456790."""
    if x is None:
        return None
    if not math.isfinite(x):
        if safe:
            return None
        raise ValueError(f"Illegal conversion of non-finite floating point number to NUMERIC: {x}")
    value = Decimal(x).quantize(_NINE, rounding=ROUND_HALF_UP, context=_CONTEXT)
    if abs(value) > _NUMERIC_MAX:
        if safe:
            return None
        raise ValueError(f"NUMERIC out of range: {x}")
    return value


def safe_numeric_from_double(x):
    return numeric_from_double(x, safe=True)


# conversion_functions#parse_numeric: one sign, before or after the number (spaces around it allowed); digits
# and commas before the point, with a digit among them if there are any; digits after it; an exponent
_PARSE_NUMERIC = re.compile(r"\s*(?P<sign1>[+-]?)\s*(?P<whole>[0-9,]*)(?:\.(?P<fraction>[0-9]*))?"
                            r"(?:[eE](?P<exponent>[+-]?[0-9]+))?\s*(?P<sign2>[+-]?)\s*")


def parse_numeric(text):
    """PARSE_NUMERIC(string): the NUMERIC the text spells, rounded half away from zero to nine digits after
    the point; an error for text outside the rules or a value beyond NUMERIC's range."""
    if text is None:
        return None
    match = _PARSE_NUMERIC.fullmatch(text)
    if not match or (match["sign1"] and match["sign2"]):
        raise ValueError(f"PARSE_NUMERIC: invalid NUMERIC value: {text!r}")
    whole, fraction = match["whole"], match["fraction"] or ""
    digits = whole.replace(",", "")
    if (whole and not digits) or not (digits or fraction):
        raise ValueError(f"PARSE_NUMERIC: invalid NUMERIC value: {text!r}")
    value = Decimal(f"{digits or '0'}.{fraction or '0'}e{match['exponent'] or '0'}")
    try:
        value = value.quantize(_NINE, rounding=ROUND_HALF_UP, context=_CONTEXT)
    except InvalidOperation as exc:
        raise ValueError(f"PARSE_NUMERIC: {text!r} is outside NUMERIC's range") from exc
    if abs(value) > _NUMERIC_MAX:
        raise ValueError(f"PARSE_NUMERIC: {text!r} is outside NUMERIC's range")
    return -value if "-" in (match["sign1"], match["sign2"]) else value


def register(con) -> None:
    import duckdb
    from duckdb.sqltypes import DuckDBPyType

    numeric = DuckDBPyType("DECIMAL(38, 9)")
    double = DuckDBPyType("DOUBLE")
    for name, function, args in (("bq_numeric_divide", numeric_divide, [numeric, numeric]),
                                 ("parse_numeric", parse_numeric, [DuckDBPyType("VARCHAR")]),
                                 ("bq_numeric_from_double", lambda x: numeric_from_double(x), [double]),
                                 ("bq_safe_numeric_from_double", safe_numeric_from_double, [double])):
        try:
            con.create_function(name, function, args, numeric, null_handling="special", side_effects=False)
        except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
            pass


# ---- at translation time -----------------------------------------------------------------------
_NUMERIC_TYPES = {exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL}
_FLOAT_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
_INT_TYPES = {exp.DataType.Type.BIGINT, exp.DataType.Type.INT, exp.DataType.Type.SMALLINT,
              exp.DataType.Type.TINYINT}


def _classify(kind: exp.DataType | None) -> str | None:
    if kind is None or kind.this == exp.DataType.Type.UNKNOWN:
        return None
    if kind.this in _NUMERIC_TYPES:
        return "numeric"
    if kind.this in _FLOAT_TYPES:
        return "float"
    if kind.this in _INT_TYPES:
        return "int"
    if kind.this in (exp.DataType.Type.BINARY, exp.DataType.Type.VARBINARY):
        return "bytes"
    return "other"


def _unnest_element(column: exp.Column) -> exp.DataType | None:
    """The element type of the UNNEST a column names (`FROM UNNEST([...]) AS x`), or of the STRUCT field it
    names (`FROM UNNEST([STRUCT(... AS x)])`), if annotated."""
    select = column.find_ancestor(exp.Select)
    while select is not None:
        for unnest in select.find_all(exp.Unnest):
            if unnest.find_ancestor(exp.Select) is not select:
                continue
            alias = unnest.args.get("alias")
            names = []
            if alias is not None:
                names = [c.name for c in alias.args.get("columns") or []] or [alias.name]
            array = unnest.expressions[0].type if unnest.expressions else None
            if array is None or array.this != exp.DataType.Type.ARRAY or not array.expressions:
                continue
            element = array.expressions[0]
            if column.name in names:
                return element
            if element.this == exp.DataType.Type.STRUCT:  # an UNNEST of STRUCTs: its fields are columns
                for field in element.expressions:
                    if isinstance(field, exp.ColumnDef) and field.name == column.name:
                        return field.args.get("kind")
        select = select.find_ancestor(exp.Select)
    return None


def kind_of(node: exp.Expression) -> str | None:
    """'numeric', 'float', 'int', 'other', or None where the translation cannot tell."""
    known = _classify(node.type)
    if known is not None:
        return known
    if isinstance(node, exp.Column) and not node.table:
        return _classify(_unnest_element(node))
    if isinstance(node, exp.Paren):
        return kind_of(node.this)
    if isinstance(node, (exp.Sum, exp.Min, exp.Max, exp.AnyValue, exp.Abs, exp.Neg)):
        inner = node.this.expressions[0] if isinstance(node.this, exp.Distinct) else node.this
        return kind_of(inner)
    if isinstance(node, exp.Avg):
        inner = kind_of(node.this.expressions[0] if isinstance(node.this, exp.Distinct) else node.this)
        return "float" if inner == "int" else inner
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        kinds = {kind_of(node.this), kind_of(node.expression)}
        if None in kinds:
            return None
        if "float" in kinds:
            return "float"
        if "numeric" in kinds:
            return "numeric"
        return "float" if isinstance(node, exp.Div) else "int"
    return None


# string functions whose first argument's type (STRING or BYTES) picks their translation (strings.text_call)
TEXT_NODES = (exp.Substring, exp.Left, exp.Right, exp.Reverse, exp.Translate, exp.Ascii)


def aggregated_value(inner: exp.Expression) -> exp.Expression:
    """The value an aggregate's argument aggregates, under its LIMIT, ORDER BY and DISTINCT."""
    while isinstance(inner, (exp.Limit, exp.Order, exp.Distinct)):
        inner = inner.expressions[0] if isinstance(inner, exp.Distinct) else inner.this
    return inner


def annotate(tree: exp.Expression) -> dict[int, str | None]:
    """{id(node): kind} of the operands' type for each division and AVG, and of the value of each SPLIT, before
    the rewrite replaces them."""
    from sqlglot.optimizer.annotate_types import annotate_types

    # on a copy: annotate_types may reshape what it types, and sqlglot's DuckDB output must stay as it was
    copy = tree.copy()
    pairs = [(mine, original) for mine, original in zip(copy.walk(), tree.walk())
             if isinstance(original, (exp.Div, exp.Avg, exp.Split, exp.Upper, exp.Lower, exp.GroupConcat) + TEXT_NODES)]
    try:
        annotate_types(copy, dialect="bigquery")
    except Exception:  # an expression sqlglot cannot type: every kind stays unknown
        pass
    kinds: dict[int, str | None] = {}
    for node, original in pairs:
        if isinstance(node, (exp.Split, exp.Upper, exp.Lower) + TEXT_NODES):
            kinds[id(original)] = kind_of(node.this)
        elif isinstance(node, exp.GroupConcat):
            kinds[id(original)] = kind_of(aggregated_value(node.this))
        elif isinstance(node, exp.Div):
            pair = {kind_of(node.this), kind_of(node.expression)}
            if "float" in pair:
                kinds[id(original)] = "float"
            elif None in pair:
                kinds[id(original)] = None
            else:
                kinds[id(original)] = "numeric" if "numeric" in pair else "float"
        else:
            inner = node.this.expressions[0] if isinstance(node.this, exp.Distinct) else node.this
            kinds[id(original)] = kind_of(inner)
    return kinds


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def parameterized_cast(node: exp.Cast, where) -> exp.Expression | None:
    """CAST(x AS NUMERIC(P[, S])) and SAFE_CAST: x made a NUMERIC as CAST(x AS NUMERIC) does (a FLOAT64 through
    numeric_from_double), rounded half away from zero to S digits, then held to P digits, as ZetaSQL's reference
    implementation applies type parameters after the cast (data-types#parameterized_decimal_type). DuckDB cast to
    DECIMAL(P, S) directly: '1.2499999996' became 1.2 where BigQuery's NUMERIC 1.250000000 rounds to 1.3."""
    to = node.to
    if to.this != exp.DataType.Type.DECIMAL or not to.expressions or [e.name for e in to.expressions] == ["38", "9"]:
        return None
    from kfkit.errors import QueryError

    numbers = [e.name for e in to.expressions]
    if not all(n.isdigit() for n in numbers) or len(numbers) > 2:
        raise QueryError(f"{where('NUMERIC')}({', '.join(numbers)}): the precision and scale must be integer literals")
    precision, scale = int(numbers[0]), int(numbers[1]) if len(numbers) == 2 else 0
    name = f"NUMERIC({precision})" if len(numbers) == 1 else f"NUMERIC({precision}, {scale})"
    if not 0 <= scale <= 9:
        raise QueryError(f"{where('NUMERIC')}: in NUMERIC(P, S), S must be between 0 and 9, actual scale: {scale}")
    if not max(1, scale) <= precision <= scale + 29:
        raise QueryError(f"{where('NUMERIC')}: in NUMERIC(P, {scale}), P must be between {max(1, scale)} and "
                         f"{scale + 29}, actual precision: {precision}")
    whole = "9" * (precision - scale)
    bound = (whole or "0") + ("." + "9" * scale if scale else "")
    safe = isinstance(node, exp.TryCast)
    value = _call("bq_safe_numeric" if safe else "bq_numeric", node.this)
    return _call("bq_safe_numeric_fit" if safe else "bq_numeric_fit", value, exp.Literal.number(scale),
                 exp.Literal.string(bound), exp.Literal.string(name))


def divide(node: exp.Div, kind: str | None) -> exp.Expression:
    if kind == "numeric":
        return _call("bq_numeric_divide", node.this, node.expression)
    if kind is None:
        def checked(operand: exp.Expression) -> exp.Expression:
            if _classify(operand.type) is not None or isinstance(operand, exp.Literal) or (
                    isinstance(operand, exp.Cast) and isinstance(operand.this, exp.Literal)):
                return operand  # a literal's type is known: no NUMERIC hides there
            return _call("bq_not_numeric", operand, exp.Literal.string("division"))
        return _call("bq_divide", checked(node.this), checked(node.expression))
    return _call("bq_divide", node.this, node.expression)


def average(node: exp.Avg, kind: str | None, what: str = "AVG") -> exp.Expression | None:
    """AVG(x) as BigQuery types it; `what` names it in a run-time refusal ("line 3: AVG")."""
    distinct = isinstance(node.this, exp.Distinct)
    value = node.this.expressions[0] if distinct else node.this
    if kind == "numeric":
        if isinstance(node.parent, exp.Window):
            return None  # window_average, when the rewrite reaches the window around it
        return _call("bq_numeric_divide", exp.Sum(this=_same(node, value)), exp.Count(this=_same(node, value)))
    if kind is None:
        checked = _call("bq_not_numeric", value.copy(), exp.Literal.string(what))
        node = node.copy()
        if distinct:
            node.this.set("expressions", [checked])
        else:
            node.set("this", checked)
        return node
    return None


def _same(avg: exp.Avg, value: exp.Expression) -> exp.Expression:
    """AVG's argument for SUM and COUNT, DISTINCT kept."""
    return exp.Distinct(expressions=[value.copy()]) if isinstance(avg.this, exp.Distinct) else value.copy()


def window_average(window: exp.Window, kind: str | None) -> exp.Expression | None:
    """AVG(NUMERIC) OVER (...) is NUMERIC, rounded as NUMERIC / INT64 is (aggregate_functions#avg): SUM OVER the
    same window, exact in DECIMAL(38, 9), divided by COUNT OVER it; an empty frame gives NULL, as SUM does."""
    avg = window.this
    if kind != "numeric" or not isinstance(avg, exp.Avg):
        return None
    value = avg.this.expressions[0] if isinstance(avg.this, exp.Distinct) else avg.this
    total, count = window.copy(), window.copy()
    total.set("this", exp.Sum(this=_same(avg, value)))
    count.set("this", exp.Count(this=_same(avg, value)))
    return _call("bq_numeric_divide", total, count)


_ROUNDING = {"Sqrt": "bq_sqrt", "Ln": "bq_ln", "Acos": "bq_acos", "Asin": "bq_asin", "Atanh": "bq_atanh",
             "Acosh": "bq_acosh", "Cot": "bq_cot", "Csc": "bq_csc", "Csch": "bq_csch", "Coth": "bq_coth",
             "Sec": "bq_sec", "Sech": "bq_sech", "Exp": "bq_exp", "Sign": "bq_sign", "Ceil": "bq_ceil",
             "Floor": "bq_floor"}


def fix(node: exp.Expression) -> exp.Expression | None:
    """The BigQuery form of one mathematical function, or None where it is not one."""
    kind = type(node).__name__
    if isinstance(node, exp.Round):
        digits, mode = node.args.get("decimals"), node.args.get("truncate")
        if mode is not None:  # ROUND(x, n, 'ROUND_HALF_EVEN'), for NUMERIC
            name = mode.name.upper() if isinstance(mode, exp.Literal) and mode.is_string else None
            if name not in ("ROUND_HALF_EVEN", "ROUND_HALF_AWAY_FROM_ZERO"):
                from kfkit.errors import QueryError
                raise QueryError(f"ROUND: the rounding mode {mode.sql(dialect='bigquery')} is not supported by the "
                                 "local warehouse; write 'ROUND_HALF_EVEN' or 'ROUND_HALF_AWAY_FROM_ZERO'")
            return _call("bq_round_even" if name == "ROUND_HALF_EVEN" else "bq_round_to", node.this,
                         digits if digits is not None else exp.Literal.number(0))
        if digits is None:
            return _call("bq_round", node.this)
        return _call("bq_round_to", node.this, digits)
    if kind == "Trunc":
        digits = node.args.get("decimals")
        return _call("bq_trunc_to", node.this, digits) if digits is not None else _call("bq_trunc", node.this)
    if isinstance(node, exp.Log):
        if node.expression is None:
            return _call("bq_ln", node.this)
        # sqlglot reads BigQuery's LOG(X, Y) as Log(this=Y, expression=X) (DuckDB's LOG(base, x))
        base, value = node.this, node.expression
        if isinstance(base, exp.Literal) and base.this == "10":
            return _call("bq_log10", value)
        return _call("bq_log", value, base)
    if isinstance(node, exp.Pow):
        return _call("bq_pow", node.this, node.expression)
    if kind in _ROUNDING and isinstance(node, exp.Func):
        if kind in ("Ceil", "Floor") and (node.args.get("decimals") is not None or node.args.get("to") is not None):
            return None
        return _call(_ROUNDING[kind], node.this)
    return None


# ---- FLOAT64 overflow in + - * / ---------------------------------------------------------------------
_CHAIN = (exp.Add, exp.Sub, exp.Mul, exp.Neg)
_CHAIN_CALLS = ("bq_divide",)


def _in_chain(node: exp.Expression) -> bool:
    if isinstance(node, exp.Paren):
        return _in_chain(node.this)
    return isinstance(node, _CHAIN) or (isinstance(node, exp.Anonymous) and str(node.this) in _CHAIN_CALLS)


def _leaves(node: exp.Expression, out: list) -> None:
    inner = node.this if isinstance(node, exp.Paren) else node
    if isinstance(inner, exp.Paren) or _in_chain(inner):
        children = inner.expressions if isinstance(inner, exp.Anonymous) else \
            [c for c in (inner.args.get("this"), inner.args.get("expression")) if isinstance(c, exp.Expression)]
        if isinstance(inner, exp.Paren):
            children = [inner.this]
        for child in children:
            _leaves(child, out)
    else:
        out.append(inner)


def overflow_checks(tree: exp.Expression) -> None:
    """Each outermost chain of + - * / gets an overflow check over its operands (linear in their size): an
    infinite FLOAT64 result of finite operands is an error. Not over INTERVAL operands."""
    tops = []
    for node in tree.walk():
        if not _in_chain(node) or isinstance(node, exp.Paren):
            continue
        parent = node.parent
        while isinstance(parent, exp.Paren):
            parent = parent.parent
        if parent is not None and _in_chain(parent):
            continue
        if any(isinstance(a, exp.Interval) for a in _ancestors(node)):
            continue
        tops.append(node)
    for top in tops:
        leaves: list = []
        _leaves(top, leaves)
        if any(isinstance(leaf, exp.Interval) for leaf in leaves) or all(
                isinstance(leaf, exp.Literal) or (isinstance(leaf, exp.Cast) and isinstance(leaf.this, exp.Literal)
                                                  and leaf.to.is_type("bigint")) for leaf in leaves):
            continue
        finite = exp.and_(*[_call("bq_finite_input", leaf.copy()) for leaf in leaves])
        top.replace(_call("bq_overflow_checked", top.copy(), finite))


def _ancestors(node: exp.Expression):
    node = node.parent
    while node is not None:
        yield node
        node = node.parent
