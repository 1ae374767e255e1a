"""The long tail of BigQuery functions on DuckDB: FORMAT, INSTR, the SAFE_ arithmetic functions, the
approximate aggregates (answered exactly), and the queries BigQuery rejects that DuckDB would answer.

Each rewrite follows the GoogleSQL reference section named beside it
(https://cloud.google.com/bigquery/docs/reference/standard-sql/...); where the local warehouse
cannot give BigQuery's value it refuses with a QueryError naming the function, never a different answer.
Called by kfkit.warehouse.semantics.rewrite, bottom-up, on every node.
"""

from __future__ import annotations

import re

from sqlglot import exp

from kfkit.errors import QueryError

# DuckDB type names a GoogleSQL type accepts (typeof() of a NULL literal is "NULL": any type takes it)
_INTEGER = "('BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT', 'HUGEINT', 'NULL')"
_FLOATING = "('DOUBLE', 'FLOAT', 'NULL')"

MACROS = [
    # FORMAT's arguments: each specifier takes the types string_functions#format_specifiers lists and
    # is an error for any other ("not compatible with the related argument type")
    f"""CREATE OR REPLACE MACRO bq_format_int(x, spec) AS CASE WHEN typeof(x) IN {_INTEGER} THEN x
         ELSE error('FORMAT: ' || spec || ' takes an INT64, not ' || typeof(x)) END""",
    # o, x and X "raise an error if negative values are used"
    f"""CREATE OR REPLACE MACRO bq_format_unsigned(x, spec) AS CASE
         WHEN typeof(x) NOT IN {_INTEGER} THEN error('FORMAT: ' || spec || ' takes an INT64, not ' || typeof(x))
         WHEN x < 0 THEN error('FORMAT: ' || spec || ' of a negative value: ' || CAST(x AS VARCHAR))
         ELSE x END""",
    # f, e: NUMERIC or FLOAT64; DuckDB's printf formats a DECIMAL through a double, so a NUMERIC is refused
    # rather than rounded differently
    f"""CREATE OR REPLACE MACRO bq_format_float(x, spec) AS CASE WHEN typeof(x) IN {_FLOATING} THEN x
         WHEN typeof(x) LIKE 'DECIMAL%' THEN error('FORMAT: ' || spec || ' of a NUMERIC is not supported by the '
              || 'local warehouse (it would round through FLOAT64); CAST it to FLOAT64 or STRING first')
         ELSE error('FORMAT: ' || spec || ' takes a FLOAT64 or NUMERIC, not ' || typeof(x)) END""",
    f"""CREATE OR REPLACE MACRO bq_format_double(x, spec) AS CASE WHEN typeof(x) IN {_FLOATING} THEN x
         ELSE error('FORMAT: ' || spec || ' takes a FLOAT64, not ' || typeof(x)) END""",
    # NaN: "NaN is considered smaller than -inf" in ordering (data-types#floating_point_semantics), and MIN
    # and LEAST give NaN when any input is NaN; DuckDB orders NaN above +inf
    """CREATE OR REPLACE MACRO bq_isnan(x) AS CASE WHEN typeof(x) IN ('DOUBLE', 'FLOAT')
         THEN isnan(TRY_CAST(x AS DOUBLE)) ELSE FALSE END""",
    # DIV(x, y) on INT64 exactly (not through a double): x - MOD(x, y) is a multiple of y
    """CREATE OR REPLACE MACRO bq_int_div(x, y) AS CASE
         WHEN typeof(x) IN ('DOUBLE', 'FLOAT') OR typeof(y) IN ('DOUBLE', 'FLOAT')
           THEN error('DIV takes INT64 or NUMERIC arguments, not FLOAT64')
         WHEN y = 0 THEN error('division by zero: ' || CAST(x AS VARCHAR) || ' / ' || CAST(y AS VARCHAR))
         WHEN typeof(x) IN ('BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT')
              AND typeof(y) IN ('BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT')
           THEN (CAST(x AS BIGINT) - CAST(x AS BIGINT) % CAST(y AS BIGINT)) // CAST(y AS BIGINT)
         ELSE CAST(trunc(x / y) AS BIGINT) END""",
    # a RANGE frame with an offset orders by a numeric key (INT64, NUMERIC, FLOAT64), never a DATE or TIMESTAMP
    """CREATE OR REPLACE MACRO bq_range_checked(w, k) AS CASE
         WHEN typeof(k) IN ('BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT', 'HUGEINT', 'DOUBLE', 'FLOAT', 'NULL')
              OR typeof(k) LIKE 'DECIMAL%' THEN w
         ELSE error('RANGE window frame: an offset needs a numeric ORDER BY key (INT64, NUMERIC or FLOAT64), '
                    || 'not ' || typeof(k) || '; use ROWS, or order by UNIX_DATE(...) / UNIX_SECONDS(...)') END""",
    # PARTITION BY: "PARTITION BY expressions can't include floating point types"
    # (data-types#grouping_with_floating_point_types); DuckDB partitions by a DOUBLE (or a STRUCT or ARRAY of one)
    """CREATE OR REPLACE MACRO bq_partition_key(x, what) AS CASE
         WHEN regexp_matches(typeof(x), '(^|[^A-Za-z0-9_"])(DOUBLE|FLOAT)([^A-Za-z0-9_"]|$)')
           THEN error(what || ': PARTITION BY expressions of type FLOAT64 are not allowed (this key is a '
                      || typeof(x) || '); partition by CAST(... AS STRING) or a NUMERIC instead')
         ELSE x END""",
    # JOIN ... USING (k) compares the keys with = (query-syntax#using_clause), and NaN = NaN is FALSE
    # (data-types#floating_point_semantics); DuckDB's USING matches a NaN key with a NaN key. A NaN key on
    # the right-hand side is refused where it is read: the local warehouse cannot tell which rows would match
    """CREATE OR REPLACE MACRO bq_using_key(x, what) AS CASE
         WHEN bq_isnan(x) THEN error(what || ': a NaN join key, which BigQuery never matches (NaN = NaN is FALSE) '
                                     || 'and the local warehouse cannot keep apart in USING; write ON a.k = b.k '
                                     || '(NaN-correct) or filter the NaN keys out first')
         ELSE x END""",
    """CREATE OR REPLACE MACRO bq_format_string(x, spec) AS CASE WHEN typeof(x) IN ('VARCHAR', 'NULL') THEN x
         ELSE error('FORMAT: ' || spec || ' takes a STRING, not ' || typeof(x)) END""",
]

