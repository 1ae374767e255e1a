"""BigQuery's meaning for the constructs where sqlglot's DuckDB output would answer differently.

sqlglot translates BigQuery syntax to DuckDB syntax; it does not promise the same values. Each
rewrite here fixes one documented difference (the conformance suite in tests/sql_conformance
holds the documented expected values), and `refusals` lists what the local warehouse will not
run because it cannot give BigQuery's answer. The DuckDB macros below carry BigQuery's names
where sqlglot passes a function through unchanged (ST_GEOGPOINT, ...), so no rewrite is needed.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from kfkit.errors import QueryError
from kfkit.warehouse import arguments, long_tail, numeric, strings
from kfkit.warehouse.json_functions import DECIMAL_TO_STRING_SQL

# S2's earth radius (s2/s2earth.h), the sphere BigQuery's geography functions measure on.
EARTH_RADIUS_M = 6371010.0

MACROS = [
    # a hex INT64 string with its sign (conversion_functions: '-0x123' is -291); DuckDB casts only an unsigned one
    """CREATE OR REPLACE MACRO bq_hex_int64(s) AS
         CASE WHEN s[1] = '-' THEN -1 ELSE 1 END * CAST(regexp_replace(s, '^[+-]', '') AS BIGINT)""",
    # CAST(STRING AS BOOL) takes 'true' and 'false' in any case, nothing else (ZetaSQL's StringToNumeric<bool>);
    # DuckDB's also took '1', 't', 'yes'
    """CREATE OR REPLACE MACRO bq_bool(x, what) AS CASE
         WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS BOOLEAN)
         WHEN lower(TRY_CAST(x AS VARCHAR)) = 'true' THEN true
         WHEN lower(TRY_CAST(x AS VARCHAR)) = 'false' THEN false
         ELSE error(what || ': Bad bool value: ' || TRY_CAST(x AS VARCHAR)) END""",
    """CREATE OR REPLACE MACRO bq_safe_bool(x) AS CASE
         WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS BOOLEAN)
         WHEN lower(TRY_CAST(x AS VARCHAR)) = 'true' THEN true
         WHEN lower(TRY_CAST(x AS VARCHAR)) = 'false' THEN false ELSE NULL END""",
    # CAST of a TIMESTAMP, DATETIME or TIME to STRING writes 0, 3 or 6 fractional digits (ZetaSQL narrows the
    # fraction to seconds, milliseconds or microseconds); DuckDB drops every trailing zero
    """CREATE OR REPLACE MACRO bq_fraction_text(s) AS CASE
         WHEN NOT contains(s, '.') THEN s
         ELSE regexp_replace(s, '\\.[0-9]+', '.' || rpad(regexp_extract(s, '\\.([0-9]+)', 1),
              CASE WHEN length(regexp_extract(s, '\\.([0-9]+)', 1)) <= 3 THEN 3 ELSE 6 END, '0')) END""",
    # UNIX_SECONDS truncates to the start of the second, before 1970 too (DuckDB's CAST(EPOCH(t) AS BIGINT) rounded)
    """CREATE OR REPLACE MACRO bq_unix_seconds(t) AS
         (epoch_us(t) - ((epoch_us(t) % 1000000) + 1000000) % 1000000) // 1000000""",
    # STRING_AGG's values joined (semantics._string_agg): NULL for none; a BYTES value the translation could not
    # tell from a STRING is an error rather than its text
    """CREATE OR REPLACE MACRO bq_join_text(l, separator, what) AS CASE
         WHEN typeof(l) = 'BLOB[]' THEN error(what || ': STRING_AGG of a BYTES value the local warehouse cannot type '
              || 'here; CAST it AS BYTES where it is aggregated')
         WHEN len(l) = 0 THEN NULL ELSE array_to_string(l, separator) END""",
    # a STRING cast to a DATE, DATETIME, TIME or TIMESTAMP in BigQuery's format only (semantics._TIME_TEXT)
    """CREATE OR REPLACE MACRO bq_time_text(x, pattern, what, name) AS CASE
         WHEN typeof(x) = 'VARCHAR' AND regexp_matches(TRY_CAST(x AS VARCHAR), ' UTC[+-]')
           THEN error(what || ': a ' || name || ' string with a time zone written UTC+offset, which the local '
                || 'warehouse does not take where the query reads it (BigQuery does); write the offset alone (+05:30)')
         WHEN typeof(x) = 'VARCHAR' AND NOT regexp_full_match(TRY_CAST(x AS VARCHAR), pattern)
           THEN error(what || ': Invalid ' || name || ': ''' || TRY_CAST(x AS VARCHAR) || '''') ELSE x END""",
    """CREATE OR REPLACE MACRO bq_safe_time_text(x, pattern, what, name) AS CASE
         WHEN typeof(x) = 'VARCHAR' AND regexp_matches(TRY_CAST(x AS VARCHAR), ' UTC[+-]')
           THEN error(what || ': a ' || name || ' string with a time zone written UTC+offset, which the local '
                || 'warehouse does not take where the query reads it (BigQuery does); write the offset alone (+05:30)')
         WHEN typeof(x) = 'VARCHAR' AND NOT regexp_full_match(TRY_CAST(x AS VARCHAR), pattern) THEN NULL
         ELSE x END""",
    """CREATE OR REPLACE MACRO bq_text_only(x, what) AS CASE
         WHEN typeof(x) = 'BLOB' THEN error(what || ': STRING_AGG of a BYTES value the local warehouse cannot type '
              || 'here; CAST it AS BYTES where it is aggregated') ELSE x END""",
    """CREATE OR REPLACE MACRO bq_join_bytes(l, separator) AS CASE
         WHEN len(l) = 0 THEN NULL
         ELSE unhex(array_to_string(list_transform(l, lambda e: hex(e)), hex(separator))) END""",
    # MIN and MAX take an orderable type: ARRAY and STRUCT are BigQuery's analyzer errors (DuckDB ordered them)
    """CREATE OR REPLACE MACRO bq_orderable(x, what) AS CASE
         WHEN typeof(x) LIKE 'STRUCT%' OR typeof(x) LIKE '%[]' THEN error(what || ': No matching signature for '
              || 'aggregate function: it takes an orderable type, not ARRAY or STRUCT')
         ELSE x END""",
    # Casting FLOAT64/NUMERIC to INT64 rounds half away from zero; a STRING must be an integer literal
    # (decimal or hex), never rounded. DuckDB's CAST rounds half to even and accepts '2.5'.
    """CREATE OR REPLACE MACRO bq_int64(x) AS CASE
         WHEN typeof(x) IN ('DOUBLE', 'FLOAT') THEN CAST(round(TRY_CAST(x AS DOUBLE)) AS BIGINT)
         WHEN typeof(x) LIKE 'DECIMAL%' THEN CAST(round(TRY_CAST(x AS DECIMAL(38, 9))) AS BIGINT)
         WHEN typeof(x) = 'VARCHAR' THEN CASE
           WHEN regexp_full_match(TRY_CAST(x AS VARCHAR), '\\s*[+-]?[0-9]+\\s*')
             THEN CAST(TRY_CAST(x AS VARCHAR) AS BIGINT)
           WHEN regexp_full_match(TRY_CAST(x AS VARCHAR), '\\s*[+-]?0[xX][0-9a-fA-F]+\\s*')
             THEN bq_hex_int64(regexp_replace(TRY_CAST(x AS VARCHAR), '\\s', '', 'g'))
           ELSE error('Bad int64 value: ' || TRY_CAST(x AS VARCHAR)) END
         ELSE CAST(x AS BIGINT) END""",
    """CREATE OR REPLACE MACRO bq_safe_int64(x) AS CASE
         WHEN typeof(x) IN ('DOUBLE', 'FLOAT') THEN TRY_CAST(round(TRY_CAST(x AS DOUBLE)) AS BIGINT)
         WHEN typeof(x) LIKE 'DECIMAL%' THEN TRY_CAST(round(TRY_CAST(x AS DECIMAL(38, 9))) AS BIGINT)
         WHEN typeof(x) = 'VARCHAR' THEN CASE
           WHEN regexp_full_match(TRY_CAST(x AS VARCHAR), '\\s*[+-]?[0-9]+\\s*')
             THEN TRY_CAST(TRY_CAST(x AS VARCHAR) AS BIGINT)
           WHEN regexp_full_match(TRY_CAST(x AS VARCHAR), '\\s*[+-]?0[xX][0-9a-fA-F]+\\s*')
             THEN TRY(bq_hex_int64(regexp_replace(TRY_CAST(x AS VARCHAR), '\\s', '', 'g'))) ELSE NULL END
         ELSE TRY_CAST(x AS BIGINT) END""",
    # CAST(FLOAT64 AS STRING) is ZetaSQL's RoundTripDoubleToString (%.15g unless it does not round-trip)
    f"""CREATE OR REPLACE MACRO bq_string(x) AS CASE
         WHEN typeof(x) IN ('DOUBLE', 'FLOAT') THEN bq_double_to_string(TRY_CAST(x AS DOUBLE))
         WHEN typeof(x) LIKE 'DECIMAL%' THEN {DECIMAL_TO_STRING_SQL.format(x="x")}
         WHEN typeof(x) = 'BLOB' THEN decode(TRY_CAST(x AS BLOB))
         WHEN typeof(x) IN ('TIMESTAMP WITH TIME ZONE', 'TIMESTAMP', 'TIME') THEN bq_fraction_text(CAST(x AS VARCHAR))
         ELSE CAST(x AS VARCHAR) END""",
    # x / y is FLOAT64 and an error when y is 0 (IEEE_DIVIDE gives inf/NaN, SAFE_DIVIDE NULL)
    """CREATE OR REPLACE MACRO bq_divide(x, y) AS CASE
         WHEN y = 0 THEN error('division by zero: ' || CAST(x AS VARCHAR) || ' / ' || CAST(y AS VARCHAR))
         ELSE CAST(x AS DOUBLE) / CAST(y AS DOUBLE) END""",
    """CREATE OR REPLACE MACRO bq_mod(x, y) AS CASE
         WHEN typeof(x) IN ('DOUBLE', 'FLOAT') OR typeof(y) IN ('DOUBLE', 'FLOAT')
           THEN error('MOD takes INT64 or NUMERIC arguments, not FLOAT64')
         WHEN y = 0 THEN error('division by zero: ' || CAST(x AS VARCHAR) || ' / ' || CAST(y AS VARCHAR))
         ELSE x % y END""",
    "CREATE OR REPLACE MACRO ieee_divide(x, y) AS CAST(x AS DOUBLE) / CAST(y AS DOUBLE)",
    # TIMESTAMP_DIFF counts whole units of elapsed time, truncated toward zero
    """CREATE OR REPLACE MACRO bq_ts_diff(a, b, unit_us) AS
         ((epoch_us(a) - epoch_us(b)) - (epoch_us(a) - epoch_us(b)) % unit_us) // unit_us""",
    # ARRAY_AGG: an array may not hold NULL (use IGNORE NULLS)
    """CREATE OR REPLACE MACRO bq_array_no_nulls(l) AS CASE
         WHEN len(list_filter(l, lambda v: v IS NULL)) > 0
           THEN error('ARRAY_AGG: Array cannot have a null element; use ARRAY_AGG(... IGNORE NULLS)')
         ELSE l END""",
    # Geography, points only: kept as a struct; ST_DISTANCE is S2's haversine on a sphere.
    """CREATE OR REPLACE MACRO st_geogpoint(lng, lat) AS CASE
         WHEN lng IS NULL OR lat IS NULL THEN NULL
         WHEN lat < -90 OR lat > 90 OR isnan(lat) OR isnan(lng) OR isinf(lng)
           THEN error('ST_GEOGPOINT: latitude must be in [-90, 90], got ' || CAST(lat AS VARCHAR))
         ELSE struct_pack(kfkit_geography_lng := CASE WHEN lng BETWEEN -180 AND 180 THEN CAST(lng AS DOUBLE)
                                                      ELSE ((CAST(lng AS DOUBLE) + 180) % 360 + 360) % 360 - 180 END,
                          kfkit_geography_lat := CAST(lat AS DOUBLE)) END""",
    f"""CREATE OR REPLACE MACRO st_distance(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL
         ELSE {EARTH_RADIUS_M} * 2 * asin(sqrt(least(1.0,
         pow(sin(radians(b.kfkit_geography_lat - a.kfkit_geography_lat) / 2), 2)
         + cos(radians(a.kfkit_geography_lat)) * cos(radians(b.kfkit_geography_lat))
           * pow(sin(radians(b.kfkit_geography_lng - a.kfkit_geography_lng) / 2), 2)))) END""",
    "CREATE OR REPLACE MACRO st_dwithin(a, b, d) AS st_distance(a, b) <= d",
    "CREATE OR REPLACE MACRO st_x(p) AS p.kfkit_geography_lng",
    "CREATE OR REPLACE MACRO st_y(p) AS p.kfkit_geography_lat",
    # BigQuery's `%.15g` rendering of a number in ST_ASTEXT
    """CREATE OR REPLACE MACRO st_astext(p) AS
         'POINT(' || bq_double_to_string(p.kfkit_geography_lng) || ' '
         || bq_double_to_string(p.kfkit_geography_lat) || ')'""",
    # BigQuery's INT64 sums: DuckDB widens to HUGEINT; an overflow is an error on both
    "CREATE OR REPLACE MACRO bq_current_datetime(tz) AS timezone(tz, current_timestamp)",
    """CREATE OR REPLACE MACRO bq_byte_length(x) AS CASE
         WHEN typeof(x) = 'BLOB' THEN octet_length(TRY_CAST(x AS BLOB))
         ELSE strlen(TRY_CAST(x AS VARCHAR)) END""",
    # arr[OFFSET(i)] / arr[ORDINAL(i)] outside the array is an error (SAFE_ variants give NULL)
    """CREATE OR REPLACE MACRO bq_element(arr, i, base) AS CASE
         WHEN arr IS NULL OR i IS NULL THEN NULL
         WHEN i - base < 0 OR i - base >= len(arr)
           THEN error('Array index ' || CAST(i AS VARCHAR) || ' is out of bounds')
         ELSE arr[i - base + 1] END""",
] + long_tail.MACROS + arguments.MACROS

# Operators whose integer literal operands BigQuery computes in INT64.
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg)

# Units of TIMESTAMP_DIFF (a DAY is 24 hours there) in microseconds.
_UNIT_US = {"MICROSECOND": 1, "MILLISECOND": 1_000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
            "HOUR": 3_600_000_000, "DAY": 86_400_000_000}

# time_bucket widths and, for weeks, the offset from DuckDB's Monday origin (2000-01-03).
_WEEKDAY_OFFSET = {"MONDAY": 0, "TUESDAY": 1, "WEDNESDAY": 2, "THURSDAY": 3, "FRIDAY": 4, "SATURDAY": 5,
                   "SUNDAY": 6}
_BUCKETS = {"MICROSECOND": "1 MICROSECOND", "MILLISECOND": "1 MILLISECOND", "SECOND": "1 SECOND",
            "MINUTE": "1 MINUTE", "HOUR": "1 HOUR", "DAY": "1 DAY", "MONTH": "1 MONTH", "QUARTER": "3 MONTH",
            "YEAR": "1 YEAR"}

# Functions whose BigQuery value the local warehouse cannot reproduce, and what to use instead.
REFUSED_FUNCTIONS = {
    "APPROX_TOP_SUM": "GROUP BY ... ORDER BY SUM(...) DESC LIMIT n",
    "HLL_COUNT": "COUNT(DISTINCT ...)",
    "ST_GEOGFROMTEXT": "ST_GEOGPOINT(longitude, latitude) (points are the geography the local warehouse has)",
    "ST_GEOGFROMGEOJSON": "ST_GEOGPOINT(longitude, latitude)",
    "ST_AREA": "a computation on BigQuery itself",
    "ST_LENGTH": "a computation on BigQuery itself",
    "ST_BUFFER": "ST_DWITHIN(a, b, meters)",
    "ST_INTERSECTS": "ST_DWITHIN(a, b, 0)",
    "ST_CONTAINS": "ST_DWITHIN for points",
    "ST_MAKELINE": "a computation on BigQuery itself",
    "ML.PREDICT": "kfkit's batch_predict component",
    "KEYS.NEW_KEYSET": "a computation on BigQuery itself",
    "AEAD.ENCRYPT": "a computation on BigQuery itself",
    "NET.HOST": "REGEXP_EXTRACT(url, r'^[a-z]+://([^/:?#]+)')",
    "NET.REG_DOMAIN": "REGEXP_EXTRACT on the host",
    "NET.PUBLIC_SUFFIX": "REGEXP_EXTRACT on the host",
    "PARSE_BIGNUMERIC": "PARSE_NUMERIC or CAST(x AS NUMERIC)",
    "BIGNUMERIC": "NUMERIC (38 digits, 9 after the point); DuckDB has no 76-digit decimal",
    "RANGE_BUCKET": "a CASE expression over the boundaries",
    "GENERATE_TIMESTAMP_ARRAY": "GENERATE_DATE_ARRAY and TIMESTAMP(date)",
    # a JSON value: BigQuery writes its object members sorted and keeps INT64 exact, where the local
    # translation (TO_JSON_STRING's text) keeps the fields' order and quotes integers past 2^53
    "TO_JSON": "TO_JSON_STRING(...) (the JSON text as a STRING)",
}