# string_functions#format_specifiers: %[flags][width][.precision]specifier
_SPECIFIER = re.compile(r"%(?P<flags>[-+ #0']*)(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?(?P<spec>.?)", re.S)
_CHECK = {"d": "bq_format_int", "i": "bq_format_int", "o": "bq_format_unsigned", "x": "bq_format_unsigned",
          "X": "bq_format_unsigned", "f": "bq_format_float", "F": "bq_format_float", "e": "bq_format_float",
          "E": "bq_format_float", "g": "bq_format_double", "G": "bq_format_double", "s": "bq_format_string"}


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _over(call: exp.Expression, values: list[exp.Expression]) -> exp.Expression:
    """call (LEAST, GREATEST) with its arguments set to copies of values."""
    call.set("this", values[0].copy())
    call.set("expressions", [v.copy() for v in values[1:]])
    return call


def _all_simple(values: list[exp.Expression]) -> bool:
    """Columns, literals and casts of them: repeating one costs nothing."""
    def simple(node):
        while isinstance(node, (exp.Cast, exp.Neg, exp.Paren)):
            node = node.this
        return isinstance(node, (exp.Column, exp.Literal, exp.Null, exp.Boolean))
    return all(simple(v) for v in values)


_SHARED_NAMES = iter(range(1 << 62))


def shared(values: list[exp.Expression]):
    """(references, bind): each value computed once however often its references are used.

    A rewrite that names an argument more than once (LEAST's NaN test, the NULL test of DuckDB's
    GREATEST) copies it, so nested calls grow exponentially: validate's histogram bucket,
    LEAST(GREATEST(FLOOR(...), 0), 19) in a comparison, became 400 KB of SQL that DuckDB took minutes
    to bind. bind(body) evaluates the values once, as one list, and body reads them from it:
    list_extract(list_transform([[v1, v2]], LAMBDA s: body(s[1], s[2])), 1). The list has the
    values' common type, which is the type LEAST and GREATEST compare them in. Values that are all
    simple come back as they are (the same list), with a bind that changes nothing."""
    if _all_simple(values):
        return values, lambda body: body
    name = f"_kfkit_shared{next(_SHARED_NAMES)}"
    references = [_call("list_extract", exp.column(name), exp.Literal.number(i + 1)) for i in range(len(values))]

    def bind(body: exp.Expression) -> exp.Expression:
        computed = exp.Array(expressions=[exp.Array(expressions=[v.copy() for v in values])])
        return _call("list_extract", _call("list_transform", computed,
                                           exp.Lambda(this=body, expressions=[exp.to_identifier(name)])),
                     exp.Literal.number(1))
    return references, bind