_DUCKDB_STRFTIME = set("aAwudbBmyYHIpMSjUWVGZz%")  # elements DuckDB's strftime shares with BigQuery


# DuckDB's error() has side effects: an expression holding it cannot be named by its alias in ORDER BY
# (`SELECT x / 2 AS y ... ORDER BY y`) nor sit in a window's ORDER BY. A failing CAST has none, but DuckDB
# folds a constant one even in a CASE branch not taken; so each macro that raises gets a twin, name_rows,
# raising through bq_fail with its arguments in the failing text (never constant where that argument
# holds a column), and rows_variants() picks the twin for a call whose arguments read a column.
# local.explain_error reports the message.
FAIL_MACRO = """CREATE OR REPLACE MACRO bq_fail(dep, msg) AS CASE
     WHEN CAST(('kfkit-error: ' || msg || CASE WHEN dep IS NULL THEN '' ELSE '' END) AS INTEGER) IS NULL THEN NULL
     ELSE NULL END"""
_MACRO_HEAD = re.compile(r"CREATE OR REPLACE MACRO (\w+)\(([\w, ]*)\)", re.S)


def row_twins(macros: list[str]) -> tuple[list[str], set[str]]:
    """The name_rows twin of every macro that calls error(), and the names that have one."""
    twins, names = [], set()
    for macro in macros:
        head = _MACRO_HEAD.search(macro)
        if head is None or "error(" not in macro:
            continue
        name, params = head.group(1), [p.strip() for p in head.group(2).split(",") if p.strip()]
        dep = "(" + " OR ".join(f"{p} IS NULL" for p in params) + ")"
        body = re.sub(r"(?<![\w.])error\(", f"bq_fail({dep}, ", macro[head.end():])
        twins.append(f"CREATE OR REPLACE MACRO {name}_rows({', '.join(params)}){body}")
        names.add(name.lower())
    return twins, names


def use_row_twins(tree: exp.Expression, names: set[str]) -> None:
    """Call the name_rows twin where a raising macro's arguments read a column (see FAIL_MACRO)."""
    for call in list(tree.find_all(exp.Anonymous)):
        name = str(call.this).lower()
        if name in names and any(True for _ in call.find_all(exp.Column)):
            call.set("this", f"{name}_rows")