def _format(node: exp.Format) -> exp.Expression:
    """FORMAT(format, args...) as DuckDB's printf, each argument checked against its specifier."""
    fmt, args = node.this, list(node.expressions)
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        raise QueryError("FORMAT: the local warehouse needs the format string as a literal, to check each "
                         "specifier against BigQuery's")
    text, out, used = fmt.this, [], 0
    position = 0
    for match in _SPECIFIER.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        spec, flags = match.group("spec"), match.group("flags")
        if spec == "%" and not (flags or match.group("width") or match.group("precision")):
            out.append("%%")
            continue
        whole = match.group(0)
        if spec in ("t", "T"):
            raise QueryError(f"FORMAT: {whole} is not supported by the local warehouse (its text differs from "
                             "any DuckDB rendering); use %s with CAST(x AS STRING)")
        if spec in ("p", "P"):  # string_functions#p_and_p_behavior: JSON as one line (%p) or indented lines (%P)
            raise QueryError(f"FORMAT: {whole} (JSON as printable text) is not supported by the local warehouse; "
                             "use TO_JSON_STRING, or run it on BigQuery")
        if spec not in _CHECK:
            # "If a format specifier is invalid ... an error is produced" (u takes unsigned types BigQuery lacks)
            raise QueryError(f"FORMAT: invalid format specifier {whole!r} in {text!r}")
        if "*" in (match.group("width") or "") + (match.group("precision") or ""):
            raise QueryError(f"FORMAT: {whole}: a width or precision from an argument (*) is not supported by "
                             "the local warehouse; write the number into the format")
        if "'" in flags:
            raise QueryError(f"FORMAT: {whole}: the grouping flag (') is not supported by the local warehouse")
        if used >= len(args):
            raise QueryError(f"FORMAT: {text!r} needs more arguments than the {len(args)} given")
        out.append(whole)
        args[used] = _call(_CHECK[spec], args[used], exp.Literal.string(whole))
        used += 1
    out.append(text[position:])
    if used != len(args):
        raise QueryError(f"FORMAT: {text!r} has {used} specifiers for {len(args)} arguments")
    return _call("printf", exp.Literal.string("".join(out)), *args)


def _instr(node: exp.StrPosition) -> exp.Expression | None:
    """INSTR(source, search, position, occurrence) (string_functions#instr); STRPOS/INSTR without the
    last two are DuckDB's strpos already."""
    position, occurrence = node.args.get("position"), node.args.get("occurrence")
    if position is None and occurrence is None:
        return None
    one = exp.Literal.number(1)
    return _call("bq_instr", node.this, node.args["substr"], position or one, occurrence or one.copy())


def _approx_quantiles(node: exp.Expression, respect_nulls: bool = False) -> exp.Expression:
    """APPROX_QUANTILES(x, n) answered exactly: the n + 1 boundaries, the k-th the element at
    floor(k (N - 1) / n) of the sorted non-NULL values (the reference's examples: [1, 5, 10] for
    x, 2 over [1, 1, 1, 4, 5, 6, 7, 8, 9, 10]); NULL over no non-NULL value."""
    value, number = node.this, node.expression
    distinct = isinstance(value, exp.Distinct)
    if distinct:
        value, number = value.expressions[0], value.expressions[1]
    if respect_nulls:
        raise QueryError("APPROX_QUANTILES(... RESPECT NULLS) is not supported by the local warehouse")
    if not (isinstance(number, exp.Literal) and not number.is_string and int(number.this) > 0):
        raise QueryError("APPROX_QUANTILES: the number of quantiles must be a positive INT64 literal")
    n = int(number.this)
    body = value.sql(dialect="duckdb")
    agg = f"array_agg({'DISTINCT ' if distinct else ''}{body}) FILTER (WHERE {body} IS NOT NULL)"
    return exp.maybe_parse(
        f"list_transform([list_sort({agg})], lambda s: CASE WHEN s IS NULL OR len(s) = 0 THEN NULL "
        f"ELSE list_transform(range(0, {n + 1}), lambda k: s[(k * (len(s) - 1)) // {n} + 1]) END)[1]",
        dialect="duckdb")


def _approx_top_count(node: exp.Expression) -> exp.Expression:
    """APPROX_TOP_COUNT(x, n) answered exactly: the n most frequent values with their counts, most
    frequent first, NULL counted as a value ("does not ignore NULLs"); NULL over zero rows."""
    value, number = node.this, node.expression
    if not (isinstance(number, exp.Literal) and not number.is_string and int(number.this) > 0):
        raise QueryError("APPROX_TOP_COUNT: the number of elements must be a positive INT64 literal")
    body = value.sql(dialect="duckdb")
    counted = (f"list_concat(list_transform(map_entries(histogram({body})), "
               f"lambda e: {{'c': CAST(e.value AS BIGINT), 'v': e.key}}), "
               f"CASE WHEN count(*) > count({body}) THEN [{{'c': count(*) - count({body}), 'v': NULL}}] ELSE [] END)")
    return exp.maybe_parse(
        f"CASE WHEN count(*) = 0 THEN NULL ELSE list_transform(list_slice(list_reverse_sort({counted}), 1, "
        f"{int(number.this)}), lambda e: {{'value': e.v, 'count': e.c}}) END", dialect="duckdb")


def _int64(node: exp.Expression) -> exp.Expression:
    """An integer literal as INT64 (BigQuery's type for it; DuckDB would make it a 32-bit INTEGER)."""
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
        return exp.Cast(this=node, to=exp.DataType.build("BIGINT"))
    return node


_SAFE_ARITHMETIC = {"SafeAdd": exp.Add, "SafeSubtract": exp.Sub, "SafeMultiply": exp.Mul}