def line_of(sql: str, name: str) -> int | None:
    """The first line (1-based) of the query text that names `name` as a word, or None."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])", re.I)
    for number, text in enumerate(sql.splitlines(), start=1):
        if pattern.search(text):
            return number
    return None


def _line_of(node: exp.Expression, sql: str) -> int:
    meta = getattr(node, "meta", None) or {}
    if "line" in meta:
        return int(meta["line"])
    return line_of(sql, node.sql(dialect="bigquery").split("(")[0]) or 1


def refusals(tree: exp.Expression, sql: str) -> None:
    """Raise QueryError for the first construct whose BigQuery value the local warehouse cannot give."""
    for node in tree.walk():
        name = None
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.BIGDECIMAL:
            name = "BIGNUMERIC"
        elif isinstance(node, exp.Anonymous):
            upper = str(node.this).upper()
            if upper in REFUSED_FUNCTIONS:
                name = upper
            elif upper.startswith("HLL_COUNT"):
                name = "HLL_COUNT"
        elif isinstance(node, exp.Func) and node.sql_name() in REFUSED_FUNCTIONS:
            # a function sqlglot knows by name (APPROX_TOP_SUM, RANGE_BUCKET, ...) is no Anonymous node
            name = node.sql_name()
        elif isinstance(node, exp.JSONFormat) and node.args.get("to_json"):
            name = "TO_JSON"
        elif (isinstance(node, (exp.Int64, exp.JSONBool)) and not isinstance(node.this, (exp.Literal, exp.Boolean))
              or isinstance(node, exp.String) and isinstance(node.this, (exp.ParseJSON, exp.JSONExtract))):
            # (a literal of another type is BigQuery's signature error: arguments.check names it)
            # json_functions#int64_for_json, #bool_for_json, #string_for_json: a JSON string, a number
            # with a fraction or JSON null is an error or NULL there; DuckDB's cast gave 1 for '"1"',
            # 2 for 1.5 and the quoted text for STRING
            function = {exp.Int64: "INT64", exp.JSONBool: "BOOL"}.get(type(node), "STRING")
            raise QueryError(f"line {_line_of(node, sql)}: {function}(JSON) is not supported by the local "
                             f"warehouse (it cannot give BigQuery's value); write JSON_VALUE(json) (a STRING, "
                             f"NULL for a non-scalar) and CAST it, or run it on BigQuery")
        elif isinstance(node, exp.ParseJSON) and isinstance(node.expression, exp.Kwarg) \
                and node.expression.this.name.lower() == "wide_number_mode" \
                and node.expression.expression.name.lower() != "exact":
            # 'round' keeps a number a FLOAT64 cannot hold, rounded; the local JSON refuses such numbers
            raise QueryError(f"line {_line_of(node, sql)}: PARSE_JSON(..., wide_number_mode => "
                             f"'{node.expression.expression.name}') is not supported by the local warehouse; "
                             "write PARSE_JSON(text) (wide_number_mode 'exact', the default) with numbers a "
                             "FLOAT64 holds exactly, or run it on BigQuery")
        elif type(node).__name__ in ("NetFunc", "SafeFunc"):
            inner = node.this
            prefix = "NET." if type(node).__name__ == "NetFunc" else "SAFE."
            fn = inner.sql(dialect="bigquery").split("(")[0].upper()
            name = prefix + fn
            if prefix == "SAFE.":
                raise QueryError(
                    f"line {_line_of(node, sql)}: {name}(...) is not supported by the local warehouse: "
                    f"write the function without SAFE. and guard its input (e.g. SAFE_CAST, IF(...))")
        elif isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier):
            dotted = f"{node.this.name}.{node.expression.sql()}".upper()
            for refused in REFUSED_FUNCTIONS:
                if "." in refused and dotted.startswith(refused):
                    name = refused
            if dotted.startswith("HLL_COUNT."):  # HLL_COUNT.INIT, .MERGE, .EXTRACT: a Dot, not a name
                name = "HLL_COUNT"
        if name:
            instead = REFUSED_FUNCTIONS.get(name, "a construct listed in docs/sql.md")
            raise QueryError(f"line {_line_of(node, sql)}: {name} is not supported by the local warehouse "
                             f"(it cannot give BigQuery's value); write {instead} instead")


# ---- format strings ----------------------------------------------------------------------------
def _format_pieces(fmt: str, value: exp.Expression, what: str) -> exp.Expression:
    """A BigQuery FORMAT_* format (after sqlglot's mapping) as DuckDB `strftime(...) || ...`."""
    pieces: list[exp.Expression] = []
    pending: list[str] = []

    def flush():
        if pending:
            pieces.append(exp.Anonymous(this="strftime", expressions=[value.copy(), exp.Literal.string("".join(pending))]))
            pending.clear()

    def add(sql: str):
        flush()
        pieces.append(exp.maybe_parse(sql, dialect="duckdb").transform(
            lambda n: value.copy() if isinstance(n, exp.Column) and n.name == "__v" else n))

    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            pending.append("%%" if ch == "%" else ch)
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise QueryError(f"{what}: format {fmt!r} ends with a lone %")
        spec = fmt[i + 1]
        if spec == "E" and i + 3 < len(fmt) and fmt[i + 3] == "S" and fmt[i + 2] in "0123456*":
            digits = fmt[i + 2]
            if digits == "*":
                add("strftime(__v, '%S') || CASE WHEN microsecond(__v) % 1000000 = 0 THEN '' ELSE "
                    "'.' || rtrim(strftime(__v, '%f'), '0') END")
            elif digits == "0":
                pending.append("%S")
            else:
                add(f"strftime(__v, '%S') || '.' || substr(strftime(__v, '%f'), 1, {digits})")
            i += 4
            continue
        if spec == "E" and fmt[i + 2: i + 4] == "4Y":
            add("lpad(CAST(year(__v) AS VARCHAR), 4, '0')")
            i += 4
            continue
        i += 2
        if spec == "-" and i < len(fmt):  # sqlglot writes BigQuery's %e/%k/%l as %-d/%-H/%-I
            spec = {"d": "e", "H": "k", "I": "l"}.get(fmt[i], "-" + fmt[i])
            i += 1
        if spec == "e":
            add("lpad(CAST(day(__v) AS VARCHAR), 2, ' ')")
        elif spec == "k":
            add("lpad(CAST(hour(__v) AS VARCHAR), 2, ' ')")
        elif spec == "l":
            add("lpad(CAST(CASE WHEN hour(__v) % 12 = 0 THEN 12 ELSE hour(__v) % 12 END AS VARCHAR), 2, ' ')")
        elif spec == "C":
            add("lpad(CAST(year(__v) // 100 AS VARCHAR), 2, '0')")
        elif spec == "g":
            add("lpad(CAST(isoyear(__v) % 100 AS VARCHAR), 2, '0')")
        elif spec == "Q":
            add("CAST(quarter(__v) AS VARCHAR)")
        elif spec == "P":
            add("lower(strftime(__v, '%p'))")
        elif spec == "s":
            add("CAST(CAST(floor(epoch(__v)) AS BIGINT) AS VARCHAR)")
        elif spec == "n":
            pending.append("\n")
        elif spec == "t":
            pending.append("\t")
        elif spec == "D":
            pending.append("%m/%d/%y")
        elif spec == "F":
            pending.append("%Y-%m-%d")
        elif spec == "T" or spec == "X":
            pending.append("%H:%M:%S")
        elif spec == "R":
            pending.append("%H:%M")
        elif spec == "x":
            pending.append("%m/%d/%y")
        elif spec == "c":
            pending.append("%a %b ")
            add("lpad(CAST(day(__v) AS VARCHAR), 2, ' ')")
            pending.append(" %H:%M:%S %Y")
        elif spec == "h":
            pending.append("%b")
        elif spec in ("Z", "z"):
            raise QueryError(f"{what}: the time zone element %{spec} is not supported by the local warehouse; "
                             "format the time zone offset in the query text instead")
        elif spec in _DUCKDB_STRFTIME:
            pending.append("%" + spec)
        else:
            raise QueryError(f"{what}: format element %{spec} is not supported by the local warehouse")
    flush()
    if not pieces:
        return exp.Literal.string("")
    result = pieces[0]
    for piece in pieces[1:]:
        result = exp.DPipe(this=result, expression=piece)
    return exp.Paren(this=result)


def _parse_format(fmt: str, what: str) -> str:
    """A BigQuery PARSE_* format (after sqlglot's mapping) as a DuckDB strptime format."""
    out, i = [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        spec = fmt[i + 1] if i + 1 < len(fmt) else ""
        if spec == "-" and fmt[i + 2: i + 3] in ("d", "H", "I", "m"):
            out.append("%-" + fmt[i + 2])
            i += 3
            continue
        if spec == "E" and fmt[i + 2: i + 4] in ("*S", "6S", "3S"):
            out.append("%S.%f")
            i += 4
            continue
        if spec == "E" and fmt[i + 2: i + 4] == "4Y":
            out.append("%Y")
            i += 4
            continue
        mapped = {"e": "%d", "k": "%H", "l": "%I", "D": "%m/%d/%y", "F": "%Y-%m-%d", "T": "%H:%M:%S",
                  "R": "%H:%M", "x": "%m/%d/%y", "X": "%H:%M:%S", "h": "%b"}.get(spec)
        if mapped:
            out.append(mapped)
        elif spec in set("aAbBdmyYHIpMSjz%"):
            out.append("%" + spec)
        else:
            raise QueryError(f"{what}: format element %{spec} is not supported by the local warehouse")
        i += 2
    return "".join(out)


def _unit(node: exp.Expression | None) -> tuple[str, str | None]:
    """(UNIT, weekday or None) of a date part argument such as HOUR, WEEK or WEEK(MONDAY)."""
    if node is None:
        return "DAY", None
    if isinstance(node, exp.WeekStart):
        return "WEEK", node.this.name.upper() if node.this is not None else None
    text = node.name if hasattr(node, "name") and node.name else node.sql()
    text = text.strip("'\"").upper()
    match = re.match(r"^WEEK\((\w+)\)$", text)
    if match:
        return "WEEK", match.group(1)
    return text, None


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _interval(text: str) -> exp.Expression:
    return exp.maybe_parse(f"INTERVAL '{text}'", dialect="duckdb")


def _bucket(value: exp.Expression, unit: str, weekday: str | None, what: str) -> exp.Expression:
    if unit in ("WEEK", "ISOWEEK"):
        day = "MONDAY" if unit == "ISOWEEK" else (weekday or "SUNDAY")
        if day not in _WEEKDAY_OFFSET:
            raise QueryError(f"{what}: unknown week start {day}")
        return _call("time_bucket", _interval("7 DAY"), value, _interval(f"{_WEEKDAY_OFFSET[day]} DAY"))
    if unit not in _BUCKETS:
        raise QueryError(f"{what}: truncation to {unit} is not supported by the local warehouse")
    return _call("time_bucket", _interval(_BUCKETS[unit]), value)


def _extract(node: exp.Extract) -> exp.Expression | None:
    part_node, value = node.this, node.expression
    if isinstance(part_node, exp.WeekStart):
        day = part_node.this.name.upper() if part_node.this is not None else "SUNDAY"
        return _week_number(value, day)
    part = part_node.name.upper()
    if part == "DAYOFWEEK":
        return exp.Paren(this=exp.Add(this=_call("dayofweek", value), expression=exp.Literal.number(1)))
    if part == "WEEK":
        return _week_number(value, "SUNDAY")
    if part == "ISOWEEK":
        return _call("week", value)
    if part == "ISOYEAR":
        return _call("isoyear", value)
    if part == "MILLISECOND":
        return exp.Paren(this=exp.Mod(this=_call("millisecond", value), expression=exp.Literal.number(1000)))
    if part == "MICROSECOND":
        return exp.Paren(this=exp.Mod(this=_call("microsecond", value), expression=exp.Literal.number(1000000)))
    if part == "DATE":
        return exp.Cast(this=value, to=exp.DataType.build("DATE"))
    if part == "TIME":
        return exp.Cast(this=value, to=exp.DataType.build("TIME"))
    if part == "DATETIME":
        return exp.Cast(this=value, to=exp.DataType.build("TIMESTAMP"))
    return None


def _week_number(value: exp.Expression, day: str) -> exp.Expression:
    # BigQuery WEEK(<day>): weeks start on <day>; days before the year's first <day> are week 0.
    # dayofyear - 1 shifted so that the first <day> of the year starts week 1.
    offset = {"SUNDAY": 0, "MONDAY": 1, "TUESDAY": 2, "WEDNESDAY": 3, "THURSDAY": 4, "FRIDAY": 5,
              "SATURDAY": 6}[day]
    sql = (f"CAST((dayofyear(__v) + 6 - ((dayofweek(__v) - {offset} + 7) % 7)) // 7 AS BIGINT)")
    return exp.Paren(this=exp.maybe_parse(sql, dialect="duckdb").transform(
        lambda n: value.copy() if isinstance(n, exp.Column) and n.name == "__v" else n))


def _zone(node: exp.Expression) -> exp.Expression:
    zone = node.args.get("zone")
    return zone.copy() if zone is not None else exp.Literal.string("UTC")


def _literal_format(node: exp.Expression, what: str) -> str:
    fmt = node.args.get("format")
    if not isinstance(fmt, exp.Literal) or not fmt.is_string:
        raise QueryError(f"{what}: the format must be a string literal on the local warehouse")
    return fmt.this


def _offset_rewrite(select: exp.Select) -> None:
    """UNNEST(...) WITH OFFSET counts from 0 in BigQuery; DuckDB's ORDINALITY counts from 1."""
    for unnest in list(select.find_all(exp.Unnest)):
        offset = unnest.args.get("offset")
        if not isinstance(offset, exp.Identifier) or unnest.find_ancestor(exp.Select) is not select:
            continue
        name = offset.name
        hidden = f"__kfkit_ordinal_{name}"
        unnest.set("offset", exp.to_identifier(hidden))

        def replace(node):
            if isinstance(node, exp.Column) and node.name == name and not node.table:
                shifted = exp.Paren(this=exp.Sub(this=exp.column(hidden), expression=exp.Literal.number(1)))
                if isinstance(node.parent, exp.Select) and node in node.parent.expressions:
                    return exp.alias_(shifted, name)
                return shifted
            return node

        for key in ("expressions", "where", "group", "having", "order", "qualify"):
            value = select.args.get(key)
            if value is None:
                continue
            # in place: a copy's root has no parent (a bare `o` in the SELECT list would lose its name), and
            # the rewrite knows each AVG's and division's operand type by the node (numeric.annotate)
            if isinstance(value, list):
                select.set(key, [v.transform(replace, copy=False) for v in value])
            else:
                select.set(key, value.transform(replace, copy=False))
        for join in select.args.get("joins") or []:  # JOIN ... ON o = ...: the offset read in a join condition
            if join.args.get("on") is not None:
                join.set("on", join.args["on"].transform(replace, copy=False))


def rewrite(tree: exp.Expression, sql: str) -> exp.Expression:
    """Apply every BigQuery-semantics rewrite to a parsed BigQuery query."""
    refusals(tree, sql)
    arguments.calls(sql)
    kinds = numeric.annotate(tree)
    long_tail.distinct_windows(tree, sql, line_of)
    long_tail.using_offsets(tree, sql, line_of)
    for select in list(tree.find_all(exp.Select)):
        _offset_rewrite(select)
    long_tail.range_frames(tree, sql, line_of)
    long_tail.partition_keys(tree, sql, line_of)
    long_tail.using_nan_keys(tree, sql, line_of)
    long_tail.order_nan_keys(tree)
    tree = long_tail.pivot_names(tree)

    def where(name: str) -> str:
        line = line_of(sql, name) if name[:1].isalpha() else None
        return f"line {line}: {name}" if line else name

    def fix(node: exp.Expression) -> exp.Expression:
        arguments.check(node, where)
        if isinstance(node, (exp.Min, exp.Max)) and not node.expressions and not isinstance(node.this, exp.Distinct):
            name = "MIN" if isinstance(node, exp.Min) else "MAX"
            node.set("this", _call("bq_orderable", node.this, exp.Literal.string(where(name))))
        tail = long_tail.fix(node)
        if tail is not None:
            return tail
        mathematical = numeric.fix(node) or strings.fix(node)
        if mathematical is not None:
            return mathematical
        if isinstance(node, exp.Avg):
            average = numeric.average(node, kinds.get(id(node)), where("AVG"))
            if average is not None:
                return average
        if isinstance(node, exp.Split):
            return strings.split(node, kinds.get(id(node)), where("SPLIT"))
        if isinstance(node, (exp.Upper, exp.Lower)):
            return strings.case_mapping(node, kinds.get(id(node)), where(node.sql_name()))
        if isinstance(node, exp.Initcap):
            return strings.initcap_call(node, where("INITCAP"))
        text = strings.text_call(node, kinds.get(id(node)), where)
        if text is not None:
            return text
        if isinstance(node, exp.Window) and isinstance(node.this, exp.Avg):
            average = numeric.window_average(node, kinds.get(id(node.this)))
            if average is not None:
                return average
        what = node.sql(dialect="bigquery", unsupported_level=ErrorLevel.IGNORE)[:60] if isinstance(node, exp.Func) else ""
        if isinstance(node, exp.HexString) and int(node.this, 16) > (1 << 63) - (0 if isinstance(node.parent, exp.Neg) else 1):
            line = line_of(sql, f"0x{node.this}")
            raise QueryError(f"{f'line {line}: ' if line else ''}Invalid integer literal: 0x{node.this} (an integer "
                             "literal is an INT64)")
        if isinstance(node, exp.Literal) and not node.is_string:
            if node.this.isdigit() and int(node.this) > (1 << 63) - (0 if isinstance(node.parent, exp.Neg) else 1):
                # lexical#integer_literals: an integer literal is an INT64; DuckDB would make it a HUGEINT and
                # answer a comparison or a cast of it
                line = line_of(sql, node.this)
                raise QueryError(f"{f'line {line}: ' if line else ''}Invalid integer literal: "
                                 f"{'-' if isinstance(node.parent, exp.Neg) else ''}{node.this} (an integer literal "
                                 "is an INT64; write NUMERIC '...' or a FLOAT64 such as 1e20)")
            if re.search(r"[.eE]", node.this):
                # 2.5 is a FLOAT64 literal in BigQuery; DuckDB would make it a DECIMAL
                return exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE"))
            parent = node.parent
            if isinstance(parent, exp.Neg):  # -1 is arithmetic only where the negation is
                parent = parent.parent
            if isinstance(parent, _ARITHMETIC):
                # an integer literal is INT64 in BigQuery; DuckDB would make it an INTEGER (overflow at 2^31)
                return exp.Cast(this=node.copy(), to=exp.DataType.build("BIGINT"))
            return node
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL and not node.expressions:
            # BigQuery's NUMERIC (and DECIMAL) is NUMERIC(38, 9); DuckDB's bare DECIMAL is (18, 3)
            return exp.DataType.build("DECIMAL(38, 9)")
        if isinstance(node, exp.Null) and isinstance(node.parent, (exp.DPipe, exp.Concat)):
            return exp.Cast(this=node.copy(), to=exp.DataType.build("VARCHAR"))
        if isinstance(node, (exp.DateAdd, exp.DateSub)):
            unit = node.args.get("unit")
            interval = exp.Interval(this=exp.Cast(this=node.expression, to=exp.DataType.build("BIGINT")),
                                    unit=exp.var(_unit(unit)[0]))
            op = exp.Add if isinstance(node, exp.DateAdd) else exp.Sub
            return exp.Cast(this=exp.Paren(this=op(this=node.this, expression=interval)),
                            to=exp.DataType.build("DATE"))
        if type(node).__name__ == "DateFromUnixDate":
            return exp.Cast(this=exp.Add(this=exp.Cast(this=exp.Literal.string("1970-01-01"), to=exp.DataType.build("DATE")),
                                         expression=exp.Cast(this=node.this, to=exp.DataType.build("INTEGER"))),
                            to=exp.DataType.build("DATE"))
        if type(node).__name__ == "String" and node.args.get("zone") is not None:
            raise QueryError(f"{what}: STRING(timestamp, time_zone) is not supported by the local warehouse; "
                             "use FORMAT_TIMESTAMP('%F %T', ts, zone)")
        if isinstance(node, exp.UnixToTime) and node.args.get("scale") is not None:
            scale = int(str(node.args["scale"]))
            if scale in (3, 6):  # TIMESTAMP_MILLIS / TIMESTAMP_MICROS are TIMESTAMPs (UTC), exact
                micros = node.this if scale == 6 else exp.Mul(this=exp.Cast(this=node.this, to=exp.DataType.build("BIGINT")),
                                                              expression=exp.Literal.number(1000))
                return _call("timezone", exp.Literal.string("UTC"), _call("make_timestamp", micros))
        if type(node).__name__ == "ByteLength":
            return _call("bq_byte_length", node.this)
        if isinstance(node, exp.Bracket) and len(node.expressions) == 1 and not node.args.get("safe") \
                and node.args.get("offset") is not None:
            base = int(str(node.args.get("offset")))
            return _call("bq_element", node.this, node.expressions[0], exp.Literal.number(base))
        if isinstance(node, exp.Extract):
            return _extract(node) or node
        if isinstance(node, (exp.DateTrunc, exp.DatetimeTrunc)):
            unit, weekday = _unit(node.args.get("unit"))
            return _bucket(node.this, unit, weekday, what)
        if isinstance(node, exp.TimestampTrunc):
            unit, weekday = _unit(node.args.get("unit"))
            zone = _zone(node)
            local = _call("timezone", zone, node.this)
            return _call("timezone", zone.copy(), _bucket(local, unit, weekday, what))
        if isinstance(node, exp.TimestampDiff):
            unit, _ = _unit(node.args.get("unit"))
            if unit not in _UNIT_US:
                raise QueryError(f"{what}: TIMESTAMP_DIFF supports MICROSECOND to DAY, not {unit}")
            return _call("bq_ts_diff", node.this, node.expression, exp.Literal.number(_UNIT_US[unit]))
        if isinstance(node, exp.TimeToStr):
            fmt = _literal_format(node, what)
            value = node.this
            if isinstance(value, (exp.TsOrDsToTimestamp,)) or node.args.get("zone") is not None:
                inner = value.this if isinstance(value, exp.TsOrDsToTimestamp) else value
                value = _call("timezone", _zone(node), exp.Cast(this=inner, to=exp.DataType.build("TIMESTAMPTZ")))
            elif isinstance(value, exp.TsOrDsToDatetime):
                value = exp.Cast(this=value.this, to=exp.DataType.build("TIMESTAMP"))
            elif isinstance(value, exp.TsOrDsToDate):
                value = exp.Cast(this=value.this, to=exp.DataType.build("DATE"))
            elif isinstance(value, exp.TsOrDsToTime):
                # time_functions#format_time: DuckDB's strftime takes no TIME, so the time is put on a day and
                # formatted as a DATETIME, exact for the time-of-day elements; any other element is refused
                if re.search(r"%(?!E[0-6*]S)[^HIMSpRTklX%]", fmt):
                    raise QueryError(f"{where('FORMAT_TIME')}: the format {fmt!r} has an element the local warehouse "
                                     "does not format for a TIME (it takes %H %I %k %l %M %S %E<n>S %p %R %T %X "
                                     "and %%); run it on BigQuery")
                day = exp.Cast(this=exp.Literal.string("1970-01-01"), to=exp.DataType.build("DATE"))
                value = exp.Cast(this=exp.Add(this=day, expression=exp.Cast(this=value.this,
                                                                            to=exp.DataType.build("TIME"))),
                                 to=exp.DataType.build("TIMESTAMP"))
            return _format_pieces(fmt, value, what)
        if isinstance(node, (exp.StrToTime, exp.StrToDate)) or type(node).__name__ == "ParseDatetime":
            fmt = _parse_format(_literal_format(node, what), what)
            if not re.search(r"%[YyGF]|%m/%d/%y", fmt):
                node_value = exp.DPipe(this=exp.Literal.string("1970 "), expression=node.this)
                fmt = "%Y " + fmt
            else:
                node_value = node.this
            parsed = _call("strptime", node_value, exp.Literal.string(fmt))
            if isinstance(node, exp.StrToDate):
                return exp.Cast(this=parsed, to=exp.DataType.build("DATE"))
            if type(node).__name__ == "ParseDatetime":
                return exp.Cast(this=parsed, to=exp.DataType.build("TIMESTAMP"))
            if "%z" in fmt:
                return parsed
            return _call("timezone", _zone(node), exp.Cast(this=parsed, to=exp.DataType.build("TIMESTAMP")))
        if isinstance(node, exp.Div) and not node.args.get("safe"):
            return numeric.divide(node, kinds.get(id(node)))
        if isinstance(node, exp.IntDiv):
            return _call("bq_int_div", node.this, node.expression)
        if isinstance(node, exp.Mod):
            return _call("bq_mod", node.this, node.expression)
        if isinstance(node, exp.Cast):
            fitted = numeric.parameterized_cast(node, where)
            if fitted is not None:
                return fitted
        if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DECIMAL \
                and [e.name for e in node.to.expressions] == ["38", "9"] \
                and not (isinstance(node.this, exp.Literal) and (node.this.is_string or node.this.this.isdigit())):
            # CAST(FLOAT64 AS NUMERIC) rounds the double's exact value (numeric.numeric_from_double)
            return _call("bq_safe_numeric" if isinstance(node, exp.TryCast) else "bq_numeric", node.this)
        if isinstance(node, exp.Cast) and node.to.is_type("boolean"):
            if isinstance(node, exp.TryCast):
                return _call("bq_safe_bool", node.this)
            return _call("bq_bool", node.this, exp.Literal.string(where("CAST")))
        if isinstance(node, exp.Corr) and not isinstance(node.parent, exp.Window):
            # statistical_aggregate_functions#corr: NULL for fewer than two pairs without a NULL (DuckDB gave NaN)
            return exp.Case(ifs=[exp.If(this=exp.LT(this=_pairs(node), expression=exp.Literal.number(2)),
                                        true=exp.Null())], default=node.copy())
        if isinstance(node, exp.Window) and isinstance(node.this, exp.Corr):
            # the same over a window frame: the pairs are counted over the same frame
            pairs = node.copy()
            pairs.set("this", _pairs(node.this))
            return exp.Case(ifs=[exp.If(this=exp.LT(this=pairs, expression=exp.Literal.number(2)), true=exp.Null())],
                            default=node.copy())
        if type(node).__name__ == "UnixSeconds":
            return _call("bq_unix_seconds", node.this)
        if isinstance(node, (exp.TimestampAdd, exp.TimestampSub)):
            unit, _ = _unit(node.args.get("unit"))
            if unit not in _UNIT_US:
                name = "TIMESTAMP_ADD" if isinstance(node, exp.TimestampAdd) else "TIMESTAMP_SUB"
                raise QueryError(f"{where(name)}: {name} does not support the {unit} date part; it takes "
                                 "MICROSECOND, MILLISECOND, SECOND, MINUTE, HOUR or DAY (use DATETIME_ADD on a DATETIME)")
        if isinstance(node, exp.Cast) and node.to.this in _TIME_TEXT:
            checked = _time_text(node, where)
            if checked is not None:
                return checked
        if isinstance(node, exp.TryCast) and node.to.is_type("bigint"):
            return _call("bq_safe_int64", node.this)
        if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast):
            integer_literal = isinstance(node.this, exp.Literal) and not node.this.is_string
            if node.to.is_type("bigint") and not integer_literal:
                return _call("bq_int64", node.this)
            if node.to.is_type("text", "varchar") and not isinstance(node.this, exp.Literal):
                return _call("bq_string", node.this)
        if isinstance(node, exp.JSONFormat):
            return _call("bq_to_json_string", exp.Cast(this=_call("to_json", node.this),
                                                        to=exp.DataType.build("VARCHAR")),
                         _call("typeof", node.this.copy()))
        if isinstance(node, exp.CurrentDatetime):
            zone = node.this.copy() if node.this is not None else exp.Literal.string("UTC")
            return _call("bq_current_datetime", zone)
        if isinstance(node, exp.GroupConcat) and not isinstance(node.parent, exp.Window):
            joined = _string_agg(node, kinds.get(id(node)), where("STRING_AGG"))
            if joined is not None:
                return joined
        if isinstance(node, (exp.ArrayAgg, exp.IgnoreNulls)) and _array_agg(node) is not None:
            return _array_agg(node)
        return node

    # bottom-up, so a rewritten node's arguments are already rewritten
    for node in reversed(list(tree.walk(bfs=False))):
        new = fix(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    numeric.overflow_checks(tree)
    use_row_twins(tree, ROW_TWIN_NAMES)
    return tree


# The strings CAST (and a literal) takes as a DATE, DATETIME, TIME or TIMESTAMP: ZetaSQL's ConvertStringToDate,
# ConvertStringToDatetime, ConvertStringToTime and ParseStringToTimestampParts (date_time_util.cc), nothing
# around them; DuckDB's casts also took surrounding whitespace, and a time or a 'T' after a DATE
_DATE_RE = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
_TIME_RE = r"[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]{1,6})?"
_OFFSET_RE = r"[+-][0-9]{1,2}(:?[0-9]{1,2})?"
_TIME_TEXT = {
    exp.DataType.Type.DATE: ("date", _DATE_RE),
    exp.DataType.Type.TIMESTAMP: ("datetime", f"{_DATE_RE}([ Tt]{_TIME_RE})?"),
    exp.DataType.Type.TIME: ("time", _TIME_RE),
    exp.DataType.Type.TIMESTAMPTZ: ("timestamp", f"{_DATE_RE}([ Tt]({_TIME_RE}({_OFFSET_RE}|[Zz]| UTC({_OFFSET_RE})?"
                                                 f"| [A-Za-z][A-Za-z0-9_/+-]*)?|{_OFFSET_RE}))?"),
}
_TIME_FORMATS = {"date": "'YYYY-[M]M-[D]D'", "datetime": "'YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.F]]'",
                 "time": "'[H]H:[M]M:[S]S[.F]'",
                 "timestamp": "'YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.F]][time zone]'"}


def _canonical_time_text(text: str) -> str:
    """A literal BigQuery takes with one-digit parts ('2008-1-5 1:2:3+5'), zero-padded as DuckDB requires."""
    def two(match: re.Match) -> str:
        return match.group(1) + ":".join(f"{int(part):02d}" for part in match.groups()[1:] if part is not None)

    text = re.sub(r"^([0-9]{4}-)([0-9]{1,2})-([0-9]{1,2})", lambda m: f"{m.group(1)}{int(m.group(2)):02d}-"
                  f"{int(m.group(3)):02d}", text)
    text = re.sub(r"([ Tt])([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})", two, text)
    text = re.sub(r"(?<=[0-9])[tz]", lambda m: m.group(0).upper(), text)
    text = re.sub(r"^([0-9:]+)$", lambda m: ":".join(f"{int(p):02d}" for p in m.group(1).split(":")), text)
    text = re.sub(r" UTC(?=[+-])", "", text)  # DuckDB read 'UTC+05:30' as a POSIX zone, its sign reversed
    return re.sub(r"([+-])([0-9]{1,2}):?([0-9]{1,2})?$", two, text)


def _time_text(cast: exp.Cast, where) -> exp.Expression | None:
    """A string literal outside BigQuery's format is an error (NULL for SAFE_CAST) before the query runs; another
    value is checked where it runs, if it is a STRING."""
    name, pattern = _TIME_TEXT[cast.to.this]
    safe = isinstance(cast, exp.TryCast)
    value = cast.this
    if isinstance(value, exp.Literal) and value.is_string:
        if re.fullmatch(pattern, value.this):
            canonical = _canonical_time_text(value.this)
            if canonical == value.this:
                return None
            copy = cast.copy()
            copy.set("this", exp.Literal.string(canonical))
            return copy
        if safe:
            return exp.Cast(this=exp.Null(), to=cast.to.copy())
        construct = where("CAST") if where("CAST") != "CAST" else f"{where(name.upper())} literal"
        raise QueryError(f"{construct}: Invalid {name}: {value.this!r} (BigQuery takes "
                         f"{_TIME_FORMATS[name]}, nothing around it)")
    if not isinstance(value, (exp.Column, exp.Func, exp.Paren, exp.Subquery, exp.Case, exp.Binary)):
        return None
    checked = _call("bq_safe_time_text" if safe else "bq_time_text", value.copy(), exp.Literal.string(pattern),
                    exp.Literal.string(where("SAFE_CAST" if safe else "CAST")), exp.Literal.string(name))
    copy = cast.copy()
    copy.set("this", checked)
    return copy


def _pairs(corr: exp.Corr) -> exp.Expression:
    """COUNT of the rows where neither argument of CORR is NULL."""
    both = exp.and_(exp.Not(this=exp.Is(this=corr.this.copy(), expression=exp.Null())),
                    exp.Not(this=exp.Is(this=corr.expression.copy(), expression=exp.Null())))
    return exp.Count(this=exp.Case(ifs=[exp.If(this=both, true=exp.Literal.number(1))]))


def _string_agg(node: exp.GroupConcat, kind: str | None, what: str) -> exp.Expression | None:
    """STRING_AGG with LIMIT, or of BYTES: the non-NULL values listed (DISTINCT, then ORDER BY, then LIMIT, as
    ZetaSQL's reference implementation stacks its accumulators), then joined; DuckDB's STRING_AGG takes no LIMIT,
    and made a BYTES value a STRING."""
    inner = node.this
    limit = inner.expression if isinstance(inner, exp.Limit) else None
    if limit is None and kind != "bytes":
        if kind is None:  # DuckDB's STRING_AGG of a BYTES value the translation cannot type gave a STRING
            value = numeric.aggregated_value(inner)
            value.replace(_call("bq_text_only", value.copy(), exp.Literal.string(what)))
        return None
    if limit is not None:
        inner = inner.this
    order = inner if isinstance(inner, exp.Order) else None
    if order is not None:
        inner = inner.this
    distinct = isinstance(inner, exp.Distinct)
    value = (inner.expressions[0] if distinct else inner).sql(dialect="duckdb")
    call = f"list({'DISTINCT ' if distinct else ''}{value}"
    if order is not None:
        call += " ORDER BY " + ", ".join(o.sql(dialect="duckdb") for o in order.expressions)
    call += f") FILTER (WHERE {value} IS NOT NULL)"
    if limit is not None:
        call = f"list_slice({call}, 1, {limit.sql(dialect='duckdb')})"
    separator = node.args.get("separator")
    if kind == "bytes":
        separator_sql = separator.sql(dialect="duckdb") if separator is not None else "CAST(',' AS BLOB)"
        return exp.maybe_parse(f"bq_join_bytes({call}, {separator_sql})", dialect="duckdb")
    separator_sql = separator.sql(dialect="duckdb") if separator is not None else "','"
    quoted = what.replace("'", "''")
    return exp.maybe_parse(f"bq_join_text({call}, {separator_sql}, '{quoted}')", dialect="duckdb")


def _array_agg(node: exp.Expression) -> exp.Expression | None:
    ignore_nulls = isinstance(node, exp.IgnoreNulls)
    agg = node.this if ignore_nulls else node
    if not isinstance(agg, exp.ArrayAgg) or (not ignore_nulls and isinstance(agg.parent, exp.IgnoreNulls)):
        return None
    inner = agg.this
    limit = None
    if isinstance(inner, exp.Limit):
        limit = inner.expression
        inner = inner.this
    order = None
    if isinstance(inner, exp.Order):
        order = inner
        inner = inner.this
    distinct = isinstance(inner, exp.Distinct)
    value = inner.expressions[0] if distinct else inner
    body = value.copy()
    sql_value = body.sql(dialect="duckdb")
    pieces = [f"DISTINCT {sql_value}" if distinct else sql_value]
    if order is not None:
        pieces.append(" ".join(["ORDER BY", ", ".join(o.sql(dialect="duckdb") for o in order.expressions)]))
    call = f"array_agg({' '.join(pieces)})"
    if ignore_nulls:
        call += f" FILTER (WHERE {sql_value} IS NOT NULL)"
    if limit is not None:
        call = f"list_slice({call}, 1, {limit.sql(dialect='duckdb')})"
    if not ignore_nulls:
        call = f"bq_array_no_nulls({call})"
    return exp.maybe_parse(call, dialect="duckdb")


def all_macros() -> list[str]:
    """Every macro a connection needs: MACROS, numeric's, bq_fail and the name_rows twins."""
    base = MACROS + numeric.MACROS + strings.RAISING_MACROS
    twins, _ = row_twins(base)
    return [FAIL_MACRO] + base + twins


ROW_TWIN_NAMES = row_twins(MACROS + numeric.MACROS + strings.RAISING_MACROS)[1]