def _checked_literals(node: exp.Expression) -> None:
    """Queries BigQuery rejects that DuckDB would answer, where the offending value is a literal."""
    if isinstance(node, exp.GenerateSeries):
        step = node.args.get("step")
        if isinstance(step, exp.Literal) and not step.is_string and float(step.this) == 0:
            raise QueryError("GENERATE_ARRAY: the step cannot be 0")  # array_functions#generate_array
    if isinstance(node, exp.RegexpExtract):
        pattern = node.expression
        if isinstance(pattern, (exp.Literal, exp.RawString)):
            groups = _capture_groups(str(pattern.this))
            if groups > 1:  # string_functions#regexp_extract: "more than one capturing group" is an error
                raise QueryError(f"REGEXP_EXTRACT: the regular expression {pattern.this!r} has {groups} "
                                 "capturing groups; BigQuery allows at most one")


def _capture_groups(pattern: str) -> int:
    """Capturing groups in an RE2 pattern: '(' not escaped, not in a class, not '(?'."""
    count, escaped, in_class = 0, False, False
    for i, ch in enumerate(pattern):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(" and not pattern.startswith("(?", i):
            count += 1
        elif ch == "(" and pattern.startswith("(?P<", i):
            count += 1
    return count


def range_frames(tree: exp.Expression, sql: str, line_of) -> None:
    """A RANGE frame with an offset (`RANGE BETWEEN 2 PRECEDING AND ...`) needs exactly one ORDER BY key, of a
    numeric type (window-function-calls#def_window_frame); DuckDB would also take a DATE or TIMESTAMP key (the
    offset read as days), so the key is checked (bq_range_checked) where BigQuery rejects the query.
    `line_of(sql, word)` names the line (semantics.line_of)."""
    for window in tree.find_all(exp.Window):
        spec = window.args.get("spec")
        if spec is None or str(spec.args.get("kind") or "").upper() != "RANGE":
            continue
        bounds = [spec.args.get("start"), spec.args.get("end")]
        if not any(isinstance(b, exp.Expression) and not (isinstance(b, exp.Var) or b.name.upper() in
                                                           ("UNBOUNDED", "CURRENT ROW")) for b in bounds if b is not None):
            continue
        order = window.args.get("order")
        keys = order.expressions if order is not None else []
        if len(keys) != 1:
            line = line_of(sql, "RANGE")
            raise QueryError(f"{f'line {line}: ' if line else ''}a RANGE window frame with an offset needs exactly "
                             f"one ORDER BY key, of a numeric type; this window has {len(keys)}")
        # the window itself, not a copy: semantics.rewrite knows its AVG's operand type by the node (numeric.annotate)
        checked = _call("bq_range_checked", exp.Null(), keys[0].this.copy())
        window.replace(checked)
        checked.set("expressions", [window, *checked.expressions[1:]])


def partition_keys(tree: exp.Expression, sql: str, line_of) -> None:
    """Each PARTITION BY key checked (bq_partition_key): BigQuery rejects a FLOAT64 key, DuckDB would partition."""
    for window in tree.find_all(exp.Window):
        keys = window.args.get("partition_by") or []
        if not keys:
            continue
        line = line_of(sql, "PARTITION")
        what = exp.Literal.string(f"line {line}" if line else "PARTITION BY")
        window.set("partition_by", [_call("bq_partition_key", key, what.copy()) for key in list(keys)])


def using_nan_keys(tree: exp.Expression, sql: str, line_of) -> None:
    """JOIN <right> USING (k, ...): the right-hand side read with each key checked (bq_using_key), so a NaN
    key is refused rather than matched; <right> a table, a subquery or an UNNEST (whose alias names its
    element, or whose STRUCT elements' fields are the keys: query-syntax#using_clause). Checking one side
    suffices: a NaN on the left matches nothing but a NaN on the right. ON a.k = b.k is NaN-correct already
    (nan_comparison); any other right-hand side is refused, since a FLOAT64 key there could not be checked."""
    for join in list(tree.find_all(exp.Join)):
        using = join.args.get("using") or []
        right = join.this
        if not using:
            continue
        line = line_of(sql, "USING")
        what = f"line {line}: JOIN ... USING" if line else "JOIN ... USING"
        if not isinstance(right, (exp.Table, exp.Subquery, exp.Unnest)):
            raise QueryError(f"{what}: the local warehouse cannot check this right-hand side ("
                             f"{type(right).__name__}) for NaN keys, which BigQuery never matches; write "
                             "ON a.k = b.k, or make the right-hand side a table, a subquery or an UNNEST")
        if isinstance(right, exp.Unnest):
            # an UNNEST's alias names its element (a column), or the STRUCT elements, whose fields are read
            columns = (right.args.get("alias") or exp.TableAlias()).args.get("columns") or []
            alias = columns[0].name if columns else "_kfkit_using"
        else:
            alias = right.alias_or_name or "_kfkit_using"  # an unaliased subquery's columns are read unqualified
        keys = ", ".join(f"bq_using_key({exp.column(k.name, quoted=True).sql(dialect='duckdb')}, "
                         f"{exp.Literal.string(f'{what} ({k.name})').sql(dialect='duckdb')}) "
                         f"AS {exp.to_identifier(k.name, quoted=True).sql(dialect='duckdb')}" for k in using)
        wrapped = exp.maybe_parse(f"(SELECT * REPLACE ({keys}) FROM _kfkit_using)", dialect="duckdb")
        wrapped.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        right.replace(wrapped)
        if not isinstance(right, exp.Unnest):
            right.set("alias", None)
        # the source itself, not a copy, still to be rewritten as BigQuery SQL: the rewrite knows the operand
        # types of its AVGs and divisions by the node (numeric.annotate)
        wrapped.find(exp.Table).replace(right)


def order_nan_keys(tree: exp.Expression) -> None:
    """Before each ORDER BY key, one that puts NULL and NaN where BigQuery does: ascending NULL (by
    default), NaN, -inf ... +inf; descending +inf ... -inf, NaN, NULL (data-types#floating_point_semantics)."""
    for order in tree.find_all(exp.Order):
        spec = order.parent.args.get("spec") if isinstance(order.parent, exp.Window) else None
        if spec is not None and str(spec.args.get("kind") or "").upper() == "RANGE":
            continue  # a RANGE frame orders by its one numeric key (window-function-calls#def_window_frame)
        keys = []
        for ordered in order.expressions:
            value = ordered.this
            if not isinstance(ordered, exp.Ordered) or (isinstance(value, exp.Literal) and not value.is_string):
                keys.append(ordered)  # ORDER BY 1 names a column
                continue
            desc = bool(ordered.args.get("desc"))
            nulls_first = ordered.args.get("nulls_first")
            nulls_first = (not desc) if nulls_first is None else bool(nulls_first)
            key = exp.maybe_parse(
                f"CASE WHEN {value.sql(dialect='bigquery')} IS NULL THEN {0 if nulls_first else 3} "
                f"WHEN bq_isnan({value.sql(dialect='bigquery')}) THEN {2 if desc else 1} ELSE {1 if desc else 2} END",
                dialect="bigquery")
            keys += [exp.Ordered(this=key, desc=False, nulls_first=False), ordered]
        order.set("expressions", keys)


def pivot_names(tree: exp.Expression) -> exp.Expression:
    """PIVOT's output columns named as BigQuery names them (query-syntax#pivot_operator): with an
    aggregate alias, <alias>_<value>; DuckDB names them <value>_<alias>. The pivoted source becomes a
    subquery that renames them."""
    for pivot in list(tree.find_all(exp.Pivot)):
        if pivot.args.get("unpivot") or not pivot.args.get("columns"):
            continue
        aliases = [e.alias for e in pivot.expressions if isinstance(e, exp.Alias)]
        if not aliases:
            continue  # one aggregate without an alias: both name the column by the value
        field = pivot.args["fields"][0]
        values = [v.alias if isinstance(v, exp.PivotAlias) else (v.this if isinstance(v, exp.Literal) else v.sql())
                  for v in field.expressions]
        duck = [f"{value}_{alias}" for value in values for alias in aliases]
        bigquery = [c.name for c in pivot.args["columns"]]
        renames = [(d, b) for d, b in zip(duck, bigquery) if d != b]
        holder = pivot.parent
        if not renames or not isinstance(holder, (exp.Table, exp.Subquery)):
            continue
        alias = pivot.args.get("alias")
        pivot.set("alias", None)
        renamed = ", ".join(f'"{d}" AS "{b}"' for d, b in renames)
        source = holder.copy()
        wrapped = exp.maybe_parse(f"(SELECT * RENAME ({renamed}) FROM {source.sql(dialect='duckdb')})", dialect="duckdb")
        wrapped.set("alias", alias or exp.TableAlias(this=exp.to_identifier("_kfkit_pivot")))
        holder.replace(wrapped)
    return tree


def fix(node: exp.Expression) -> exp.Expression | None:
    """The DuckDB form of one node of the long tail, or None when it is not one."""
    _checked_literals(node)
    if isinstance(node, exp.Format):
        return _format(node)
    if isinstance(node, exp.StrPosition):
        return _instr(node)
    kind = type(node).__name__
    if kind in _SAFE_ARITHMETIC:  # mathematical_functions#safe_add: NULL where the operation overflows
        operation = _SAFE_ARITHMETIC[kind](this=_int64(node.this), expression=_int64(node.expression))
        return _call("TRY", exp.Paren(this=operation))
    if kind == "SafeNegate":
        return _call("TRY", exp.Neg(this=exp.Paren(this=_int64(node.this))))
    if isinstance(node, exp.Min) and not isinstance(node.parent, exp.Window):
        # NaN when any input is NaN: DuckDB's MAX is that NaN (it orders NaN last), of the same type
        value = node.this
        return exp.If(this=_call("bool_or", _call("bq_isnan", value.copy())),
                      true=exp.Max(this=value.copy()), false=node.copy())
    if isinstance(node, exp.Least) and not node.args.get("ignore_nulls"):
        values, bind = shared([node.this, *node.expressions])
        any_nan = exp.or_(*[_call("bq_isnan", v.copy()) for v in values])
        return bind(exp.If(this=any_nan, true=_over(exp.Greatest(), values), false=_over(node.copy(), values)))
    if isinstance(node, exp.Greatest) and not node.args.get("ignore_nulls"):
        # the DuckDB form repeats each argument (NULL if any is NULL); computed once, as BigQuery does
        arguments = [node.this, *node.expressions]
        values, bind = shared(arguments)
        return None if values is arguments else bind(_over(node.copy(), values))
    if isinstance(node, exp.ArrayConcat):  # array_functions#array_concat: NULL if any input is NULL
        arrays = [node.this, *node.expressions]
        any_null = exp.or_(*[exp.Is(this=a.copy(), expression=exp.Null()) for a in arrays])
        return exp.If(this=any_null, true=exp.Null(), false=_call("flatten", exp.Array(expressions=[a.copy() for a in arrays])))
    if isinstance(node, exp.ArrayToString) and not isinstance(node.expression, exp.Literal):
        # array_functions#array_to_string: a NULL delimiter gives NULL (DuckDB would join with ',')
        return exp.If(this=exp.Is(this=node.expression.copy(), expression=exp.Null()),
                      true=exp.Cast(this=exp.Null(), to=exp.DataType.build("VARCHAR")), false=node.copy())
    if isinstance(node, exp.BitwiseCount):  # BIT_COUNT of an INT64 counts its 64 bits (two's complement)
        return _call("bit_count", exp.Cast(this=node.this, to=exp.DataType.build("BIGINT")))
    if isinstance(node, exp.ApproxDistinct):  # exact: COUNT(DISTINCT x), "the actual value"
        return exp.Count(this=exp.Distinct(expressions=[node.this]))
    if kind == "ApproxQuantiles":  # rewritten bottom-up: the RESPECT NULLS around it is its parent
        return _approx_quantiles(node, respect_nulls=isinstance(node.parent, exp.RespectNulls))
    if kind == "ApproxTopK":
        return _approx_top_count(node)
    if kind in _JSON_FUNCTIONS:
        return _json(node, *_JSON_FUNCTIONS[kind])
    return nan_comparison(node)


def instr(source, search, position, occurrence):
    """INSTR (string_functions#instr): the 1-based position of the occurrence-th match of search,
    overlapping matches counted, searching from position (backwards from the end when negative);
    0 when there is none; an error for position 0 or occurrence < 1."""
    if source is None or search is None or position is None or occurrence is None:
        return None
    if position == 0:
        raise ValueError("INSTR: position cannot be 0")
    if occurrence < 1:
        raise ValueError(f"INSTR: occurrence must be positive, got {occurrence}")
    if position > 0:
        start, found = position - 1, 0
        while True:
            index = source.find(search, start)
            if index < 0:
                return 0
            found += 1
            if found == occurrence:
                return index + 1
            start = index + 1
    latest, found = len(source) + position, 0  # 0-based: the last index a match may start at
    while latest >= 0:
        index = source.rfind(search, 0, latest + len(search))
        if index < 0:
            return 0
        found += 1
        if found == occurrence:
            return index + 1
        latest = index - 1  # overlapping matches count
    return 0


# ---- JSON functions over JSON text (json_functions.json_scalar / json_array) --------------------------
_JSON_FUNCTIONS = {"JSONExtract": ("bq_json_scalar", "query"), "JSONExtractScalar": ("bq_json_scalar", "value"),
                   "JSONExtractArray": ("bq_json_array", "query"), "JSONValueArray": ("bq_json_array", "value")}


def _json(node: exp.Expression, function: str, mode: str) -> exp.Expression:
    path = node.expression
    if path is None:
        path = exp.Literal.string("$")
    elif isinstance(path, exp.JSONPath):
        raw = path.meta.get("kfkit_path")
        if raw is None:
            raise QueryError(f"{node.sql(dialect='bigquery')[:60]}: the local warehouse needs the JSONPath as a string "
                             "literal or a STRING value")
        path = exp.Literal.string(raw)
    elif not (isinstance(path, exp.Literal) and path.is_string):
        path = exp.Cast(this=path, to=exp.DataType.build("VARCHAR"))
    value = node.this
    is_json = exp.EQ(this=_call("typeof", value.copy()), expression=exp.Literal.string("JSON"))
    return _call(function, exp.Cast(this=value.copy(), to=exp.DataType.build("VARCHAR")), path,
                 exp.Literal.string(mode), is_json)


# ---- NaN in comparisons ------------------------------------------------------------------------
# operators#comparison_operators and data-types#floating_point_semantics: every comparison with NaN is
# FALSE except !=, which is TRUE (IEEE 754); DuckDB holds NaN equal to itself and above +inf. Each
# comparison gets a guard through bq_isnan, whose typeof() test DuckDB folds to FALSE at bind time for
# any operand that is not FLOAT64, so the guard vanishes there (a join on INT64 keys stays a hash join).
_NON_FLOAT_TYPES = {exp.DataType.Type.DATE, exp.DataType.Type.DATETIME, exp.DataType.Type.TIMESTAMP,
                    exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIME, exp.DataType.Type.TEXT,
                    exp.DataType.Type.VARCHAR, exp.DataType.Type.BOOLEAN, exp.DataType.Type.BIGINT,
                    exp.DataType.Type.INT, exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY}


def _never_nan(node: exp.Expression) -> bool:
    """An operand that cannot be NaN and rules out a FLOAT64 on the other side, or a NULL literal."""
    if isinstance(node, exp.Literal):
        return node.is_string
    if isinstance(node, (exp.Boolean, exp.Null)):
        return True
    return (isinstance(node, exp.Cast) and node.to.this in _NON_FLOAT_TYPES
            and node.to.this not in (exp.DataType.Type.BIGINT, exp.DataType.Type.INT))


def _integer(node: exp.Expression) -> bool:
    if isinstance(node, exp.Cast) and node.to.is_type("bigint", "int"):
        node = node.this
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit()


def _may_compare_nan(a: exp.Expression, b: exp.Expression) -> bool:
    return not (_never_nan(a) or _never_nan(b) or (_integer(a) and _integer(b)))


def _not_nan(node: exp.Expression) -> exp.Expression:
    return exp.Not(this=_call("bq_isnan", node.copy()))


def _is_null(node: exp.Expression) -> exp.Expression | None:
    """`node IS NULL`, or None where it is a literal that is never NULL."""
    if isinstance(node, exp.Literal) or (isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal)):
        return None
    return exp.Is(this=node.copy(), expression=exp.Null())


def _guarded(comparison: exp.Expression, nan_side: exp.Expression, other: exp.Expression) -> exp.Expression:
    """`comparison AND (NOT isnan(nan_side) OR other IS NULL)`: FALSE where nan_side is NaN, NULL kept."""
    other_null = _is_null(other)
    guard = _not_nan(nan_side) if other_null is None else exp.Or(this=_not_nan(nan_side), expression=other_null)
    return exp.Paren(this=exp.And(this=exp.Paren(this=comparison), expression=exp.Paren(this=guard)))


def nan_equal(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return _guarded(exp.EQ(this=a.copy(), expression=b.copy()), a, b)


def nan_comparison(node: exp.Expression) -> exp.Expression | None:
    """The NaN-correct form of one comparison, or None where it is not one or NaN cannot reach it."""
    if isinstance(node, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
        a, b = node.this, node.expression
        if not _may_compare_nan(a, b):
            return None
        if isinstance(node, exp.EQ):
            return nan_equal(a, b)
        if isinstance(node, exp.NEQ):  # NaN != anything that is not NULL is TRUE
            b_not_null = _is_null(b)
            nan_true = _call("bq_isnan", a.copy()) if b_not_null is None else exp.And(
                this=_call("bq_isnan", a.copy()), expression=exp.Not(this=b_not_null))
            return exp.Paren(this=exp.Or(this=exp.Paren(this=node.copy()), expression=exp.Paren(this=nan_true)))
        if isinstance(node, (exp.LT, exp.LTE)):  # DuckDB: x < NaN; NaN < x is FALSE on both
            return _guarded(node.copy(), b, a)
        return _guarded(node.copy(), a, b)  # x > NaN is FALSE on both; NaN > x is not
    if isinstance(node, exp.Between):
        value, low, high = node.this, node.args["low"], node.args["high"]
        if not (_may_compare_nan(value, low) or _may_compare_nan(value, high)):
            return None
        return exp.Paren(this=exp.And(this=nan_comparison(exp.GTE(this=value.copy(), expression=low.copy())) or
                                      exp.GTE(this=value.copy(), expression=low.copy()),
                                      expression=nan_comparison(exp.LTE(this=value.copy(), expression=high.copy())) or
                                      exp.LTE(this=value.copy(), expression=high.copy())))
    if isinstance(node, exp.In):
        return _nan_in(node)
    if isinstance(node, exp.Nullif):
        a, b = node.this, node.expression
        if not _may_compare_nan(a, b):
            return None
        return exp.Case(ifs=[exp.If(this=nan_equal(a, b), true=exp.Null())], default=a.copy())
    if isinstance(node, exp.Case) and node.this is not None:  # CASE x WHEN v: x = v
        subject = node.this
        if all(not _may_compare_nan(subject, branch.this) for branch in node.args.get("ifs") or []):
            return None
        ifs = [exp.If(this=nan_equal(subject, branch.this), true=branch.args["true"].copy())
               for branch in node.args.get("ifs") or []]
        default = node.args.get("default")
        return exp.Case(ifs=ifs, default=default.copy() if default is not None else None)
    return None


def _nan_in(node: exp.In) -> exp.Expression | None:
    """x IN (...): where x is NaN, NULL if the set holds a NULL, else FALSE (x = v is never TRUE)."""
    value = node.this
    if isinstance(node.parent, exp.Pivot):  # PIVOT(... FOR x IN (...)) names columns, compares nothing
        return None
    if node.args.get("expressions"):
        elements = node.args["expressions"]
        if all(not _may_compare_nan(value, e) for e in elements):
            return None
        nulls = [n for n in (_is_null(e) for e in elements) if n is not None]
        if any(isinstance(e, exp.Null) for e in elements):
            set_null = exp.Null()
        elif nulls:
            set_null = exp.Case(ifs=[exp.If(this=exp.or_(*nulls), true=exp.Null())], default=exp.false())
        else:
            set_null = None
    elif node.args.get("unnest") is not None:
        if _never_nan(value):
            return None
        array = node.args["unnest"].expressions[0]
        set_null = exp.Case(ifs=[exp.If(this=exp.NEQ(this=_call("len", array.copy()),
                                                     expression=_call("list_count", array.copy())),
                                        true=exp.Null())], default=exp.false())
    elif node.args.get("query") is not None:
        if _never_nan(value):
            return None
        query = node.args["query"]
        inner = query.this if isinstance(query, exp.Subquery) else query
        probe = exp.maybe_parse("EXISTS(SELECT 1 FROM (SELECT 1) AS _kfkit_in WHERE FALSE)", dialect="duckdb")
        from_ = exp.Subquery(this=inner.copy(), alias=exp.TableAlias(this=exp.to_identifier("_kfkit_in"),
                                                                       columns=[exp.to_identifier("_kfkit_v")]))
        select = probe.this
        select.set("from_" if "from_" in select.args else "from", exp.From(this=from_))
        select.set("where", exp.Where(this=exp.Is(this=exp.column("_kfkit_v"), expression=exp.Null())))
        set_null = exp.Case(ifs=[exp.If(this=probe, true=exp.Null())], default=exp.false())
    else:
        return None
    guard = _not_nan(value) if set_null is None else exp.Or(this=_not_nan(value), expression=set_null)
    return exp.Paren(this=exp.And(this=exp.Paren(this=node.copy()), expression=exp.Paren(this=guard)))


def _named_window(window: exp.Window) -> exp.Window | None:
    """The WINDOW clause definition `OVER w` names (query-syntax#window_clause), or None."""
    name = window.args.get("alias")
    select = window.find_ancestor(exp.Select)
    if not isinstance(name, exp.Identifier) or select is None:
        return None
    for defined in select.args.get("windows") or []:
        if isinstance(defined.this, exp.Identifier) and defined.this.name.lower() == name.name.lower():
            return defined
    return None


def distinct_windows(tree: exp.Expression, sql: str, line_of) -> None:
    """An aggregate with DISTINCT and an OVER clause: BigQuery answers it over the partition (the SUM and COUNT
    examples in aggregate_functions), but rejects a window ORDER BY or a window frame beside DISTINCT (ZetaSQL's
    analytic_function_resolver: "Window ORDER BY is not allowed if DISTINCT is specified"), which DuckDB would
    answer over a running frame."""
    for window in list(tree.find_all(exp.Window)):
        function = window.this
        if not isinstance(function, exp.Func) or not isinstance(function.this, exp.Distinct):
            continue
        name = function.sql_name() if not isinstance(function, exp.Anonymous) else str(function.this).upper()
        line = line_of(sql, name)
        where = f"line {line}: " if line else ""
        named = _named_window(window)
        for spec in (window, named):
            if spec is None:
                continue
            if spec.args.get("order") is not None:
                raise QueryError(f"{where}{name}(DISTINCT ...) OVER (...): Window ORDER BY is not allowed if DISTINCT "
                                 "is specified")
            if spec.args.get("spec") is not None:
                raise QueryError(f"{where}{name}(DISTINCT ...) OVER (...): Window framing clause is not allowed if "
                                 "DISTINCT is specified")


def using_offsets(tree: exp.Expression, sql: str, line_of) -> None:
    """JOIN ... USING (o) where o is an UNNEST's WITH OFFSET column: BigQuery joins on it (query-syntax#using_clause);
    the local warehouse numbers UNNEST's rows under another name (DuckDB's ORDINALITY counts from 1), so USING
    cannot find o there: refused, naming USING and the line, rather than DuckDB's 'does not exist' message."""
    for select in tree.find_all(exp.Select):
        offsets = set()
        for unnest in select.find_all(exp.Unnest):
            offset = unnest.args.get("offset")
            if isinstance(offset, exp.Identifier) and unnest.find_ancestor(exp.Select) is select:
                offsets.add(offset.name.lower())
        if not offsets:
            continue
        for join in select.args.get("joins") or []:
            for key in join.args.get("using") or []:
                if key.name.lower() in offsets:
                    line = line_of(sql, "USING")
                    raise QueryError(f"{f'line {line}: ' if line else ''}JOIN ... USING ({key.name}): {key.name} is the "
                                     "WITH OFFSET column of an UNNEST, which the local warehouse cannot join on with "
                                     f"USING; write ON {key.name} = <other side>.{key.name} (and select the column you "
                                     "mean), or run it on BigQuery")
